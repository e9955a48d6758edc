"""Server-side request decoding and validation against the botocore KMS service model.

botocore only checks required members, types and minimums client-side; maxima, enums, patterns and blob
lengths reach the server, and real KMS rejects them with a ``ValidationException`` listing the violated
constraints (ten at most). This module reproduces that from the model alone, so no constraint is hand-written
here.

Each shape is compiled once, at construction, into a closure ``(value, path, errors) -> decoded`` that
type-checks (raising ``SerializationException`` at once, as AWS's deserialiser does before validation),
converts (base64 blobs to bytes, timestamps to float) and appends constraint-violation clauses to
``errors`` (MAX_CLAUSES at most). ``decode`` joins the clauses into AWS's message. The hot path (Encrypt of a
small plaintext) is a handful of dict lookups, ``len`` calls and one C base64 decode.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape

from trent.node.model.errors import KmsError, serialization, validation
from trent.node.wire.java_regex import translate_java_regex

_BAD_BASE64 = "Could not decode the value as base64"
# AWS's validator (Coral) stops at ten violations: its message then says "10 validation errors detected" and lists
# those ten, however many more the request holds. Past that, decoding only type-checks, and builds no clause.
MAX_CLAUSES = 10

# (raw JSON value, path of that value, violation clauses so far) -> decoded value.
Decoder = Callable[[Any, str, list[str]], Any]

# Java's Integer / Long ranges: Coral cannot deserialise a number outside them.
_INT_RANGES = MappingProxyType({"integer": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)})

# Java's `.` (no DOTALL, no UNIX_LINES) excludes all of these; Python's excludes only \n.
def member_path_name(name: str) -> str:
    """AWS reports members with the first letter lowercased: KeySpec -> keySpec."""
    return name[:1].lower() + name[1:]


def _render(value: object) -> str:
    """A JSON value as AWS (Java toString) shows it in validation messages."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _clause(value: object, omit: bool, path: str, rule: str) -> str:
    shown = "Value" if omit else f"Value '{_render(value)}'"
    return f"{shown} at '{path}' failed to satisfy constraint: Member must {rule}"


def _null_clause(path: str) -> str:
    return f"Value null at '{path}' failed to satisfy constraint: Member must not be null"


def _violation(errors: list[str], value: object, omit: bool, path: str, rule: str) -> None:
    """Record one violated constraint, while fewer than MAX_CLAUSES are (a request may hold thousands)."""
    if len(errors) < MAX_CLAUSES:
        errors.append(_clause(value, omit, path, rule))


def _missing(errors: list[str], path: str) -> None:
    if len(errors) < MAX_CLAUSES:
        errors.append(_null_clause(path))


def _json_token(value: object) -> str:
    if value is True:
        return "TRUE_VALUE"
    if value is False:
        return "FALSE_VALUE"
    if isinstance(value, str):
        return "STRING_VALUE"
    if value is None:
        return "NULL_VALUE"
    return "NUMBER_VALUE"


def _type_error(value: object, target: str) -> KmsError:
    """SerializationException in the style of AWS's (Coral/Jackson) deserialiser."""
    if isinstance(value, dict):
        return serialization("Start of structure or map found where not expected.")
    if isinstance(value, list):
        return serialization("Start of list found where not expected")
    return serialization(f"{_json_token(value)} can not be converted to {target}")


def _length_checks(shape: Shape) -> tuple[int, float, str, str]:
    """(min, max, min rule, max rule) for a length-constrained shape; -1 / huge when unconstrained."""
    lo = shape.metadata.get("min", -1)
    hi = shape.metadata.get("max", math.inf)
    return (
        lo if lo > 0 else -1,
        hi,
        f"have length greater than or equal to {lo}",
        f"have length less than or equal to {hi}",
    )


class RequestDecoder:
    """Decodes and validates KMS JSON request bodies per operation, as the AWS endpoint does."""

    def __init__(self, service_model: ServiceModel) -> None:
        # Shape name -> compiled decoder; shapes are shared between operations, so compile each once.
        self._shape_decoders: dict[str, Decoder] = {}
        self._omit: dict[str, bool] = {}
        # Patterns the translator could not express; left unenforced rather than enforced wrongly.
        self.unenforced_patterns: dict[str, str] = {}
        self._operations: dict[str, Decoder] = {}
        for op_name in service_model.operation_names:
            input_shape = service_model.operation_model(op_name).input_shape
            self._operations[op_name] = (
                self._decoder(input_shape) if input_shape is not None else self._empty_input
            )

    def operation_names(self) -> list[str]:
        return list(self._operations)

    def decode(self, operation: str, params: object) -> dict[str, Any]:
        """Decode the parsed JSON body of ``operation`` (see module docstring).

        Returns a new dict keyed by the model's PascalCase member names, blobs as bytes, timestamps as
        float, unknown members dropped. Raises KmsError: SerializationException for JSON type errors,
        ValidationException listing the first MAX_CLAUSES constraint violations, UnknownOperationException.
        """
        decoder = self._operations.get(operation)
        if decoder is None:
            raise KmsError("UnknownOperationException", None)
        errors: list[str] = []
        # An empty body reaches us as {}; a literal JSON null means the same to AWS.
        result: dict[str, Any] = decoder({} if params is None else params, "", errors)
        if errors:
            count = len(errors)
            plural = "s" if count > 1 else ""
            raise validation(f"{count} validation error{plural} detected: " + "; ".join(errors))
        return result

    # -- compilation -------------------------------------------------------------------------------

    @staticmethod
    def _empty_input(value: Any, path: str, errors: list[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _type_error(value, "a Structure")
        return {}

    def _omits_value(self, shape: Shape) -> bool:
        """Whether messages must hide this shape's value: blobs, sensitive shapes, or containers of them."""
        cached = self._omit.get(shape.name)
        if cached is not None:
            return cached
        self._omit[shape.name] = False  # provisional, breaks recursion through recursive shapes
        if shape.type_name == "blob" or shape.metadata.get("sensitive", False):
            omit = True
        elif isinstance(shape, StructureShape):
            omit = any(self._omits_value(m) for m in shape.members.values())
        elif isinstance(shape, ListShape):
            omit = self._omits_value(shape.member)
        elif isinstance(shape, MapShape):
            omit = self._omits_value(shape.key) or self._omits_value(shape.value)
        else:
            omit = False
        self._omit[shape.name] = omit
        return omit

    def _decoder(self, shape: Shape) -> Decoder:
        existing = self._shape_decoders.get(shape.name)
        if existing is not None:
            return existing
        if isinstance(shape, StructureShape):
            # Register a trampoline first so recursive structures resolve to the finished decoder.
            cell: list[Decoder] = []
            self._shape_decoders[shape.name] = lambda v, p, e: cell[0](v, p, e)
            built = self._structure(shape)
            cell.append(built)
        else:
            built = self._build_leaf_or_container(shape)
        self._shape_decoders[shape.name] = built
        return built

    def _build_leaf_or_container(self, shape: Shape) -> Decoder:
        kind = shape.type_name
        if isinstance(shape, ListShape):
            return self._list(shape)
        if isinstance(shape, MapShape):
            return self._map(shape)
        if kind == "string":
            return self._string(shape)
        if kind == "blob":
            return self._blob(shape)
        if kind in _INT_RANGES:
            return self._integer(shape)
        if kind == "boolean":
            return _boolean
        if kind in ("timestamp", "float", "double"):
            return _timestamp if kind == "timestamp" else _floating
        # Unknown kinds (e.g. document) pass through untouched rather than rejecting valid requests.
        return _passthrough

    def _structure(self, shape: StructureShape) -> Decoder:
        required = set(shape.required_members)
        fields = tuple(
            (name, member_path_name(name), self._decoder(member), name in required)
            for name, member in shape.members.items()
        )

        def decode_structure(value: Any, path: str, errors: list[str]) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise _type_error(value, "a Structure")
            out: dict[str, Any] = {}
            # Model member order keeps the clause order deterministic and AWS-like.
            for name, lname, sub, is_required in fields:
                v = value.get(name)
                if v is None:  # absent and explicit JSON null are the same to AWS
                    if is_required:
                        _missing(errors, f"{path}.{lname}" if path else lname)
                    continue
                out[name] = sub(v, f"{path}.{lname}" if path else lname, errors)
            return out

        return decode_structure

    def _list(self, shape: ListShape) -> Decoder:
        omit = self._omits_value(shape)
        lo, hi, lo_rule, hi_rule = _length_checks(shape)
        element = self._decoder(shape.member)

        def decode_list(value: Any, path: str, errors: list[str]) -> list[Any]:
            if not isinstance(value, list):
                raise _type_error(value, "a List")
            n = len(value)
            if n > hi:
                _violation(errors, value, omit, path, hi_rule)
            if n < lo:
                _violation(errors, value, omit, path, lo_rule)
            out: list[Any] = []
            for index, item in enumerate(value, 1):
                # AWS's element path: tags.1.member (1-based), then .field for structures.
                item_path = f"{path}.{index}.member"
                if item is None:
                    _missing(errors, item_path)
                    continue
                out.append(element(item, item_path, errors))
            return out

        return decode_list

    def _map(self, shape: MapShape) -> Decoder:
        omit = self._omits_value(shape)
        lo, hi, lo_rule, hi_rule = _length_checks(shape)
        key_decoder = self._decoder(shape.key)
        value_decoder = self._decoder(shape.value)

        def decode_map(value: Any, path: str, errors: list[str]) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise _type_error(value, "a Map")
            n = len(value)
            if n > hi:
                _violation(errors, value, omit, path, hi_rule)
            if n < lo:
                _violation(errors, value, omit, path, lo_rule)
            out: dict[str, Any] = {}
            for k, v in value.items():
                entry_path = f"{path}.{k}.member"
                key = key_decoder(k, entry_path + ".key", errors)
                if v is None:
                    _missing(errors, entry_path + ".value")
                    continue
                out[key] = value_decoder(v, entry_path + ".value", errors)
            return out

        return decode_map

    def _string(self, shape: Shape) -> Decoder:
        omit = self._omits_value(shape)
        lo, hi, lo_rule, hi_rule = _length_checks(shape)
        enum_values: list[str] = list(shape.enum or [])
        allowed = frozenset(enum_values)
        enum_rule = f"satisfy enum value set: [{', '.join(enum_values)}]"
        raw_pattern: str | None = shape.metadata.get("pattern")
        # Whole-value match, for anchored and unanchored patterns alike: AWS applies Java's
        # Pattern.matches(). Evidence in this model: PolicyType's '[\u0009\u000A\u000D\u0020-\u00FF]+'
        # is documented as the set of characters the *whole* policy may use, and MarkerType's
        # '[\u0020-\u00FF]*' would reject nothing under find()/search semantics.
        pattern = translate_java_regex(raw_pattern) if raw_pattern is not None else None
        if raw_pattern is not None and pattern is None:
            self.unenforced_patterns[shape.name] = raw_pattern
        fullmatch = pattern.fullmatch if pattern is not None else None
        pattern_rule = f"satisfy regular expression pattern: {raw_pattern}"

        def decode_string(value: Any, path: str, errors: list[str]) -> str:
            if not isinstance(value, str):
                raise _type_error(value, "a String")
            # Length is counted in code points (Smithy's definition), i.e. Python's len().
            n = len(value)
            if n > hi:
                _violation(errors, value, omit, path, hi_rule)
            if n < lo:
                _violation(errors, value, omit, path, lo_rule)
            if allowed and value not in allowed:
                _violation(errors, value, omit, path, enum_rule)
            if fullmatch is not None and fullmatch(value) is None:
                _violation(errors, value, omit, path, pattern_rule)
            return value

        return decode_string

    def _blob(self, shape: Shape) -> Decoder:
        lo, hi, lo_rule, hi_rule = _length_checks(shape)

        def decode_blob(value: Any, path: str, errors: list[str]) -> bytes:
            if not isinstance(value, str):
                raise _type_error(value, "a Blob")
            try:
                # strict_mode: reject non-alphabet characters and misplaced padding instead of
                # silently skipping them (non-strict would decode "hello world!" to something).
                data = binascii.a2b_base64(value, strict_mode=True)
            except ValueError:  # binascii.Error, or a non-ASCII str
                raise serialization(_BAD_BASE64) from None
            n = len(data)
            if len(value) != 4 * ((n + 2) // 3):  # strict_mode still lets surplus '=' through: "Zm9v=="
                raise serialization(_BAD_BASE64)
            # Blob values never appear in messages: they are key material or ciphertext.
            if n > hi:
                _violation(errors, None, True, path, hi_rule)
            if n < lo:
                _violation(errors, None, True, path, lo_rule)
            return data

        return decode_blob

    def _integer(self, shape: Shape) -> Decoder:
        omit = self._omits_value(shape)
        type_min, type_max = _INT_RANGES[shape.type_name]
        target = "an Integer" if shape.type_name == "integer" else "a Long"
        lo = shape.metadata.get("min", type_min)
        hi = shape.metadata.get("max", type_max)
        lo_rule = f"have value greater than or equal to {lo}"
        hi_rule = f"have value less than or equal to {hi}"

        def decode_integer(value: Any, path: str, errors: list[str]) -> int:
            number: int
            if type(value) is int:  # not isinstance: bool is an int subclass, and must be refused
                number = value
            elif type(value) is float and value.is_integer():
                # JSON has one number type: 5.0 is an acceptable integer, 5.5 is not.
                number = int(value)
            else:
                raise _type_error(value, target)
            if not type_min <= number <= type_max:
                raise _type_error(value, target)
            if number > hi:
                _violation(errors, number, omit, path, hi_rule)
            if number < lo:
                _violation(errors, number, omit, path, lo_rule)
            return number

        return decode_integer


def _boolean(value: Any, path: str, errors: list[str]) -> bool:
    if value is True or value is False:
        return bool(value)
    raise _type_error(value, "a Boolean")


def _number(value: Any, target: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(value, target)
    result = float(value)
    if not math.isfinite(result):  # json.loads accepts NaN / Infinity; Java's deserialiser would not
        raise _type_error(value, target)
    return result


def _timestamp(value: Any, path: str, errors: list[str]) -> float:
    # The JSON protocol sends timestamps as epoch seconds (botocore: timestampFormat unixTimestamp).
    return _number(value, "a Timestamp")


def _floating(value: Any, path: str, errors: list[str]) -> float:
    return _number(value, "a Double")


def _passthrough(value: Any, path: str, errors: list[str]) -> Any:
    return value
