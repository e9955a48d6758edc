"""HMAC keys end to end with boto3: CreateKey for HMAC_224/256/384/512, GenerateMac/VerifyMac, algorithm and usage
rules, DryRun, key states, and multi-Region HMAC keys (a MAC made in one region verifies in another)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, error
from tests.e2e.test_multi_region import wait_state

SPECS = {"HMAC_224": ("HMAC_SHA_224", 28), "HMAC_256": ("HMAC_SHA_256", 32), "HMAC_384": ("HMAC_SHA_384", 48),
         "HMAC_512": ("HMAC_SHA_512", 64)}


def code(call: Callable[..., Any], **kwargs: Any) -> str:
    return str(error(call, **kwargs)["Code"])


@pytest.fixture(scope="module")
def hmac_keys(kms: Any) -> dict[str, dict[str, Any]]:
    return {spec: kms.create_key(KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"] for spec in SPECS}


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_hmac_key_metadata(kms: Any, hmac_keys: dict[str, dict[str, Any]], spec: str) -> None:
    for meta in (hmac_keys[spec], kms.describe_key(KeyId=hmac_keys[spec]["KeyId"])["KeyMetadata"]):
        assert (meta["KeySpec"], meta["CustomerMasterKeySpec"], meta["KeyUsage"]) == (
            spec, spec, "GENERATE_VERIFY_MAC")
        assert meta["MacAlgorithms"] == [SPECS[spec][0]]
        assert not {"EncryptionAlgorithms", "SigningAlgorithms", "CurrentKeyMaterialId"} & set(meta)


@pytest.mark.parametrize("spec", sorted(SPECS))
def test_generate_and_verify_mac(kms: Any, hmac_keys: dict[str, dict[str, Any]], spec: str) -> None:
    meta = hmac_keys[spec]
    algorithm, length = SPECS[spec]
    out = kms.generate_mac(KeyId=meta["KeyId"], Message=b"Hello World", MacAlgorithm=algorithm,
                           GrantTokens=[])
    assert (out["KeyId"], out["MacAlgorithm"], len(out["Mac"])) == (meta["Arn"], algorithm, length)
    # HMAC is deterministic: the same key and message give the same tag, another message another tag.
    assert kms.generate_mac(KeyId=meta["Arn"], Message=b"Hello World", MacAlgorithm=algorithm)["Mac"] == out["Mac"]
    assert kms.generate_mac(KeyId=meta["KeyId"], Message=b"Hello World!", MacAlgorithm=algorithm)["Mac"] != out["Mac"]
    ok = kms.verify_mac(KeyId=meta["KeyId"], Message=b"Hello World", Mac=out["Mac"], MacAlgorithm=algorithm)
    assert (ok["KeyId"], ok["MacValid"], ok["MacAlgorithm"]) == (meta["Arn"], True, algorithm)


def test_a_wrong_mac_is_kms_invalid_mac_never_false(kms: Any, hmac_keys: dict[str, dict[str, Any]]) -> None:
    meta = hmac_keys["HMAC_256"]
    mac = kms.generate_mac(KeyId=meta["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    other = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
    foreign = kms.generate_mac(KeyId=other, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert foreign != mac  # every key has its own secret
    for message, tag in ((b"m", mac[:-1] + bytes([mac[-1] ^ 1])), (b"n", mac), (b"m", mac[:16]), (b"m", foreign),
                         (b"m", mac + b"\x00")):
        err = error(kms.verify_mac, KeyId=meta["KeyId"], Message=message, Mac=tag, MacAlgorithm="HMAC_SHA_256")
        assert (err["Code"], err["Status"]) == ("KMSInvalidMacException", 400)


def test_mac_algorithm_must_match_the_spec(kms: Any, hmac_keys: dict[str, dict[str, Any]]) -> None:
    meta = hmac_keys["HMAC_384"]
    for algorithm in ("HMAC_SHA_224", "HMAC_SHA_256", "HMAC_SHA_512"):
        for call, extra in ((kms.generate_mac, {}), (kms.verify_mac, {"Mac": b"x" * 48})):
            assert error(call, KeyId=meta["KeyId"], Message=b"m", MacAlgorithm=algorithm, **extra) == {
                "Code": "InvalidKeyUsageException", "Status": 400,
                "Message": f"Algorithm {algorithm} is incompatible with key spec HMAC_384."}


def test_mac_with_a_key_of_another_usage_is_invalid_key_usage(kms: Any) -> None:
    symmetric = kms.create_key()["KeyMetadata"]
    signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    for meta in (symmetric, signing):
        for call, op, extra in ((kms.generate_mac, "GenerateMac", {}), (kms.verify_mac, "VerifyMac", {"Mac": b"x"})):
            assert error(call, KeyId=meta["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256", **extra) == {
                "Code": "InvalidKeyUsageException", "Status": 400,
                "Message": f"{meta['Arn']} key usage is {meta['KeyUsage']} which is not valid for {op}."}


def test_hmac_keys_do_no_other_cryptography(kms: Any, hmac_keys: dict[str, dict[str, Any]]) -> None:
    key_id = hmac_keys["HMAC_512"]["KeyId"]
    assert code(kms.encrypt, KeyId=key_id, Plaintext=b"x") == "InvalidKeyUsageException"
    assert code(kms.generate_data_key, KeyId=key_id, KeySpec="AES_256") == "InvalidKeyUsageException"
    assert code(kms.sign, KeyId=key_id, Message=b"x", SigningAlgorithm="ECDSA_SHA_256") == "InvalidKeyUsageException"
    assert code(kms.get_public_key, KeyId=key_id) == "UnsupportedOperationException"
    assert code(kms.enable_key_rotation, KeyId=key_id) == "UnsupportedOperationException"


@pytest.mark.parametrize(("kwargs", "error_code"), [
    ({"KeySpec": "HMAC_256"}, "ValidationException"),  # KeyUsage must be given for HMAC keys
    ({"KeySpec": "HMAC_256", "KeyUsage": "ENCRYPT_DECRYPT"}, "ValidationException"),
    ({"KeySpec": "HMAC_224", "KeyUsage": "SIGN_VERIFY"}, "ValidationException"),
    ({"KeyUsage": "GENERATE_VERIFY_MAC"}, "ValidationException"),  # with SYMMETRIC_DEFAULT
])
def test_hmac_key_usage_rules(kms: Any, kwargs: dict[str, Any], error_code: str) -> None:
    err = error(kms.create_key, **kwargs)
    assert (err["Code"], err["Status"]) == (error_code, 400)
    assert "KeyUsage" in err["Message"]


def test_dry_run_and_states(kms: Any) -> None:
    meta = kms.create_key(KeySpec="HMAC_224", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    mac = kms.generate_mac(KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_224")["Mac"]
    assert error(kms.generate_mac, KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_224", DryRun=True)[
        "Status"] == 412
    assert code(kms.verify_mac, KeyId=key_id, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_224",
                DryRun=True) == "DryRunOperationException"
    assert code(kms.verify_mac, KeyId=key_id, Message=b"x", Mac=mac, MacAlgorithm="HMAC_SHA_224",
                DryRun=True) == "KMSInvalidMacException"
    kms.disable_key(KeyId=key_id)
    assert error(kms.generate_mac, KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_224") == {
        "Code": "DisabledException", "Status": 400, "Message": f"{arn} is disabled."}
    assert code(kms.verify_mac, KeyId=key_id, Message=b"m", Mac=mac, MacAlgorithm="HMAC_SHA_224") == \
        "DisabledException"
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert code(kms.generate_mac, KeyId=key_id, Message=b"m", MacAlgorithm="HMAC_SHA_224") == \
        "KMSInvalidStateException"


def test_multi_region_hmac_key_macs_agree_across_regions(cluster: RunningCluster) -> None:
    us, eu = cluster.client("us-east-1"), cluster.client("eu-west-1")
    meta = us.create_key(KeySpec="HMAC_512", KeyUsage="GENERATE_VERIFY_MAC", MultiRegion=True)["KeyMetadata"]
    key_id = meta["KeyId"]
    us.replicate_key(KeyId=key_id, ReplicaRegion="eu-west-1")
    wait_state(eu, key_id, "Enabled", timeout=30)  # the replica reaches its region through the log
    replica = eu.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (replica["KeySpec"], replica["MacAlgorithms"]) == ("HMAC_512", ["HMAC_SHA_512"])
    assert replica["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    message = b"made in eu-west-1"
    made_in_eu = eu.generate_mac(KeyId=key_id, Message=message, MacAlgorithm="HMAC_SHA_512")
    assert made_in_eu["KeyId"] == f"arn:aws:kms:eu-west-1:111122223333:key/{key_id}"
    assert len(made_in_eu["Mac"]) == 64
    assert us.verify_mac(KeyId=key_id, Message=message, Mac=made_in_eu["Mac"],
                         MacAlgorithm="HMAC_SHA_512")["MacValid"] is True
    assert us.generate_mac(KeyId=key_id, Message=message, MacAlgorithm="HMAC_SHA_512")["Mac"] == made_in_eu["Mac"]
    assert code(eu.verify_mac, KeyId=key_id, Message=b"other", Mac=made_in_eu["Mac"],
                MacAlgorithm="HMAC_SHA_512") == "KMSInvalidMacException"
