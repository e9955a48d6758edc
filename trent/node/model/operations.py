"""What is true of each KMS operation, declared once: the operation families (node/ops) declare their operations
with these, and the layers read them (the endpoint, authorization, the audit trail, grants).

Neutral on purpose: node/auth and node/audit import it without importing the operations themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trent.node.model.key import SYMMETRIC_DEFAULT, KeyRecord

if TYPE_CHECKING:
    from trent.node.ops.registry import Handler


@dataclass(frozen=True, slots=True)
class GrantScope:
    """The keys a grant may allow a grant operation on (the model's GrantOperation; CreateGrant checks it)."""

    usages: frozenset[str] | None = None  # the key usages whose keys allow it; None: every key
    # True: SYMMETRIC_DEFAULT keys only (data keys); False: never them (a public key is needed); None: either.
    symmetric: bool | None = None

    def allows(self, key: KeyRecord) -> bool:
        if self.usages is not None and key.key_usage not in self.usages:
            return False
        return self.symmetric is None or self.symmetric == (key.key_spec == SYMMETRIC_DEFAULT)


ANY_KEY = GrantScope()


def keys_for(*usages: str, symmetric: bool | None = None) -> GrantScope:
    return GrantScope(frozenset(usages), symmetric)


@dataclass(frozen=True, slots=True)
class KeyAction:
    """A request member naming a key, and the policy action (``kms:<action>``) the caller needs on that key."""

    member: str
    action: str
    # The member carrying the encryption context the action is decided with (policy conditions, grant constraints).
    context: str | None = None
    # When the action is also a grant operation: the keys a grant may allow it on.
    grant: GrantScope | None = None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)  # one of each: compared and hashed by identity
class Operation:
    name: str
    handler: Handler
    # Never commits: runs without the retry-on-conflict of several processes.
    read_only: bool = False
    # CloudTrail's readOnly, when it is not ``read_only`` (an operation refused until a later release, say).
    logged_read_only: bool | None = None
    # The keys it names, each with the action authorized on it. None named: authorized by IAM policy alone.
    keys: tuple[KeyAction, ...] = ()
    # A principal of another account may call it on a key ("Cross-account use: Yes" in the API reference); for
    # every other operation a key policy that allows another account has no effect.
    cross_account: bool = False
    # Also needs the action on the key its alias names now (DeleteAlias, UpdateAlias).
    alias_target: bool = False
    # Counts as a use of its key for GetKeyLastUsage (the model's KeyLastUsageTrackingOperation).
    usage_tracked: bool = False
    # The response members CloudTrail records (their non-secret parts); none: responseElements null.
    logged_response: tuple[str, ...] = ()
    # Deletes what names its key (an alias, a grant): the audit record's key is found before it runs.
    consumes_key_name: bool = False
    # A grant operation authorized otherwise than by one of ``keys`` (RetireGrant): the keys a grant may allow it on.
    grant: GrantScope | None = None

    @property
    def cloudtrail_read_only(self) -> bool:
        return self.read_only if self.logged_read_only is None else self.logged_read_only

    def grant_operations(self) -> dict[str, GrantScope]:
        """The grant operations it stands for (ReEncrypt: ReEncryptFrom and ReEncryptTo), each with its keys."""
        out = {a.action: a.grant for a in self.keys if a.grant is not None}
        if self.grant is not None:
            out[self.name] = self.grant
        return out
