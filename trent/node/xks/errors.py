"""How KMS reports a failed call to an XKS proxy: the spec's error mapping table (its "KMS Considerations"). One
message per failure, the same whatever the operation; the exception depends on the operation that made the call:
Create/UpdateCustomKeyStore, CreateKey, or a cryptographic operation. ConnectCustomKeyStore's asynchronous health
check records a ConnectionErrorCode instead."""

from __future__ import annotations

from trent.node.model.errors import KmsError
from trent.node.xks.client import XksCallFailure

CANNOT_INTERPRET = ("AWS KMS cannot interpret the response from the external key store proxy. If you see this error "
                    "repeatedly, report it to your external key store proxy administrator.")
NOT_CONNECTED = ("This KMS key is in a custom key store that is not connected to its external key store proxy. "
                 "Connect the external key store and try the request again.")
BAD_INNER_CIPHERTEXT = ("The ciphertext that the external key store proxy submitted for decryption, or the encryption "
                        "context, is corrupted, missing, or otherwise invalid.")

MESSAGES: dict[str, str] = {
    "ValidationException": CANNOT_INTERPRET,
    "InvalidStateException": (
        "The external key associated with this KMS key in an external key store is not enabled in the external key "
        "manager. Enable the external key in the external key manager and retry the request."),
    "InvalidCiphertextException": (
        "The external key store proxy rejected the request because the specified ciphertext or encryption context "
        "is corrupted, missing, or otherwise invalid."),
    "InvalidKeyUsageException": (
        "The external key associated with this KMS key in an external key store does not support the requested "
        "operation. Enable the operation on the key in your external key manager, and try the request again."),
    "AuthenticationFailedException": (
        "The external key store proxy rejected the request because it could not authenticate AWS KMS. Verify the XKS "
        "proxy authentication credentials for your external key store and update if necessary."),
    "AccessDeniedException": (
        "The external key store proxy denied access to the operation. Verify that the user and the external key are "
        "both authorized for this operation, and try the request again."),
    "KeyNotFoundException": (
        "The external key associated with this KMS key in an external key store was not found in its external key "
        "manager. If the external key ID associated with this KMS key is incorrect, create a new KMS key with the "
        "correct external key ID."),
    "InvalidUriPathException": (
        "The external key store proxy rejected the request because of an invalid URI path. Verify the URI path for "
        "your external key store and update if necessary."),
    "UnsupportedOperationException": (
        "The external key store proxy rejected the request because it does not support the requested operation. If "
        "you see this error repeatedly, report it to your external key store proxy administrator."),
    "DependencyTimeoutException": (
        "The external key store proxy did not respond to the request in the time allotted. Retry the request. If you "
        "see this error repeatedly, report it to your external key store proxy administrator."),
    "ThrottlingException": (
        "The external key store proxy rejected the request due to a very high request rate. Reduce the frequency of "
        "your calls using KMS keys in this external key store."),
    "InternalException": (
        "The external key store proxy rejected the request because it cannot communicate with the external key "
        "manager. Verify that the external key store proxy configuration is correct and that the external key "
        "manager is available."),
    "unreachable": (
        "AWS KMS cannot communicate with the external key store proxy. This might be a transient network issue. If "
        "you see this error repeatedly, verify that your external key store proxy is active and is connected to the "
        "network, and that its endpoint URI is correct in your external keystore."),
    "tls": ("AWS KMS cannot establish a TLS connection to the external key store proxy. Verify the TLS "
            "configuration, including its certificate."),
    "timeout": (
        "AWS KMS rejected the request because the external key store proxy did not respond in time. Retry the "
        "request. If you see this error repeatedly, report it to your external key store proxy administrator."),
    "malformed": CANNOT_INTERPRET,
}

_UNREACHABLE = ("unreachable", "tls", "timeout", "DependencyTimeoutException", "ThrottlingException")


def _cause(failure: XksCallFailure) -> str:
    return failure.error_name if failure.kind == "proxy" and failure.error_name else failure.kind


def message(failure: XksCallFailure) -> str:
    return MESSAGES.get(_cause(failure), CANNOT_INTERPRET)


def for_key_store(failure: XksCallFailure) -> KmsError:
    """CreateCustomKeyStore / UpdateCustomKeyStore."""
    cause = _cause(failure)
    if cause == "AuthenticationFailedException":
        name = "XksProxyIncorrectAuthenticationCredentialException"
    elif cause == "InvalidUriPathException":
        name = "XksProxyInvalidConfigurationException"
    elif cause in _UNREACHABLE:
        name = "XksProxyUriUnreachableException"
    else:
        name = "XksProxyInvalidResponseException"
    return KmsError(name, message(failure))


def for_create_key(failure: XksCallFailure) -> KmsError:
    cause = _cause(failure)
    if cause in ("InvalidStateException", "InvalidKeyUsageException"):
        return KmsError("XksKeyInvalidConfigurationException", message(failure))
    if cause == "KeyNotFoundException":
        return KmsError("XksKeyNotFoundException", message(failure))
    if cause == "AccessDeniedException":
        return KmsError("KMSInvalidStateException", message(failure))
    return KmsError("CustomKeyStoreInvalidStateException", message(failure))


def for_crypto(failure: XksCallFailure) -> KmsError:
    return KmsError("KMSInvalidStateException", message(failure))


def connection_error_code(failure: XksCallFailure) -> str:
    """What ConnectCustomKeyStore's health check records when it fails."""
    cause = _cause(failure)
    return {"AuthenticationFailedException": "INVALID_CREDENTIALS", "AccessDeniedException": "XKS_PROXY_ACCESS_DENIED",
            "InvalidUriPathException": "XKS_PROXY_INVALID_CONFIGURATION", "tls": "XKS_PROXY_INVALID_TLS_CONFIGURATION",
            "unreachable": "XKS_PROXY_NOT_REACHABLE", "ThrottlingException": "XKS_PROXY_NOT_REACHABLE",
            "timeout": "XKS_PROXY_TIMED_OUT", "DependencyTimeoutException": "XKS_PROXY_TIMED_OUT",
            }.get(cause, "XKS_PROXY_INVALID_RESPONSE")
