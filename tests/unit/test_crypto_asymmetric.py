"""node/crypto/asymmetric.py and node/model/key_specs.py without a server: key generation for every spec,
signatures (RAW, DIGEST, EXTERNAL_MU) checked against `cryptography` directly, RSA-OAEP and its limits, ECDH,
ML-KEM, HMAC (RFC 4231 vectors), and non-32-byte material surviving the store and replication codecs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, padding, rsa

from trent.cluster.replication.commands import CommandCodec
from trent.node.crypto import asymmetric as crypto
from trent.node.crypto.handles import MAX_SECRET_LEN, MIN_SECRET_LEN, Material, SecretBytes, material_id_for
from trent.node.crypto.rootkey import RootKey
from trent.node.model import key_specs as specs
from trent.node.model.errors import KmsError
from trent.node.model.key import KeyRecord, MaterialVersion
from trent.node.model.mrk import KeySnapshot, MultiRegionState, SharedMaterial
from trent.node.model.states import KeyState
from trent.node.store.codec import RecordCodec

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
MRK_ID = "mrk-" + "ab" * 16
# Generated once: RSA generation is slow and these tests only need one key per spec.
_CACHE: dict[str, SecretBytes] = {}
GENERATED = ["RSA_2048", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521", "ECC_SECG_P256K1",
             "ECC_NIST_EDWARDS25519", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ML_KEM_768", "ML_KEM_1024"]
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512}


def private(spec: str) -> SecretBytes:
    if spec not in _CACHE:
        _CACHE[spec] = crypto.generate_key_pair(spec)[0]
    return _CACHE[spec]


def public(spec: str) -> object:
    return serialization.load_der_public_key(crypto.public_key_der(private(spec)))


def hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return HASHES[algorithm[algorithm.rindex("SHA_"):]]()


def external_mu(public_raw: bytes, message: bytes) -> bytes:
    """FIPS 204 μ computed independently: SHAKE256(SHAKE256(pk, 64) || 0x00 || len(ctx)=0 || message, 64)."""
    tr = hashlib.shake_256(public_raw).digest(64)
    return hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)


# -- key generation and material -----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", GENERATED)
def test_generated_pairs_are_pkcs8_and_spki(spec: str) -> None:
    secret, spki = crypto.generate_key_pair(spec)
    loaded = serialization.load_der_private_key(secret.reveal(), None)
    assert loaded.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo) == spki
    assert crypto.public_key_der(secret) == spki
    assert secret.reveal().hex() not in repr(secret)
    assert crypto.can_generate(spec)


@pytest.mark.parametrize("spec", ["SM2", "ML_KEM_512", "SYMMETRIC_DEFAULT", "HMAC_256"])
def test_specs_without_a_key_pair_cannot_be_generated(spec: str) -> None:
    assert not crypto.can_generate(spec)


@pytest.mark.parametrize(("spec", "length"), [("SYMMETRIC_DEFAULT", 32), ("HMAC_224", 28), ("HMAC_256", 32),
                                              ("HMAC_384", 48), ("HMAC_512", 64)])
def test_new_key_material_of_symmetric_and_hmac_specs(spec: str, length: int) -> None:
    m = crypto.new_key_material(spec, KEY_ID)
    assert len(m.secret) == length
    assert m.material_id == material_id_for(m.secret.reveal(), KEY_ID)
    assert crypto.new_key_material(spec, KEY_ID).secret != m.secret


def test_new_key_material_of_an_asymmetric_spec_is_its_private_key() -> None:
    m = crypto.new_key_material("ECC_NIST_P256", KEY_ID)
    key = serialization.load_der_private_key(m.secret.reveal(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert m.material_id == material_id_for(m.secret.reveal(), KEY_ID)


def test_material_accepts_every_secret_size_a_spec_can_have() -> None:
    for length in (MIN_SECRET_LEN, 32, 64, 2400, MAX_SECRET_LEN):
        raw = bytes([7]) * length
        Material(material_id_for(raw, KEY_ID), SecretBytes(raw))
    for length in (0, 16, MIN_SECRET_LEN - 1, MAX_SECRET_LEN + 1):
        raw = bytes([7]) * length
        with pytest.raises(ValueError) as info:
            Material(material_id_for(raw, KEY_ID), SecretBytes(raw))
        assert raw.hex() not in str(info.value) or not raw


def _record(key_id: str, spec: str, usage: str) -> KeyRecord:
    version = MaterialVersion(crypto.new_key_material(spec, key_id), 1.0)
    return KeyRecord(key_id=key_id, region="us-east-1", account="111122223333", created=1.0,
                     state=KeyState.ENABLED, key_spec=spec, key_usage=usage, materials=(version,),
                     current_material_id=version.material_id)


@pytest.mark.parametrize(("spec", "usage"), [("RSA_2048", "SIGN_VERIFY"), ("HMAC_224", "GENERATE_VERIFY_MAC"),
                                             ("ML_DSA_87", "SIGN_VERIFY"), ("HMAC_512", "GENERATE_VERIFY_MAC")])
def test_non_32_byte_material_survives_the_store_codec(spec: str, usage: str) -> None:
    codec = RecordCodec(RootKey.from_bytes(bytes(range(32))))
    key = _record(KEY_ID, spec, usage)
    raw = codec.encode_key(key)
    assert key.current_material().material.secret.reveal() not in raw  # only ever wrapped
    back = codec.decode_key(raw)
    assert back.current_material().material.secret == key.current_material().material.secret
    assert (back.key_spec, back.key_usage, back.current_material_id) == (spec, usage, key.current_material_id)


def test_non_32_byte_material_survives_the_replication_codec() -> None:
    codec = CommandCodec(RootKey.from_bytes(bytes([9]) * 32))
    key = _record(MRK_ID, "ECC_NIST_P384", "SIGN_VERIFY")
    hmac_version = crypto.new_key_material("HMAC_384", MRK_ID)
    snap = KeySnapshot(
        key_id=MRK_ID, origin_region="us-east-1", key_spec="ECC_NIST_P384", key_usage="SIGN_VERIFY",
        origin="AWS_KMS",
        materials=(SharedMaterial(key.current_material().material, 1.0, None), SharedMaterial(hmac_version, 2.0, None)),
        current_material_id=key.current_material_id, rotation_enabled=False, rotation_period_days=365,
        next_rotation=None, state=MultiRegionState("us-east-1", ("eu-west-1",), 1, 2),
    )
    raw = codec.encode(snap, "us-east-1", 5.0)
    assert key.current_material().material.secret.reveal() not in raw
    decoded, origin, _ = codec.decode(raw)
    assert isinstance(decoded, KeySnapshot) and origin == "us-east-1"
    assert [m.material.secret for m in decoded.materials] == [m.material.secret for m in snap.materials]
    assert decoded.key_spec == "ECC_NIST_P384"


# -- signatures ------------------------------------------------------------------------------------------------

SIGN_CASES = [(spec, alg) for spec in GENERATED for alg in specs.signing_algorithms(spec)
              if alg not in specs.UNSUPPORTED_SIGNING and not spec.startswith("ML_DSA")]


def local_verify(spec: str, algorithm: str, message: bytes, signature: bytes) -> None:
    key = public(spec)
    if isinstance(key, rsa.RSAPublicKey):
        h = hash_of(algorithm)
        pad: padding.AsymmetricPadding = (padding.PSS(padding.MGF1(h), h.digest_size) if "_PSS_" in algorithm
                                          else padding.PKCS1v15())
        key.verify(signature, message, pad, h)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, message, ec.ECDSA(hash_of(algorithm)))
    else:
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(signature, message)


@pytest.mark.parametrize(("spec", "algorithm"), SIGN_CASES)
def test_sign_raw_and_digest_agree_with_cryptography(spec: str, algorithm: str) -> None:
    message = b"the message"
    raw = crypto.sign(private(spec), algorithm, message, specs.RAW)
    local_verify(spec, algorithm, message, raw)
    assert crypto.verify(private(spec), algorithm, message, specs.RAW, raw)
    assert not crypto.verify(private(spec), algorithm, message + b".", specs.RAW, raw)
    assert not crypto.verify(private(spec), algorithm, message, specs.RAW, raw[:-1] + bytes([raw[-1] ^ 1]))
    if algorithm in specs.DIGEST_LENGTH:
        digest = hashlib.new(hash_of(algorithm).name, message).digest()
        assert len(digest) == specs.DIGEST_LENGTH[algorithm]
        signed_digest = crypto.sign(private(spec), algorithm, digest, specs.DIGEST)
        local_verify(spec, algorithm, message, signed_digest)
        assert crypto.verify(private(spec), algorithm, digest, specs.DIGEST, raw)
        assert crypto.verify(private(spec), algorithm, message, specs.RAW, signed_digest)


def test_pss_salt_is_the_digest_length() -> None:
    key = serialization.load_der_private_key(private("RSA_2048").reveal(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    sig = crypto.sign(private("RSA_2048"), "RSASSA_PSS_SHA_384", b"m", specs.RAW)
    key.public_key().verify(sig, b"m", padding.PSS(padding.MGF1(hashes.SHA384()), 48), hashes.SHA384())
    with pytest.raises(InvalidSignature):  # not the maximal salt cryptography would pick by default
        key.public_key().verify(sig, b"m", padding.PSS(padding.MGF1(hashes.SHA384()), 256 - 48 - 2),
                                hashes.SHA384())
    # A signature with another salt length is not what KMS makes, and KMS's Verify does not accept it.
    max_salt = key.sign(b"m", padding.PSS(padding.MGF1(hashes.SHA384()), padding.PSS.MAX_LENGTH), hashes.SHA384())
    assert not crypto.verify(private("RSA_2048"), "RSASSA_PSS_SHA_384", b"m", specs.RAW, max_salt)


@pytest.mark.parametrize("spec", ["ML_DSA_44", "ML_DSA_65", "ML_DSA_87"])
def test_ml_dsa_raw_and_external_mu(spec: str) -> None:
    key = public(spec)
    assert isinstance(key, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey)
    message = b"m" * 4096
    raw = crypto.sign(private(spec), "ML_DSA_SHAKE_256", message, specs.RAW)
    key.verify(raw, message)
    mu = external_mu(key.public_bytes_raw(), message)
    from_mu = crypto.sign(private(spec), "ML_DSA_SHAKE_256", mu, specs.EXTERNAL_MU)
    key.verify(from_mu, message)
    assert crypto.verify(private(spec), "ML_DSA_SHAKE_256", mu, specs.EXTERNAL_MU, raw)
    assert crypto.verify(private(spec), "ML_DSA_SHAKE_256", message, specs.RAW, from_mu)
    assert not crypto.verify(private(spec), "ML_DSA_SHAKE_256", message[:-1], specs.RAW, raw)


def test_ecdsa_signature_is_der() -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
    sig = crypto.sign(private("ECC_NIST_P521"), "ECDSA_SHA_512", b"m", specs.RAW)
    assert encode_dss_signature(*decode_dss_signature(sig)) == sig


# -- RSA-OAEP ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "algorithm", "limit"), [
    ("RSA_2048", "RSAES_OAEP_SHA_1", 214), ("RSA_3072", "RSAES_OAEP_SHA_1", 342), ("RSA_4096", "RSAES_OAEP_SHA_1", 470),
    ("RSA_2048", "RSAES_OAEP_SHA_256", 190), ("RSA_3072", "RSAES_OAEP_SHA_256", 318),
    ("RSA_4096", "RSAES_OAEP_SHA_256", 446),
])
def test_oaep_limits_match_the_reference(spec: str, algorithm: str, limit: int) -> None:
    assert specs.oaep_max_plaintext(spec, algorithm) == limit


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_oaep_round_trip_and_interop(algorithm: str) -> None:
    secret = private("RSA_2048")
    limit = specs.oaep_max_plaintext("RSA_2048", algorithm)
    blob = crypto.oaep_encrypt(secret, algorithm, b"p" * limit)
    assert len(blob) == 256
    assert crypto.oaep_decrypt(secret, algorithm, blob) == b"p" * limit
    key = public("RSA_2048")
    assert isinstance(key, rsa.RSAPublicKey)
    h = hashes.SHA1() if algorithm.endswith("SHA_1") else hashes.SHA256()
    local = key.encrypt(b"from outside", padding.OAEP(padding.MGF1(h), h, None))
    assert crypto.oaep_decrypt(secret, algorithm, local) == b"from outside"
    with pytest.raises(ValueError):  # the library agrees on the limit
        crypto.oaep_encrypt(secret, algorithm, b"p" * (limit + 1))


def test_oaep_failures_are_one_opaque_error() -> None:
    secret = private("RSA_2048")
    blob = crypto.oaep_encrypt(secret, "RSAES_OAEP_SHA_256", b"x")
    for algorithm, ciphertext in (("RSAES_OAEP_SHA_1", blob), ("RSAES_OAEP_SHA_256", blob[:-1]),
                                  ("RSAES_OAEP_SHA_256", bytes([blob[0] ^ 1]) + blob[1:])):
        with pytest.raises(KmsError) as info:
            crypto.oaep_decrypt(secret, algorithm, ciphertext)
        assert (info.value.code, info.value.message) == ("InvalidCiphertextException", None)


# -- ECDH and ML-KEM ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "curve", "length"), [("ECC_NIST_P256", ec.SECP256R1, 32),
                                                       ("ECC_NIST_P384", ec.SECP384R1, 48),
                                                       ("ECC_NIST_P521", ec.SECP521R1, 66)])
def test_ecdh_matches_the_peer(spec: str, curve: type[ec.EllipticCurve], length: int) -> None:
    peer = ec.generate_private_key(curve())
    peer_der = peer.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    ours = public(spec)
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    secret = crypto.ecdh(private(spec), peer_der)
    assert secret == peer.exchange(ec.ECDH(), ours) and len(secret) == length


def test_ecdh_refuses_foreign_peer_keys_without_leaking() -> None:
    secret = private("ECC_NIST_P256")
    other_curve = ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    not_ec = crypto.public_key_der(private("ECC_NIST_EDWARDS25519"))
    for peer, needle in ((other_curve, "secp384r1"), (not_ec, "elliptic curve"), (b"garbage", "DER")):
        with pytest.raises(ValueError) as info:
            crypto.ecdh(secret, peer)
        assert needle in str(info.value)
        assert secret.reveal().hex() not in str(info.value)


@pytest.mark.parametrize(("spec", "length"), [("ML_KEM_768", 1088), ("ML_KEM_1024", 1568)])
def test_ml_kem(spec: str, length: int) -> None:
    secret = private(spec)
    shared, ciphertext = crypto.encapsulate(secret)
    assert (len(shared), len(ciphertext), crypto.ml_kem_ciphertext_length(spec)) == (32, length, length)
    assert crypto.decapsulate(secret, ciphertext) == shared
    altered = crypto.decapsulate(secret, ciphertext[:-1] + bytes([ciphertext[-1] ^ 1]))
    assert len(altered) == 32 and altered != shared  # implicit rejection
    with pytest.raises(KmsError) as info:
        crypto.decapsulate(secret, ciphertext[:-1])
    assert info.value.code == "InvalidCiphertextException"


# -- HMAC --------------------------------------------------------------------------------------------------------

RFC4231_CASE_1 = {  # key = 0x0b * 20, data = "Hi There"
    "HMAC_SHA_224": "896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22",
    "HMAC_SHA_256": "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
    "HMAC_SHA_384": "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
                    "faea9ea9076ede7f4af152e8b2fa9cb6",
    "HMAC_SHA_512": "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                    "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
}


@pytest.mark.parametrize("algorithm", sorted(RFC4231_CASE_1))
def test_hmac_is_plain_rfc_2104(algorithm: str) -> None:
    secret = SecretBytes(b"\x0b" * 20)
    tag = crypto.hmac_tag(secret, algorithm, b"Hi There")
    assert tag.hex() == RFC4231_CASE_1[algorithm]
    assert crypto.hmac_verify(secret, algorithm, b"Hi There", tag)
    assert not crypto.hmac_verify(secret, algorithm, b"Hi There", tag[:-1] + bytes([tag[-1] ^ 1]))
    assert not crypto.hmac_verify(secret, algorithm, b"Hi There", tag[:8])
    assert not crypto.hmac_verify(secret, algorithm, b"Hi there", tag)


def test_hmac_of_generated_material() -> None:
    m = crypto.new_key_material("HMAC_384", KEY_ID)
    expected = hmac.new(m.secret.reveal(), b"msg", hashlib.sha384).digest()
    assert crypto.hmac_tag(m.secret, "HMAC_SHA_384", b"msg") == expected


# -- the spec table ----------------------------------------------------------------------------------------------

def test_algorithm_lists_name_exactly_one_list_per_usage() -> None:
    assert specs.algorithm_lists("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT") == {
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"]}
    assert specs.algorithm_lists("RSA_4096", "ENCRYPT_DECRYPT") == {
        "EncryptionAlgorithms": ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]}
    assert specs.algorithm_lists("RSA_3072", "SIGN_VERIFY")["SigningAlgorithms"][0] == "RSASSA_PKCS1_V1_5_SHA_256"
    assert specs.algorithm_lists("ECC_NIST_P521", "SIGN_VERIFY") == {"SigningAlgorithms": ["ECDSA_SHA_512"]}
    assert specs.algorithm_lists("ECC_NIST_P384", "KEY_AGREEMENT") == {"KeyAgreementAlgorithms": ["ECDH"]}
    assert specs.algorithm_lists("ML_KEM_1024", "ENCAPSULATE_DECAPSULATE") == {"EncapsulationAlgorithms": ["ML_KEM"]}
    assert specs.algorithm_lists("HMAC_224", "GENERATE_VERIFY_MAC") == {"MacAlgorithms": ["HMAC_SHA_224"]}
    for spec, usages in specs.USAGES.items():
        for usage in usages:
            assert len(specs.algorithm_lists(spec, usage)) == 1, (spec, usage)


def test_usage_table() -> None:
    assert specs.USAGES["ECC_SECG_P256K1"] == ("SIGN_VERIFY",)
    assert specs.USAGES["ECC_NIST_EDWARDS25519"] == ("SIGN_VERIFY",)
    assert set(specs.USAGES["ECC_NIST_P256"]) == {"SIGN_VERIFY", "KEY_AGREEMENT"}
    assert set(specs.USAGES["RSA_2048"]) == {"ENCRYPT_DECRYPT", "SIGN_VERIFY"}
    assert specs.is_asymmetric("ML_KEM_768") and not specs.is_asymmetric("HMAC_256")
    assert not specs.is_asymmetric("SYMMETRIC_DEFAULT")
    assert set(specs.UNSUPPORTED_SPECS) == {"SM2", "ML_KEM_512"}
