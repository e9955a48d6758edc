"""Symmetric cryptography end to end: a real `trent up` process driven by unmodified boto3.

Encrypt, Decrypt, ReEncrypt, GenerateDataKey(+WithoutPlaintext), GenerateRandom and DryRun, checked against
KMS-REFERENCE.md §4.2, §5.2 and §8 (exact error codes, HTTP statuses and response fields).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.e2e.harness import RunningCluster, code_of, error_of

FOREIGN_BLOB_MESSAGE = (
    "The ciphertext refers to a customer master key that does not exist, does not exist in this region, "
    "or you are not allowed to access."
)
# Offsets into a TRENT-V1 blob (KMS-REFERENCE.md §5.2, L = 36) that are not part of the key id.
MARKER, FLAGS, KEY_ID_LEN, MATERIAL_ID, SALT, IV, BODY = 0, 1, 2, 39, 71, 87, 99


def unvalidated_client(cluster: RunningCluster, region: str = "us-east-1") -> Any:
    """A client that sends what it is given: botocore's own checks (e.g. minimums) would hide the server's."""
    return boto3.client(
        "kms", endpoint_url=cluster.gateway_url, region_name=region, aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False),
    )


def new_key(kms: Any, **kwargs: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(Description="test_crypto", **kwargs)["KeyMetadata"]
    return meta


def new_alias(kms: Any, key_id: str) -> str:
    name = f"alias/crypto-{uuid.uuid4().hex[:12]}"
    kms.create_alias(AliasName=name, TargetKeyId=key_id)
    return name


def flip(blob: bytes, position: int) -> bytes:
    changed = bytearray(blob)
    changed[position] ^= 0x01
    return bytes(changed)


@pytest.fixture(scope="module")
def key(cluster: RunningCluster) -> dict[str, Any]:
    return new_key(cluster.client("us-east-1"))


@pytest.fixture(scope="module")
def other_key(cluster: RunningCluster) -> dict[str, Any]:
    return new_key(cluster.client("us-east-1"))


# -- Encrypt / Decrypt round trips ------------------------------------------------------------------------


def test_round_trip_with_every_form_of_key_identifier(kms: Any, key: dict[str, Any]) -> None:
    alias = new_alias(kms, key["KeyId"])
    alias_arn = key["Arn"].replace(f":key/{key['KeyId']}", f":{alias}")
    current = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    for ident in (key["KeyId"], key["Arn"], alias, alias_arn):
        enc = kms.encrypt(KeyId=ident, Plaintext=b"round trip " + ident.encode())
        assert enc["KeyId"] == key["Arn"]
        assert enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
        dec = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"])
        assert dec["Plaintext"] == b"round trip " + ident.encode()
        assert dec["KeyId"] == key["Arn"]
        assert dec["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
        assert dec["KeyMaterialId"] == current
        assert len(current) == 64 and int(current, 16) >= 0


def test_two_encryptions_of_the_same_plaintext_differ(kms: Any, key: dict[str, Any]) -> None:
    a = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    b = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"same")["CiphertextBlob"]
    assert a != b
    assert kms.decrypt(CiphertextBlob=a)["Plaintext"] == kms.decrypt(CiphertextBlob=b)["Plaintext"] == b"same"


def test_decrypt_works_through_the_region_port_too(cluster: RunningCluster, key: dict[str, Any]) -> None:
    blob = cluster.client("us-east-1").encrypt(KeyId=key["KeyId"], Plaintext=b"direct")["CiphertextBlob"]
    out = cluster.client("us-east-1", via="region").decrypt(CiphertextBlob=blob)
    assert out["Plaintext"] == b"direct" and out["KeyId"] == key["Arn"]


def test_plaintext_limits(kms: Any, key: dict[str, Any], cluster: RunningCluster) -> None:
    big = bytes(range(256)) * 16
    assert len(big) == 4096
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=big)["CiphertextBlob"]
    assert len(blob) <= 6144
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == big
    assert code_of(kms.encrypt, KeyId=key["KeyId"], Plaintext=big + b"x") == "ValidationException"
    raw = unvalidated_client(cluster)
    assert code_of(raw.encrypt, KeyId=key["KeyId"], Plaintext=b"") == "ValidationException"


def test_encrypt_with_unknown_key_is_not_found(kms: Any) -> None:
    missing = str(uuid.uuid4())
    assert code_of(kms.encrypt, KeyId=missing, Plaintext=b"x") == "NotFoundException"
    assert code_of(kms.encrypt, KeyId="alias/does-not-exist-" + missing, Plaintext=b"x") == "NotFoundException"


# -- Encryption context -----------------------------------------------------------------------------------


def test_encryption_context_must_match_exactly(kms: Any, key: dict[str, Any]) -> None:
    ec = {"purpose": "test", "tenant": "acme"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"bound", EncryptionContext=ec)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=ec)["Plaintext"] == b"bound"
    # Order is irrelevant.
    reordered = {"tenant": "acme", "purpose": "test"}
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=reordered)["Plaintext"] == b"bound"
    wrong_contexts: list[dict[str, str] | None] = [
        None,                                                # missing
        {},                                                  # empty
        {"purpose": "test"},                                 # a pair missing
        {**ec, "extra": "x"},                                # a pair extra
        {"purpose": "test", "tenant": "acme2"},              # a value changed
        {"purpose": "test", "tenant": "ACME"},               # a value's case changed
        {"Purpose": "test", "tenant": "acme"},               # a key's case changed
        {"purpose": "tenant", "test": "acme"},               # pairs regrouped
    ]
    for wrong in wrong_contexts:
        kwargs: dict[str, Any] = {"CiphertextBlob": blob}
        if wrong is not None:
            kwargs["EncryptionContext"] = wrong
        err = error_of(kms.decrypt, **kwargs)
        assert err["Error"]["Code"] == "InvalidCiphertextException", wrong
        assert err["Error"].get("Message", "") == "", wrong  # opaque: AWS says nothing more
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_context_given_at_decrypt_but_not_at_encrypt_fails(kms: Any, key: dict[str, Any]) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"plain")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={})["Plaintext"] == b"plain"
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "b"}) == "InvalidCiphertextException"


def test_unicode_encryption_context(kms: Any, key: dict[str, Any]) -> None:
    ec = {"naïve": "café ☕", "日本語": "値", "emoji": "🔑🗝️", "aws-crypto-public-key": "A" * 88}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"unicode", EncryptionContext=ec)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext=dict(reversed(ec.items())))["Plaintext"] == b"unicode"
    near = {**ec, "日本語": "値 "}
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext=near) == "InvalidCiphertextException"
    # Unicode normalisation is not applied: NFC and NFD spellings are different contexts.
    nfd = {**ec, "naïve": "cafe\u0301 ☕"}
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext=nfd) == "InvalidCiphertextException"


# -- Decrypt: KeyId, wrong key, tampering, foreign blobs ------------------------------------------------------


def test_decrypt_with_the_right_key_id_in_every_form(kms: Any, key: dict[str, Any]) -> None:
    alias = new_alias(kms, key["KeyId"])
    alias_arn = key["Arn"].replace(f":key/{key['KeyId']}", f":{alias}")
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"named")["CiphertextBlob"]
    for ident in (key["KeyId"], key["Arn"], alias, alias_arn):
        out = kms.decrypt(CiphertextBlob=blob, KeyId=ident)
        assert out["Plaintext"] == b"named"
        assert out["KeyId"] == key["Arn"]


def test_decrypt_with_the_wrong_key_is_incorrect_key(kms: Any, key: dict[str, Any], other_key: dict[str, Any]) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"mine")["CiphertextBlob"]
    alias = new_alias(kms, other_key["KeyId"])
    for ident in (other_key["KeyId"], other_key["Arn"], alias):
        assert code_of(kms.decrypt, CiphertextBlob=blob, KeyId=ident) == "IncorrectKeyException"
    assert code_of(kms.decrypt, CiphertextBlob=blob, KeyId=str(uuid.uuid4())) == "NotFoundException"


@pytest.mark.parametrize("position", [MARKER, FLAGS, KEY_ID_LEN, MATERIAL_ID, MATERIAL_ID + 31, SALT, SALT + 15,
                                      IV, IV + 11, BODY, BODY + 5, -16, -1])
def test_a_tampered_byte_is_invalid_ciphertext(kms: Any, key: dict[str, Any], position: int) -> None:
    ec = {"k": "v"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"integrity!", EncryptionContext=ec)["CiphertextBlob"]
    err = error_of(kms.decrypt, CiphertextBlob=flip(blob, position), EncryptionContext=ec)
    assert err["Error"]["Code"] == "InvalidCiphertextException"
    assert err["Error"].get("Message", "") == ""


def test_truncated_and_extended_blobs_are_invalid(kms: Any, key: dict[str, Any]) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"length")["CiphertextBlob"]
    for changed in (blob[:-1], blob[:50], blob + b"\x00"):
        assert code_of(kms.decrypt, CiphertextBlob=changed) == "InvalidCiphertextException"


@pytest.mark.parametrize("garbage", [b"x", b"\x00" * 200, b"AQICAHh" + b"\x01" * 200, bytes(range(256))])
def test_garbage_blob_is_invalid_ciphertext(kms: Any, key: dict[str, Any], garbage: bytes) -> None:
    assert code_of(kms.decrypt, CiphertextBlob=garbage) == "InvalidCiphertextException"
    assert code_of(kms.decrypt, CiphertextBlob=garbage, KeyId=key["KeyId"]) == "InvalidCiphertextException"


def test_blob_of_another_region_is_access_denied(cluster: RunningCluster) -> None:
    us = cluster.client("us-east-1")
    eu = cluster.client("eu-west-1")
    key_us = new_key(us)
    blob = us.encrypt(KeyId=key_us["KeyId"], Plaintext=b"stay home")["CiphertextBlob"]
    err = error_of(eu.decrypt, CiphertextBlob=blob)
    assert err["Error"]["Code"] == "AccessDeniedException"
    assert err["Error"]["Message"] == FOREIGN_BLOB_MESSAGE
    # The key ARN of the other region does not resolve here.
    assert code_of(eu.decrypt, CiphertextBlob=blob, KeyId=key_us["Arn"]) == "NotFoundException"
    # And the blob still works at home.
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"stay home"


def test_asymmetric_algorithm_on_symmetric_key_is_invalid_key_usage(kms: Any, key: dict[str, Any]) -> None:
    for alg in ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "SM2PKE"):
        assert code_of(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"x", EncryptionAlgorithm=alg) == \
            "InvalidKeyUsageException"
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    assert code_of(kms.decrypt, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256") == \
        "InvalidKeyUsageException"
    assert kms.decrypt(CiphertextBlob=blob, EncryptionAlgorithm="SYMMETRIC_DEFAULT")["Plaintext"] == b"x"


def test_crypto_on_disabled_and_pending_deletion_keys(kms: Any) -> None:
    meta = new_key(kms)
    kid = meta["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"state")["CiphertextBlob"]
    kms.disable_key(KeyId=kid)
    for call, kwargs in ((kms.encrypt, {"KeyId": kid, "Plaintext": b"x"}), (kms.decrypt, {"CiphertextBlob": blob}),
                         (kms.generate_data_key, {"KeyId": kid, "KeySpec": "AES_256"})):
        err = error_of(call, **kwargs)
        assert err["Error"]["Code"] == "DisabledException"
        assert err["Error"]["Message"] == f"{meta['Arn']} is disabled."
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    err = error_of(kms.decrypt, CiphertextBlob=blob)
    assert err["Error"]["Code"] == "KMSInvalidStateException"
    assert err["Error"]["Message"] == f"{meta['Arn']} is pending deletion."
    kms.cancel_key_deletion(KeyId=kid)
    kms.enable_key(KeyId=kid)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"state"


# -- ReEncrypt --------------------------------------------------------------------------------------------


def test_re_encrypt_to_the_same_key(kms: Any, key: dict[str, Any]) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"again")["CiphertextBlob"]
    out = kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=key["KeyId"])
    current = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert out["SourceKeyId"] == key["Arn"] and out["KeyId"] == key["Arn"]
    assert out["SourceKeyMaterialId"] == current and out["DestinationKeyMaterialId"] == current
    assert out["SourceEncryptionAlgorithm"] == out["DestinationEncryptionAlgorithm"] == "SYMMETRIC_DEFAULT"
    assert out["CiphertextBlob"] != blob
    assert kms.decrypt(CiphertextBlob=out["CiphertextBlob"])["Plaintext"] == b"again"


def test_re_encrypt_to_another_key_with_contexts(kms: Any, key: dict[str, Any], other_key: dict[str, Any]) -> None:
    src_ec, dst_ec = {"stage": "source"}, {"stage": "destination", "extra": "ü"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"moving", EncryptionContext=src_ec)["CiphertextBlob"]
    alias = new_alias(kms, other_key["KeyId"])
    out = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=src_ec, SourceKeyId=key["Arn"],
                         DestinationKeyId=alias, DestinationEncryptionContext=dst_ec)
    assert out["SourceKeyId"] == key["Arn"]
    assert out["KeyId"] == other_key["Arn"]
    assert out["SourceKeyMaterialId"] == kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert out["DestinationKeyMaterialId"] == \
        kms.describe_key(KeyId=other_key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert out["SourceKeyMaterialId"] != out["DestinationKeyMaterialId"]
    new_blob = out["CiphertextBlob"]
    dec = kms.decrypt(CiphertextBlob=new_blob, EncryptionContext=dst_ec)
    assert dec["Plaintext"] == b"moving" and dec["KeyId"] == other_key["Arn"]
    assert code_of(kms.decrypt, CiphertextBlob=new_blob, EncryptionContext=src_ec) == "InvalidCiphertextException"
    assert code_of(kms.decrypt, CiphertextBlob=new_blob, KeyId=key["KeyId"], EncryptionContext=dst_ec) == \
        "IncorrectKeyException"


def test_re_encrypt_errors(kms: Any, key: dict[str, Any], other_key: dict[str, Any]) -> None:
    ec = {"a": "1"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"guarded", EncryptionContext=ec)["CiphertextBlob"]
    err = error_of(kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext={"a": "2"},
                   DestinationKeyId=other_key["KeyId"])
    assert err["Error"]["Code"] == "InvalidCiphertextException"
    assert err["Error"].get("Message", "") == ""
    assert code_of(kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=other_key["KeyId"]) == \
        "InvalidCiphertextException"
    assert code_of(kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext=ec, SourceKeyId=other_key["KeyId"],
                   DestinationKeyId=key["KeyId"]) == "IncorrectKeyException"
    assert code_of(kms.re_encrypt, CiphertextBlob=flip(blob, BODY), SourceEncryptionContext=ec,
                   DestinationKeyId=key["KeyId"]) == "InvalidCiphertextException"
    assert code_of(kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext=ec,
                   DestinationKeyId=str(uuid.uuid4())) == "NotFoundException"
    assert code_of(kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext=ec, DestinationKeyId=key["KeyId"],
                   DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256") == "InvalidKeyUsageException"


def test_re_encrypt_into_a_disabled_destination(kms: Any, key: dict[str, Any]) -> None:
    dest = new_key(kms)
    kms.disable_key(KeyId=dest["KeyId"])
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    assert code_of(kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=dest["KeyId"]) == "DisabledException"


# -- Data keys and random bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "length"), [({"KeySpec": "AES_128"}, 16), ({"KeySpec": "AES_256"}, 32),
                                                ({"NumberOfBytes": 1}, 1), ({"NumberOfBytes": 1024}, 1024)])
def test_generate_data_key_sizes(kms: Any, key: dict[str, Any], kwargs: dict[str, Any], length: int) -> None:
    ec = {"file": "x.txt"}
    out = kms.generate_data_key(KeyId=key["KeyId"], EncryptionContext=ec, **kwargs)
    assert len(out["Plaintext"]) == length
    assert out["KeyId"] == key["Arn"]
    assert out["KeyMaterialId"] == kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    dec = kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=ec)
    assert dec["Plaintext"] == out["Plaintext"]
    assert dec["KeyMaterialId"] == out["KeyMaterialId"]
    assert code_of(kms.decrypt, CiphertextBlob=out["CiphertextBlob"]) == "InvalidCiphertextException"


def test_generate_data_key_needs_exactly_one_size(kms: Any, key: dict[str, Any], cluster: RunningCluster) -> None:
    for op in (kms.generate_data_key, kms.generate_data_key_without_plaintext):
        assert code_of(op, KeyId=key["KeyId"]) == "ValidationException"
        assert code_of(op, KeyId=key["KeyId"], KeySpec="AES_256", NumberOfBytes=32) == "ValidationException"
        assert code_of(op, KeyId=key["KeyId"], NumberOfBytes=1025) == "ValidationException"
    raw = unvalidated_client(cluster)
    assert code_of(raw.generate_data_key, KeyId=key["KeyId"], NumberOfBytes=0) == "ValidationException"
    assert code_of(raw.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_512") == "ValidationException"


def test_generate_data_key_without_plaintext(kms: Any, key: dict[str, Any]) -> None:
    ec = {"who": "nobody"}
    out = kms.generate_data_key_without_plaintext(KeyId=key["Arn"], KeySpec="AES_256", EncryptionContext=ec)
    assert "Plaintext" not in out
    assert out["KeyId"] == key["Arn"]
    assert out["KeyMaterialId"] == kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["CurrentKeyMaterialId"]
    assert len(kms.decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=ec)["Plaintext"]) == 32


def test_data_keys_are_random(kms: Any, key: dict[str, Any]) -> None:
    keys = {kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")["Plaintext"] for _ in range(5)}
    assert len(keys) == 5


def test_generate_random(kms: Any, cluster: RunningCluster) -> None:
    for size in (1, 32, 1024):
        assert len(kms.generate_random(NumberOfBytes=size)["Plaintext"]) == size
    assert kms.generate_random(NumberOfBytes=32)["Plaintext"] != kms.generate_random(NumberOfBytes=32)["Plaintext"]
    raw = unvalidated_client(cluster)
    assert code_of(raw.generate_random, NumberOfBytes=0) == "ValidationException"
    assert code_of(kms.generate_random, NumberOfBytes=1025) == "ValidationException"
    assert code_of(kms.generate_random) == "ValidationException"
    assert code_of(kms.generate_random, NumberOfBytes=16, CustomKeyStoreId="cks-1234567890abcdef0") == \
        "CustomKeyStoreNotFoundException"


# -- DryRun -----------------------------------------------------------------------------------------------


def assert_dry_run(call: Callable[..., Any], **kwargs: Any) -> None:
    err = error_of(call, DryRun=True, **kwargs)
    assert err["Error"]["Code"] == "DryRunOperationException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_dry_run_of_every_symmetric_operation(kms: Any, key: dict[str, Any], other_key: dict[str, Any]) -> None:
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"dry")["CiphertextBlob"]
    assert_dry_run(kms.encrypt, KeyId=key["KeyId"], Plaintext=b"dry")
    assert_dry_run(kms.decrypt, CiphertextBlob=blob)
    assert_dry_run(kms.decrypt, CiphertextBlob=blob, KeyId=key["KeyId"])
    assert_dry_run(kms.decrypt, CiphertextBlob=b"not a real blob", KeyId=key["KeyId"],
                   DryRunModifiers=["IGNORE_CIPHERTEXT"])
    assert_dry_run(kms.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256")
    assert_dry_run(kms.generate_data_key_without_plaintext, KeyId=key["KeyId"], NumberOfBytes=8)
    assert_dry_run(kms.re_encrypt, CiphertextBlob=blob, DestinationKeyId=other_key["KeyId"])
    assert_dry_run(kms.re_encrypt, CiphertextBlob=b"junk", SourceKeyId=key["KeyId"],
                   DestinationKeyId=other_key["KeyId"], DryRunModifiers=["IGNORE_CIPHERTEXT"])


def test_dry_run_still_runs_every_check(kms: Any, key: dict[str, Any], other_key: dict[str, Any]) -> None:
    ec = {"k": "v"}
    blob = kms.encrypt(KeyId=key["KeyId"], Plaintext=b"dry", EncryptionContext=ec)["CiphertextBlob"]
    # Without IGNORE_CIPHERTEXT the ciphertext is validated: garbage, a wrong context, a wrong key all fail.
    assert code_of(kms.decrypt, DryRun=True, CiphertextBlob=b"garbage") == "InvalidCiphertextException"
    assert code_of(kms.decrypt, DryRun=True, CiphertextBlob=blob) == "InvalidCiphertextException"
    assert code_of(kms.decrypt, DryRun=True, CiphertextBlob=flip(blob, BODY), EncryptionContext=ec) == \
        "InvalidCiphertextException"
    assert code_of(kms.decrypt, DryRun=True, CiphertextBlob=blob, EncryptionContext=ec,
                   KeyId=other_key["KeyId"]) == "IncorrectKeyException"
    assert code_of(kms.re_encrypt, DryRun=True, CiphertextBlob=blob, DestinationKeyId=key["KeyId"]) == \
        "InvalidCiphertextException"
    # The modifier means nothing without DryRun: the blob is checked (and refused) as usual.
    assert code_of(kms.decrypt, CiphertextBlob=b"garbage", KeyId=key["KeyId"],
                   DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "InvalidCiphertextException"
    # IGNORE_CIPHERTEXT needs the key named.
    assert code_of(kms.decrypt, DryRun=True, CiphertextBlob=blob, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == \
        "ValidationException"
    assert code_of(kms.encrypt, DryRun=True, KeyId=str(uuid.uuid4()), Plaintext=b"x") == "NotFoundException"
    assert code_of(kms.encrypt, DryRun=True, KeyId=key["KeyId"], Plaintext=b"x",
                   EncryptionAlgorithm="RSAES_OAEP_SHA_1") == "InvalidKeyUsageException"
    assert code_of(kms.generate_data_key, DryRun=True, KeyId=key["KeyId"]) == "ValidationException"


def test_dry_run_on_a_disabled_key_is_disabled(kms: Any) -> None:
    meta = new_key(kms)
    blob = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"dry")["CiphertextBlob"]
    kms.disable_key(KeyId=meta["KeyId"])
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (kms.encrypt, {"KeyId": meta["KeyId"], "Plaintext": b"x"}),
        (kms.decrypt, {"CiphertextBlob": blob}),
        (kms.decrypt, {"CiphertextBlob": b"x", "KeyId": meta["KeyId"], "DryRunModifiers": ["IGNORE_CIPHERTEXT"]}),
        (kms.generate_data_key, {"KeyId": meta["KeyId"], "KeySpec": "AES_128"}),
        (kms.re_encrypt, {"CiphertextBlob": blob, "DestinationKeyId": meta["KeyId"]}),
    ]
    for call, kwargs in calls:
        err = error_of(call, DryRun=True, **kwargs)
        assert err["Error"]["Code"] == "DisabledException", call
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_dry_run_changes_nothing(kms: Any) -> None:
    meta = new_key(kms)
    before = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert_dry_run(kms.encrypt, KeyId=meta["KeyId"], Plaintext=b"x")
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"] == before
