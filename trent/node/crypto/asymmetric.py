"""Asymmetric and HMAC cryptography over key material held in SecretBytes: key generation, signatures, RSA-OAEP,
ECDH, ML-KEM and HMAC. Pure functions; the operations in node/ops choose which to call and check the request first
(usage, algorithm, message type, lengths), so these receive only combinations the spec table allows.

Private keys are stored as PKCS#8 DER (ML-DSA and ML-KEM in seed form), HMAC keys as raw bytes. Nothing here logs,
formats or raises with secret bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from trent.node.crypto.handles import Material, SecretBytes, material_from_secret, new_material
from trent.node.model.errors import invalid_ciphertext
from trent.node.model.key import SYMMETRIC_DEFAULT
from trent.node.model.key_specs import DIGEST, EXTERNAL_MU, HMAC_KEY_BYTES

_CURVES: Mapping[str, Callable[[], ec.EllipticCurve]] = MappingProxyType({
    "ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1,
    "ECC_SECG_P256K1": ec.SECP256K1,
})
_RSA_BITS: Mapping[str, int] = MappingProxyType({"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096})
_GENERATORS: Mapping[str, Callable[[], PrivateKeyTypes]] = MappingProxyType({
    "ECC_NIST_EDWARDS25519": ed25519.Ed25519PrivateKey.generate,
    "ML_DSA_44": mldsa.MLDSA44PrivateKey.generate,
    "ML_DSA_65": mldsa.MLDSA65PrivateKey.generate,
    "ML_DSA_87": mldsa.MLDSA87PrivateKey.generate,
    "ML_KEM_768": mlkem.MLKEM768PrivateKey.generate,
    "ML_KEM_1024": mlkem.MLKEM1024PrivateKey.generate,
})
_ML_KEM_CIPHERTEXT: Mapping[str, int] = MappingProxyType({"ML_KEM_768": 1088, "ML_KEM_1024": 1568})
_HASHES: Mapping[str, Callable[[], hashes.HashAlgorithm]] = MappingProxyType({
    "SHA_1": hashes.SHA1, "SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512,
})
_HMAC_HASHES: Mapping[str, str] = MappingProxyType({
    "HMAC_SHA_224": "sha224", "HMAC_SHA_256": "sha256", "HMAC_SHA_384": "sha384", "HMAC_SHA_512": "sha512",
})
_MLDSA_PRIVATE = (mldsa.MLDSA44PrivateKey, mldsa.MLDSA65PrivateKey, mldsa.MLDSA87PrivateKey)
_MLDSA_PUBLIC = (mldsa.MLDSA44PublicKey, mldsa.MLDSA65PublicKey, mldsa.MLDSA87PublicKey)
_MLKEM_PRIVATE = (mlkem.MLKEM768PrivateKey, mlkem.MLKEM1024PrivateKey)


def can_generate(spec: str) -> bool:
    return spec in _CURVES or spec in _RSA_BITS or spec in _GENERATORS


def _generate(spec: str) -> PrivateKeyTypes:
    if spec in _CURVES:
        return ec.generate_private_key(_CURVES[spec]())
    if spec in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[spec])
    return _GENERATORS[spec]()


def generate_key_pair(spec: str) -> tuple[SecretBytes, bytes]:
    """A fresh key pair: (PKCS#8 DER private key, DER SubjectPublicKeyInfo)."""
    key = _generate(spec)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return SecretBytes(der, label="private-key"), _spki(key.public_key())


def new_key_material(spec: str, key_id: str, pairs: Callable[[str], tuple[SecretBytes, bytes]] | None = None
                     ) -> Material:
    """The first (and, except for symmetric keys, only) material version of a new key of ``spec``."""
    if spec == SYMMETRIC_DEFAULT:
        return new_material(key_id)
    if spec in HMAC_KEY_BYTES:
        return new_material(key_id, HMAC_KEY_BYTES[spec])
    private, _ = (pairs or generate_key_pair)(spec)
    return material_from_secret(private.reveal(), key_id)


def _spki(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _load(private: SecretBytes) -> PrivateKeyTypes:
    # The DER was produced by _generate and has been authenticated (AES-GCM under the root or transport key)
    # ever since, so RSA's consistency check (hundreds of milliseconds for RSA_4096) could only repeat a
    # check that cannot fail.
    return serialization.load_der_private_key(private.reveal(), None, unsafe_skip_rsa_key_validation=True)


def public_key_der(private: SecretBytes) -> bytes:
    """DER SubjectPublicKeyInfo of the key pair whose private half is ``private``."""
    return _spki(_load(private).public_key())


def _hash(algorithm: str) -> hashes.HashAlgorithm:
    # Every RSA/ECDSA/OAEP algorithm name ends in the hash it uses: ..._SHA_256, ..._SHA_1.
    return _HASHES[algorithm[algorithm.rindex("SHA_"):]]()


def _rsa_padding(algorithm: str, hash_: hashes.HashAlgorithm) -> padding.AsymmetricPadding:
    if algorithm.startswith("RSASSA_PSS_"):
        # AWS uses MGF1 with the same hash and a salt as long as the digest; PSS.MAX_LENGTH would not interoperate.
        return padding.PSS(mgf=padding.MGF1(hash_), salt_length=hash_.digest_size)
    return padding.PKCS1v15()


def _prehash(algorithm: str, message_type: str) -> hashes.HashAlgorithm | utils.Prehashed:
    hash_ = _hash(algorithm)
    # DIGEST: the caller already hashed the message; the signature must equal the one over the RAW message.
    return utils.Prehashed(hash_) if message_type == DIGEST else hash_


def sign(private: SecretBytes, algorithm: str, message: bytes, message_type: str) -> bytes:
    """Signature as AWS returns it: raw PKCS#1 / PSS bytes, DER ECDSA, raw Ed25519 and ML-DSA."""
    key = _load(private)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, _rsa_padding(algorithm, _hash(algorithm)), _prehash(algorithm, message_type))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(_prehash(algorithm, message_type)))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    if isinstance(key, _MLDSA_PRIVATE):
        # KMS signs with the empty context, as the FIPS 204 default.
        return key.sign_mu(message) if message_type == EXTERNAL_MU else key.sign(message)
    raise ValueError(f"{algorithm} cannot sign with this key")


def verify(private: SecretBytes, algorithm: str, message: bytes, message_type: str, signature: bytes) -> bool:
    public = _load(private).public_key()
    try:
        if isinstance(public, rsa.RSAPublicKey):
            hash_ = _hash(algorithm)
            public.verify(signature, message, _rsa_padding(algorithm, hash_), _prehash(algorithm, message_type))
        elif isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(signature, message, ec.ECDSA(_prehash(algorithm, message_type)))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, message)
        elif isinstance(public, _MLDSA_PUBLIC):
            if message_type == EXTERNAL_MU:
                public.verify_mu(signature, message)
            else:
                public.verify(signature, message)
        else:
            raise ValueError(f"{algorithm} cannot verify with this key")
    except InvalidSignature:
        return False
    return True


def _oaep(algorithm: str) -> padding.OAEP:
    # Same hash for OAEP and MGF1, empty label: what KMS uses and what OpenSSL/Java/Go produce by default.
    hash_ = _hash(algorithm)
    return padding.OAEP(mgf=padding.MGF1(hash_), algorithm=hash_, label=None)


def _rsa_private(private: SecretBytes) -> rsa.RSAPrivateKey:
    key = _load(private)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("RSA-OAEP needs an RSA key")
    return key


def oaep_encrypt(private: SecretBytes, algorithm: str, plaintext: bytes) -> bytes:
    """Raw RSA-OAEP ciphertext (modulus-sized); the caller has checked the plaintext limit."""
    return _rsa_private(private).public_key().encrypt(plaintext, _oaep(algorithm))


def oaep_decrypt(private: SecretBytes, algorithm: str, ciphertext: bytes) -> bytes:
    """Every failure (wrong key, wrong algorithm, tampering, wrong length) is the same opaque error."""
    try:
        return _rsa_private(private).decrypt(ciphertext, _oaep(algorithm))
    except ValueError:
        raise invalid_ciphertext() from None


def load_peer_public_key(der: bytes) -> ec.EllipticCurvePublicKey:
    """A peer's public key for ECDH; ValueError (with a message safe to show) if it is not an EC SPKI."""
    try:
        peer = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise ValueError("PublicKey is not a DER-encoded X.509 SubjectPublicKeyInfo.") from None
    if not isinstance(peer, ec.EllipticCurvePublicKey):
        raise ValueError("PublicKey is not an elliptic curve public key.")
    return peer


def ecdh(private: SecretBytes, peer_der: bytes) -> bytes:
    """Raw ECDH shared secret (the x coordinate: 32/48/66 bytes); ValueError for a peer key not on our curve."""
    key = _load(private)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("ECDH needs an elliptic curve key")
    peer = load_peer_public_key(peer_der)
    if peer.curve.name != key.curve.name:
        raise ValueError(f"PublicKey is on curve {peer.curve.name}; this key is on {key.curve.name}.")
    return key.exchange(ec.ECDH(), peer)


def _ml_kem(private: SecretBytes) -> mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey:
    key = _load(private)
    if not isinstance(key, _MLKEM_PRIVATE):
        raise ValueError("ML-KEM needs an ML-KEM key")
    return key


def ml_kem_ciphertext_length(spec: str) -> int:
    return _ML_KEM_CIPHERTEXT[spec]


def encapsulate(private: SecretBytes) -> tuple[bytes, bytes]:
    """(shared secret, ciphertext) under the key pair's public half."""
    shared, ciphertext = _ml_kem(private).public_key().encapsulate()
    return shared, ciphertext


def decapsulate(private: SecretBytes, ciphertext: bytes) -> bytes:
    """The shared secret; a ciphertext of the right length made for another key yields an unrelated secret
    (FIPS 203 implicit rejection), as KMS documents. The caller has checked the length."""
    key = _ml_kem(private)
    try:
        return key.decapsulate(ciphertext)
    except ValueError:
        raise invalid_ciphertext() from None


def hmac_tag(secret: SecretBytes, algorithm: str, message: bytes) -> bytes:
    """Plain RFC 2104 HMAC, as KMS computes it."""
    return hmac.digest(secret.reveal(), message, _HMAC_HASHES[algorithm])


def hmac_verify(secret: SecretBytes, algorithm: str, message: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(hmac_tag(secret, algorithm, message), tag)
