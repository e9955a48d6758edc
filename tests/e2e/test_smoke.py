"""The cluster starts, answers through the gateway and through a region port."""

from __future__ import annotations

from tests.e2e.harness import RunningCluster


def test_encrypt_decrypt_round_trip_through_gateway_and_region_port(cluster: RunningCluster) -> None:
    gw = cluster.client("eu-west-1")
    direct = cluster.client("eu-west-1", via="region")
    key = gw.create_key(Description="smoke")["KeyMetadata"]
    blob = gw.encrypt(KeyId=key["KeyId"], Plaintext=b"smoke")["CiphertextBlob"]
    out = direct.decrypt(CiphertextBlob=blob)
    assert out["Plaintext"] == b"smoke"
    assert out["KeyId"] == key["Arn"]
