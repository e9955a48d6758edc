"""Operation facts as the tables they once were, derived from the declarations: for the audit log read back by
name, and for tests that hold the declarations to the service model and the API reference."""

from __future__ import annotations

from collections.abc import Iterable

from trent.node.model.operations import GrantScope, Operation

KeyActions = dict[str, tuple[tuple[str, str, str | None], ...]]


def key_actions(operations: Iterable[Operation]) -> KeyActions:
    """Operation → (request member naming the key, action, encryption-context member), for those naming keys."""
    return {op.name: tuple((a.member, a.action, a.context) for a in op.keys) for op in operations if op.keys}


def cross_account(operations: Iterable[Operation]) -> frozenset[str]:
    return frozenset(op.name for op in operations if op.cross_account)


def usage_tracked(operations: Iterable[Operation]) -> frozenset[str]:
    return frozenset(op.name for op in operations if op.usage_tracked)


def logged_responses(operations: Iterable[Operation]) -> dict[str, tuple[str, ...]]:
    return {op.name: op.logged_response for op in operations if op.logged_response}


def cloudtrail_read_only(operations: Iterable[Operation]) -> frozenset[str]:
    return frozenset(op.name for op in operations if op.cloudtrail_read_only)


def consumes_key_name(operations: Iterable[Operation]) -> frozenset[str]:
    return frozenset(op.name for op in operations if op.consumes_key_name)


def grant_operations(operations: Iterable[Operation]) -> dict[str, GrantScope]:
    """Every grant operation with the keys a grant may allow it on."""
    return {name: scope for op in operations for name, scope in op.grant_operations().items()}


def context_grant_operations(operations: Iterable[Operation]) -> frozenset[str]:
    """The grant operations that take an encryption context: a grant's EC constraints apply to them."""
    return frozenset(a.action for op in operations for a in op.keys if a.grant is not None and a.context is not None)
