"""Imported key material without a network: the wrapping algorithms against `cryptography` doing the client side,
the import token's binding, what each key spec accepts, and the catalogue rules (ImportType, deletion, expiry,
rotation) as pure functions."""

from __future__ import annotations

import os
import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.e2e.byok import pkcs8, wrap
from trent.node.crypto.asymmetric import generate_key_pair
from trent.node.crypto.handles import Material, SecretBytes, material_id_for
from trent.node.crypto.import_token import ImportParameters, InvalidToken, open_token, seal
from trent.node.crypto.rootkey import RootKey
from trent.node.crypto.wrapping import BadMaterial, UnwrapFailed, canonical_material, combination_error, unwrap
from trent.node.crypto.wrapping_keys import WrappingKeys
from trent.node.model.errors import KmsError, NotReady
from trent.node.model.imported import (
    DOES_NOT_EXPIRE,
    EXPIRES,
    ImportRequest,
    apply_import,
    catalogue,
    check_expiration,
    delete_material,
    expire,
    expiry_due,
    material_state,
    rotate_in,
)
from trent.node.model.key import KeyRecord
from trent.node.model.states import KeyState

T0 = 1_800_000_000.0
KEY = "1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture(scope="module")
def wrapping() -> tuple[SecretBytes, bytes]:
    return generate_key_pair("RSA_2048")


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSA_AES_KEY_WRAP_SHA_1",
                                       "RSA_AES_KEY_WRAP_SHA_256"])
def test_every_wrapping_algorithm_unwraps_what_a_client_wrapped(wrapping: tuple[SecretBytes, bytes],
                                                                algorithm: str) -> None:
    private, public = wrapping
    material = os.urandom(32)
    assert unwrap(private, "RSA_2048", algorithm, wrap(public, algorithm, material)).reveal() == material
    other = "RSAES_OAEP_SHA_1" if algorithm.endswith("256") else "RSAES_OAEP_SHA_256"
    with pytest.raises(UnwrapFailed):
        unwrap(private, "RSA_2048", algorithm, wrap(public, other, material))
    with pytest.raises(UnwrapFailed):
        unwrap(private, "RSA_2048", algorithm, os.urandom(300))


def test_material_each_spec_accepts() -> None:
    assert canonical_material(SecretBytes(b"k" * 32), "SYMMETRIC_DEFAULT").reveal() == b"k" * 32
    for bad, spec in ((b"k" * 16, "SYMMETRIC_DEFAULT"), (b"k" * 27, "HMAC_224"), (b"k" * 65, "HMAC_256"),
                      (b"k" * 47, "HMAC_384"), (b"k" * 129, "HMAC_512"), (b"not der" * 10, "ECC_NIST_P256")):
        with pytest.raises(BadMaterial):
            canonical_material(SecretBytes(bad), spec)
    p256 = pkcs8(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(BadMaterial, match="not one of key spec ECC_NIST_P384"):
        canonical_material(SecretBytes(p256), "ECC_NIST_P384")
    with pytest.raises(BadMaterial):
        canonical_material(SecretBytes(pkcs8(rsa.generate_private_key(65537, 2048))), "RSA_3072")
    assert canonical_material(SecretBytes(p256), "ECC_NIST_P256").reveal() == p256
    # The same keys in PKCS #1 / SEC1 (which the library would load) are not what AWS takes.
    traditional = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    with pytest.raises(BadMaterial, match="PKCS #8"):
        canonical_material(SecretBytes(traditional), "ECC_NIST_P256")
    rsa_key = rsa.generate_private_key(65537, 2048)
    pkcs1 = rsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
    with pytest.raises(BadMaterial, match="PKCS #8"):
        canonical_material(SecretBytes(pkcs1), "RSA_2048")
    assert canonical_material(SecretBytes(pkcs8(rsa_key)), "RSA_2048").reveal() == pkcs8(rsa_key)


def test_combination_rules() -> None:
    assert combination_error("RSAES_OAEP_SHA_256", "RSA_4096", "RSA_2048") is not None
    assert combination_error("RSA_AES_KEY_WRAP_SHA_256", "RSA_2048", "RSA_4096") is None
    assert combination_error("RSAES_OAEP_SHA_1", "RSA_2048", "ECC_NIST_P521") is not None
    assert combination_error("RSAES_OAEP_SHA_1", "RSA_3072", "ECC_NIST_P521") is None
    assert combination_error("RSAES_OAEP_SHA_256", "RSA_2048", "SYMMETRIC_DEFAULT") is None


def test_the_token_opens_only_under_its_root_key_and_unaltered(wrapping: tuple[SecretBytes, bytes]) -> None:
    root, other = RootKey.from_bytes(os.urandom(32)), RootKey.from_bytes(os.urandom(32))
    params = ImportParameters(KEY, "us-east-1", "RSAES_OAEP_SHA_256", "RSA_2048", T0, wrapping[0])
    token = seal(root, params)
    opened = open_token(root, token)
    assert (opened.key_id, opened.region, opened.valid_to) == (KEY, "us-east-1", T0)
    assert opened.private == wrapping[0]
    assert wrapping[0].reveal() not in token  # the wrapping private key travels sealed
    for bad in (token[:-1], token[:20] + bytes([token[20] ^ 1]) + token[21:], b"", os.urandom(64)):
        with pytest.raises(InvalidToken):
            open_token(root, bad)
    with pytest.raises(InvalidToken):
        open_token(other, token)


def test_wrapping_keys_are_never_generated_on_the_callers_thread() -> None:
    made: list[tuple[str, str]] = []
    release = threading.Event()  # generation lasts until the test has asked twice

    def generate(spec: str) -> tuple[SecretBytes, bytes]:
        made.append((spec, threading.current_thread().name))
        release.wait(10)
        return SecretBytes(os.urandom(64)), spec.encode()

    keys = WrappingKeys(lambda spec: None, generate, lambda spec: None)  # a pool that never has one ready
    with pytest.raises(NotReady) as first:
        keys.take("RSA_4096")
    with pytest.raises(NotReady) as second:
        keys.take("RSA_4096")  # the same generation, not a second one
    assert second.value.ready is first.value.ready
    release.set()
    pair = first.value.ready.result(timeout=10)
    assert keys.take("RSA_4096") is pair and keys.take("RSA_4096") is pair
    assert made == [("RSA_4096", "trent-wrapping-key")]
    ready = (SecretBytes(b"r" * 64), b"ready")
    assert WrappingKeys(lambda spec: ready, generate, lambda spec: None).take("RSA_2048") is ready


def _key(**changes: object) -> KeyRecord:
    return KeyRecord(key_id=KEY, region="us-east-1", account="111122223333", created=T0,
                     state=KeyState.PENDING_IMPORT, origin="EXTERNAL").with_changes(**changes)


def _request(raw: bytes, import_type: str | None = None, **changes: object) -> ImportRequest:
    material = Material(material_id_for(raw, KEY), SecretBytes(raw))
    base = dict(material=material, import_type=import_type, material_id=None, expiration_model=DOES_NOT_EXPIRE,
                valid_to=None, description=None, now=T0, replica=False)
    base.update(changes)
    return ImportRequest(**base)  # type: ignore[arg-type]


def test_import_rules_new_existing_and_deletion() -> None:
    a, b = os.urandom(32), os.urandom(32)
    key = apply_import(_key(), _request(a))
    assert key.state is KeyState.ENABLED and key.current_material_id == material_id_for(a, KEY)
    with pytest.raises(KmsError) as info:
        apply_import(key, _request(b))  # omitted after the first: EXISTING, and b is not known
    assert info.value.code == "IncorrectKeyMaterialException"
    with pytest.raises(KmsError) as info:
        apply_import(key, _request(b, "NEW_KEY_MATERIAL", material_id="ab" * 32))
    assert info.value.code == "ValidationException"
    with pytest.raises(KmsError) as info:
        apply_import(key, _request(b, "NEW_KEY_MATERIAL", replica=True))
    assert info.value.code == "UnsupportedOperationException"
    pending = apply_import(key, _request(b, "NEW_KEY_MATERIAL"))
    entries = catalogue(pending)
    assert [material_state(pending, e) for e in entries] == ["CURRENT", "PENDING_ROTATION"]
    rotated = rotate_in(pending, T0 + 5)
    assert rotated.current_material_id == material_id_for(b, KEY)
    gone = delete_material(rotated, material_id_for(a, KEY))
    assert gone.state is KeyState.PENDING_IMPORT and gone.material(material_id_for(a, KEY)) is None
    back = apply_import(gone, _request(a))
    assert back.state is KeyState.ENABLED and back.material(material_id_for(a, KEY)) is not None


def test_expiry_deletes_exactly_the_material_whose_valid_to_passed() -> None:
    a = os.urandom(32)
    key = apply_import(_key(), _request(a, expiration_model=EXPIRES, valid_to=T0 + 100))
    assert expiry_due(key) == T0 + 100
    same, none = expire(key, T0 + 99)
    assert none == [] and same.state is KeyState.ENABLED
    expired, gone = expire(key, T0 + 100)
    assert gone == [material_id_for(a, KEY)] and expired.state is KeyState.PENDING_IMPORT
    assert expiry_due(expired) is None
    assert catalogue(expired)[0].import_state == "PENDING_IMPORT"


def test_expiration_parameters() -> None:
    assert check_expiration(None, T0 + 10, T0) == (EXPIRES, T0 + 10)
    assert check_expiration(DOES_NOT_EXPIRE, None, T0) == (DOES_NOT_EXPIRE, None)
    for model, valid_to in ((None, None), (EXPIRES, T0), (EXPIRES, T0 + 366 * 86400), (DOES_NOT_EXPIRE, T0 + 5)):
        with pytest.raises(KmsError):
            check_expiration(model, valid_to, T0)


def test_a_multi_region_snapshot_of_imported_material_carries_ids_never_bytes() -> None:
    from trent.cluster.replication.commands import CommandCodec
    from trent.node.model.mrk import MultiRegionState
    from trent.node.model.mrk_rules import apply_snapshot, snapshot_of

    raw = os.urandom(32)
    key = apply_import(_key(key_id="mrk-" + "a" * 32, multi_region=True,
                            mrk=MultiRegionState("us-east-1", ("eu-west-1",), 1, 1)), _request(raw))
    snap = snapshot_of(key)
    assert snap.materials == () and [s.material_id for s in snap.imported] == [key.current_material_id]
    codec = CommandCodec(RootKey.from_bytes(os.urandom(32)))
    decoded, _, _ = codec.decode(codec.encode(snap, "us-east-1", T0))
    assert decoded == snap
    existing = key.with_changes(region="eu-west-1", materials=(), state=KeyState.ENABLED, extra={},
                                mrk=MultiRegionState("us-east-1", ("eu-west-1",), 1, 0))
    replica, _ = apply_snapshot("eu-west-1", "111122223333", existing, snap, T0, 0.0)
    assert replica is not None and replica.materials == () and replica.state is KeyState.PENDING_IMPORT
    assert [e.import_state for e in catalogue(replica)] == ["PENDING_IMPORT"]
