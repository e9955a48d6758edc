"""Imported key material (BYOK) through boto3 with `cryptography` doing the client side: every key spec and
wrapping algorithm, proven by using the material locally (the same MAC, signatures that verify under the local
public key, old ciphertexts after a re-import); the import errors AWS gives; the PendingImport state rules;
expiry on the cluster's clock; policy condition keys; nothing secret in the audit trail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa

from tests.e2e.byok import external_key, import_error, import_material, pkcs8, wrap
from tests.e2e.harness import RunningCluster, error, poll, server_now, spki_of
from tests.e2e.test_policies import APP_ARN, ROOT_ALL, Clients, allow, module_cluster, policy

cluster, kms = module_cluster("byok")
DAY = 86400.0


@pytest.fixture
def root(kms: Clients) -> Any:
    return kms("root")


def test_symmetric_import_encrypts_and_reimport_of_the_same_bytes_opens_old_ciphertexts(root: Any) -> None:
    meta = external_key(root, Description="byok")
    assert (meta["Origin"], meta["KeyState"], meta["Enabled"]) == ("EXTERNAL", "PendingImport", False)
    assert "CurrentKeyMaterialId" not in meta and "ExpirationModel" not in meta
    material = os.urandom(32)
    done = import_material(root, meta["KeyId"], material)
    assert done["KeyId"] == meta["Arn"]
    mid = done["KeyMaterialId"]
    assert len(mid) == 64 and mid == mid.lower() and int(mid, 16) >= 0
    described = root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert (described["KeyState"], described["Origin"], described["CurrentKeyMaterialId"]) == (
        "Enabled", "EXTERNAL", mid)
    assert described["ExpirationModel"] == "KEY_MATERIAL_DOES_NOT_EXPIRE" and "ValidTo" not in described
    blob = root.encrypt(KeyId=meta["KeyId"], Plaintext=b"before", EncryptionContext={"a": "b"})["CiphertextBlob"]
    data_key = root.generate_data_key(KeyId=meta["KeyId"], KeySpec="AES_256")
    assert data_key["KeyMaterialId"] == mid

    deleted = root.delete_imported_key_material(KeyId=meta["KeyId"])
    assert (deleted["KeyId"], deleted["KeyMaterialId"]) == (meta["Arn"], mid)
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"
    err = error(root.decrypt, CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert (err["Code"], err["Message"]) == ("KMSInvalidStateException", f"{meta['Arn']} is pending import.")
    # Deleting again has no effect.
    assert root.delete_imported_key_material(KeyId=meta["KeyId"])["KeyId"] == meta["Arn"]

    # Different bytes are refused; the same bytes (another wrapping key and algorithm) bring it back.
    err = import_error(root, meta["KeyId"], os.urandom(32))
    assert err["Code"] == "IncorrectKeyMaterialException"
    again = import_material(root, meta["KeyId"], material, "RSA_AES_KEY_WRAP_SHA_1", "RSA_3072")
    assert again["KeyMaterialId"] == mid
    opened = root.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})
    assert (opened["Plaintext"], opened["KeyMaterialId"]) == (b"before", mid)
    assert root.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == data_key["Plaintext"]


def test_the_same_bytes_in_two_keys_make_two_keys_that_cannot_open_each_others_ciphertexts(root: Any) -> None:
    material = os.urandom(32)
    a, b = external_key(root), external_key(root)
    ids = {import_material(root, k["KeyId"], material)["KeyMaterialId"] for k in (a, b)}
    assert len(ids) == 2  # the id binds the key too
    blob = root.encrypt(KeyId=a["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    assert error(root.decrypt, CiphertextBlob=blob, KeyId=b["KeyId"])["Code"] == "IncorrectKeyException"


@pytest.mark.parametrize("spec", ["HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512"])
def test_hmac_import_gives_the_mac_computed_locally(root: Any, spec: str) -> None:
    bits = spec.removeprefix("HMAC_")
    material = os.urandom({"224": 28, "256": 32, "384": 48, "512": 64}[bits] + 8)
    meta = external_key(root, KeySpec=spec, KeyUsage="GENERATE_VERIFY_MAC")
    import_material(root, meta["KeyId"], material, "RSAES_OAEP_SHA_1", "RSA_2048")
    message = b"mac me " + os.urandom(16)
    mac = root.generate_mac(KeyId=meta["KeyId"], Message=message, MacAlgorithm=f"HMAC_SHA_{bits}")["Mac"]
    assert mac == hmac.new(material, message, getattr(hashlib, f"sha{bits}")).digest()
    # HMAC keys take only the bytes they first had, and no symmetric-only member.
    assert import_error(root, meta["KeyId"], os.urandom(len(material)))["Code"] == (
        "IncorrectKeyMaterialException")
    err = import_error(root, meta["KeyId"], material, ImportType="EXISTING_KEY_MATERIAL")
    assert err["Code"] == "ValidationException"
    # A MAC made before the material was deleted verifies again once the same bytes are back.
    root.delete_imported_key_material(KeyId=meta["KeyId"])
    verify = {"KeyId": meta["KeyId"], "Message": message, "Mac": mac, "MacAlgorithm": f"HMAC_SHA_{bits}"}
    assert error(root.verify_mac, **verify)["Code"] == "KMSInvalidStateException"
    import_material(root, meta["KeyId"], material, "RSA_AES_KEY_WRAP_SHA_256", "RSA_4096")
    assert root.verify_mac(**verify)["MacValid"] is True


def test_key_agreement_and_ml_kem_imports_agree_with_the_local_private_key(root: Any) -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    meta = external_key(root, KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT")
    import_material(root, meta["KeyId"], pkcs8(private), "RSAES_OAEP_SHA_256", "RSA_3072")
    peer = ec.generate_private_key(ec.SECP384R1())
    shared = root.derive_shared_secret(KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH",
                                       PublicKey=spki_of(peer))["SharedSecret"]
    assert shared == peer.exchange(ec.ECDH(), private.public_key())
    kem = mlkem.MLKEM768PrivateKey.generate()
    meta = external_key(root, KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")
    import_material(root, meta["KeyId"], pkcs8(kem), "RSAES_OAEP_SHA_256", "RSA_2048")
    secret, ciphertext = kem.public_key().encapsulate()
    out = root.decapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM",
                           SharedSecretCiphertextBlob=ciphertext)
    assert out["SharedSecret"] == secret


def _signing_cases() -> list[tuple[str, str, str, Any]]:
    return [
        ("RSA_2048", "RSASSA_PSS_SHA_256", "RSA_AES_KEY_WRAP_SHA_256", lambda: rsa.generate_private_key(65537, 2048)),
        ("RSA_3072", "RSASSA_PKCS1_V1_5_SHA_384", "RSA_AES_KEY_WRAP_SHA_1",
         lambda: rsa.generate_private_key(65537, 3072)),
        ("ECC_NIST_P256", "ECDSA_SHA_256", "RSAES_OAEP_SHA_256", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("ECC_NIST_P384", "ECDSA_SHA_384", "RSAES_OAEP_SHA_1", lambda: ec.generate_private_key(ec.SECP384R1())),
        ("ECC_NIST_P521", "ECDSA_SHA_512", "RSA_AES_KEY_WRAP_SHA_256", lambda: ec.generate_private_key(ec.SECP521R1())),
        ("ECC_SECG_P256K1", "ECDSA_SHA_256", "RSAES_OAEP_SHA_256", lambda: ec.generate_private_key(ec.SECP256K1())),
        ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512", "RSAES_OAEP_SHA_256", ed25519.Ed25519PrivateKey.generate),
        ("ML_DSA_65", "ML_DSA_SHAKE_256", "RSA_AES_KEY_WRAP_SHA_256", mldsa.MLDSA65PrivateKey.generate),
    ]


@pytest.mark.parametrize(("spec", "algorithm", "wrapping", "make"), _signing_cases(),
                         ids=[c[0] for c in _signing_cases()])
def test_signing_key_import_signs_what_the_local_public_key_verifies(root: Any, spec: str, algorithm: str,
                                                                     wrapping: str, make: Any) -> None:
    private = make()
    meta = external_key(root, KeySpec=spec, KeyUsage="SIGN_VERIFY")
    assert error(root.sign, KeyId=meta["KeyId"], Message=b"m", SigningAlgorithm=algorithm)["Code"] == (
        "KMSInvalidStateException")
    import_material(root, meta["KeyId"], pkcs8(private), wrapping, "RSA_4096" if spec == "ML_DSA_65" else "RSA_3072")
    message = b"sign me " + os.urandom(8)
    signature = root.sign(KeyId=meta["KeyId"], Message=message, SigningAlgorithm=algorithm)["Signature"]
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        hash_ = hashes.SHA256() if algorithm.endswith("256") else hashes.SHA384()
        pad = (padding.PSS(padding.MGF1(hash_), hash_.digest_size) if "PSS" in algorithm else padding.PKCS1v15())
        public.verify(signature, message, pad, hash_)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        hash_cls = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}[algorithm[-3:]]
        public.verify(signature, message, ec.ECDSA(hash_cls()))
    else:
        public.verify(signature, message)
    assert root.get_public_key(KeyId=meta["KeyId"])["PublicKey"] == spki_of(private)


def test_rsa_encryption_key_import_decrypts_what_the_local_public_key_encrypted(root: Any) -> None:
    private = rsa.generate_private_key(65537, 2048)
    meta = external_key(root, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    import_material(root, meta["KeyId"], pkcs8(private), "RSA_AES_KEY_WRAP_SHA_256", "RSA_2048")
    oaep = padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    blob = private.public_key().encrypt(b"to the service", oaep)
    out = root.decrypt(KeyId=meta["KeyId"], CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert out["Plaintext"] == b"to the service"


def test_wrapping_combinations_aws_refuses(root: Any) -> None:
    rsa_key = external_key(root, KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
    for algorithm in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"):
        err = error(root.get_parameters_for_import, KeyId=rsa_key["KeyId"], WrappingAlgorithm=algorithm,
                    WrappingKeySpec="RSA_4096")
        assert err["Code"] == "ValidationException" and "RSA_AES_KEY_WRAP" in err["Message"]
    p521 = external_key(root, KeySpec="ECC_NIST_P521", KeyUsage="SIGN_VERIFY")
    err = error(root.get_parameters_for_import, KeyId=p521["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                WrappingKeySpec="RSA_2048")
    assert err["Code"] == "ValidationException"
    assert root.get_parameters_for_import(KeyId=p521["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                          WrappingKeySpec="RSA_3072")["KeyId"] == p521["Arn"]
    err = error(root.get_parameters_for_import, KeyId=p521["KeyId"], WrappingAlgorithm="RSAES_PKCS1_V1_5",
                WrappingKeySpec="RSA_2048")
    assert err["Code"] == "ValidationException" and "no longer supported" in err["Message"]
    err = error(root.get_parameters_for_import, KeyId=p521["KeyId"], WrappingAlgorithm="SM2PKE",
                WrappingKeySpec="SM2")
    assert err["Code"] == "UnsupportedOperationException"
    # A key with KMS-made material takes no import at all.
    own = root.create_key()["KeyMetadata"]
    err = error(root.get_parameters_for_import, KeyId=own["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                WrappingKeySpec="RSA_2048")
    assert (err["Code"], err["Message"]) == (
        "UnsupportedOperationException", f"{own['Arn']} origin is AWS_KMS which is not valid for this operation.")


def test_get_parameters_for_import_answers(root: Any, cluster: RunningCluster) -> None:
    meta = external_key(root)
    now = server_now(cluster)
    out = root.get_parameters_for_import(KeyId=meta["Arn"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                         WrappingKeySpec="RSA_4096")
    assert out["KeyId"] == meta["Arn"]
    public = serialization.load_der_public_key(out["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 4096
    valid_to = out["ParametersValidTo"].timestamp()
    assert now + DAY - 60 <= valid_to <= now + DAY + 60
    assert 1 <= len(out["ImportToken"]) <= 6144
    # A token may be used more than once while it is valid.
    material = os.urandom(32)
    for _ in range(2):
        root.import_key_material(KeyId=meta["KeyId"], ImportToken=out["ImportToken"],
                                 EncryptedKeyMaterial=wrap(out["PublicKey"], "RSAES_OAEP_SHA_256", material),
                                 ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")


def test_import_errors(root: Any, kms: Clients) -> None:
    meta, other = external_key(root), external_key(root)
    params = root.get_parameters_for_import(KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                            WrappingKeySpec="RSA_2048")
    good = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))

    def attempt(**changes: Any) -> dict[str, Any]:
        call = {"KeyId": meta["KeyId"], "ImportToken": params["ImportToken"], "EncryptedKeyMaterial": good,
                "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE", **changes}
        return error(root.import_key_material, **call)

    assert attempt(KeyId=other["KeyId"])["Code"] == "InvalidImportTokenException"  # another key's token
    forged = bytearray(params["ImportToken"])
    forged[len(forged) // 2] ^= 1
    assert attempt(ImportToken=bytes(forged))["Code"] == "InvalidImportTokenException"
    assert attempt(ImportToken=os.urandom(300))["Code"] == "InvalidImportTokenException"
    # Another region's token for a key of the same id cannot exist; its token does not open here either.
    eu = kms("root", "eu-west-1")
    eu_key = external_key(eu)
    eu_params = eu.get_parameters_for_import(KeyId=eu_key["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                             WrappingKeySpec="RSA_2048")
    assert attempt(ImportToken=eu_params["ImportToken"])["Code"] == "InvalidImportTokenException"
    # Bytes that do not unwrap; material of the wrong size.
    assert attempt(EncryptedKeyMaterial=os.urandom(256))["Code"] == "InvalidCiphertextException"
    short = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(16))
    err = attempt(EncryptedKeyMaterial=short)
    assert err["Code"] == "IncorrectKeyMaterialException" and "256 bits" in err["Message"]
    # Wrapped with another algorithm than the token's.
    sha1 = wrap(params["PublicKey"], "RSAES_OAEP_SHA_1", os.urandom(32))
    assert attempt(EncryptedKeyMaterial=sha1)["Code"] == "InvalidCiphertextException"
    # Expiration rules.
    assert "validTo" in attempt(ExpirationModel="KEY_MATERIAL_EXPIRES")["Message"]
    err = error(root.import_key_material, KeyId=meta["KeyId"], ImportToken=params["ImportToken"],
                EncryptedKeyMaterial=good)
    assert err["Code"] == "ValidationException"  # the default model is KEY_MATERIAL_EXPIRES: ValidTo is needed
    assert attempt(ValidTo=time.time() + 3600)["Code"] == "ValidationException"  # with DOES_NOT_EXPIRE
    assert attempt(ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=time.time() + 400 * DAY)["Code"] == (
        "ValidationException")
    assert attempt(ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=time.time() - 60)["Code"] == "ValidationException"
    assert attempt(ImportType="NEW_KEY_MATERIAL", KeyMaterialId="a" * 64)["Code"] == "ValidationException"
    assert attempt(ImportType="EXISTING_KEY_MATERIAL")["Code"] == "IncorrectKeyMaterialException"
    # None of it imported anything.
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"


def test_pending_import_state_rules(root: Any) -> None:
    meta = external_key(root)
    arn = meta["Arn"]
    pending = ("KMSInvalidStateException", f"{arn} is pending import.")
    for call, kwargs in ((root.encrypt, {"Plaintext": b"x"}), (root.generate_data_key, {"KeySpec": "AES_256"}),
                         (root.enable_key, {}), (root.disable_key, {}),
                         (root.create_grant, {"GranteePrincipal": APP_ARN, "Operations": ["Encrypt"]})):
        err = error(call, KeyId=meta["KeyId"], **kwargs)
        assert (err["Code"], err["Message"]) == pending, call
    assert error(root.enable_key_rotation, KeyId=meta["KeyId"])["Code"] == "UnsupportedOperationException"
    assert error(root.rotate_key_on_demand, KeyId=meta["KeyId"])["Code"] == "KMSInvalidStateException"
    assert root.list_key_rotations(KeyId=meta["KeyId"])["Rotations"] == []
    root.tag_resource(KeyId=meta["KeyId"], Tags=[{"TagKey": "k", "TagValue": "v"}])
    # Pending deletion: no new parameters or imports; deleting material leaves the state alone.
    root.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
    err = error(root.get_parameters_for_import, KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                WrappingKeySpec="RSA_2048")
    assert (err["Code"], err["Message"]) == ("KMSInvalidStateException", f"{arn} is pending deletion.")
    root.delete_imported_key_material(KeyId=meta["KeyId"])
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingDeletion"
    # Cancelled without material: back to PendingImport, not Disabled.
    root.cancel_key_deletion(KeyId=meta["KeyId"])
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"
    material = os.urandom(32)
    import_material(root, meta["KeyId"], material)
    root.disable_key(KeyId=meta["KeyId"])
    # Re-importing into a disabled key (to change its expiry) leaves it disabled; cancelling a deletion with the
    # material present gives Disabled.
    import_material(root, meta["KeyId"], material, ExpirationModel="KEY_MATERIAL_EXPIRES",
                    ValidTo=time.time() + 300 * DAY)
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    root.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
    root.cancel_key_deletion(KeyId=meta["KeyId"])
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    root.enable_key(KeyId=meta["KeyId"])
    assert root.encrypt(KeyId=meta["KeyId"], Plaintext=b"x")["KeyId"] == arn


def test_material_expires_on_the_cluster_clock_with_the_service_event(root: Any, cluster: RunningCluster) -> None:
    meta = external_key(root)
    material = os.urandom(32)
    valid_to = server_now(cluster) + 3600
    import_material(root, meta["KeyId"], material, ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=valid_to)
    described = root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert described["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    assert abs(described["ValidTo"].timestamp() - valid_to) < 1
    blob = root.encrypt(KeyId=meta["KeyId"], Plaintext=b"expiring")["CiphertextBlob"]
    cluster.advance_clock("2h")
    poll(lambda: root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport", timeout=20)
    assert error(root.decrypt, CiphertextBlob=blob)["Code"] == "KMSInvalidStateException"

    def event() -> dict[str, Any] | None:
        for path in cluster.data_dir.glob("us-east-1/audit/*.jsonl"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record.get("eventName") == "DeleteExpiredKeyMaterial" and any(
                        r.get("ARN") == meta["Arn"] for r in record.get("resources") or ()):
                    return record
        return None

    record = poll(event, timeout=20)
    assert record["eventType"] == "AwsServiceEvent"
    # The same bytes bring it back (an expired token would not: a new one is asked for).
    import_material(root, meta["KeyId"], material)
    assert root.decrypt(CiphertextBlob=blob)["Plaintext"] == b"expiring"


def test_an_import_token_expires_after_24_hours_of_cluster_time(root: Any, cluster: RunningCluster) -> None:
    meta = external_key(root)
    params = root.get_parameters_for_import(KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                            WrappingKeySpec="RSA_2048")
    cluster.advance_clock("25h")
    err = error(root.import_key_material, KeyId=meta["KeyId"], ImportToken=params["ImportToken"],
                EncryptedKeyMaterial=wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)),
                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert err["Code"] == "ExpiredImportTokenException"


def test_policy_conditions_of_the_import_flow(kms: Clients) -> None:
    root, app = kms("root"), kms("app")
    rules = policy(
        ROOT_ALL,
        allow(APP_ARN, "kms:GetParametersForImport", Condition={"StringEquals": {
            "kms:WrappingAlgorithm": "RSAES_OAEP_SHA_256", "kms:WrappingKeySpec": "RSA_4096"}}),
        allow(APP_ARN, "kms:ImportKeyMaterial", Condition={
            "StringEquals": {"kms:ExpirationModel": "KEY_MATERIAL_EXPIRES"},
            "DateLessThan": {"kms:ValidTo": "2100-01-01T00:00:00Z"}}))
    meta = external_key(root, Policy=rules)
    for algorithm, spec in (("RSAES_OAEP_SHA_256", "RSA_2048"), ("RSAES_OAEP_SHA_1", "RSA_4096")):
        assert error(app.get_parameters_for_import, KeyId=meta["KeyId"], WrappingAlgorithm=algorithm,
                     WrappingKeySpec=spec)["Code"] == "AccessDeniedException"
    params = app.get_parameters_for_import(KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_4096")
    wrapped = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    assert error(app.import_key_material, KeyId=meta["KeyId"], ImportToken=params["ImportToken"],
                 EncryptedKeyMaterial=wrapped, ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")["Code"] == (
        "AccessDeniedException")
    app.import_key_material(KeyId=meta["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                            ExpirationModel="KEY_MATERIAL_EXPIRES", ValidTo=time.time() + 30 * DAY)
    assert error(app.delete_imported_key_material, KeyId=meta["KeyId"])["Code"] == "AccessDeniedException"


def test_no_material_token_or_wrapped_bytes_in_the_audit_trail_or_data_files(root: Any,
                                                                             cluster: RunningCluster) -> None:
    meta = external_key(root)
    material = os.urandom(32)
    params = root.get_parameters_for_import(KeyId=meta["KeyId"], WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                            WrappingKeySpec="RSA_2048")
    wrapped = wrap(params["PublicKey"], "RSAES_OAEP_SHA_256", material)
    root.import_key_material(KeyId=meta["KeyId"], ImportToken=params["ImportToken"], EncryptedKeyMaterial=wrapped,
                             ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    needles = [material, params["ImportToken"], wrapped]
    forms = [n for b in needles for n in (b, base64.b64encode(b), b.hex().encode())]

    def names_of_import() -> bool:
        text = b"".join(p.read_bytes() for p in cluster.data_dir.glob("us-east-1/audit/*.jsonl"))
        return b"ImportKeyMaterial" in text

    poll(names_of_import, timeout=20)
    for path in cluster.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(f in data for f in forms), path


def _materials(root: Any, key_id: str, include: str = "ALL_KEY_MATERIAL") -> list[dict[str, Any]]:
    rotations: list[dict[str, Any]] = root.list_key_rotations(KeyId=key_id, IncludeKeyMaterial=include)["Rotations"]
    return rotations


def test_imported_material_rotates_on_demand_and_every_version_keeps_working(root: Any) -> None:
    meta = external_key(root)
    key_id = meta["KeyId"]
    first, second, third = os.urandom(32), os.urandom(32), os.urandom(32)
    m1 = import_material(root, key_id, first)["KeyMaterialId"]  # ImportType omitted: the first is NEW
    old = root.generate_data_key(KeyId=key_id, NumberOfBytes=32)
    assert old["KeyMaterialId"] == m1
    m2 = import_material(root, key_id, second, ImportType="NEW_KEY_MATERIAL",
                         KeyMaterialDescription="second material")["KeyMaterialId"]
    assert root.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == m1
    assert [(r["KeyMaterialId"], r["KeyMaterialState"], r["ImportState"]) for r in _materials(root, key_id)] == [
        (m1, "CURRENT", "IMPORTED"), (m2, "PENDING_ROTATION", "IMPORTED")]
    assert _materials(root, key_id)[1]["KeyMaterialDescription"] == "second material"
    assert _materials(root, key_id, "ROTATIONS_ONLY") == []
    assert root.generate_data_key(KeyId=key_id, NumberOfBytes=32)["KeyMaterialId"] == m1  # not current yet
    err = import_error(root, key_id, third, ImportType="NEW_KEY_MATERIAL")
    assert err["Code"] == "KMSInvalidStateException"  # one material waits for rotation at a time

    assert root.rotate_key_on_demand(KeyId=key_id)["KeyId"] == meta["Arn"]
    assert root.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == m2
    new = root.generate_data_key(KeyId=key_id, NumberOfBytes=32)
    assert new["KeyMaterialId"] == m2
    opened = root.decrypt(CiphertextBlob=old["CiphertextBlob"])
    assert (opened["Plaintext"], opened["KeyMaterialId"]) == (old["Plaintext"], m1)
    rotations = _materials(root, key_id, "ROTATIONS_ONLY")
    assert [(r["KeyMaterialId"], r["KeyMaterialState"], r["RotationType"]) for r in rotations] == [
        (m2, "CURRENT", "ON_DEMAND")]
    assert "RotationDate" in rotations[0]
    assert [r["KeyMaterialState"] for r in _materials(root, key_id)] == ["NON_CURRENT", "CURRENT"]
    assert error(root.rotate_key_on_demand, KeyId=key_id)["Code"] == "KMSInvalidStateException"
    assert error(root.get_key_rotation_status, KeyId=key_id)["Code"] == "UnsupportedOperationException"

    # Re-importing old material (EXISTING is the default now) may change its expiry; the id must match if named.
    assert import_error(root, key_id, first, KeyMaterialId=m2)["Code"] == "IncorrectKeyMaterialException"
    import_material(root, key_id, first, KeyMaterialId=m1, ExpirationModel="KEY_MATERIAL_EXPIRES",
                    ValidTo=time.time() + 30 * DAY)
    listed = _materials(root, key_id)[0]
    assert (listed["KeyMaterialId"], listed["ExpirationModel"]) == (m1, "KEY_MATERIAL_EXPIRES") and listed["ValidTo"]

    # Deleting non-current material leaves the key PendingImport until it is back.
    assert root.delete_imported_key_material(KeyId=key_id, KeyMaterialId=m1)["KeyMaterialId"] == m1
    assert root.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingImport"
    assert _materials(root, key_id)[0]["ImportState"] == "PENDING_IMPORT"
    assert error(root.decrypt, CiphertextBlob=new["CiphertextBlob"])["Code"] == "KMSInvalidStateException"
    import_material(root, key_id, first)
    assert root.decrypt(CiphertextBlob=new["CiphertextBlob"])["Plaintext"] == new["Plaintext"]

    # Material waiting for rotation can be deleted outright (it was never part of the key); the key stays usable.
    m3 = import_material(root, key_id, third, ImportType="NEW_KEY_MATERIAL")["KeyMaterialId"]
    root.delete_imported_key_material(KeyId=key_id, KeyMaterialId=m3)
    assert [r["KeyMaterialId"] for r in _materials(root, key_id)] == [m1, m2]
    assert root.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    err = error(root.delete_imported_key_material, KeyId=key_id, KeyMaterialId=m3)
    assert err["Code"] == "NotFoundException"


def test_grants_on_an_imported_key_and_what_the_audit_records(kms: Clients, cluster: RunningCluster) -> None:
    root, app = kms("root"), kms("app")
    meta = external_key(root)
    import_material(root, meta["KeyId"], os.urandom(32))
    grant = root.create_grant(KeyId=meta["KeyId"], GranteePrincipal=APP_ARN, Operations=["Encrypt", "Decrypt"])
    blob = app.encrypt(KeyId=meta["KeyId"], Plaintext=b"granted", GrantTokens=[grant["GrantToken"]])[
        "CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob, GrantTokens=[grant["GrantToken"]])["Plaintext"] == b"granted"
    # The import operations are not grant operations: a grant cannot hand them out.
    err = error(root.create_grant, KeyId=meta["KeyId"], GranteePrincipal=APP_ARN, Operations=["ImportKeyMaterial"])
    assert err["Code"] == "ValidationException"
    # Deleting the material makes the grant useless until the material is back, as every other use.
    root.delete_imported_key_material(KeyId=meta["KeyId"])
    assert error(app.decrypt, CiphertextBlob=blob, GrantTokens=[grant["GrantToken"]])["Code"] == (
        "KMSInvalidStateException")

    def records() -> dict[str, dict[str, Any]] | None:
        found: dict[str, dict[str, Any]] = {}
        for path in cluster.data_dir.glob("us-east-1/audit/*.jsonl"):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                params = record.get("requestParameters") or {}
                if params.get("keyId") == meta["KeyId"]:
                    found.setdefault(record["eventName"], record)
        wanted = {"GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial"}
        return found if wanted <= set(found) else None

    found = poll(records, timeout=20)
    assert found["GetParametersForImport"]["requestParameters"] == {
        "keyId": meta["KeyId"], "wrappingAlgorithm": "RSAES_OAEP_SHA_256", "wrappingKeySpec": "RSA_2048"}
    assert found["GetParametersForImport"]["readOnly"] is True
    imported = found["ImportKeyMaterial"]
    assert imported["requestParameters"] == {"keyId": meta["KeyId"],
                                             "expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    assert imported["readOnly"] is False and imported["resources"][0]["ARN"] == meta["Arn"]


def test_hostile_import_requests_get_validation_errors_not_500s(root: Any) -> None:
    meta = external_key(root)
    params = root.get_parameters_for_import(KeyId=meta["KeyId"], WrappingAlgorithm="RSA_AES_KEY_WRAP_SHA_256",
                                            WrappingKeySpec="RSA_2048")
    base = {"KeyId": meta["KeyId"], "ImportToken": params["ImportToken"],
            "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}
    for material in (b"", os.urandom(6145)):
        assert error(root.import_key_material, EncryptedKeyMaterial=material, **base)["Code"] == "ValidationException"
    for junk in (os.urandom(257), os.urandom(256) + b"\0" * 8, os.urandom(6000)):
        assert error(root.import_key_material, EncryptedKeyMaterial=junk, **base)["Code"] == (
            "InvalidCiphertextException")
    # An RSA_AES_KEY_WRAP wrap whose AES part is tampered with.
    good = wrap(params["PublicKey"], "RSA_AES_KEY_WRAP_SHA_256", os.urandom(32))
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    assert error(root.import_key_material, EncryptedKeyMaterial=bad, **base)["Code"] == "InvalidCiphertextException"
    for extra in ({"KeyMaterialId": "Z" * 64}, {"KeyMaterialDescription": "no <html> here"},
                  {"ImportToken": os.urandom(6145)}, {"ImportType": "SOMETIMES"}):
        err = error(root.import_key_material, EncryptedKeyMaterial=good, **{**base, **extra})
        assert err["Code"] == "ValidationException" and err["Status"] == 400
    assert error(root.get_parameters_for_import, KeyId=meta["KeyId"], WrappingAlgorithm="ROT13",
                 WrappingKeySpec="RSA_2048")["Code"] == "ValidationException"
    assert error(root.import_key_material, KeyId="alias/nope", EncryptedKeyMaterial=good,
                 ImportToken=params["ImportToken"])["Code"] in ("NotFoundException", "ValidationException")
    assert root.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport"


def test_imported_material_and_its_expiry_survive_a_restart(root: Any, cluster: RunningCluster,
                                                           kms: Clients) -> None:
    meta = external_key(root)
    material = os.urandom(32)
    import_material(root, meta["KeyId"], material, ExpirationModel="KEY_MATERIAL_EXPIRES",
                    ValidTo=server_now(cluster) + 2 * DAY)
    blob = root.encrypt(KeyId=meta["KeyId"], Plaintext=b"durable")["CiphertextBlob"]
    cluster.restart()
    again = cluster.client("us-east-1")
    assert again.decrypt(CiphertextBlob=blob)["Plaintext"] == b"durable"
    assert again.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["ExpirationModel"] == "KEY_MATERIAL_EXPIRES"
    cluster.advance_clock("3d")
    poll(lambda: again.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "PendingImport", timeout=20)
