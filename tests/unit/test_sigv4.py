"""SigV4 verification against requests signed by botocore's own signer (no network)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from multidict import CIMultiDict, CIMultiDictProxy

from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import FixedClock
from trent.node.model.errors import KmsError
from trent.node.wire import sigv4
from trent.node.wire.sigv4 import CredentialScope, SigV4Verifier, parse_scope, scope_region

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TMP_AK = "ASIATEMPORARYEXAMPLE"
TMP_SK = "tempSecretKeyEXAMPLE0123456789abcdefghij"
TOKEN = "FwoGZXIvYXdzEXAMPLE//session+token=="
REGION = "us-east-1"
URL = "http://127.0.0.1:4599/"
BODY = b'{"Limit": 10}'

# 2027-01-15T12:00:00Z: the signing instant for deterministic tests.
T0 = dt.datetime(2027, 1, 15, 12, 0, 0)
T0_EPOCH = T0.replace(tzinfo=dt.UTC).timestamp()
T0_AMZ = "20270115T120000Z"

MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNRECOGNIZED = "The security token included in the request is invalid."


class WallClock:
    """botocore signs with the real time, so wall-clock tests verify with it too."""

    def now(self) -> float:
        return time.time()


PRINCIPALS = PrincipalDirectory(
    [
        Principal(AK, SK, "arn:aws:iam::111122223333:user/alice", "111122223333"),
        Principal(
            TMP_AK, TMP_SK, "arn:aws:sts::111122223333:assumed-role/r/s", "111122223333", session_token=TOKEN
        ),
    ]
)


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make botocore sign at T0."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: T0)
    yield


def sign(
    body: bytes = BODY,
    *,
    ak: str = AK,
    sk: str = SK,
    token: str | None = None,
    region: str = REGION,
    service: str = "kms",
    url: str = URL,
    headers: dict[str, str] | None = None,
    host: str | None = "127.0.0.1:4599",
) -> dict[str, str]:
    """Sign like boto3 does, then add Host as the HTTP client would (botocore signs it from the URL)."""
    base = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TrentService.ListKeys",
        **(headers or {}),
    }
    req = AWSRequest(method="POST", url=url, data=body, headers=base)
    SigV4Auth(Credentials(ak, sk, token), service, region).add_auth(req)
    out = dict(req.headers.items())
    if host is not None and not any(k.lower() == "host" for k in out):
        out["Host"] = host
    return out


def verifier(clock: Any = None, **kw: Any) -> SigV4Verifier:
    return SigV4Verifier(PRINCIPALS, clock or WallClock(), **kw)


def expect(err: pytest.ExceptionInfo[KmsError], code: str, status: int, message: str | None = None) -> None:
    assert err.value.code == code
    assert err.value.status == status
    if message is not None:
        assert err.value.message == message
    # Secrets never leak into errors.
    text = f"{err.value} {err.value.message}"
    assert SK not in text and TMP_SK not in text and TOKEN not in text


def auth_params(headers: dict[str, str]) -> tuple[str, str, str]:
    m = sigv4._AUTH_RE.fullmatch(headers["Authorization"])
    assert m is not None
    return m[0].split("Credential=")[1].split(",")[0], m[5], m[6]


# --- accepted requests --------------------------------------------------------------------------


def test_botocore_signed_request_verifies() -> None:
    headers = sign()
    caller = verifier().verify("POST", "/", "", headers, BODY)
    assert caller.access_key == AK
    assert caller.region == REGION
    assert caller.principal.arn == "arn:aws:iam::111122223333:user/alice"


def test_session_token_request_verifies() -> None:
    headers = sign(ak=TMP_AK, sk=TMP_SK, token=TOKEN)
    assert "x-amz-security-token" in headers["Authorization"]
    caller = verifier().verify("POST", "/", "", headers, BODY, expected_region=REGION)
    assert caller.principal.session_token == TOKEN


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://127.0.0.1:4599/", "127.0.0.1:4599"),
        ("http://localhost:8443/", "localhost:8443"),
        ("http://kms.local/", "kms.local"),  # default port: botocore signs the bare host
    ],
)
def test_host_with_and_without_port(url: str, host: str) -> None:
    headers = sign(url=url, host=host)
    verifier().verify("POST", "/", "", headers, BODY)


def test_host_header_given_before_signing() -> None:
    headers = sign(headers={"Host": "127.0.0.1:4599"}, host=None)
    verifier().verify("POST", "/", "", headers, BODY)


def test_empty_body() -> None:
    headers = sign(b"")
    verifier().verify("POST", "/", "", headers, b"")


def test_boto3_client_request_verifies() -> None:
    """The exact request a boto3 KMS client would put on the wire."""
    captured: dict[str, Any] = {}

    class Captured(Exception):
        pass

    def before_send(request: Any, **_: Any) -> None:
        captured["request"] = request
        raise Captured

    client = boto3.client(
        "kms",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:4599",
        aws_access_key_id=TMP_AK,
        aws_secret_access_key=TMP_SK,
        aws_session_token=TOKEN,
    )
    client.meta.events.register("before-send.kms", before_send)
    with pytest.raises(Captured):
        client.list_keys(Limit=5)
    req = captured["request"]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in req.headers.items()}
    headers["Host"] = "127.0.0.1:4599"
    caller = verifier().verify(req.method, "/", "", headers, req.body, expected_region="eu-west-1")
    assert caller.region == "eu-west-1"
    assert caller.access_key == TMP_AK


def test_path_and_query_canonicalisation() -> None:
    url = "http://127.0.0.1:4599/a%20b/./c//d?b=2&a=x%2Fy&a=1"
    headers = sign(url=url)
    verifier().verify("POST", "/a%20b/./c//d", "b=2&a=x%2Fy&a=1", headers, BODY)


@pytest.mark.parametrize("case", ["upper", "lower", "mixed"])
def test_header_names_any_case(case: str) -> None:
    headers = sign(ak=TMP_AK, sk=TMP_SK, token=TOKEN)
    recased = {
        (k.upper() if case == "upper" else k.lower() if case == "lower" else k.swapcase()): v
        for k, v in headers.items()
    }
    verifier().verify("POST", "/", "", recased, BODY)


def test_cimultidict_proxy_headers() -> None:
    headers = sign()
    proxy = CIMultiDictProxy(CIMultiDict({k.upper(): v for k, v in headers.items()}))
    verifier().verify("POST", "/", "", proxy, BODY)


def test_repeated_header_and_whitespace() -> None:
    req = AWSRequest(
        method="POST",
        url=URL,
        data=BODY,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Custom": "  a   b  "},
    )
    req.headers["X-Custom"] = "second\tvalue"  # HTTPMessage appends: a repeated header
    SigV4Auth(Credentials(AK, SK), "kms", REGION).add_auth(req)
    items = [*req.headers.items(), ("Host", "127.0.0.1:4599")]
    assert sum(1 for k, _ in items if k == "X-Custom") == 2
    verifier().verify("POST", "/", "", CIMultiDictProxy(CIMultiDict(items)), BODY)
    # A plain dict keeps only one value: the canonical header no longer matches.
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", dict(items), BODY)
    expect(err, "InvalidSignatureException", 403, MISMATCH)


def test_date_header_fallback(frozen: None) -> None:
    headers = sign(headers={"Date": "placeholder"})
    assert "X-Amz-Date" not in headers
    assert "SignedHeaders=content-type;date;host;" in headers["Authorization"]
    verifier(FixedClock(T0_EPOCH + 10)).verify("POST", "/", "", headers, BODY)


def test_content_sha256_matching_is_accepted() -> None:

    headers = sign(headers={"X-Amz-Content-SHA256": hashlib.sha256(BODY).hexdigest()})
    verifier().verify("POST", "/", "", headers, BODY)


# --- signature mismatches -----------------------------------------------------------------------


def test_tampered_body() -> None:
    headers = sign()
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, b'{"Limit": 11}')
    expect(err, "InvalidSignatureException", 403, MISMATCH)


@pytest.mark.parametrize(
    ("name", "value"),
    [("X-Amz-Target", "TrentService.Decrypt"), ("Host", "127.0.0.1:4600"), ("Content-Type", "text/plain")],
)
def test_tampered_header_value(name: str, value: str) -> None:
    headers = sign()
    headers[name] = value
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403, MISMATCH)


def test_tampered_method_and_path() -> None:
    headers = sign()
    for method, path in (("PUT", "/"), ("POST", "/other")):
        with pytest.raises(KmsError) as err:
            verifier().verify(method, path, "", headers, BODY)
        expect(err, "InvalidSignatureException", 403, MISMATCH)


def test_wrong_secret() -> None:
    headers = sign(sk="not-the-right-secret-key-EXAMPLEEXAMPLE")
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403, MISMATCH)
    assert auth_params(headers)[2] not in str(err.value)


def test_unsigned_extra_header_is_ignored() -> None:
    headers = sign()
    headers["User-Agent"] = "anything"  # not in SignedHeaders: does not affect the signature
    verifier().verify("POST", "/", "", headers, BODY)


# --- credentials --------------------------------------------------------------------------------


def test_unknown_access_key() -> None:
    headers = sign(ak="AKIAUNKNOWNEXAMPLE00")
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "UnrecognizedClientException", 400, UNRECOGNIZED)


def test_session_token_missing() -> None:
    headers = sign(ak=TMP_AK, sk=TMP_SK)  # temporary key used without its token
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "UnrecognizedClientException", 400, UNRECOGNIZED)


def test_session_token_unsigned() -> None:
    headers = sign(ak=TMP_AK, sk=TMP_SK)
    headers["X-Amz-Security-Token"] = TOKEN  # present but not covered by the signature
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403,
           "'x-amz-security-token' must be a 'SignedHeader' in the AWS Authorization.")


def test_session_token_wrong() -> None:
    headers = sign(ak=TMP_AK, sk=TMP_SK, token=TOKEN + "x")
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "UnrecognizedClientException", 400, UNRECOGNIZED)


def test_session_token_sent_for_long_term_key() -> None:
    headers = sign(token=TOKEN)
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "UnrecognizedClientException", 400, UNRECOGNIZED)


# --- scope --------------------------------------------------------------------------------------


def test_wrong_service() -> None:
    headers = sign(service="s3")
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403, "Credential should be scoped to correct service: 'kms'.")


def test_wrong_expected_region() -> None:
    headers = sign(region="eu-west-1")
    v = verifier()
    assert v.verify("POST", "/", "", headers, BODY, expected_region="eu-west-1").region == "eu-west-1"
    with pytest.raises(KmsError) as err:
        v.verify("POST", "/", "", headers, BODY, expected_region="us-east-1")
    expect(
        err,
        "InvalidSignatureException",
        403,
        "Credential should be scoped to a valid region, not 'eu-west-1'.",
    )


# --- time ---------------------------------------------------------------------------------------


def test_skew_within_limit(frozen: None) -> None:
    headers = sign()
    for offset in (-300.0, 0.0, 300.0):
        verifier(FixedClock(T0_EPOCH + offset)).verify("POST", "/", "", headers, BODY)


def test_signature_expired(frozen: None) -> None:
    headers = sign()
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH + 3600)).verify("POST", "/", "", headers, BODY)
    expect(
        err,
        "InvalidSignatureException",
        403,
        "Signature expired: 20270115T120000Z is now earlier than 20270115T125500Z "
        "(20270115T130000Z - 5 min.)",
    )
    with pytest.raises(KmsError):
        verifier(FixedClock(T0_EPOCH + 301)).verify("POST", "/", "", headers, BODY)


def test_signature_not_yet_current(frozen: None) -> None:
    headers = sign()
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH - 3600)).verify("POST", "/", "", headers, BODY)
    expect(
        err,
        "InvalidSignatureException",
        403,
        "Signature not yet current: 20270115T120000Z is still later than 20270115T110500Z "
        "(20270115T110000Z + 5 min.)",
    )
    with pytest.raises(KmsError):
        verifier(FixedClock(T0_EPOCH - 301)).verify("POST", "/", "", headers, BODY)


def test_custom_skew_label(frozen: None) -> None:
    headers = sign()
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH + 3600), max_skew_seconds=900).verify("POST", "/", "", headers, BODY)
    assert err.value.message is not None and err.value.message.endswith("- 15 min.)")


def test_skew_with_wall_clock_far_from_signing_time() -> None:
    headers = sign()
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(time.time() + 86_400)).verify("POST", "/", "", headers, BODY)
    assert err.value.message is not None and err.value.message.startswith("Signature expired: ")
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(time.time() - 86_400)).verify("POST", "/", "", headers, BODY)
    assert err.value.message is not None and err.value.message.startswith("Signature not yet current: ")


def test_date_scope_mismatch(frozen: None) -> None:
    headers = sign()
    headers["X-Amz-Date"] = "20270114T235959Z"
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH)).verify("POST", "/", "", headers, BODY)
    expect(
        err,
        "InvalidSignatureException",
        403,
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        "'20270115' != '20270114', from '20270114T235959Z'.",
    )


@pytest.mark.parametrize("value", ["2027-01-15T12:00:00Z", "20271315T120000Z", "20270115T120000", "now"])
def test_unparsable_amz_date(frozen: None, value: str) -> None:
    headers = sign()
    headers["X-Amz-Date"] = value
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH)).verify("POST", "/", "", headers, BODY)
    expect(err, "IncompleteSignatureException", 400)


def test_unparsable_date_header(frozen: None) -> None:
    headers = sign(headers={"Date": "placeholder"})
    headers["Date"] = "yesterday-ish"
    with pytest.raises(KmsError) as err:
        verifier(FixedClock(T0_EPOCH)).verify("POST", "/", "", headers, BODY)
    expect(err, "IncompleteSignatureException", 400)


# --- payload hash header ------------------------------------------------------------------------


@pytest.mark.parametrize("declared", ["0" * 64, "UNSIGNED-PAYLOAD"])
def test_content_sha256_mismatch(declared: str) -> None:
    headers = sign(headers={"X-Amz-Content-SHA256": declared})  # signed by botocore as declared
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403)


# --- missing / malformed ------------------------------------------------------------------------


def test_missing_authorization() -> None:
    headers = sign()
    del headers["Authorization"]
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    with pytest.raises(KmsError) as err:
        verifier().scope_only(headers)
    expect(err, "MissingAuthenticationTokenException", 403, "Missing Authentication Token")


GOOD_CRED = f"{AK}/20270115/us-east-1/kms/aws4_request"
SIG = "a" * 64


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        ("Bearer abc", "only AWS4-HMAC-SHA256"),
        ("AWS4-HMAC-SHA1 Credential=x", "only AWS4-HMAC-SHA256"),
        ("AWS4-HMAC-SHA256", "requires 'Credential' parameter"),
        (f"AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature={SIG}", "requires 'Credential'"),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, Signature={SIG}", "requires 'SignedHeaders'"),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;x-amz-date", "requires 'Signature'"),
        (
            f"AWS4-HMAC-SHA256 Credential={AK}/20270115/us-east-1/kms, SignedHeaders=host, Signature={SIG}",
            "exactly 5 slash-delimited elements",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AK}/20270115/us-east-1/kms/aws5_request, "
            f"SignedHeaders=host;x-amz-date, Signature={SIG}",
            "valid terminator",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={AK}/2027-1-15/us-east-1/kms/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={SIG}",
            "yyyyMMdd",
        ),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;x-amz-date, Signature=abc", "64"),
        (
            f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;x-amz-date, Signature={'A' * 64}",
            "64",
        ),
        (
            f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=Host;X-Amz-Date, Signature={SIG}",
            "lowercase",
        ),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, SignedHeaders=host;;x, Signature={SIG}", "lowercase"),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, Foo=bar, Signature={SIG}", "Unexpected parameter"),
        (f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, garbage, Signature={SIG}", "name=value"),
        (
            f"AWS4-HMAC-SHA256 Credential={GOOD_CRED}, Credential={GOOD_CRED}, SignedHeaders=host, "
            f"Signature={SIG}",
            "Duplicate",
        ),
    ],
)
def test_malformed_authorization(authorization: str, fragment: str) -> None:
    headers = sign()
    headers["Authorization"] = authorization
    for call in (
        lambda: verifier().verify("POST", "/", "", headers, BODY),
        lambda: verifier().scope_only(headers),
    ):
        with pytest.raises(KmsError) as err:
            call()
        expect(err, "IncompleteSignatureException", 400)
        assert err.value.message is not None and fragment in err.value.message
        assert SIG not in err.value.message


def test_parameter_order_and_spacing_tolerated() -> None:
    headers = sign()
    cred, signed, sig = auth_params(headers)
    for authorization in (
        f"AWS4-HMAC-SHA256 Credential={cred},SignedHeaders={signed},Signature={sig}",
        f"AWS4-HMAC-SHA256 Signature={sig}, Credential={cred},  SignedHeaders={signed}",
    ):
        headers["Authorization"] = authorization
        verifier().verify("POST", "/", "", headers, BODY)


def _signed_without(drop: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """A request signed by botocore, whose SignedHeaders then leave ``drop`` out."""
    headers = headers or sign()
    cred, signed, sig = auth_params(headers)
    signed = ";".join(n for n in signed.split(";") if n != drop)
    headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed}, Signature={sig}"
    return headers


# AWS answers a header that must be signed and is not with InvalidSignatureException (403): "'Host' or ':authority'
# must be a 'SignedHeader' in the AWS Authorization." (AWS's current wording, as SigV4 validators and users record
# it; dynalite recorded the older "'Host' must be ..."); scratchstack's validator answers the same for x-amz-*
# headers, naming them as sent.
@pytest.mark.parametrize(
    ("drop", "shown"),
    [("host", "Host' or ':authority"), ("x-amz-date", "X-Amz-Date"), ("x-amz-target", "x-amz-target")],
)
def test_required_headers_not_signed(drop: str, shown: str) -> None:
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", _signed_without(drop), BODY)
    expect(err, "InvalidSignatureException", 403, f"'{shown}' must be a 'SignedHeader' in the AWS Authorization.")


@pytest.mark.parametrize("name", ["X-Amz-User-Agent", "x-amz-content-sha256", "X-AMZ-Anything"])
def test_every_x_amz_header_sent_must_be_signed(name: str) -> None:
    value = hashlib.sha256(BODY).hexdigest() if name == "x-amz-content-sha256" else "v"
    signed = sign(headers={name: value})
    verifier().verify("POST", "/", "", dict(signed), BODY)  # signed by botocore: fine
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", _signed_without(name.lower(), signed), BODY)
    expect(err, "InvalidSignatureException", 403,
           f"'{name.lower()}' must be a 'SignedHeader' in the AWS Authorization.")
    # Added after signing, unsigned, it is refused the same way, also from aiohttp's case-insensitive headers.
    late = sign()
    late[name] = value
    for form in (late, CIMultiDictProxy(CIMultiDict(late))):
        with pytest.raises(KmsError) as err:
            verifier().verify("POST", "/", "", form, BODY)
        expect(err, "InvalidSignatureException", 403)


def test_replayed_as_another_operation_when_the_target_is_unsigned() -> None:
    # A DescribeKey signed without X-Amz-Target, its target then changed: refused before anything else is looked at.
    headers = _signed_without("x-amz-target", sign(headers={"X-Amz-Target": "TrentService.DescribeKey"}))
    headers["X-Amz-Target"] = "TrentService.ScheduleKeyDeletion"
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "InvalidSignatureException", 403,
           "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization.")


@pytest.mark.parametrize("name", ["Content-Type", "User-Agent", "X-Amzn-Trace-Id", "Amz-Sdk-Request"])
def test_other_headers_may_go_unsigned(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Clients differ (the JS SDK v2 leaves Content-Type unsigned; every SDK leaves User-Agent and X-Amzn-Trace-Id):
    # only host, the date and x-amz-* are required.
    monkeypatch.setattr(botocore.auth, "SIGNED_HEADERS_BLACKLIST",
                        [*botocore.auth.SIGNED_HEADERS_BLACKLIST, name.lower()])
    headers = sign(headers={name: "something"})
    assert name.lower() not in auth_params(headers)[1].split(";")
    verifier().verify("POST", "/", "", headers, BODY)


def test_no_date_at_all() -> None:
    headers = sign()
    del headers["X-Amz-Date"]
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(err, "IncompleteSignatureException", 400)
    assert err.value.message is not None and "'X-Amz-Date' or a 'Date' header" in err.value.message


def test_signed_header_absent_from_request() -> None:
    headers = sign()
    del headers["X-Amz-Target"]
    with pytest.raises(KmsError) as err:
        verifier().verify("POST", "/", "", headers, BODY)
    expect(
        err,
        "IncompleteSignatureException",
        400,
        "Signed header 'x-amz-target' is not present in the request.",
    )


# --- scope parsing ------------------------------------------------------------------------------


def test_parse_scope_good(frozen: None) -> None:
    headers = sign(region="ap-southeast-2")
    assert parse_scope(headers["Authorization"]) == CredentialScope(AK, "20270115", "ap-southeast-2", "kms")
    assert scope_region(headers["Authorization"]) == "ap-southeast-2"
    # Parameter order does not matter, and nothing but the credential is checked.
    assert parse_scope(f"AWS4-HMAC-SHA256 SignedHeaders=host, Credential={GOOD_CRED}, Signature=x") == (
        CredentialScope(AK, "20270115", "us-east-1", "kms")
    )


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer token",
        "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=",
        f"AWS4-HMAC-SHA256 Credential={AK}/20270115/us-east-1/kms",
        f"AWS4-HMAC-SHA256 Credential={AK}/20270115/us-east-1/kms/aws4_requestX, SignedHeaders=host",
        f"AWS4-HMAC-SHA256 Credential={AK}/2027011/us-east-1/kms/aws4_request",
        f"AWS4-HMAC-SHA256X Credential={GOOD_CRED}",
    ],
)
def test_parse_scope_bad(authorization: str | None) -> None:
    assert parse_scope(authorization) is None
    assert scope_region(authorization) is None


def test_scope_only_skips_signature() -> None:
    headers = sign(sk="wrong", region="eu-central-1")
    scope = verifier().scope_only({k.lower(): v for k, v in headers.items()})
    assert scope.access_key == AK and scope.region == "eu-central-1" and scope.service == "kms"


# --- signing-key cache --------------------------------------------------------------------------


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    calls: list[tuple[str, str, str]] = []
    real = sigv4._derive_signing_key

    def counting(secret: str, date: str, region: str, service: str) -> bytes:
        calls.append((date, region, service))
        return real(secret, date, region, service)

    monkeypatch.setattr(sigv4, "_derive_signing_key", counting)
    return calls


def test_signing_key_is_cached(derivations: list[tuple[str, str, str]]) -> None:
    v = verifier()
    v.verify("POST", "/", "", sign(), BODY)
    v.verify("POST", "/", "", sign(b"{}"), b"{}")
    assert len(derivations) == 1
    v.verify("POST", "/", "", sign(region="eu-west-1"), BODY)
    assert len(derivations) == 2
    # A cached key still rejects a bad signature.
    with pytest.raises(KmsError):
        v.verify("POST", "/", "", sign(), b"tampered")
    assert len(derivations) == 2


def test_signing_key_cache_is_bounded(derivations: list[tuple[str, str, str]]) -> None:
    v = verifier(cache_size=1)
    v.verify("POST", "/", "", sign(), BODY)
    v.verify("POST", "/", "", sign(region="eu-west-1"), BODY)  # evicts us-east-1
    v.verify("POST", "/", "", sign(), BODY)
    assert [r for _, r, _ in derivations] == ["us-east-1", "eu-west-1", "us-east-1"]
    assert len(v._keys) == 1


class ChangingDirectory(PrincipalDirectory):
    """A directory whose credentials change while the verifier runs."""

    def put(self, principal: Principal) -> None:
        self._by_key[principal.access_key] = principal

    def remove(self, access_key: str) -> None:
        del self._by_key[access_key]


def test_a_changed_secret_invalidates_the_cached_scope(derivations: list[tuple[str, str, str]]) -> None:
    alice = Principal(AK, SK, "arn:aws:iam::111122223333:user/alice", "111122223333")
    directory = ChangingDirectory([alice])
    v = SigV4Verifier(directory, WallClock())
    assert v.verify("POST", "/", "", sign(), BODY).principal is alice
    assert len(derivations) == 1
    rotated = Principal(AK, "a-new-secret", alice.arn, alice.account)
    directory.put(rotated)
    # The old secret's signing key is not reused for the new credential: the old signature no longer verifies.
    with pytest.raises(KmsError) as err:
        v.verify("POST", "/", "", sign(), BODY)
    expect(err, "InvalidSignatureException", 403, MISMATCH)
    assert len(derivations) == 2  # derived anew, from the new secret
    assert v.verify("POST", "/", "", sign(sk="a-new-secret"), BODY).principal is rotated
    assert v.verify("POST", "/", "", sign(sk="a-new-secret"), BODY).principal is rotated
    assert len(derivations) == 2  # and cached, for the new credential


def test_a_removed_credential_is_refused_though_its_scope_was_cached() -> None:
    directory = ChangingDirectory([Principal(AK, SK, "arn:aws:iam::111122223333:user/alice", "111122223333")])
    v = SigV4Verifier(directory, WallClock())
    v.verify("POST", "/", "", sign(), BODY)
    directory.remove(AK)
    with pytest.raises(KmsError) as err:
        v.verify("POST", "/", "", sign(), BODY)
    expect(err, "UnrecognizedClientException", 400, UNRECOGNIZED)
    v.forget(AK)
    assert not v._keys


def test_a_cached_signed_headers_list_still_needs_the_right_service() -> None:
    v = verifier()
    v.verify("POST", "/", "", sign(), BODY)  # SignedHeaders now cached
    with pytest.raises(KmsError) as err:
        v.verify("POST", "/", "", sign(service="s3"), BODY)
    expect(err, "InvalidSignatureException", 403)
    assert "scoped to correct service" in err.value.message


@pytest.mark.parametrize("signature", ["0" * 63, "0" * 65, "G" * 64, "A" * 64, "", "0" * 64 + "  ", "0" * 64 + ",x=y"])
def test_a_cached_authorization_head_parses_any_signature_as_a_fresh_verifier_would(signature: str) -> None:
    warm = verifier()
    headers = sign()
    warm.verify("POST", "/", "", headers, BODY)  # its head (Credential, SignedHeaders) now cached
    head = headers["Authorization"].rpartition("Signature=")[0]
    bad = {**headers, "Authorization": head + "Signature=" + signature}
    outcomes = []
    for v in (warm, verifier()):
        with pytest.raises(KmsError) as err:
            v.verify("POST", "/", "", bad, BODY)
        outcomes.append((err.value.code, err.value.message))
    assert outcomes[0] == outcomes[1]


def test_a_warm_verifier_still_refuses_an_unsigned_x_amz_header_and_a_changed_value() -> None:
    # The same header names, the same SignedHeaders: kept as passing. Another header set, or another value for a
    # signed header whose line is cached, is decided afresh.
    warm = verifier()
    for _ in range(2):
        warm.verify("POST", "/", "", sign(), BODY)
    late = sign()
    late["X-Amz-Anything"] = "v"
    with pytest.raises(KmsError) as err:
        warm.verify("POST", "/", "", late, BODY)
    expect(err, "InvalidSignatureException", 403, "'x-amz-anything' must be a 'SignedHeader' in the AWS Authorization.")
    tampered = sign(headers={"X-Amz-Target": "TrentService.DescribeKey"})
    warm.verify("POST", "/", "", tampered, BODY)
    tampered["X-Amz-Target"] = "TrentService.ScheduleKeyDeletion"
    with pytest.raises(KmsError) as err:
        warm.verify("POST", "/", "", tampered, BODY)
    expect(err, "InvalidSignatureException", 403, MISMATCH)


@pytest.mark.parametrize("value", ["a  b", " a b ", "a\tb", "a b"])
def test_cached_canonical_headers_are_the_ones_a_fresh_verifier_makes(value: str) -> None:
    warm = verifier()
    signed = sign(headers={"X-Amz-Thing": value})
    for _ in range(2):  # the second time from the cached lines
        warm.verify("POST", "/", "", signed, BODY)
    verifier().verify("POST", "/", "", signed, BODY)
    get = sigv4._header_lookup(signed)
    signed_headers = auth_params(signed)[1]
    names = signed_headers.split(";")
    assert len(warm._blocks) == 1  # the one kept by the verifications above: the one answered here
    assert warm._canonical_headers(get, signed_headers, names) == sigv4._canonical_headers(get, names)
    assert len(warm._blocks) == 1


def test_the_verifier_s_text_caches_are_bounded() -> None:
    v = verifier(cache_size=4)
    for n in range(10):
        v.verify("POST", "/", "", sign(headers={"X-Amz-Thing": f"value {n}"}), BODY)
    assert len(v._blocks) <= 4 and len(v._all_signed) <= 4


def test_a_scope_slot_signs_as_hmac_sha256_does() -> None:
    alice = Principal(AK, SK, "arn:aws:iam::111122223333:user/alice", "111122223333")
    for date, region in (("20270101", "us-east-1"), ("19991231", "ap-southeast-2")):
        key = sigv4._derive_signing_key(SK, date, region, "kms")
        slot = sigv4._ScopeSlot(alice, key, date, region)
        for message in (b"", b"x", b"AWS4-HMAC-SHA256\n" * 40, bytes(range(256))):
            assert slot.signature(message) == hmac.digest(key, message, "sha256").hex()
            assert slot.signature(message) == hmac.digest(key, message, "sha256").hex()  # the states are not consumed


def test_cache_disabled(derivations: list[tuple[str, str, str]]) -> None:
    v = verifier(cache_size=0)
    v.verify("POST", "/", "", sign(), BODY)
    v.verify("POST", "/", "", sign(), BODY)
    assert len(derivations) == 2


def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError):
        verifier(max_skew_seconds=-1)
    with pytest.raises(ValueError):
        verifier(cache_size=-1)
