"""Import tokens that authenticate themselves: the token is the wrapping private key and what it is good for (key,
region, algorithm, expiry) sealed with AES-256-GCM under the region's root key. Nothing about a token is stored;
a token from another region (another root key), forged or altered does not open; the wrapping private key is
never anywhere but inside a token, so it too exists only wrapped under the root key."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from trent.node.crypto.handles import SecretBytes
from trent.node.crypto.rootkey import RootKey

_AAD = b"trent/v1/import-token\x00"
_VERSION = 1


@dataclass(frozen=True)
class ImportParameters:
    key_id: str
    region: str
    algorithm: str
    wrapping_spec: str
    valid_to: float
    private: SecretBytes  # PKCS#8 DER of the RSA wrapping key


class InvalidToken(Exception):
    """Not a token this region issued (no detail: which check failed would help a forger)."""


def seal(root: RootKey, p: ImportParameters) -> bytes:
    doc = {"v": _VERSION, "k": p.key_id, "r": p.region, "a": p.algorithm, "w": p.wrapping_spec, "t": p.valid_to,
           "p": p.private.reveal()}
    return root.wrap(SecretBytes(msgpack.packb(doc, use_bin_type=True), label="import-token"), _AAD)


def open_token(root: RootKey, token: bytes) -> ImportParameters:
    try:
        raw = root.unwrap(token, _AAD).reveal()
        doc = msgpack.unpackb(raw, raw=False)
        if not isinstance(doc, dict) or doc.get("v") != _VERSION:
            raise InvalidToken
        fields = (doc["k"], doc["r"], doc["a"], doc["w"])
        if not all(isinstance(f, str) for f in fields) or not isinstance(doc["t"], float | int) \
                or not isinstance(doc["p"], bytes):
            raise InvalidToken
        return ImportParameters(*fields, float(doc["t"]), SecretBytes(doc["p"], label="wrapping-key"))
    except (ValueError, KeyError, TypeError, msgpack.UnpackException):
        raise InvalidToken from None
