"""The XKS proxy API as the specification (v1.0.x) defines it: paths, error names with their HTTP statuses, the
request fields each call needs, base64 fields and their sizes, and the ciphertext data integrity value."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from typing import Any

API_ROOT = "kms/xks/v1"
SERVICE = "kms-xks-proxy"
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
URI_PATH_RE = re.compile(r"/(?:[A-Za-z0-9_/-]*/)?kms/xks/v1")  # what XksProxyUriPath may be (128 characters at most)
ENCRYPTION_ALGORITHM = "AES_GCM"
CDIV_ALGORITHM = "SHA_256"
ARN_MAX = 2048
METADATA_FIELD_MAX = 2048  # kmsRequestId, kmsOperation, kmsViaService, awsSourceVpc(e): opaque, bounded
PLAINTEXT_MAX = 8192  # the spec asks for 4300 at least
AAD_MAX = 8192
CIPHERTEXT_METADATA_MAX = 20
IV_LENGTHS = (12, 16)
TAG_LEN = 16
BODY_MAX = 64 * 1024

STATUS: dict[str, int] = {
    "ValidationException": 400, "InvalidStateException": 400, "InvalidCiphertextException": 400,
    "InvalidKeyUsageException": 400, "AuthenticationFailedException": 401, "AccessDeniedException": 403,
    "KeyNotFoundException": 404, "InvalidUriPathException": 404, "ThrottlingException": 429,
    "UnsupportedOperationException": 501, "DependencyTimeoutException": 503, "InternalException": 500,
}

# requestMetadata fields each call requires (the spec's "REQUIRED"); others are optional and never validated.
REQUIRED_METADATA: dict[str, tuple[str, ...]] = {
    "health": ("kmsRequestId", "kmsOperation"),
    "metadata": ("awsPrincipalArn", "kmsOperation", "kmsRequestId"),
    "encrypt": ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"),
    "decrypt": ("awsPrincipalArn", "kmsKeyArn", "kmsOperation", "kmsRequestId"),
}
OPERATION_NAMES = {"health": "GetHealthStatus", "metadata": "GetKeyMetadata", "encrypt": "Encrypt",
                   "decrypt": "Decrypt"}
_ARN_FIELDS = ("awsPrincipalArn", "kmsKeyArn")


class XksError(Exception):
    """A failure the proxy reports as the spec names it; the message is for the caller and the log (no secret)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name
        self.status = STATUS[name]
        self.message = message

    def body(self) -> dict[str, str]:
        # errorMessage: under 512 printable ASCII characters (the spec's rule).
        text = "".join(c if " " <= c <= "~" else "?" for c in self.message)[:511]
        return {"errorName": self.name, "errorMessage": text}


def validation(message: str) -> XksError:
    return XksError("ValidationException", message)


def check_request_metadata(body: Mapping[str, Any], operation: str) -> dict[str, str]:
    """The requestMetadata of a request body, with the fields ``operation`` requires (ValidationException if not)."""
    meta = body.get("requestMetadata")
    if not isinstance(meta, dict):
        raise validation("requestMetadata is required and must be an object")
    for name in REQUIRED_METADATA[operation]:
        value = meta.get(name)
        if not isinstance(value, str) or not value:
            raise validation(f"requestMetadata.{name} is required and must be a non-empty string")
    out: dict[str, str] = {}
    for name, value in meta.items():
        if not isinstance(value, str):
            if name in REQUIRED_METADATA[operation]:
                raise validation(f"requestMetadata.{name} must be a string")
            continue  # fields KMS may add later are not the proxy's to refuse
        limit = ARN_MAX if name in _ARN_FIELDS else METADATA_FIELD_MAX
        if len(value) > limit:
            raise validation(f"requestMetadata.{name} is longer than {limit} characters")
        out[name] = value
    return out


def b64_field(body: Mapping[str, Any], name: str, *, required: bool, max_len: int,
              too_long: str = "UnsupportedOperationException") -> bytes | None:
    """A base64 field of the body, decoded: standard alphabet with padding (RFC 4648 section 4), nothing else."""
    value = body.get(name)
    if value is None:
        if required:
            raise validation(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise validation(f"{name} must be a Base64 encoded string")
    if len(value) > 4 * ((max_len + 2) // 3):
        raise XksError(too_long, f"{name} is longer than {max_len} bytes")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise validation(f"{name} is not valid Base64") from None
    if len(raw) > max_len:
        raise XksError(too_long, f"{name} is longer than {max_len} bytes")
    return raw


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def gcm_aad(aad: bytes | None, ciphertext_metadata: bytes | None) -> bytes:
    """What the key manager authenticates: len16(AAD) || AAD || len8(ciphertextMetadata) || ciphertextMetadata (the
    lengths keep an AAD from passing for metadata, as the spec asks)."""
    a, m = aad or b"", ciphertext_metadata or b""
    return len(a).to_bytes(2, "big") + a + len(m).to_bytes(1, "big") + m


def cdiv(aad: bytes | None, ciphertext_metadata: bytes | None, iv: bytes, ciphertext: bytes, tag: bytes) -> bytes:
    """The ciphertext data integrity value: SHA-256 over AAD || metadata || IV || ciphertext || tag (Appendix C)."""
    return hashlib.sha256((aad or b"") + (ciphertext_metadata or b"") + iv + ciphertext + tag).digest()
