"""Policy Condition blocks: operators, ...IfExists, ForAnyValue:/ForAllValues:, and the request context.

Condition keys are case-insensitive (held lowercase); values are strings. An operator this module does not know
never holds, so an unknown operator can deny but never allow.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from trent.node.model.errors import KmsError

Compare = Callable[[str, str], bool]


@functools.lru_cache(maxsize=1024)
def wildcard(pattern: str, *, case_insensitive: bool = False) -> re.Pattern[str]:
    """IAM wildcards: * any run, ? one character."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if case_insensitive else re.DOTALL)


def _wild(pattern: str, value: str) -> bool:
    return wildcard(pattern).fullmatch(value) is not None


def _number(a: str, b: str, op: Callable[[float, float], bool]) -> bool:
    try:
        return op(float(a), float(b))
    except ValueError:
        return False


def _when(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _date(a: str, b: str, op: Callable[[float, float], bool]) -> bool:
    x, y = _when(a), _when(b)
    return x is not None and y is not None and op(x, y)


def _ip(value: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


# operator → (compare(context_value, policy_value), negated)
OPERATORS: dict[str, tuple[Compare, bool]] = {
    "stringequals": (lambda v, p: v == p, False),
    "stringnotequals": (lambda v, p: v == p, True),
    "stringequalsignorecase": (lambda v, p: v.lower() == p.lower(), False),
    "stringnotequalsignorecase": (lambda v, p: v.lower() == p.lower(), True),
    "stringlike": (lambda v, p: _wild(p, v), False),
    "stringnotlike": (lambda v, p: _wild(p, v), True),
    "numericequals": (lambda v, p: _number(v, p, float.__eq__), False),
    "numericnotequals": (lambda v, p: _number(v, p, float.__eq__), True),
    "numericlessthan": (lambda v, p: _number(v, p, float.__lt__), False),
    "numericlessthanequals": (lambda v, p: _number(v, p, float.__le__), False),
    "numericgreaterthan": (lambda v, p: _number(v, p, float.__gt__), False),
    "numericgreaterthanequals": (lambda v, p: _number(v, p, float.__ge__), False),
    "dateequals": (lambda v, p: _date(v, p, float.__eq__), False),
    "datenotequals": (lambda v, p: _date(v, p, float.__eq__), True),
    "datelessthan": (lambda v, p: _date(v, p, float.__lt__), False),
    "datelessthanequals": (lambda v, p: _date(v, p, float.__le__), False),
    "dategreaterthan": (lambda v, p: _date(v, p, float.__gt__), False),
    "dategreaterthanequals": (lambda v, p: _date(v, p, float.__ge__), False),
    "bool": (lambda v, p: v.lower() == p.lower(), False),
    "arnequals": (lambda v, p: _wild(p, v), False),
    "arnlike": (lambda v, p: _wild(p, v), False),
    "arnnotequals": (lambda v, p: _wild(p, v), True),
    "arnnotlike": (lambda v, p: _wild(p, v), True),
    "ipaddress": (_ip, False),
    "notipaddress": (_ip, True),
}


@dataclass(frozen=True)
class Condition:
    operator: str          # lowercase, without prefix/suffix
    key: str               # lowercase condition key
    values: tuple[str, ...]
    set_op: str | None     # "foranyvalue" | "forallvalues" | None
    if_exists: bool

    def holds(self, context: Mapping[str, Sequence[str]]) -> bool:
        present = context.get(self.key)
        if self.operator == "null":
            wants_absent = any(v.lower() == "true" for v in self.values)
            return (not present) == wants_absent
        known = OPERATORS.get(self.operator)
        if known is None:
            return False  # unknown operators never allow
        compare, negated = known
        if not present:
            if self.set_op == "forallvalues":
                return True
            return self.if_exists or (negated and self.set_op is None)

        def matches(value: str) -> bool:
            return any(compare(value, p) for p in self.values)

        if self.set_op == "forallvalues":
            return all(matches(v) != negated for v in present)
        if self.set_op == "foranyvalue":
            return any(matches(v) != negated for v in present)
        if negated:
            return not any(matches(v) for v in present)
        return any(matches(v) for v in present)


@dataclass(frozen=True)
class ConditionBlock:
    conditions: tuple[Condition, ...] = ()

    def holds(self, context: Mapping[str, Sequence[str]]) -> bool:
        return all(c.holds(context) for c in self.conditions)


def scalar(value: object) -> str | None:
    """A condition value as the string it is compared as; None for what is not a string, number or boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


def parse_conditions(raw: object, malformed: Callable[[str], KmsError]) -> ConditionBlock:
    if raw is None:
        return ConditionBlock()
    if not isinstance(raw, dict):
        raise malformed("Policy contains a statement with an invalid Condition element.")
    out: list[Condition] = []
    for operator, entries in raw.items():
        if not isinstance(operator, str) or not isinstance(entries, dict):
            raise malformed("Policy contains a statement with an invalid Condition element.")
        name = operator.lower()
        set_op = None
        for prefix in ("foranyvalue:", "forallvalues:"):
            if name.startswith(prefix):
                set_op, name = prefix[:-1], name[len(prefix):]
        if_exists = name.endswith("ifexists")
        name = name.removesuffix("ifexists")
        for key, value in entries.items():
            given = value if isinstance(value, list) else [value]
            values = tuple(s for s in map(scalar, given) if s is not None)
            if len(values) != len(given):
                raise malformed(f"Policy contains an invalid value for condition key {key}.")
            out.append(Condition(name, str(key).lower(), values, set_op, if_exists))
    return ConditionBlock(tuple(out))
