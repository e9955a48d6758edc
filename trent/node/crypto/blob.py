"""TRENT-V1 symmetric ciphertext blobs.

Layout (L = 36, the bare key id length)::

    0       1   marker 0xE1
    1       1   flags (bit0: multi-region key id; bit1: a custom key store's key, sealed in its HSM with the
                material id naming the token object and the iv as GCM nonce; any other bit -> reject)
    2       1   L
    3       L   key id, ASCII
    3+L     32  material id
    35+L    16  salt   (random per message)
    51+L    12  iv     (random per message)
    63+L    n   AES-256-GCM ciphertext
    63+L+n  16  GCM tag

Each message gets its own data key ``HKDF-SHA256(material, salt, "trent/v1/dek" || key id)`` so the
GCM (key, iv) pair never repeats across the 2^32-message random-IV bound of a single key. The whole
header (including salt and iv) plus the canonical encryption-context encoding is the GCM AAD, so no
header bit can be changed without failing authentication.
"""

from __future__ import annotations

import functools
import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trent.node.crypto.handles import MATERIAL_ID_LEN, Material
from trent.node.model.errors import KmsError, invalid_ciphertext

MARKER = 0xE1
FLAG_MULTI_REGION = 0x01
FLAG_KEY_STORE = 0x02
KEY_ID_LEN = 36
SALT_LEN = 16
IV_LEN = 12
TAG_LEN = 16

_MR_PREFIX = "mrk-"
_KEY_ID_OFF = 3
_MATERIAL_ID_OFF = _KEY_ID_OFF + KEY_ID_LEN  # 39
_SALT_OFF = _MATERIAL_ID_OFF + MATERIAL_ID_LEN  # 71
_IV_OFF = _SALT_OFF + SALT_LEN  # 87
HEADER_LEN = _IV_OFF + IV_LEN  # 99
OVERHEAD = HEADER_LEN + TAG_LEN  # 115 bytes added to every plaintext
_MIN_BLOB_LEN = OVERHEAD

_DEK_INFO = b"trent/v1/dek"
_U16_MAX = 0xFFFF
_U16 = struct.Struct(">H")
_SHA256_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))  # byte-wise XOR tables for bytes.translate
_OPAD = bytes(b ^ 0x5C for b in range(256))
# Bare key ids only: a lowercase UUID or mrk-<32 hex>. Matched on bytes so parsing needs no copy.
_KEY_ID_RE = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}")


def _ec_error() -> KmsError:
    # Deliberately does not echo the context: it is caller data and may be sensitive.
    return KmsError(
        "ValidationException",
        "Encryption context may have at most 65535 pairs, each key and value at most 65535 bytes.",
    )


def encode_encryption_context(ec: Mapping[str, str] | None) -> bytes:
    """Canonical, order-independent binary encoding of an encryption context (used as GCM AAD).

    Empty/absent -> b"". Otherwise ``u16 count`` then, sorted by UTF-8 key bytes,
    ``u16 len(k) || k || u16 len(v) || v``. Length prefixes make the encoding injective; JSON is
    avoided because its serialisation is not canonical.
    """
    if not ec:
        return b""
    if len(ec) > _U16_MAX:
        raise _ec_error()
    try:
        pairs = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in ec.items()]
    except UnicodeEncodeError:  # lone surrogates cannot be represented in UTF-8
        raise KmsError("ValidationException", "Encryption context must be valid UTF-8.") from None
    # Distinct str keys have distinct UTF-8 encodings, so sorting on the key alone is total.
    pairs.sort(key=lambda p: p[0])
    pack = _U16.pack
    parts = [pack(len(pairs))]
    for kb, vb in pairs:
        if len(kb) > _U16_MAX or len(vb) > _U16_MAX:
            raise _ec_error()
        parts.append(pack(len(kb)))
        parts.append(kb)
        parts.append(pack(len(vb)))
        parts.append(vb)
    return b"".join(parts)


@dataclass(frozen=True)
class BlobHeader:
    key_id: str
    material_id: bytes
    multi_region: bool
    key_store: bool = False


def parse_header(blob: bytes) -> BlobHeader:
    """Validate the fixed header and return the routing fields; raises opaque InvalidCiphertext."""
    if len(blob) < _MIN_BLOB_LEN or blob[0] != MARKER:
        raise invalid_ciphertext()
    flags = blob[1]
    if flags & ~(FLAG_MULTI_REGION | FLAG_KEY_STORE) or blob[2] != KEY_ID_LEN:
        raise invalid_ciphertext()
    # The regex is ASCII-only, so a match also proves the id decodes as ASCII.
    if _KEY_ID_RE.fullmatch(blob, _KEY_ID_OFF, _MATERIAL_ID_OFF) is None:
        raise invalid_ciphertext()
    key_id = blob[_KEY_ID_OFF:_MATERIAL_ID_OFF].decode("ascii")
    multi_region = bool(flags & FLAG_MULTI_REGION)
    if multi_region != key_id.startswith(_MR_PREFIX):
        raise invalid_ciphertext()
    return BlobHeader(
        key_id=key_id,
        material_id=blob[_MATERIAL_ID_OFF:_SALT_OFF],
        multi_region=multi_region,
        key_store=bool(flags & FLAG_KEY_STORE),
    )


def _hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) for a key of at most one block, as the KDF below uses it (16- and 32-byte keys).
    Two of these run per message; OpenSSL 3's one-shot HMAC (hmac.digest, cryptography's HKDF) costs twice as much
    per call, a MAC fetch each time, while hashlib's SHA-256 objects are cheap."""
    if len(key) > _SHA256_BLOCK:
        raise ValueError("HMAC key longer than one block")
    block = key.ljust(_SHA256_BLOCK, b"\0")
    return sha256(block.translate(_OPAD) + sha256(block.translate(_IPAD) + message).digest()).digest()


def _data_key(material: Material, salt: bytes, expand_info: bytes) -> bytes:
    """HKDF-SHA256 (RFC 5869) of one 32-byte block: PRK = HMAC(salt, material), then T(1) = HMAC(PRK, info || 1).
    The unit tests check it against cryptography's HKDF."""
    return _hmac_sha256(_hmac_sha256(salt, material.secret.reveal()), expand_info)


def _expand_info(key_id_ascii: bytes) -> bytes:
    return _DEK_INFO + key_id_ascii + b"\x01"


@functools.lru_cache(maxsize=4096)
def _fixed_header(key_id: str, material_id: bytes) -> tuple[bytes, bytes]:
    """The part of a blob's header that is the same for every message under one key version, and the KDF's expand
    input for the key. Checked and built once per key version, not once per message."""
    kid = key_id.encode("ascii", errors="replace")
    if _KEY_ID_RE.fullmatch(kid) is None:
        # Programming error (callers pass resolved bare ids), not a client error.
        raise ValueError("key id must be a bare key id (UUID or mrk-<32 hex>)")
    flags = FLAG_MULTI_REGION if key_id.startswith(_MR_PREFIX) else 0
    return bytes((MARKER, flags, KEY_ID_LEN)) + kid + material_id, _expand_info(kid)


def seal(
    key_id: str, material: Material, plaintext: bytes, encryption_context: Mapping[str, str] | None
) -> bytes:
    """Encrypt ``plaintext`` under ``material`` of ``key_id`` into a TRENT-V1 blob."""
    # Encode first so an invalid context fails before any randomness or crypto is spent.
    ec_bytes = encode_encryption_context(encryption_context) if encryption_context else b""
    fixed, expand_info = _fixed_header(key_id, material.material_id)
    salt_iv = os.urandom(SALT_LEN + IV_LEN)  # one syscall; salt and iv are adjacent on the wire
    header = fixed + salt_iv
    aesgcm = AESGCM(_data_key(material, salt_iv[:SALT_LEN], expand_info))
    ct = aesgcm.encrypt(salt_iv[SALT_LEN:], plaintext, header + ec_bytes if ec_bytes else header)
    return header + ct


def open_blob(blob: bytes, material: Material, encryption_context: Mapping[str, str] | None) -> bytes:
    """Decrypt a TRENT-V1 blob; every failure is the same opaque InvalidCiphertextException."""
    header = parse_header(blob)
    if header.material_id != material.material_id or header.key_store:
        raise invalid_ciphertext()
    ec_bytes = encode_encryption_context(encryption_context)
    view = memoryview(blob)  # slices below are zero-copy
    aesgcm = AESGCM(_data_key(material, blob[_SALT_OFF:_IV_OFF], _expand_info(blob[_KEY_ID_OFF:_MATERIAL_ID_OFF])))
    head = view[:HEADER_LEN]
    aad = head.tobytes() + ec_bytes if ec_bytes else head
    try:
        return aesgcm.decrypt(view[_IV_OFF:HEADER_LEN], view[HEADER_LEN:], aad)
    except InvalidTag:
        raise invalid_ciphertext() from None
