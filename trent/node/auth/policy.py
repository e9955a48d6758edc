"""The IAM policy language as KMS key policies use it: parse and check a document, then evaluate it.

Evaluation follows AWS: an explicit Deny wins; otherwise an Allow grants; otherwise the request is implicitly
denied. A statement whose principal is the key's account (``arn:aws:iam::<acct>:root`` or ``<acct>``) does not by
itself allow a non-root principal: it delegates to that principal's identity (IAM) policies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from trent.node.auth.conditions import ConditionBlock, parse_conditions, wildcard
from trent.node.model.errors import KmsError

MAX_POLICY_BYTES = 32768
ALLOWED_CHARS_RE = re.compile(r"[\t\n\r\u0020-\u00ff]*")
ROOT_ARN_RE = re.compile(r"arn:aws[a-z-]*:iam::(\d{12}):root")
IAM_ARN_RE = re.compile(r"arn:aws[a-z-]*:(iam|sts)::(\d{12}):[\w+=,.@/-]+")
ACCOUNT_RE = re.compile(r"\d{12}")


def malformed(message: str) -> KmsError:
    return KmsError("MalformedPolicyDocumentException", message)


class Effect(Enum):
    ALLOW = "Allow"
    DENY = "Deny"


class Decision(Enum):
    EXPLICIT_DENY = "explicit-deny"
    ALLOW = "allow"
    # Allowed by a statement naming the principal's account: the principal's IAM policy must allow too.
    DELEGATED = "delegated"
    IMPLICIT_DENY = "implicit-deny"


@dataclass(frozen=True)
class Caller:
    arn: str
    account: str

    @property
    def is_root(self) -> bool:
        m = ROOT_ARN_RE.fullmatch(self.arn)
        return m is not None and m.group(1) == self.account


@dataclass(frozen=True)
class Request:
    caller: Caller
    action: str                      # "kms:Encrypt"
    resource: str                    # the key ARN ("*" for actions without a key)
    context: Mapping[str, Sequence[str]] = field(default_factory=dict)  # condition keys → values


@dataclass(frozen=True)
class Principals:
    anyone: bool = False
    accounts: frozenset[str] = frozenset()   # account principals (delegating to IAM)
    arns: frozenset[str] = frozenset()       # specific IAM users/roles
    services: frozenset[str] = frozenset()

    def matches(self, caller: Caller) -> str | None:
        """'direct' when the caller is named (or anyone is), 'account' when only its account is named."""
        if self.anyone or caller.arn in self.arns:
            return "direct"
        if caller.account in self.accounts:
            return "direct" if caller.is_root else "account"
        return None


@dataclass(frozen=True)
class Statement:
    effect: Effect
    principals: Principals | None
    not_principals: Principals | None
    actions: tuple[re.Pattern[str], ...] | None
    not_actions: tuple[re.Pattern[str], ...] | None
    resources: tuple[re.Pattern[str], ...] | None
    not_resources: tuple[re.Pattern[str], ...] | None
    conditions: ConditionBlock
    sid: str | None = None

    def principal_match(self, caller: Caller) -> str | None:
        if self.principals is not None:
            return self.principals.matches(caller)
        if self.not_principals is not None:
            return None if self.not_principals.matches(caller) else "direct"
        return None

    def applies(self, request: Request) -> str | None:
        """How this statement's principal matches, if it applies to ``request`` at all."""
        how = self.principal_match(request.caller)
        if how is None or not self._action_matches(request.action) or not self._resource_matches(request.resource):
            return None
        return how if self.conditions.holds(request.context) else None

    def _action_matches(self, action: str) -> bool:
        if self.actions is not None:
            return any(p.fullmatch(action) for p in self.actions)
        if self.not_actions is not None:
            return not any(p.fullmatch(action) for p in self.not_actions)
        return False  # a statement without Action is silently ineffective

    def _resource_matches(self, resource: str) -> bool:
        if self.resources is not None:
            return any(p.fullmatch(resource) for p in self.resources)
        if self.not_resources is not None:
            return not any(p.fullmatch(resource) for p in self.not_resources)
        return False


@dataclass(frozen=True)
class Policy:
    statements: tuple[Statement, ...]

    @property
    def conditional(self) -> bool:
        """Whether any statement has a Condition: if none has, a decision depends only on who, what and which key."""
        return any(s.conditions.conditions for s in self.statements)

    def evaluate(self, request: Request) -> Decision:
        allowed: str | None = None
        for statement in self.statements:
            how = statement.applies(request)
            if how is None:
                continue
            if statement.effect is Effect.DENY:
                return Decision.EXPLICIT_DENY
            if how == "direct" or allowed is None:
                allowed = how
        if allowed == "direct":
            return Decision.ALLOW
        if allowed == "account":
            return Decision.DELEGATED
        return Decision.IMPLICIT_DENY


def _strings(value: Any, what: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(i, str) for i in items):
        raise malformed(f"Policy contains a statement with an invalid {what}.")
    return items


def _principals(value: Any) -> Principals:
    if value == "*":
        return Principals(anyone=True)
    if not isinstance(value, dict) or not value:
        raise malformed("Policy contains a statement with one or more invalid principals.")
    anyone, accounts, arns, services = False, set(), set(), set()
    for kind, raw in value.items():
        for item in _strings(raw, "principal"):
            if kind == "AWS":
                if item == "*":
                    anyone = True
                elif ACCOUNT_RE.fullmatch(item):
                    accounts.add(item)
                elif (m := ROOT_ARN_RE.fullmatch(item)) is not None:
                    accounts.add(m.group(1))
                elif IAM_ARN_RE.fullmatch(item):
                    arns.add(item)
                else:
                    raise malformed("Policy contains a statement with one or more invalid principals.")
            elif kind == "Service":
                services.add(item)
            else:
                raise malformed("Policy contains a statement with one or more invalid principals.")
    return Principals(anyone, frozenset(accounts), frozenset(arns), frozenset(services))


def _actions(value: Any) -> tuple[re.Pattern[str], ...]:
    patterns = []
    for action in _strings(value, "action"):
        if action != "*" and ":" not in action:
            raise malformed(f"Policy contains an invalid action: {action}")
        patterns.append(wildcard(action, case_insensitive=True))
    return tuple(patterns)


def _resources(value: Any) -> tuple[re.Pattern[str], ...]:
    return tuple(wildcard(r) for r in _strings(value, "resource"))


def _statement(raw: Any) -> Statement:
    if not isinstance(raw, dict):
        raise malformed("Policy statements must be JSON objects.")
    effect = raw.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise malformed("Policy contains a statement with an invalid Effect; it must be Allow or Deny.")
    if ("Principal" in raw) == ("NotPrincipal" in raw):
        raise malformed("Policy contains a statement with one or more invalid principals.")
    if ("Action" in raw and "NotAction" in raw) or ("Resource" in raw and "NotResource" in raw):
        raise malformed("Policy contains a statement with both an element and its Not counterpart.")
    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise malformed("Policy contains a statement with an invalid Sid.")
    return Statement(
        effect=Effect(effect),
        principals=_principals(raw["Principal"]) if "Principal" in raw else None,
        not_principals=_principals(raw["NotPrincipal"]) if "NotPrincipal" in raw else None,
        actions=_actions(raw["Action"]) if "Action" in raw else None,
        not_actions=_actions(raw["NotAction"]) if "NotAction" in raw else None,
        resources=_resources(raw["Resource"]) if "Resource" in raw else None,
        not_resources=_resources(raw["NotResource"]) if "NotResource" in raw else None,
        conditions=parse_conditions(raw.get("Condition"), malformed),
        sid=sid,
    )


def parse_policy(text: str, *, key_policy: bool = True) -> Policy:
    """Check a policy document as KMS does (size, characters, JSON, grammar) and compile it for evaluation."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise KmsError("LimitExceededException",
                       f"The key policy exceeds the maximum size of {MAX_POLICY_BYTES} bytes.")
    if not ALLOWED_CHARS_RE.fullmatch(text):
        raise malformed("The policy contains characters outside tab, newline, carriage return and U+0020–U+00FF.")
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise malformed("The policy is not valid JSON.") from exc
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise malformed("The policy must be a JSON object with a Statement element.")
    version = doc.get("Version")
    if version is not None and version not in ("2012-10-17", "2008-10-17"):
        raise malformed(f"The policy Version {version!r} is not supported.")
    raw = doc["Statement"]
    statements = raw if isinstance(raw, list) else [raw]
    if key_policy:
        return Policy(tuple(_statement(s) for s in statements))
    # Identity (IAM) policies name no principal: the principal is whoever holds the policy.
    return Policy(tuple(_statement({**s, "Principal": "*"}) if isinstance(s, dict) else _statement(s)
                        for s in statements))
