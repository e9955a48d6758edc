"""The gateway and the region ports over the wire: routing by credential scope, region isolation, and the exact
shape of every response (request id, content type, error body), including requests boto3 never sends."""

from __future__ import annotations

import base64
import json
import socket
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import REGIONS, RunningCluster
from tests.e2e.test_auth import CONTENT_TYPE, UUID_RE, Raw, assert_kms_error, boto_client, error_of, send, sign, signed

MAX_BODY = 1024 * 1024
TOO_LARGE = f"Request body exceeds {MAX_BODY} bytes."


def _urls(cluster: RunningCluster, region: str) -> list[str]:
    return [cluster.gateway_url, cluster.region_url(region)]


# -- routing and isolation -----------------------------------------------------------------------------------


def test_key_created_through_the_gateway_lives_only_in_its_region(cluster: RunningCluster) -> None:
    key = cluster.client("eu-west-1").create_key(Description="routed")["KeyMetadata"]
    assert key["Arn"] == f"arn:aws:kms:eu-west-1:111122223333:key/{key['KeyId']}"
    on_port = cluster.client("eu-west-1", via="region")
    assert on_port.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == "routed"
    assert key["KeyId"] in [k["KeyId"] for k in on_port.list_keys(Limit=1000)["Keys"]]
    for other in ("us-east-1", "ap-northeast-2"):
        for via in ("gateway", "region"):
            client = cluster.client(other, via=via)
            with pytest.raises(ClientError) as exc:
                client.describe_key(KeyId=key["KeyId"])
            assert error_of(exc) == (
                "NotFoundException", f"Key 'arn:aws:kms:{other}:111122223333:key/{key['KeyId']}' does not exist",
                400)
            assert key["KeyId"] not in [k["KeyId"] for k in client.list_keys(Limit=1000)["Keys"]]


def test_aliases_are_per_region(cluster: RunningCluster) -> None:
    name = f"alias/routing-{uuid.uuid4().hex[:8]}"
    keys = {}
    for region in REGIONS:  # the same alias name in every region, each on its own key
        client = cluster.client(region)
        keys[region] = client.create_key()["KeyMetadata"]["KeyId"]
        client.create_alias(AliasName=name, TargetKeyId=keys[region])
    for region in REGIONS:
        meta = cluster.client(region, via="region").describe_key(KeyId=name)["KeyMetadata"]
        assert meta["KeyId"] == keys[region]
        assert meta["Arn"].startswith(f"arn:aws:kms:{region}:")


def test_ciphertext_from_one_region_is_not_decryptable_in_another(cluster: RunningCluster) -> None:
    us = cluster.client("us-east-1")
    key = us.create_key()["KeyMetadata"]["KeyId"]
    blob = us.encrypt(KeyId=key, Plaintext=b"stays home")["CiphertextBlob"]
    assert cluster.client("us-east-1", via="region").decrypt(CiphertextBlob=blob)["Plaintext"] == b"stays home"
    with pytest.raises(ClientError) as exc:
        cluster.client("ap-northeast-2").decrypt(CiphertextBlob=blob)
    code, _, status = error_of(exc)
    assert (code, status) == ("AccessDeniedException", 400)


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_port_rejects_every_foreign_scope(cluster: RunningCluster, region: str) -> None:
    for scope in REGIONS:
        raw = signed(cluster.region_url(region), scope)
        if scope == region:
            assert raw.status == 200
        else:
            assert_kms_error(raw, "InvalidSignatureException", 403,
                             f"Credential should be scoped to a valid region, not '{scope}'.")


def test_unknown_region_through_the_gateway_is_a_kms_error_not_a_500(cluster: RunningCluster) -> None:
    for region in ("sa-east-1", "mars-north-1"):
        assert_kms_error(signed(cluster.gateway_url, region, target="CreateKey"), "InvalidSignatureException", 403,
                         f"Credential should be scoped to a valid region, not '{region}'.")
    with pytest.raises(ClientError) as exc:
        boto_client(cluster.gateway_url, "sa-east-1").encrypt(KeyId="alias/x", Plaintext=b"x")
    assert error_of(exc)[0] == "InvalidSignatureException"


# -- request shapes that are not KMS calls -------------------------------------------------------------------


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_oversize_body_is_a_kms_error(cluster: RunningCluster, via: str) -> None:
    url = cluster.gateway_url if via == "gateway" else cluster.region_url("us-east-1")
    for size in (MAX_BODY + 1, 3 * MAX_BODY):
        body = b'{"Plaintext": "' + b"A" * (size - 17) + b'"}'
        assert len(body) == size
        assert_kms_error(signed(url, "us-east-1", body, target="Encrypt"), "ValidationException", 413, TOO_LARGE)
    # ... and the server is fine afterwards
    assert signed(url, "us-east-1").status == 200


def test_oversize_plaintext_from_boto3_is_a_kms_error(cluster: RunningCluster) -> None:
    with pytest.raises(ClientError) as exc:
        cluster.client("us-east-1").encrypt(KeyId="alias/none", Plaintext=b"x" * (2 * MAX_BODY))
    assert error_of(exc) == ("ValidationException", TOO_LARGE, 413)
    assert UUID_RE.fullmatch(exc.value.response["ResponseMetadata"]["RequestId"])


def test_body_of_exactly_the_limit_is_read_and_judged_by_kms_rules(cluster: RunningCluster) -> None:
    prefix, suffix = b'{"KeyId": "alias/none", "Plaintext": "', b'"}'
    room = MAX_BODY - len(prefix) - len(suffix)
    body = prefix + b"A" * (room - room % 4) + suffix
    body += b" " * (MAX_BODY - len(body))  # JSON whitespace up to exactly 1 MiB
    assert len(body) == MAX_BODY
    raw = signed(cluster.gateway_url, "us-east-1", body, target="Encrypt")
    assert raw.status == 400, raw
    assert raw.json()["__type"] == "ValidationException"
    assert "'plaintext'" in raw.json()["message"]


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_get_root_is_a_kms_error(cluster: RunningCluster, via: str) -> None:
    url = cluster.gateway_url if via == "gateway" else cluster.region_url("eu-west-1")
    raw = send(url, None, method="GET", target=None)
    assert_kms_error(raw, "MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    raw = send(url + "/favicon.ico", None, method="GET", target=None)
    assert_kms_error(raw, "MissingAuthenticationTokenException", 403, "Missing Authentication Token")


def test_unknown_operation_and_bad_json_are_kms_errors(cluster: RunningCluster) -> None:
    for url in _urls(cluster, "us-east-1"):
        assert_kms_error(signed(url, "us-east-1", target="StealAllKeys"), "UnknownOperationException", 400, None)
        raw = signed(url, "us-east-1", b"{not json", target="ListKeys")
        assert raw.status == 400
        assert raw.json()["__type"] == "SerializationException"
        assert set(raw.json()) == {"__type", "message"}


def test_empty_body_is_an_empty_request(cluster: RunningCluster) -> None:
    raw = signed(cluster.gateway_url, "eu-west-1", b"", target="ListKeys")
    assert raw.status == 200
    assert "Keys" in raw.json()


def test_admin_surface_is_not_reachable_with_kms_credentials(cluster: RunningCluster) -> None:
    for url in _urls(cluster, "us-east-1"):
        headers = sign(url + "/_trent/status", "us-east-1", b"")
        raw = send(url + "/_trent/status", None, headers, method="GET", target=None)
        assert raw.status == 403
        assert "regions" not in raw.json()


# -- headers and error bodies on every response --------------------------------------------------------------


def _check_headers(raw: Raw, seen: set[str]) -> None:
    assert raw.headers["content-type"] == CONTENT_TYPE, raw
    request_id = raw.headers["x-amzn-requestid"]
    assert UUID_RE.fullmatch(request_id)
    assert request_id not in seen
    seen.add(request_id)


def test_every_response_has_a_request_id_and_the_json_content_type(cluster: RunningCluster) -> None:
    gw, us = cluster.gateway_url, cluster.region_url("us-east-1")
    key = cluster.client("us-east-1").create_key()["KeyMetadata"]["KeyId"]
    seen: set[str] = set()
    successes = [
        signed(gw, "us-east-1", b"{}", "ListKeys"),
        signed(us, "us-east-1", json.dumps({"KeyId": key}).encode(), "DescribeKey"),
        signed(gw, "us-east-1", json.dumps({"KeyId": key, "Plaintext": "aGk="}).encode(), "Encrypt"),
        signed(gw, "us-east-1", json.dumps({"KeyId": key, "Description": "x"}).encode(), "UpdateKeyDescription"),
    ]
    for raw in successes:
        assert raw.status == 200, raw
        _check_headers(raw, seen)
        assert "null" not in raw.body.decode()  # absent members are omitted, never null
    errors = [
        (send(gw), "MissingAuthenticationTokenException", 403),
        (send(us), "MissingAuthenticationTokenException", 403),
        (signed(gw, "us-east-1", access_key="AKIANOBODY"), "UnrecognizedClientException", 400),
        (signed(gw, "us-east-1", secret_key="bad"), "InvalidSignatureException", 403),
        (signed(gw, "sa-east-1"), "InvalidSignatureException", 403),
        (signed(us, "eu-west-1"), "InvalidSignatureException", 403),
        (signed(gw, "us-east-1", b'{"KeyId": "alias/missing"}', "DescribeKey"), "NotFoundException", 400),
        (signed(gw, "us-east-1", b"[1,", "ListKeys"), "SerializationException", 400),
        (signed(gw, "us-east-1", b'{"NumberOfBytes": 5000}', "GenerateRandom"), "ValidationException", 400),
        (signed(us, "us-east-1", b"x" * (MAX_BODY + 5), "ListKeys"), "ValidationException", 413),
        (send(gw, None, method="GET", target=None), "MissingAuthenticationTokenException", 403),
    ]
    for raw, code, status in errors:
        assert raw.status == status, raw
        _check_headers(raw, seen)
        doc = raw.json()
        assert set(doc) == {"__type", "message"}, doc
        assert doc["__type"] == code
        assert isinstance(doc["message"], str)
        assert doc["message"]


def test_invalid_ciphertext_error_has_no_message(cluster: RunningCluster) -> None:
    key = cluster.client("us-east-1").create_key()["KeyMetadata"]["KeyId"]
    blob = bytearray(cluster.client("us-east-1").encrypt(KeyId=key, Plaintext=b"secret")["CiphertextBlob"])
    blob[-1] ^= 0x01  # tamper with the tag
    body = json.dumps({"CiphertextBlob": base64.b64encode(bytes(blob)).decode()}).encode()
    for url in _urls(cluster, "us-east-1"):
        assert_kms_error(signed(url, "us-east-1", body, "Decrypt"), "InvalidCiphertextException", 400, None)
    garbage = json.dumps({"CiphertextBlob": base64.b64encode(b"\x00" * 80).decode()}).encode()
    assert_kms_error(signed(cluster.gateway_url, "us-east-1", garbage, "Decrypt"),
                     "InvalidCiphertextException", 400, None)


def test_boto3_sees_the_request_id(cluster: RunningCluster) -> None:
    response: Any = cluster.client("ap-northeast-2").list_keys()
    meta = response["ResponseMetadata"]
    assert UUID_RE.fullmatch(meta["RequestId"])
    assert meta["HTTPHeaders"]["content-type"] == CONTENT_TYPE
    with pytest.raises(ClientError) as exc:
        cluster.client("ap-northeast-2").describe_key(KeyId="alias/none")
    assert UUID_RE.fullmatch(exc.value.response["ResponseMetadata"]["RequestId"])


def test_a_client_that_hangs_up_mid_body_does_not_hurt_the_server(cluster: RunningCluster) -> None:
    host, port = "127.0.0.1", cluster.port
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                  b"X-Amz-Target: TrentService.ListKeys\r\n\r\n" + b"{" * 100)
    assert cluster.client("us-east-1").list_keys()["Keys"] is not None


@pytest.mark.parametrize("via", ["gateway", "region"])
def test_a_client_that_waits_for_100_continue_gets_it_and_then_its_answer(cluster: RunningCluster, via: str) -> None:
    # curl sends Expect: 100-continue for large bodies and holds the body back until the server says so.
    url = _urls(cluster, "us-east-1")[0 if via == "gateway" else 1]
    cluster.client("us-east-1").create_key()
    body = b'{"Limit": 1}'
    headers = sign(url, "us-east-1", body)
    port = int(url.rsplit(":", 1)[1])
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{head}Content-Length: {len(body)}\r\n"
                  "Expect: 100-continue\r\nConnection: close\r\n\r\n".encode())
        interim = s.recv(4096)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
        s.sendall(body)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 200 OK", answer
    payload = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert len(payload["Keys"]) == 1 and "Truncated" in payload
