"""CloudTrail-shaped audit events for KMS calls and for the service's own background work.

What a request carried is logged under lower-camel-case names, except what must never be logged: plaintext,
ciphertext, messages, signatures, MACs, shared secrets, key material, import tokens and grant tokens.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from trent.node.model.operations import Operation

EVENT_VERSION = "1.08"
NEVER_LOGGED = frozenset({
    "Plaintext", "CiphertextBlob", "PrivateKeyPlaintext", "PrivateKeyCiphertextBlob", "Message", "Signature", "Mac",
    "SharedSecret", "SharedSecretCiphertextBlob", "PublicKey", "EncryptedKeyMaterial", "ImportToken", "GrantToken",
    "GrantTokens", "CiphertextForRecipient", "Recipient", "KeyStorePassword", "XksProxyAuthenticationCredential",
})
REDACTED = "HIDDEN_DUE_TO_SECURITY_REASONS"
# CloudTrail cuts a field whose contents pass the field's maximum size and marks the event "omitted": true. Here:
# request parameters of more than 100 KB (CloudTrail's size for them) are left out; an error message is cut.
MAX_PARAMETERS_BYTES = 100 * 1024
MAX_ERROR_MESSAGE_CHARS = 4096
# More secret strings than this in one request (the model allows ten grant tokens) are not looked for one by one in
# its error message: the message's details are withheld instead (scrubbing is one pass over it per secret).
MAX_SCRUBBED_SECRETS = 64


@functools.lru_cache(maxsize=1024)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cloudtrail_time(epoch: float) -> str:
    # CloudTrail's whole seconds: formatted once per second, not once per event (a hot path under load).
    return _second(int(epoch))


@functools.lru_cache(maxsize=4)
def _quoted_second(second: int) -> bytes:
    return orjson.dumps(_second(second))


def _millis(latency_ms: float) -> float:
    """A latency to the microsecond, as ``round(latency_ms, 3)`` gives it (but for a tie within the last bit of the
    measurement), without round's exact decimal conversion, the priciest step of an audit line."""
    if latency_ms < 0:
        return round(latency_ms, 3)
    return int(latency_ms * 1000 + 0.5) / 1000


def parse_cloudtrail_time(text: str) -> float:
    """The epoch seconds of an ``eventTime`` (0.0 if it is not one)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


_UUID4_BITS = 0x4000 << 64 | 0x8 << 60  # version 4, RFC 4122 variant
_UUID4_MASK = ((1 << 128) - 1) ^ (0xF000 << 64 | 0xC << 60)


def event_id() -> str:
    """A random (version 4) UUID, built without the uuid module's per-call overhead. Request and event ids are
    names, not secrets: they come from the process's PRNG (seeded from the OS, reseeded in a forked child), which
    saves the getrandom call that os.urandom costs per id; two of them are made per request."""
    h = (random.getrandbits(128) & _UUID4_MASK | _UUID4_BITS).to_bytes(16, "big").hex()  # faster than a format spec
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _loggable(value: Any) -> Any:
    """Lower-camel-case member names, no secrets, timestamps kept as numbers. Encryption-context maps are the
    caller's own data: their keys are logged as given."""
    if type(value) is str:  # most values: no ABC check for them
        return value
    if type(value) is dict or isinstance(value, Mapping):  # a dict without the ABC's check
        return _loggable_members(value)
    if isinstance(value, list | tuple):
        return [_loggable(v) for v in value if not isinstance(v, bytes)]
    return value


def _loggable_members(value: Mapping[str, Any]) -> dict[str, Any]:
    """``_loggable`` of a structure."""
    # Plain strings (most members) are kept as they are without a call for each; names made camel in place.
    return {k[:1].lower() + k[1:]: v if type(v) is str else
            (dict(v) if "EncryptionContext" in k and isinstance(v, Mapping) else _loggable(v))
            for k, v in value.items() if k not in NEVER_LOGGED and not isinstance(v, bytes)}


def request_parameters(operation: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
    logged = _loggable_members(params)  # a request is a structure: no type checks for it
    if operation in ("Encrypt", "Decrypt"):
        logged.setdefault("encryptionAlgorithm", "SYMMETRIC_DEFAULT")  # AWS logs it even when omitted
    return logged or None


def _secret_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif type(value) is dict or isinstance(value, Mapping):  # a dict without the ABC's check
        for v in value.values():
            yield from _secret_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _secret_strings(v)


def scrub_message(message: str, params: Mapping[str, Any]) -> str:
    """Error messages may quote what the request carried (a validation error echoes a too-long list of grant
    tokens, say): whatever must never be logged is cut out of them too."""
    secrets: set[str] = set()
    for name in NEVER_LOGGED:
        if name in params:
            for secret in _secret_strings(params[name]):
                if len(secret) >= 4:
                    secrets.add(secret)
                    if len(secrets) > MAX_SCRUBBED_SECRETS:
                        # Only an invalid request carries so many: keep what the message says of them, not the values.
                        head, colon, _ = message.partition(": ")
                        return head + colon + REDACTED if colon else REDACTED
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, REDACTED)
    return message


def audit_message(message: str, params: Mapping[str, Any]) -> tuple[str, bool]:
    """An error message as the audit log keeps it: scrubbed, then cut to its maximum size (True if cut)."""
    message = scrub_message(message, params)
    if len(message) <= MAX_ERROR_MESSAGE_CHARS:
        return message, False
    return message[:MAX_ERROR_MESSAGE_CHARS], True


def _parameters_fit(logged: dict[str, Any] | None) -> bool:
    return logged is None or len(orjson.dumps(logged)) <= MAX_PARAMETERS_BYTES


def response_elements(operation: Operation, response: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parts of the answer CloudTrail records (the operation declares which); most operations log none."""
    names = operation.logged_response
    if not names or not response:
        return None
    picked = {n: response[n] for n in names if n in response}
    logged = _loggable(picked)
    assert isinstance(logged, dict)
    return logged or None


def api_call_event(
    *, operation: Operation, region: str, account: str, principal_arn: str, principal_account: str, access_key: str,
    at: float, source_ip: str, user_agent: str, host: str, request_id: str, params: Mapping[str, Any],
    response: Mapping[str, Any] | None, error_code: str | None, error_message: str | None,
    resources: list[str], latency_ms: float, event_id_: str | None = None, invoked_by: str | None = None,
) -> dict[str, Any]:
    # Built in CloudTrail's member order, the optional error members in their place.
    event: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": user_identity(principal_arn, principal_account, access_key, invoked_by),
        "eventTime": cloudtrail_time(at),
        "eventSource": "kms.amazonaws.com",
        "eventName": operation.name,
        "awsRegion": region,
        "sourceIPAddress": source_ip,
        "userAgent": user_agent,
    }
    omitted = False
    if error_code is not None:
        event["errorCode"] = error_code
        if error_message:
            event["errorMessage"], omitted = audit_message(error_message, params)
    logged = request_parameters(operation.name, params)
    if not _parameters_fit(logged):
        logged, omitted = None, True
    event["requestParameters"] = logged
    event["responseElements"] = response_elements(operation, response) if error_code is None else None
    event["additionalEventData"] = {"latencyMs": _millis(latency_ms)}
    event["requestID"] = request_id
    event["eventID"] = event_id_ or event_id()
    if omitted:
        event["omitted"] = True
    event["readOnly"] = operation.cloudtrail_read_only
    event["resources"] = [{"accountId": account, "type": "AWS::KMS::Key", "ARN": arn} for arn in resources]
    event["eventType"] = "AwsApiCall"
    event["managementEvent"] = True
    event["recipientAccountId"] = account
    event["eventCategory"] = "Management"
    event["tlsDetails"] = {"clientProvidedHostHeader": host}
    return event


# A kind of call: operation, caller (ARN, account, access key), source IP, User-Agent, Host, keys, invoking service.
_Kind = tuple[str, str, str, str, str, str, str, tuple[str, ...], str | None]


class CallLineEncoder:
    """API calls straight to their JSON line, byte for byte ``orjson.dumps(api_call_event(...))``. Under load most of
    an event repeats from one call to the next (the caller, the operation, the key): that part is serialised once
    per kind of call, from ``api_call_event`` itself, and kept; only what a call owns is serialised per call."""

    _LIMIT = 4096  # kinds of call kept; past it, the cache starts over
    # Kept only for calls whose User-Agent and Host together are no longer (an SDK's are a few hundred characters):
    # a frame holds them twice, and a client sending a new 8 KB User-Agent with each call would otherwise make the
    # cache hold some 100 MB per region.
    _LONGEST_HEADERS = 1024

    def __init__(self, region: str, account: str) -> None:
        self.region = region
        self.account = account
        self._frames: dict[_Kind, tuple[bytes, bytes, bytes]] = {}

    def line(  # positional or by name: the trail passes them in order, once per request
        self, operation: Operation, principal_arn: str, principal_account: str, access_key: str, at: float,
        source_ip: str, user_agent: str, host: str, request_id: str, params: Mapping[str, Any],
        response: Mapping[str, Any] | None, error_code: str | None, error_message: str | None, resources: list[str],
        latency_ms: float, event_id_: str, invoked_by: str | None = None,
    ) -> bytes:
        if error_code is not None:  # failures also log their (scrubbed) message: the general way
            return orjson.dumps(api_call_event(
                operation=operation, region=self.region, account=self.account, principal_arn=principal_arn,
                principal_account=principal_account, access_key=access_key, at=at, source_ip=source_ip,
                user_agent=user_agent, host=host, request_id=request_id, params=params, response=response,
                error_code=error_code, error_message=error_message, resources=resources, latency_ms=latency_ms,
                event_id_=event_id_, invoked_by=invoked_by,
            ))
        name = operation.name
        kind = (name, principal_arn, principal_account, access_key, source_ip, user_agent, host, tuple(resources),
                invoked_by)
        frame = self._frames.get(kind)
        if frame is None:
            frame = self._frame(operation, kind)
        # The members a call owns, in the event's order (they stand together, after userAgent).
        logged = request_parameters(name, params)
        owned: dict[str, Any] = {
            "requestParameters": logged,
            "responseElements": response_elements(operation, response) if operation.logged_response else None,
            "additionalEventData": {"latencyMs": _millis(latency_ms)},
            "requestID": request_id,
            "eventID": event_id_,
        }
        own = orjson.dumps(owned)
        if len(own) > MAX_PARAMETERS_BYTES and not _parameters_fit(logged):
            owned["requestParameters"] = None
            owned["omitted"] = True
            own = orjson.dumps(owned)
        return b"".join((frame[0], _quoted_second(int(at)), frame[1], own[1:-1], frame[2]))

    def _frame(self, operation: Operation, kind: _Kind) -> tuple[bytes, bytes, bytes]:
        """The event of this kind of call cut around its time and around the members a call owns. Member names are
        found by their quoted form: inside a serialised string every quote is escaped, so they cannot be faked."""
        _, principal_arn, principal_account, access_key, source_ip, user_agent, host, resources, invoked_by = kind
        text = orjson.dumps(api_call_event(
            operation=operation, region=self.region, account=self.account, principal_arn=principal_arn,
            principal_account=principal_account, access_key=access_key, at=0.0, source_ip=source_ip,
            user_agent=user_agent, host=host, request_id="", params={}, response=None, error_code=None,
            error_message=None, resources=list(resources), latency_ms=0.0, event_id_="", invoked_by=invoked_by,
        ))
        time_at = text.index(b'"eventTime":') + len(b'"eventTime":')
        time_end = text.index(b',"eventSource":', time_at)
        own_at = text.index(b',"requestParameters":', time_end)
        own_end = text.index(b',"readOnly":', own_at)
        frame = (text[:time_at], text[time_end:own_at] + b",", text[own_end:])
        if len(kind[5]) + len(kind[6]) > self._LONGEST_HEADERS:
            return frame  # a caller's own User-Agent and Host: an odd client's 8 KB headers are not kept
        if len(self._frames) >= self._LIMIT:
            self._frames.clear()
        self._frames[kind] = frame
        return frame


@functools.lru_cache(maxsize=256)
def user_identity(principal_arn: str, principal_account: str, access_key: str,
                  invoked_by: str | None = None) -> dict[str, Any]:
    """CloudTrail's userIdentity of a caller. Cached per caller, so the same dict is shared by many events: it is
    only ever serialised, never changed."""
    kind, name = _identity_kind(principal_arn)
    identity: dict[str, Any] = {"type": kind, "principalId": access_key, "arn": principal_arn,
                                "accountId": principal_account, "accessKeyId": access_key}
    if name is not None:
        identity["userName"] = name
    if invoked_by is not None:
        identity["invokedBy"] = invoked_by  # a call a service made for the principal (kms:ViaService)
    return identity


def service_event(*, name: str, region: str, account: str, at: float, key_arn: str,
                  event_type: str = "AwsServiceEvent") -> dict[str, Any]:
    """Work KMS does by itself: RotateKey, DeleteKey, SynchronizeMultiRegionKey."""
    event: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": {"accountId": account, "invokedBy": "AWS Internal"},
        "eventTime": cloudtrail_time(at),
        "eventSource": "kms.amazonaws.com",
        "eventName": name,
        "awsRegion": region,
        "sourceIPAddress": "AWS Internal",
        "userAgent": "AWS Internal",
        "requestParameters": None,
        "responseElements": None,
        "eventID": event_id(),
        "readOnly": False,
        "resources": [{"accountId": account, "type": "AWS::KMS::Key", "ARN": key_arn}],
        "eventType": event_type,
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if name == "RotateKey":
        event["serviceEventDetails"] = {"keyId": key_arn.rsplit("/", 1)[-1]}
    return event


def _identity_kind(arn: str) -> tuple[str, str | None]:
    resource = arn.split(":", 5)[-1]
    if resource == "root":
        return "Root", None
    if resource.startswith("user/"):
        return "IAMUser", resource.rsplit("/", 1)[-1]
    if resource.startswith(("role/", "assumed-role/")):
        return "AssumedRole", None
    return "IAMUser", None
