"""ThingsBoard's key filters: what an entity data query's ``keyFilters`` ask of an entity's
fields, latest telemetry and attributes, read from JSON and evaluated in Python.

The rules follow ThingsBoard's SQL (``EntityKeyMapping``), so a query selects the same
entities here as there:

- a NUMERIC predicate matches a latest value or attribute stored as a long or a double, a
  STRING predicate one stored as a string, a BOOLEAN predicate one stored as a boolean; an
  entity without the key never matches (NOT_EQUAL and NOT_CONTAINS included);
- on an entity field (``name``, ``createdTime`` …) STRING compares the field's text and
  NUMERIC its number;
- a STRING predicate whose value is empty is no condition at all (it is left out, as
  ThingsBoard leaves it out of its SQL); a COMPLEX predicate joins its parts with AND/OR and
  is no condition when none of its parts is one;
- IN / NOT_IN take a comma-separated list (commas inside double quotes do not split);
  ``ignoreCase`` lowers both sides.

A value is ``(vtype, value)`` with :class:`~tbpanel.store.values.ValueType` codes, or None
when the entity has no such key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput
from ..store.values import ValueType

#: ThingsBoard's EntityKeyType values tbpanel answers (ALARM_FIELD only in alarm queries)
KEY_TYPES = (
    "ENTITY_FIELD",
    "TIME_SERIES",
    "ATTRIBUTE",
    "CLIENT_ATTRIBUTE",
    "SHARED_ATTRIBUTE",
    "SERVER_ATTRIBUTE",
    "ALARM_FIELD",
)
NUMERIC_OPERATIONS = ("EQUAL", "NOT_EQUAL", "GREATER", "LESS", "GREATER_OR_EQUAL", "LESS_OR_EQUAL")
STRING_OPERATIONS = ("EQUAL", "NOT_EQUAL", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "NOT_CONTAINS", "IN", "NOT_IN")
BOOLEAN_OPERATIONS = ("EQUAL", "NOT_EQUAL")
COMPLEX_OPERATIONS = ("AND", "OR")
VALUE_TYPES = ("NUMERIC", "STRING", "BOOLEAN", "DATE_TIME")
#: deepest COMPLEX nesting read (a hostile body cannot recurse without bound)
MAX_DEPTH = 16
MAX_FILTERS = 100

Value = tuple[int, Any] | None


@dataclass(frozen=True)
class EntityKey:
    """``{"type": "TIME_SERIES", "key": "temperature"}``."""

    type: str
    key: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "key": self.key}


@dataclass(frozen=True)
class Simple:
    """A NUMERIC, STRING or BOOLEAN predicate with its (already typed) value."""

    kind: str
    operation: str
    value: float | str | bool
    ignore_case: bool = False


@dataclass(frozen=True)
class Complex:
    operation: str  # AND | OR
    predicates: tuple[Predicate, ...]


Predicate = Simple | Complex


@dataclass(frozen=True)
class KeyFilter:
    key: EntityKey
    predicate: Predicate


# --------------------------------------------------------------------------------- reading
def parse_key(raw: Any, what: str = "key", *, allowed: Sequence[str] = KEY_TYPES) -> EntityKey:
    """``{"type", "key"}`` → :class:`EntityKey`; InvalidInput naming ``what`` otherwise."""
    if not isinstance(raw, dict):
        raise InvalidInput(f'{what} must be {{"type": ..., "key": ...}}, got {_short(raw)}')
    ktype, key = raw.get("type"), raw.get("key")
    if not isinstance(ktype, str) or ktype.upper() not in allowed:
        raise InvalidInput(f"{what}.type must be one of {', '.join(allowed)}, got {_short(ktype)}")
    if not isinstance(key, str) or not key or len(key) > 255:
        raise InvalidInput(f"{what}.key must be a non-empty string of at most 255 characters, got {_short(key)}")
    return EntityKey(ktype.upper(), key)


def parse_keys(raw: Any, what: str, *, allowed: Sequence[str] = KEY_TYPES) -> list[EntityKey]:
    """A list of entity keys (None or absent: none), without repeats."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(f"{what} must be a list of keys")
    if len(raw) > 1000:
        raise InvalidInput(f"{what} may name at most 1000 keys")
    return list(dict.fromkeys(parse_key(k, f"{what}[{i}]", allowed=allowed) for i, k in enumerate(raw)))


def parse_operation(raw: Any, what: str = "keyFiltersOperation") -> str:
    """AND (the default) or OR."""
    if raw is None:
        return "AND"
    if not isinstance(raw, str) or raw.upper() not in COMPLEX_OPERATIONS:
        raise InvalidInput(f"{what} must be AND or OR, got {_short(raw)}")
    return raw.upper()


def parse_key_filters(raw: Any) -> list[KeyFilter]:
    """``keyFilters`` (None or absent: none)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput("keyFilters must be a list")
    if len(raw) > MAX_FILTERS:
        raise InvalidInput(f"at most {MAX_FILTERS} keyFilters")
    out = []
    for i, f in enumerate(raw):
        what = f"keyFilters[{i}]"
        if not isinstance(f, dict):
            raise InvalidInput(f"{what} must be an object")
        key = parse_key(f.get("key"), f"{what}.key", allowed=KEY_TYPES[:-1])
        vt = f.get("valueType")
        if vt is not None and (not isinstance(vt, str) or vt.upper() not in VALUE_TYPES):
            raise InvalidInput(f"{what}.valueType must be one of {', '.join(VALUE_TYPES)}, got {_short(vt)}")
        out.append(KeyFilter(key, parse_predicate(f.get("predicate"), f"{what}.predicate")))
    return out


def parse_predicate(raw: Any, what: str = "predicate", depth: int = 0) -> Predicate:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{what}: COMPLEX predicates nest at most {MAX_DEPTH} deep")
    if not isinstance(raw, dict):
        raise InvalidInput(f"{what} must be an object")
    kind = raw.get("type")
    kind = kind.upper() if isinstance(kind, str) else kind
    op = raw.get("operation")
    op = op.upper() if isinstance(op, str) else op
    if kind == "COMPLEX":
        if op not in COMPLEX_OPERATIONS:
            raise InvalidInput(f"{what}.operation must be AND or OR, got {_short(raw.get('operation'))}")
        parts = raw.get("predicates")
        if not isinstance(parts, list):
            raise InvalidInput(f"{what}.predicates must be a list")
        if len(parts) > MAX_FILTERS:
            raise InvalidInput(f"{what}.predicates: at most {MAX_FILTERS}")
        return Complex(op, tuple(parse_predicate(p, f"{what}.predicates[{i}]", depth + 1) for i, p in enumerate(parts)))
    allowed = {"NUMERIC": NUMERIC_OPERATIONS, "STRING": STRING_OPERATIONS, "BOOLEAN": BOOLEAN_OPERATIONS}.get(
        kind if isinstance(kind, str) else ""
    )
    if allowed is None:
        raise InvalidInput(f"{what}.type must be NUMERIC, STRING, BOOLEAN or COMPLEX, got {_short(raw.get('type'))}")
    if op not in allowed:
        raise InvalidInput(
            f"{what}.operation of a {kind} predicate must be one of {', '.join(allowed)}, got {_short(op)}"
        )
    value = _predicate_value(raw.get("value"), f"{what}.value")
    ignore_case = raw.get("ignoreCase", False)
    if ignore_case is None:
        ignore_case = False
    if not isinstance(ignore_case, bool):
        raise InvalidInput(f"{what}.ignoreCase must be true or false")
    typed: float | str | bool
    if kind == "NUMERIC":
        typed = _number(value, f"{what}.value")
    elif kind == "BOOLEAN":
        typed = _boolean(value, f"{what}.value")
    else:
        if isinstance(value, bool):
            typed = "true" if value else "false"
        elif isinstance(value, (int, float, str)):
            typed = str(value)
        else:
            raise InvalidInput(f"{what}.value of a STRING predicate must be a string, got {_short(value)}")
    return Simple(str(kind), str(op), typed, ignore_case)


def _predicate_value(raw: Any, what: str) -> Any:
    """``{"defaultValue", "userValue", "dynamicValue"}``: the user's value wins, as in
    ThingsBoard (dynamic values — another attribute's value — are not resolved)."""
    if not isinstance(raw, dict):
        raise InvalidInput(f'{what} must be {{"defaultValue": ...}}, got {_short(raw)}')
    value = raw.get("userValue")
    if value is None:
        value = raw.get("defaultValue")
    if value is None:
        raise InvalidInput(f"{what}.defaultValue is required")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool):
        raise InvalidInput(f"{what} of a NUMERIC predicate must be a number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{what} of a NUMERIC predicate must be a number, got {_short(value)}") from None
    if not math.isfinite(x):
        raise InvalidInput(f"{what} of a NUMERIC predicate must be finite, got {_short(value)}")
    return x


def _boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidInput(f"{what} of a BOOLEAN predicate must be true or false, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_list(text: str) -> list[str]:
    """ThingsBoard's IN / NOT_IN list: split on commas outside double quotes, trim each item
    and drop its surrounding quotes."""
    items: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    items.append("".join(cur))
    out = []
    for item in items:
        item = item.strip()
        if len(item) >= 2 and item[0] == item[-1] == '"':
            item = item[1:-1]
        out.append(item)
    return out


# ------------------------------------------------------------------------------- evaluating
def evaluate(predicate: Predicate, value: Value, *, entity_field: bool = False) -> bool | None:
    """Whether ``value`` passes ``predicate``; None when the predicate is no condition."""
    if isinstance(predicate, Complex):
        results = [r for p in predicate.predicates if (r := evaluate(p, value, entity_field=entity_field)) is not None]
        if not results:
            return None
        return all(results) if predicate.operation == "AND" else any(results)
    if predicate.kind == "STRING" and predicate.value == "":
        return None
    if value is None:
        return False
    vtype, v = value
    if v is None:
        return False
    if predicate.kind == "NUMERIC":
        if entity_field:
            try:
                x = float(v)
            except (TypeError, ValueError):
                return False
        elif vtype in (ValueType.LONG, ValueType.DOUBLE):
            x = float(v)
        else:
            return False
        return compare_number(predicate.operation, x, float(predicate.value))
    if predicate.kind == "BOOLEAN":
        if entity_field or vtype != ValueType.BOOL:
            return False
        return (bool(v) == predicate.value) == (predicate.operation == "EQUAL")
    if not entity_field and vtype != ValueType.STR:
        return False
    text = v if isinstance(v, str) else str(v)
    return compare_text(predicate.operation, text, str(predicate.value), predicate.ignore_case)


def compare_number(op: str, x: float, y: float) -> bool:
    """A NUMERIC operation (EQUAL … LESS_OR_EQUAL) on two numbers (also the alarm rules')."""
    if op == "EQUAL":
        return x == y
    if op == "NOT_EQUAL":
        return x != y
    if op == "GREATER":
        return x > y
    if op == "LESS":
        return x < y
    if op == "GREATER_OR_EQUAL":
        return x >= y
    return x <= y


def compare_text(op: str, text: str, target: str, ignore_case: bool) -> bool:
    """A STRING operation (EQUAL … NOT_IN) on two texts (also the alarm rules')."""
    if ignore_case:
        text, target = text.lower(), target.lower()
    if op == "EQUAL":
        return text == target
    if op == "NOT_EQUAL":
        return text != target
    if op == "STARTS_WITH":
        return text.startswith(target)
    if op == "ENDS_WITH":
        return text.endswith(target)
    if op == "CONTAINS":
        return target in text
    if op == "NOT_CONTAINS":
        return target not in text
    items = split_list(target)
    return (text in items) == (op == "IN")


def matches(filters: Sequence[KeyFilter], operation: str, value_of: Callable[[EntityKey], Value]) -> bool:
    """Whether an entity passes ``filters`` joined with ``operation`` (AND/OR); ``value_of``
    gives the entity's value of a key. Filters that are no condition are left out; no
    filters at all pass."""
    results = []
    for f in filters:
        r = evaluate(f.predicate, value_of(f.key), entity_field=f.key.type == "ENTITY_FIELD")
        if r is not None:
            results.append(r)
    if not results:
        return True
    return all(results) if operation == "AND" else any(results)
