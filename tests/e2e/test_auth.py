"""SigV4 over the wire: a real `trent up` process, real boto3, and hand-made requests for what boto3 never sends.

Also home of the small raw-HTTP helpers the other e2e modules use (``send``, ``sign``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, free_port_block

CONTENT_TYPE = "application/x-amz-json-1.1"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNRECOGNIZED = "The security token included in the request is invalid."
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
AMZ_RE = r"\d{8}T\d{6}Z"


# -- raw HTTP helpers ------------------------------------------------------------------------------------------


@dataclass
class Raw:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _with_path(url: str) -> str:
    return url if urllib.parse.urlsplit(url).path else url + "/"


def send(url: str, body: bytes | None = b"{}", headers: dict[str, str] | None = None, method: str = "POST",
         target: str | None = "ListKeys") -> Raw:
    """One HTTP request exactly as given (no signing unless ``headers`` carry it)."""
    all_headers = {"Content-Type": CONTENT_TYPE}
    if target is not None:
        all_headers["X-Amz-Target"] = f"TrentService.{target}"
    all_headers.update(headers or {})
    request = urllib.request.Request(_with_path(url), data=body, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Raw(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return Raw(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


def sign(url: str, region: str, body: bytes, target: str = "ListKeys", access_key: str = "test",
         secret_key: str = "test", token: str | None = None) -> dict[str, str]:
    """Headers botocore's own SigV4 signer puts on this request (Authorization, X-Amz-Date, ...)."""
    request = AWSRequest(method="POST", url=_with_path(url), data=body,
                         headers={"X-Amz-Target": f"TrentService.{target}", "Content-Type": CONTENT_TYPE})
    SigV4Auth(Credentials(access_key, secret_key, token), "kms", region).add_auth(request)
    return dict(request.headers.items())


def signed(url: str, region: str, body: bytes = b"{}", target: str = "ListKeys", **kwargs: Any) -> Raw:
    return send(url, body, sign(url, region, body, target, **kwargs), target=target)


def assert_kms_error(raw: Raw, code: str, status: int, message: str | None) -> None:
    """The exact wire shape of a KMS error: status, headers, and a body of exactly {__type, message}."""
    assert raw.status == status, raw
    assert raw.headers["content-type"] == CONTENT_TYPE
    assert UUID_RE.fullmatch(raw.headers["x-amzn-requestid"])
    expected: dict[str, str] = {"__type": code}
    if message is not None:
        expected["message"] = message
    assert raw.json() == expected


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str | None, int]:
    response: Any = exc.value.response
    return response["Error"]["Code"], response["Error"].get("Message"), response["ResponseMetadata"]["HTTPStatusCode"]


def boto_client(url: str, region: str, access_key: str = "test", secret_key: str = "test",
                token: str | None = None) -> Any:
    return boto3.client("kms", endpoint_url=url, region_name=region, aws_access_key_id=access_key,
                        aws_secret_access_key=secret_key, aws_session_token=token,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"}))


# -- missing, malformed and unknown credentials --------------------------------------------------------------


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_unsigned_request_is_missing_authentication_token(cluster: RunningCluster, via: str) -> None:
    url = cluster.gateway_url if via == "gateway" else cluster.region_url("us-east-1")
    assert_kms_error(send(url), "MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    assert_kms_error(send(url, headers={"Authorization": ""}), "MissingAuthenticationTokenException", 403,
                     "Missing Authentication Token")


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_authorization_without_signature_is_incomplete(cluster: RunningCluster, via: str) -> None:
    url = cluster.gateway_url if via == "gateway" else cluster.region_url("us-east-1")
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    header = f"AWS4-HMAC-SHA256 Credential=test/{today}/us-east-1/kms/aws4_request"
    raw = send(url, headers={"Authorization": header})
    assert_kms_error(raw, "IncompleteSignatureException", 400,
                     "Authorization header requires 'Signature' parameter. "
                     "Authorization header requires 'SignedHeaders' parameter.")


def test_garbage_authorization_gets_the_same_error_on_gateway_and_region_port(cluster: RunningCluster) -> None:
    via_gateway = send(cluster.gateway_url, headers={"Authorization": "Bearer abc.def"})
    via_region = send(cluster.region_url("eu-west-1"), headers={"Authorization": "Bearer abc.def"})
    assert_kms_error(via_gateway, "IncompleteSignatureException", 400,
                     "Unsupported authorization type; only AWS4-HMAC-SHA256 is accepted.")
    assert via_region.json() == via_gateway.json()
    assert via_region.status == via_gateway.status


def test_unknown_access_key_is_unrecognized(cluster: RunningCluster) -> None:
    with pytest.raises(ClientError) as exc:
        cluster.client("us-east-1", access_key="AKIANOBODY", secret_key="whatever").list_keys()
    assert error_of(exc) == ("UnrecognizedClientException", UNRECOGNIZED, 400)


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_wrong_secret_is_an_invalid_signature(cluster: RunningCluster, via: str) -> None:
    with pytest.raises(ClientError) as exc:
        cluster.client("eu-west-1", via=via, secret_key="not-the-secret").list_keys()
    assert error_of(exc) == ("InvalidSignatureException", MISMATCH, 403)


def test_body_tampered_after_signing_is_rejected(cluster: RunningCluster) -> None:
    url = cluster.gateway_url
    body = b'{"Limit": 10}'
    headers = sign(url, "us-east-1", body)
    assert send(url, body, headers).status == 200  # the untampered request is fine
    headers = sign(url, "us-east-1", body)
    assert_kms_error(send(url, b'{"Limit": 11}', headers), "InvalidSignatureException", 403, MISMATCH)


def test_target_tampered_after_signing_is_rejected(cluster: RunningCluster) -> None:
    url = cluster.region_url("us-east-1")
    headers = sign(url, "us-east-1", b"{}", target="ListKeys")
    headers["X-Amz-Target"] = "TrentService.ListAliases"
    assert_kms_error(send(url, b"{}", headers, target=None), "InvalidSignatureException", 403, MISMATCH)


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_request_signed_without_its_target_cannot_be_replayed_as_another_operation(
        cluster: RunningCluster, via: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A DescribeKey whose signature leaves X-Amz-Target out (botocore told not to sign it), captured, its target
    # changed: the same body would schedule the key's deletion. AWS requires every x-amz-* header to be signed.
    key_id = cluster.client("us-east-1").create_key()["KeyMetadata"]["KeyId"]
    url = cluster.gateway_url if via == "gateway" else cluster.region_url("us-east-1")
    body = json.dumps({"KeyId": key_id}).encode()
    with monkeypatch.context() as patch:
        patch.setattr(botocore.auth, "SIGNED_HEADERS_BLACKLIST",
                      [*botocore.auth.SIGNED_HEADERS_BLACKLIST, "x-amz-target"])
        headers = sign(url, "us-east-1", body, target="DescribeKey")
    assert "x-amz-target" not in headers["Authorization"]
    must_sign = "'x-amz-target' must be a 'SignedHeader' in the AWS Authorization."
    assert_kms_error(send(url, body, headers, target=None), "InvalidSignatureException", 403, must_sign)
    headers["X-Amz-Target"] = "TrentService.ScheduleKeyDeletion"
    assert_kms_error(send(url, body, headers, target=None), "InvalidSignatureException", 403, must_sign)
    assert cluster.client("us-east-1").describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_signed_request_succeeds_with_request_id_and_content_type(cluster: RunningCluster) -> None:
    raw = signed(cluster.gateway_url, "ap-northeast-2", b'{"Limit": 1}')
    assert raw.status == 200
    assert raw.headers["content-type"] == CONTENT_TYPE
    assert UUID_RE.fullmatch(raw.headers["x-amzn-requestid"])
    assert "Keys" in raw.json()


# -- clock skew ----------------------------------------------------------------------------------------------


def _signing_at(monkeypatch: pytest.MonkeyPatch, offset: dt.timedelta) -> str:
    """Make botocore sign as if its clock were ``offset`` away from now; return the X-Amz-Date it will use."""
    when = dt.datetime.now(dt.UTC).replace(tzinfo=None) + offset
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: when)
    return when.strftime("%Y%m%dT%H%M%SZ")


def _amz(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ")


def test_request_signed_ten_minutes_ago_has_an_expired_signature(cluster: RunningCluster,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    amz = _signing_at(monkeypatch, -dt.timedelta(minutes=10))
    with pytest.raises(ClientError) as exc:
        cluster.client("us-east-1").list_keys()
    code, message, status = error_of(exc)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message is not None
    m = re.fullmatch(rf"Signature expired: {amz} is now earlier than ({AMZ_RE}) \(({AMZ_RE}) - 5 min\.\)", message)
    assert m, message
    earliest, now = _amz(m[1]), _amz(m[2])
    assert now - earliest == dt.timedelta(minutes=5)
    assert abs((now - _amz(amz)) - dt.timedelta(minutes=10)) < dt.timedelta(seconds=30)


def test_request_signed_ten_minutes_ahead_is_not_yet_current(cluster: RunningCluster,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    amz = _signing_at(monkeypatch, dt.timedelta(minutes=10))
    with pytest.raises(ClientError) as exc:
        cluster.client("eu-west-1", via="region").list_keys()
    code, message, status = error_of(exc)
    assert (code, status) == ("InvalidSignatureException", 403)
    assert message is not None
    m = re.fullmatch(rf"Signature not yet current: {amz} is still later than ({AMZ_RE}) \(({AMZ_RE}) \+ 5 min\.\)",
                     message)
    assert m, message
    assert _amz(m[1]) - _amz(m[2]) == dt.timedelta(minutes=5)


def test_request_signed_four_minutes_ago_is_within_the_window(cluster: RunningCluster,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _signing_at(monkeypatch, -dt.timedelta(minutes=4))
    assert "Keys" in cluster.client("us-east-1").list_keys()


# -- regions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port_region, scope_region", [("us-east-1", "eu-west-1"), ("ap-northeast-2", "us-east-1"),
                                                       ("eu-west-1", "sa-east-1")])
def test_region_port_rejects_another_regions_scope(cluster: RunningCluster, port_region: str,
                                                   scope_region: str) -> None:
    client = boto_client(cluster.region_url(port_region), scope_region)
    with pytest.raises(ClientError) as exc:
        client.list_keys()
    assert error_of(exc) == (
        "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{scope_region}'.", 403)


def test_gateway_rejects_a_region_the_cluster_does_not_have(cluster: RunningCluster) -> None:
    with pytest.raises(ClientError) as exc:
        cluster.client("sa-east-1").create_key()
    assert error_of(exc) == (
        "InvalidSignatureException", "Credential should be scoped to a valid region, not 'sa-east-1'.", 403)
    raw = signed(cluster.gateway_url, "sa-east-1")
    assert_kms_error(raw, "InvalidSignatureException", 403,
                     "Credential should be scoped to a valid region, not 'sa-east-1'.")


# -- several principals, temporary credentials ---------------------------------------------------------------

TEMP_AK, TEMP_SK, TOKEN = "ASIATEMPEXAMPLE00001", "temporary/secret+key", "IQoJb3JpZ2luX2VjEXAMPLE//token+="
OTHER_AK, OTHER_SK = "AKIAOTHEREXAMPLE0001", "other-secret"
PRINCIPALS_TOML = f"""
[[principals]]
access_key = "test"
secret_key = "test"

[[principals]]
access_key = "{TEMP_AK}"
secret_key = "{TEMP_SK}"
arn = "arn:aws:sts::111122223333:assumed-role/dev/session"
session_token = "{TOKEN}"
policy = '{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}]}}'

[[principals]]
access_key = "{OTHER_AK}"
secret_key = "{OTHER_SK}"
arn = "arn:aws:iam::111122223333:user/other"
policy = '{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}]}}'
"""


@pytest.fixture(scope="module")
def principals_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("principals")
    config = root / "trent.toml"
    config.write_text(PRINCIPALS_TOML)
    c = RunningCluster(root / "data", free_port_block(4), regions=("us-east-1", "eu-west-1"),
                       extra_args=("--config", str(config))).start()
    yield c
    if c.proc is not None:
        c.stop()


def test_temporary_credentials_work_with_their_session_token(principals_cluster: RunningCluster) -> None:
    for via in ("gateway", "region"):
        client = principals_cluster.client("eu-west-1", via=via, access_key=TEMP_AK, secret_key=TEMP_SK,
                                           session_token=TOKEN)
        key = client.create_key(Description="made with temporary credentials")["KeyMetadata"]
        assert client.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]


@pytest.mark.parametrize("token", [None, "IQoJb3JpZ2luX2VjWRONG//token+="])
def test_temporary_credentials_without_their_token_are_unrecognized(principals_cluster: RunningCluster,
                                                                     token: str | None) -> None:
    client = principals_cluster.client("us-east-1", access_key=TEMP_AK, secret_key=TEMP_SK, session_token=token)
    with pytest.raises(ClientError) as exc:
        client.list_keys()
    assert error_of(exc) == ("UnrecognizedClientException", UNRECOGNIZED, 400)


def test_long_term_credentials_with_a_session_token_are_unrecognized(principals_cluster: RunningCluster) -> None:
    client = principals_cluster.client("us-east-1", access_key=OTHER_AK, secret_key=OTHER_SK, session_token=TOKEN)
    with pytest.raises(ClientError) as exc:
        client.list_keys()
    assert error_of(exc) == ("UnrecognizedClientException", UNRECOGNIZED, 400)


def test_every_configured_principal_signs_with_its_own_secret(principals_cluster: RunningCluster) -> None:
    assert "Keys" in principals_cluster.client("us-east-1", access_key=OTHER_AK, secret_key=OTHER_SK).list_keys()
    assert "Keys" in principals_cluster.client("us-east-1").list_keys()
    with pytest.raises(ClientError) as exc:  # another principal's secret is not this one's
        principals_cluster.client("us-east-1", access_key=OTHER_AK, secret_key="test").list_keys()
    assert error_of(exc) == ("InvalidSignatureException", MISMATCH, 403)


def test_moving_the_cluster_clock_does_not_expire_signatures(principals_cluster: RunningCluster,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Clients sign with the real time; the cluster's clock moves only to drive deletion and rotation.
    principals_cluster.advance_clock("8d")
    kms = principals_cluster.client("us-east-1")
    key = kms.create_key()["KeyMetadata"]
    assert key["CreationDate"].timestamp() > dt.datetime.now(dt.UTC).timestamp() + 7 * 86400  # the clock did move
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    # ... and the skew window is still measured from the real time, in both directions.
    amz = _signing_at(monkeypatch, -dt.timedelta(minutes=10))
    with pytest.raises(ClientError) as exc:
        principals_cluster.client("us-east-1").list_keys()
    code, message, _ = error_of(exc)
    assert code == "InvalidSignatureException"
    assert message is not None and message.startswith(f"Signature expired: {amz} is now earlier than")
    _signing_at(monkeypatch, dt.timedelta(days=8))
    with pytest.raises(ClientError) as exc:
        principals_cluster.client("us-east-1").list_keys()
    assert error_of(exc)[1] is not None and str(error_of(exc)[1]).startswith("Signature not yet current:")


# -- --auth off ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("auth-off")
    c = RunningCluster(root / "data", free_port_block(4), extra_args=("--auth", "off")).start()
    yield c
    if c.proc is not None:
        c.stop()


def _scope_only(region: str, access_key: str = "anyone") -> dict[str, str]:
    today = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{today}/{region}/kms/aws4_request"}


def test_auth_off_accepts_any_signature_and_still_routes_by_scope(open_cluster: RunningCluster) -> None:
    client = open_cluster.client("ap-northeast-2", access_key="AKIANOBODY", secret_key="wrong")
    arn = client.create_key()["KeyMetadata"]["Arn"]
    assert arn.startswith("arn:aws:kms:ap-northeast-2:111122223333:key/")
    direct = boto_client(open_cluster.region_url("ap-northeast-2"), "ap-northeast-2", secret_key="also-wrong")
    assert direct.describe_key(KeyId=arn)["KeyMetadata"]["Arn"] == arn


def test_auth_off_accepts_a_scoped_but_unsigned_request(open_cluster: RunningCluster) -> None:
    raw = send(open_cluster.gateway_url, b"{}", _scope_only("eu-west-1"), target="CreateKey")
    assert raw.status == 200, raw
    assert UUID_RE.fullmatch(raw.headers["x-amzn-requestid"])
    arn = raw.json()["KeyMetadata"]["Arn"]
    assert arn.startswith("arn:aws:kms:eu-west-1:")  # routed by the scope
    listed = send(open_cluster.region_url("eu-west-1"), b"{}", _scope_only("eu-west-1")).json()
    assert arn in [k["KeyArn"] for k in listed["Keys"]]
    others = send(open_cluster.region_url("us-east-1"), b"{}", _scope_only("us-east-1")).json()
    assert arn not in [k["KeyArn"] for k in others["Keys"]]


def test_auth_off_region_port_accepts_a_request_without_authorization(open_cluster: RunningCluster) -> None:
    raw = send(open_cluster.region_url("us-east-1"), b'{"Limit": 5}')
    assert raw.status == 200, raw
    assert "Keys" in raw.json()


def test_auth_off_still_enforces_the_region_of_a_port(open_cluster: RunningCluster) -> None:
    raw = send(open_cluster.region_url("us-east-1"), b"{}", _scope_only("eu-west-1"))
    assert_kms_error(raw, "InvalidSignatureException", 403,
                     "Credential should be scoped to a valid region, not 'eu-west-1'.")
    raw = send(open_cluster.gateway_url, b"{}", _scope_only("sa-east-1"))
    assert_kms_error(raw, "InvalidSignatureException", 403,
                     "Credential should be scoped to a valid region, not 'sa-east-1'.")


def test_auth_off_gateway_needs_a_scope_to_route(open_cluster: RunningCluster) -> None:
    assert_kms_error(send(open_cluster.gateway_url), "MissingAuthenticationTokenException", 403,
                     "Missing Authentication Token")
    raw = send(open_cluster.gateway_url, headers={"Authorization": "AWS4-HMAC-SHA256 nothing-useful"})
    assert raw.status == 400
    assert raw.json()["__type"] == "IncompleteSignatureException"

