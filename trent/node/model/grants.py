"""Grants: a key's per-region permissions for one grantee, limited to some operations and constraints."""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from trent.node.model.errors import KmsError

MAX_GRANTS_PER_KEY = 50000
TOKEN_PREFIX = b"\x01TG"


@dataclass(frozen=True)
class Constraints:
    ec_equals: Mapping[str, str] | None = None
    ec_subset: Mapping[str, str] | None = None
    source_arn: str | None = None

    def allows(self, encryption_context: Mapping[str, str] | None) -> bool:
        ec = dict(encryption_context or {})
        if self.ec_equals is not None and ec != dict(self.ec_equals):
            return False
        return self.ec_subset is None or all(ec.get(k) == v for k, v in self.ec_subset.items())

    def at_least_as_strict_as(self, other: Constraints) -> bool:
        """A grant made through a grant may only narrow what its parent allows."""
        if other.ec_equals is not None and (self.ec_equals is None or dict(self.ec_equals) != dict(other.ec_equals)):
            return False
        if other.ec_subset is not None:
            mine = dict(self.ec_equals or self.ec_subset or {})
            if any(mine.get(k) != v for k, v in other.ec_subset.items()):
                return False
        return other.source_arn is None or self.source_arn == other.source_arn

    def to_wire(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if self.ec_equals is not None:
            out["EncryptionContextEquals"] = dict(self.ec_equals)
        if self.ec_subset is not None:
            out["EncryptionContextSubset"] = dict(self.ec_subset)
        if self.source_arn is not None:
            out["SourceArn"] = self.source_arn
        return out or None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any] | None) -> Constraints:
        raw = raw or {}
        return cls(raw.get("EncryptionContextEquals"), raw.get("EncryptionContextSubset"), raw.get("SourceArn"))


@dataclass(frozen=True)
class GrantRecord:
    grant_id: str
    key_id: str
    created: float
    operations: tuple[str, ...]
    issuing_account: str
    grantee_principal: str | None = None
    grantee_service_principal: str | None = None
    retiring_principal: str | None = None
    retiring_service_principal: str | None = None
    name: str | None = None
    constraints: Constraints = field(default_factory=Constraints)

    def permits(self, principal_arn: str, operation: str, encryption_context: Mapping[str, str] | None, *,
                constrained: bool) -> bool:
        """``constrained``: the operation takes an encryption context (its declaration names the member), so the
        grant's encryption-context constraints apply to it, also when the request carries none."""
        if self.grantee_principal != principal_arn or operation not in self.operations:
            return False
        if constrained:
            return self.constraints.allows(encryption_context)
        return True

    def same_request(self, other: GrantRecord) -> bool:
        """Name idempotency: a retried CreateGrant with the same name and parameters gets the same grant."""
        return (self.grantee_principal, self.retiring_principal, set(self.operations), self.constraints,
                self.grantee_service_principal, self.retiring_service_principal) == (
            other.grantee_principal, other.retiring_principal, set(other.operations), other.constraints,
            other.grantee_service_principal, other.retiring_service_principal)


def new_grant_id() -> str:
    return secrets.token_hex(32)


def new_token(grant_id: str) -> str:
    """Opaque to clients; names the grant, with random bytes so every CreateGrant answer gets a fresh token."""
    raw = TOKEN_PREFIX + bytes.fromhex(grant_id) + secrets.token_bytes(32)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def grant_id_of_token(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KmsError("InvalidGrantTokenException", "The grant token is not valid.") from exc
    if len(raw) != len(TOKEN_PREFIX) + 64 or not raw.startswith(TOKEN_PREFIX):
        raise KmsError("InvalidGrantTokenException", "The grant token is not valid.")
    return raw[len(TOKEN_PREFIX):len(TOKEN_PREFIX) + 32].hex()


def encode_grant(grant: GrantRecord) -> bytes:
    c = grant.constraints
    doc = {"v": 1, "id": grant.grant_id, "key": grant.key_id, "created": grant.created, "ops": list(grant.operations),
           "acct": grant.issuing_account, "gp": grant.grantee_principal, "gsp": grant.grantee_service_principal,
           "rp": grant.retiring_principal, "rsp": grant.retiring_service_principal, "name": grant.name,
           "c": [dict(c.ec_equals) if c.ec_equals is not None else None,
                 dict(c.ec_subset) if c.ec_subset is not None else None, c.source_arn]}
    return bytes(msgpack.packb(doc, use_bin_type=True))


def decode_grant(raw: bytes) -> GrantRecord:
    doc = msgpack.unpackb(raw, raw=False)
    equals, subset, source = doc["c"]
    return GrantRecord(doc["id"], doc["key"], doc["created"], tuple(doc["ops"]), doc["acct"], doc["gp"], doc["gsp"],
                       doc["rp"], doc["rsp"], doc["name"], Constraints(equals, subset, source))
