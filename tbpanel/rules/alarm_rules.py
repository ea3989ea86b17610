"""Alarm rules of device profiles: ThingsBoard's ``profileData.alarms`` read, checked and
evaluated on a device's latest values (no Panel, no storage: the device profile node,
:mod:`.nodes.profile`, feeds it values and carries out what it decides).

The JSON is ThingsBoard's ``DeviceProfileAlarm``: ``{id, alarmType, createRules: {SEVERITY:
AlarmRule}, clearRule, propagate, propagateToOwner, propagateToTenant, propagateRelationTypes}``,
an ``AlarmRule`` being ``{condition: {condition: [filter], spec}, schedule, alarmDetails,
dashboardId}``. :func:`parse_alarms` reads it and names the field of every error (a 400).

Semantics follow ThingsBoard's ``AlarmRuleState`` / ``AlarmState`` (rule-engine
``profile/``):

- a condition is the AND of its filters; a filter whose key has no value is false; values are
  converted to the predicate's kind as ThingsBoard converts them (a string ``"25"`` is the
  number 25, a number > 0 is ``true``, a double prints as ``25.0``); the comparisons are the
  entity data query's (:func:`~tbpanel.queries.key_filters.compare_number`, ``compare_text``);
- thresholds may be dynamic: a device attribute (any scope), the customer's or the tenant's
  server attribute, ``inherit`` falling back device → customer → tenant; without a value the
  static ``defaultValue`` is used (a CONSTANT key has no default: false);
- specs: SIMPLE (true now), DURATION (true on consecutive messages spanning *more than* N
  units, measured by message ts; the node's timer also raises it when no message comes),
  REPEATING (true on N consecutive messages);
- the highest severity whose rule is true wins; the active alarm of the type is created or
  updated, and cleared when no create rule holds and the clear rule does.

Where tbpanel differs, on purpose:

- **de-escalation**: ThingsBoard (since 3.2) keeps an active alarm's higher severity when only a
  lower rule still holds; tbpanel lowers it (the behaviour contract: "severity up or down"), so an
  alarm always shows the severity its device is in now;
- **schedules use wall-clock time** in their time zone: ThingsBoard measures ``startsOn`` as
  milliseconds elapsed since local midnight, which is an hour off on the two DST-change days;
  here 09:00 is 09:00 every day. A window that wraps midnight (22:00–06:00) includes both ends'
  first minute (ThingsBoard's excludes exactly 22:00 and 00:00).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..alarms.model import SEVERITIES, SEVERITY_RANK
from ..errors import InvalidInput
from ..queries.key_filters import (
    BOOLEAN_OPERATIONS,
    COMPLEX_OPERATIONS,
    MAX_DEPTH,
    NUMERIC_OPERATIONS,
    STRING_OPERATIONS,
    compare_number,
    compare_text,
)
from ..store.values import ValueType, format_double

KEY_TYPES = ("TIME_SERIES", "ATTRIBUTE", "ENTITY_FIELD", "CONSTANT")
VALUE_TYPES = ("NUMERIC", "STRING", "BOOLEAN", "DATE_TIME")
PREDICATE_TYPES = ("NUMERIC", "STRING", "BOOLEAN", "COMPLEX")
OPERATIONS = {"NUMERIC": NUMERIC_OPERATIONS, "STRING": STRING_OPERATIONS, "BOOLEAN": BOOLEAN_OPERATIONS}
SOURCE_TYPES = ("CURRENT_DEVICE", "CURRENT_CUSTOMER", "CURRENT_TENANT")
SPEC_TYPES = ("SIMPLE", "DURATION", "REPEATING")
SCHEDULE_TYPES = ("ANY_TIME", "SPECIFIC_TIME", "CUSTOM")
#: Java's TimeUnit names (the ``unit`` of a DURATION spec) in ms
TIME_UNITS = {"MILLISECONDS": 1, "SECONDS": 1000, "MINUTES": 60_000, "HOURS": 3_600_000, "DAYS": 86_400_000}
#: the device fields an ENTITY_FIELD key may name (what ThingsBoard's DeviceState reads)
ENTITY_FIELDS = ("name", "type", "createdTime", "label")
DAY_MS = 86_400_000
MAX_ALARMS = 100
MAX_FILTERS = 100

TRUE, FALSE, NOT_YET_TRUE = "TRUE", "FALSE", "NOT_YET_TRUE"

#: a value as the store and the registry give it: ``(ValueType code, value)``
Value = tuple[int, Any]
#: ``outer(source_type, attribute) -> value``: the customer's or tenant's server attribute
Outer = Callable[[str, str], Value | None]


def _no_outer(source: str, key: str) -> Value | None:
    return None


# ------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class ConditionKey:
    """``{"type": "TIME_SERIES", "key": "temperature"}`` (ThingsBoard's AlarmConditionFilterKey)."""

    type: str
    key: str


@dataclass(frozen=True)
class DynamicValue:
    source_type: str
    source_attribute: str
    inherit: bool = False


@dataclass(frozen=True)
class PredicateValue:
    """A threshold: the static ``defaultValue`` (typed) and an optional attribute that overrides it."""

    default: Any
    dynamic: DynamicValue | None = None


@dataclass(frozen=True)
class Simple:
    kind: str  # NUMERIC | STRING | BOOLEAN
    operation: str
    value: PredicateValue
    ignore_case: bool = False


@dataclass(frozen=True)
class Complex:
    operation: str  # AND | OR
    predicates: tuple[Simple | Complex, ...]


Predicate = Simple | Complex


@dataclass(frozen=True)
class Filter:
    key: ConditionKey
    value_type: str
    predicate: Predicate
    #: the value of a CONSTANT key (typed), compared with a dynamic threshold
    constant: Value | None = None


@dataclass(frozen=True)
class Spec:
    type: str = "SIMPLE"
    unit_ms: int = 1000
    #: DURATION: how many units; REPEATING: how many messages
    count: PredicateValue | None = None


@dataclass(frozen=True)
class Schedule:
    """When a rule may fire; ``days``: ISO weekdays (1 = Monday); ``items``: CUSTOM's per day
    ``(enabled, startsOn, endsOn)``; times are ms after local midnight (0 end = midnight)."""

    type: str
    timezone: str = "UTC"
    days: frozenset[int] = frozenset(range(1, 8))
    starts_on: int = 0
    ends_on: int = 0
    items: Mapping[int, tuple[bool, int, int]] = field(default_factory=dict)
    dynamic: DynamicValue | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class AlarmRule:
    condition: tuple[Filter, ...]
    spec: Spec = Spec()
    schedule: Schedule | None = None
    details: str | None = None
    dashboard_id: str | None = None

    @property
    def keys(self) -> frozenset[ConditionKey]:
        """The keys whose change may change this rule's outcome (ThingsBoard's rule keys)."""
        out = {f.key for f in self.condition}
        for f in self.condition:
            out |= {ConditionKey("ATTRIBUTE", d.source_attribute) for d in _dynamics(f.predicate)}
        return frozenset(out)


@dataclass(frozen=True)
class AlarmDefinition:
    """One ``DeviceProfileAlarm``: create rules highest severity first, the clear rule, and the JSON it came from."""

    id: str
    alarm_type: str
    create_rules: tuple[tuple[str, AlarmRule], ...]
    clear_rule: AlarmRule | None
    propagate: bool = False
    propagate_to_owner: bool = False
    propagate_to_tenant: bool = False
    propagate_relation_types: tuple[str, ...] = ()

    def rules(self) -> Iterable[AlarmRule]:
        yield from (r for _, r in self.create_rules)
        if self.clear_rule is not None:
            yield self.clear_rule


def _dynamics(p: Predicate) -> Iterable[DynamicValue]:
    if isinstance(p, Complex):
        for c in p.predicates:
            yield from _dynamics(c)
    elif p.value.dynamic is not None:
        yield p.value.dynamic


def entity_keys(definitions: Sequence[AlarmDefinition]) -> frozenset[ConditionKey]:
    """Every key a device's snapshot must hold for these alarms (ThingsBoard's entityKeys)."""
    out: set[ConditionKey] = set()
    for d in definitions:
        for rule in d.rules():
            out |= rule.keys
            for dyn in (rule.spec.count.dynamic if rule.spec.count else None, rule.schedule and rule.schedule.dynamic):
                if dyn:
                    out.add(ConditionKey("ATTRIBUTE", dyn.source_attribute))
    return frozenset(out)


# ---------------------------------------------------------------------------------- reading
def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _obj(raw: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{what} must be a JSON object, got {_short(raw)}")
    return raw


def _choice(raw: Any, what: str, allowed: Sequence[str]) -> str:
    if not isinstance(raw, str) or raw.upper() not in allowed:
        raise InvalidInput(f"{what} must be one of {', '.join(allowed)}, got {_short(raw)}")
    return raw.upper()


def _int(raw: Any, what: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(raw, bool) or raw is None:
        raise InvalidInput(f"{what} must be a whole number, got {_short(raw)}")
    try:
        x = float(raw)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} must be a whole number, got {_short(raw)}") from None
    if not math.isfinite(x) or x != int(x) or x < lo or (hi is not None and x > hi):
        bound = f" between {lo} and {hi}" if hi is not None else f" of at least {lo}"
        raise InvalidInput(f"{what} must be a whole number{bound}, got {_short(raw)}")
    return int(x)


def parse_alarms(profile_data: Mapping[str, Any] | None, what: str = "profileData") -> list[AlarmDefinition]:
    """The alarm rules of a profile's ``profileData`` (none when it has no ``alarms``);
    :class:`~tbpanel.errors.InvalidInput` naming the field otherwise."""
    if profile_data is None:
        return []
    raw = _obj(profile_data, what).get("alarms")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidInput(f"{what}.alarms must be a list, got {_short(raw)}")
    if len(raw) > MAX_ALARMS:
        raise InvalidInput(f"{what}.alarms: at most {MAX_ALARMS} alarms per profile")
    out: list[AlarmDefinition] = []
    for i, a in enumerate(raw):
        d = parse_alarm(a, f"{what}.alarms[{i}]")
        for j, other in enumerate(out):
            if other.alarm_type == d.alarm_type:
                raise InvalidInput(f"{what}.alarms[{i}].alarmType {d.alarm_type!r} is already used by alarms[{j}]")
            if other.id == d.id:
                raise InvalidInput(f"{what}.alarms[{i}].id {d.id!r} is already used by alarms[{j}]")
        out.append(d)
    return out


def parse_alarm(raw: Any, what: str = "alarm") -> AlarmDefinition:
    a = _obj(raw, what)
    atype = a.get("alarmType")
    if not isinstance(atype, str) or not atype.strip() or len(atype) > 255:
        raise InvalidInput(f"{what}.alarmType must be a non-empty text of at most 255 characters, got {_short(atype)}")
    aid = a.get("id")
    if aid is None or aid == "":
        aid = atype  # a stable id: the rule state is kept per alarm id
    if not isinstance(aid, str) or len(aid) > 255:
        raise InvalidInput(f"{what}.id must be a text of at most 255 characters, got {_short(aid)}")
    # no create rules is an alarm that never fires (ThingsBoard accepts it; the editor asks for one)
    rules_raw = _obj({} if a.get("createRules") is None else a["createRules"], f"{what}.createRules")
    create = []
    for sev, rule in rules_raw.items():
        s = _choice(sev, f"{what}.createRules key", SEVERITIES)
        create.append((s, parse_rule(rule, f"{what}.createRules.{s}")))
    create.sort(key=lambda sr: -SEVERITY_RANK[sr[0]])
    clear = a.get("clearRule")
    relation_types = a.get("propagateRelationTypes") or []
    if not isinstance(relation_types, list) or not all(isinstance(t, str) for t in relation_types):
        raise InvalidInput(f"{what}.propagateRelationTypes must be a list of texts")
    flags = {}
    for k in ("propagate", "propagateToOwner", "propagateToTenant"):
        v = a.get(k)
        if v is not None and not isinstance(v, bool):
            raise InvalidInput(f"{what}.{k} must be true or false, got {_short(v)}")
        flags[k] = bool(v)
    return AlarmDefinition(
        id=aid,
        alarm_type=atype.strip(),
        create_rules=tuple(create),
        clear_rule=None if clear is None else parse_rule(clear, f"{what}.clearRule"),
        propagate=flags["propagate"],
        propagate_to_owner=flags["propagateToOwner"],
        propagate_to_tenant=flags["propagateToTenant"],
        propagate_relation_types=tuple(relation_types),
    )


def parse_rule(raw: Any, what: str) -> AlarmRule:
    r = _obj(raw, what)
    cond = _obj(r.get("condition"), f"{what}.condition")
    filters_raw = cond.get("condition")
    if not isinstance(filters_raw, list) or not filters_raw:
        raise InvalidInput(f"{what}.condition.condition must be a non-empty list of key filters")
    if len(filters_raw) > MAX_FILTERS:
        raise InvalidInput(f"{what}.condition.condition: at most {MAX_FILTERS} key filters")
    filters = tuple(parse_filter(f, f"{what}.condition.condition[{i}]") for i, f in enumerate(filters_raw))
    details = r.get("alarmDetails")
    if details is not None and not isinstance(details, str):
        raise InvalidInput(f"{what}.alarmDetails must be a text, got {_short(details)}")
    dash = r.get("dashboardId")
    dashboard_id = None
    if dash is not None:
        dash_id = _obj(dash, f"{what}.dashboardId").get("id")
        if not isinstance(dash_id, str) or not dash_id:
            raise InvalidInput(f"{what}.dashboardId.id must be a dashboard id")
        dashboard_id = dash_id
    return AlarmRule(
        condition=filters,
        spec=parse_spec(cond.get("spec"), f"{what}.condition.spec"),
        schedule=parse_schedule(r.get("schedule"), f"{what}.schedule"),
        details=details or None,
        dashboard_id=dashboard_id,
    )


def parse_filter(raw: Any, what: str) -> Filter:
    f = _obj(raw, what)
    k = _obj(f.get("key"), f"{what}.key")
    ktype = _choice(k.get("type"), f"{what}.key.type", KEY_TYPES)
    key = k.get("key")
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise InvalidInput(f"{what}.key.key must be a non-empty key name of at most 255 characters, got {_short(key)}")
    if ktype == "ENTITY_FIELD" and key not in ENTITY_FIELDS:
        raise InvalidInput(f"{what}.key.key of an ENTITY_FIELD must be one of {', '.join(ENTITY_FIELDS)}, got {key!r}")
    predicate = parse_predicate(f.get("predicate"), f"{what}.predicate", constant_key=ktype == "CONSTANT")
    vt = f.get("valueType")
    value_type = _choice(vt, f"{what}.valueType", VALUE_TYPES) if vt is not None else _leaf_kind(predicate)
    constant = None
    if ktype == "CONSTANT":
        constant = _constant(f.get("value"), value_type, f"{what}.value")
    return Filter(ConditionKey(ktype, key), value_type, predicate, constant)


def _leaf_kind(p: Predicate) -> str:
    while isinstance(p, Complex):
        if not p.predicates:
            return "STRING"
        p = p.predicates[0]
    return p.kind


def _constant(raw: Any, value_type: str, what: str) -> Value:
    """A CONSTANT key's value as ThingsBoard reads it (its text, parsed per valueType)."""
    if raw is None or isinstance(raw, (dict, list)):
        raise InvalidInput(f"{what} (the constant) must be a {value_type.lower()} value, got {_short(raw)}")
    text = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
    if value_type == "STRING":
        return (ValueType.STR, text)
    if value_type == "BOOLEAN":
        return (ValueType.BOOL, text.lower() == "true")
    try:
        if value_type == "DATE_TIME":
            return (ValueType.LONG, int(text))
        x = float(text)
    except ValueError:
        raise InvalidInput(f"{what} (the constant) must be a {value_type.lower()} value, got {_short(raw)}") from None
    if not math.isfinite(x):
        raise InvalidInput(f"{what} (the constant) must be a finite number, got {_short(raw)}")
    return (ValueType.DOUBLE, x)


def parse_predicate(raw: Any, what: str, *, constant_key: bool = False, depth: int = 0) -> Predicate:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"{what}: COMPLEX predicates nest at most {MAX_DEPTH} deep")
    p = _obj(raw, what)
    kind = _choice(p.get("type"), f"{what}.type", PREDICATE_TYPES)
    if kind == "COMPLEX":
        op = _choice(p.get("operation"), f"{what}.operation", COMPLEX_OPERATIONS)
        parts = p.get("predicates")
        if not isinstance(parts, list) or not parts:
            raise InvalidInput(f"{what}.predicates must be a non-empty list")
        if len(parts) > MAX_FILTERS:
            raise InvalidInput(f"{what}.predicates: at most {MAX_FILTERS}")
        return Complex(
            op,
            tuple(
                parse_predicate(c, f"{what}.predicates[{i}]", constant_key=constant_key, depth=depth + 1)
                for i, c in enumerate(parts)
            ),
        )
    sop = p.get("operation")
    if not isinstance(sop, str) or sop.upper() not in OPERATIONS[kind]:
        raise InvalidInput(
            f"{what}.operation of a {kind} predicate must be one of {', '.join(OPERATIONS[kind])}, got {_short(sop)}"
        )
    ignore_case = p.get("ignoreCase") or False
    if not isinstance(ignore_case, bool):
        raise InvalidInput(f"{what}.ignoreCase must be true or false")
    value = parse_predicate_value(p.get("value"), f"{what}.value", kind, constant_key=constant_key)
    return Simple(kind, sop.upper(), value, ignore_case)


def parse_dynamic(raw: Any, what: str) -> DynamicValue | None:
    """``{sourceType, sourceAttribute, inherit}``; None when absent or naming no attribute."""
    if raw is None:
        return None
    d = _obj(raw, what)
    attr = d.get("sourceAttribute")
    if attr is None or attr == "":
        return None
    if not isinstance(attr, str) or len(attr) > 255:
        raise InvalidInput(f"{what}.sourceAttribute must be an attribute name, got {_short(attr)}")
    source = _choice(d.get("sourceType"), f"{what}.sourceType", SOURCE_TYPES)
    inherit = d.get("inherit") or False
    if not isinstance(inherit, bool):
        raise InvalidInput(f"{what}.inherit must be true or false")
    return DynamicValue(source, attr, inherit)


def parse_predicate_value(raw: Any, what: str, kind: str, *, constant_key: bool = False) -> PredicateValue:
    v = _obj(raw, what)
    dynamic = parse_dynamic(v.get("dynamicValue"), f"{what}.dynamicValue")
    default = v.get("defaultValue")
    if default is None:
        default = v.get("userValue")
    if constant_key and dynamic is None:
        raise InvalidInput(
            f"{what}.dynamicValue.sourceAttribute is required: a CONSTANT key is compared with an attribute"
        )
    if default is None:
        if dynamic is None:
            raise InvalidInput(f"{what}.defaultValue is required (a {kind.lower()} threshold)")
        return PredicateValue(None, dynamic)
    conv: Callable[[Value], Any] = {"NUMERIC": as_double, "STRING": as_text, "BOOLEAN": as_bool}[kind]
    typed = conv(plain_value(default))
    if typed is None or isinstance(default, (dict, list)) or (kind == "BOOLEAN" and not _is_boolean(default)):
        raise InvalidInput(f"{what}.defaultValue of a {kind} predicate must be a {kind.lower()}, got {_short(default)}")
    if kind == "NUMERIC" and not math.isfinite(typed):
        raise InvalidInput(f"{what}.defaultValue must be a finite number, got {_short(default)}")
    return PredicateValue(typed, dynamic)


def _is_boolean(raw: Any) -> bool:
    return isinstance(raw, bool) or (isinstance(raw, str) and raw.lower() in ("true", "false"))


def plain_value(raw: Any) -> Value:
    """A plain value (JSON, or an attribute as the registry returns it) with its type code."""
    if isinstance(raw, bool):
        return (ValueType.BOOL, raw)
    if isinstance(raw, int):
        return (ValueType.LONG, raw)
    if isinstance(raw, float):
        return (ValueType.DOUBLE, raw)
    return (ValueType.STR, str(raw))


def parse_spec(raw: Any, what: str) -> Spec:
    if raw is None:
        return Spec()
    s = _obj(raw, what)
    stype = _choice(s.get("type"), f"{what}.type", SPEC_TYPES)
    if stype == "SIMPLE":
        return Spec()
    unit_ms = 1
    if stype == "DURATION":
        unit = _choice(s.get("unit"), f"{what}.unit", tuple(TIME_UNITS))
        unit_ms = TIME_UNITS[unit]
    pred = s.get("predicate")
    if pred is None:  # ThingsBoard 3.2's format: {"type": "DURATION", "unit", "value"} / {"type": "REPEATING", "count"}
        old = s.get("value") if stype == "DURATION" else s.get("count")
        pred = {"defaultValue": old}
    p = _obj(pred, f"{what}.predicate")
    dynamic = parse_dynamic(p.get("dynamicValue"), f"{what}.predicate.dynamicValue")
    default = p.get("defaultValue")
    if default is None:
        default = p.get("userValue")
    lo = 1 if stype == "REPEATING" else 0
    what_count = "how many messages" if stype == "REPEATING" else "how many units"
    if default is None:
        raise InvalidInput(f"{what}.predicate.defaultValue is required ({what_count})")
    count = _int(default, f"{what}.predicate.defaultValue ({what_count})", lo, 10**12)
    return Spec(stype, unit_ms, PredicateValue(count, dynamic))


def zone_name(raw: Any, what: str) -> str:
    """A time zone name zoneinfo knows (none: UTC); InvalidInput naming ``what`` otherwise."""
    tz = raw or "UTC"
    if not isinstance(tz, str):
        raise InvalidInput(f"{what} must be a time zone name such as Europe/Berlin, got {_short(raw)}")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"{what} {tz!r} is not a known time zone (e.g. Europe/Berlin, UTC)") from None
    return tz


def parse_schedule(raw: Any, what: str) -> Schedule | None:
    """None for ANY_TIME (or no schedule)."""
    if raw is None:
        return None
    s = _obj(raw, what)
    stype = _choice(s.get("type"), f"{what}.type", SCHEDULE_TYPES)
    if stype == "ANY_TIME":
        return None
    tz = zone_name(s.get("timezone"), f"{what}.timezone")
    dynamic = parse_dynamic(s.get("dynamicValue"), f"{what}.dynamicValue")
    if stype == "SPECIFIC_TIME":
        days = s.get("daysOfWeek")
        if not isinstance(days, list):
            raise InvalidInput(f"{what}.daysOfWeek must be a list of weekdays 1 (Monday) … 7 (Sunday)")
        return Schedule(
            stype,
            tz,
            frozenset(_int(d, f"{what}.daysOfWeek[{i}]", 1, 7) for i, d in enumerate(days)),
            _int(s.get("startsOn") or 0, f"{what}.startsOn (ms after midnight)", 0, DAY_MS),
            _int(s.get("endsOn") or 0, f"{what}.endsOn (ms after midnight)", 0, DAY_MS),
            dynamic=dynamic,
        )
    items_raw = s.get("items")
    if not isinstance(items_raw, list):
        raise InvalidInput(f"{what}.items must be a list of {{dayOfWeek, enabled, startsOn, endsOn}}")
    items: dict[int, tuple[bool, int, int]] = {}
    for i, it in enumerate(items_raw):
        o = _obj(it, f"{what}.items[{i}]")
        day = _int(o.get("dayOfWeek"), f"{what}.items[{i}].dayOfWeek", 1, 7)
        enabled = o.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidInput(f"{what}.items[{i}].enabled must be true or false")
        items.setdefault(
            day,
            (
                enabled,
                _int(o.get("startsOn") or 0, f"{what}.items[{i}].startsOn", 0, DAY_MS),
                _int(o.get("endsOn") or 0, f"{what}.items[{i}].endsOn", 0, DAY_MS),
            ),
        )
    return Schedule(stype, tz, items=items, dynamic=dynamic)


# ------------------------------------------------------------------------ value conversions
def as_double(v: Value) -> float | None:
    """ThingsBoard's ``getDblValue``: numbers, booleans as 1/0, numeric text."""
    t, x = v
    if x is None:
        return None
    if t in (ValueType.LONG, ValueType.DOUBLE):
        return float(x)
    if t == ValueType.BOOL:
        return 1.0 if x else 0.0
    try:
        return float(str(x).strip())
    except ValueError:
        return None


def as_text(v: Value) -> str | None:
    """ThingsBoard's ``getStrValue``: a double prints as Java does (``25.0``), booleans lower case."""
    t, x = v
    if x is None:
        return None
    if t == ValueType.BOOL:
        return "true" if x else "false"
    if t == ValueType.DOUBLE:
        return format_double(float(x))
    if t == ValueType.LONG:
        return str(int(x))
    return x if isinstance(x, str) else str(x)


def as_bool(v: Value) -> bool | None:
    """ThingsBoard's ``getBoolValue``: numbers > 0 are true, text is true when it says "true"."""
    t, x = v
    if x is None:
        return None
    if t in (ValueType.LONG, ValueType.DOUBLE):
        return float(x) > 0
    if t == ValueType.BOOL:
        return bool(x)
    return str(x).lower() == "true"


def as_long(v: Value) -> int | None:
    """ThingsBoard's ``getLongValue`` (a spec's count from an attribute)."""
    t, x = v
    if x is None:
        return None
    if t == ValueType.LONG:
        return int(x)
    if t == ValueType.DOUBLE:
        return int(float(x)) if math.isfinite(float(x)) else None
    if t == ValueType.BOOL:
        return 1 if x else 0
    try:
        return int(str(x))
    except ValueError:
        return None


# ---------------------------------------------------------------------------- the snapshot
class Snapshot:
    """A device's latest values of the keys its alarm rules use (ThingsBoard's DataSnapshot)."""

    def __init__(self, keys: Iterable[ConditionKey]) -> None:
        self.keys = frozenset(keys)
        self.values: dict[ConditionKey, Value] = {}
        self.ts = 0

    def put(self, key: ConditionKey, value: Value, new_ts: int) -> bool:
        """Keep ``value`` if the rules use ``key``; True when that is news (a new ts or value)."""
        if key not in self.keys:
            return False
        old = self.values.get(key)
        self.values[key] = value
        return self.ts != new_ts or old != value

    def get(self, key: ConditionKey) -> Value | None:
        return self.values.get(key)

    def remove(self, key: ConditionKey) -> None:
        self.values.pop(key, None)

    def merge(self, key_type: str, ts: int, values: Iterable[tuple[str, Value]]) -> frozenset[ConditionKey]:
        """Put values of one kind at ``ts``; the keys that changed (what the rules re-check)."""
        changed = {ck for k, v in values if self.put(ck := ConditionKey(key_type, k), v, ts)}
        self.ts = ts
        return frozenset(changed)


# ---------------------------------------------------------------------------- evaluation
def dynamic_value(d: DynamicValue | None, snap: Snapshot, outer: Outer) -> Value | None:
    """The attribute a dynamic value names: the device's (any scope), then with ``inherit``
    the customer's, then the tenant's server attribute."""
    if d is None:
        return None
    source = d.source_type
    if source == "CURRENT_DEVICE":
        v = snap.get(ConditionKey("ATTRIBUTE", d.source_attribute))
        if v is not None or not d.inherit:
            return v
        source = "CURRENT_CUSTOMER"
    if source == "CURRENT_CUSTOMER":
        v = outer("CURRENT_CUSTOMER", d.source_attribute)
        if v is not None or not d.inherit:
            return v
    return outer("CURRENT_TENANT", d.source_attribute)


def _threshold(p: Simple, constant_key: bool, snap: Snapshot, outer: Outer, conv: Callable[[Value], Any]) -> Any:
    v = dynamic_value(p.value.dynamic, snap, outer)
    if v is not None:
        typed = conv(v)
        if typed is not None:
            return typed
    return None if constant_key else p.value.default


def predicate_true(
    p: Predicate, value: Value, snap: Snapshot, outer: Outer = _no_outer, constant_key: bool = False
) -> bool:
    """Whether ``value`` passes ``p`` (thresholds resolved against ``snap`` and ``outer``)."""
    if isinstance(p, Complex):
        results = (predicate_true(c, value, snap, outer, constant_key) for c in p.predicates)
        return any(results) if p.operation == "OR" else all(results)
    if p.kind == "NUMERIC":
        x, t = as_double(value), _threshold(p, constant_key, snap, outer, as_double)
        return x is not None and t is not None and compare_number(p.operation, x, t)
    if p.kind == "BOOLEAN":
        b, tb = as_bool(value), _threshold(p, constant_key, snap, outer, as_bool)
        return b is not None and tb is not None and (b == tb) == (p.operation == "EQUAL")
    s, ts = as_text(value), _threshold(p, constant_key, snap, outer, as_text)
    return s is not None and ts is not None and compare_text(p.operation, s, ts, p.ignore_case)


def condition_true(filters: Sequence[Filter], snap: Snapshot, outer: Outer = _no_outer) -> bool:
    """The AND of the filters; a filter whose key has no value is false."""
    for f in filters:
        v = f.constant if f.key.type == "CONSTANT" else snap.get(f.key)
        if v is None or not predicate_true(f.predicate, v, snap, outer, f.key.type == "CONSTANT"):
            return False
    return True


def schedule_for(rule: AlarmRule, snap: Snapshot, outer: Outer) -> Schedule | None:
    """The rule's schedule, or the one its dynamic value's attribute holds (JSON text of a
    schedule of the same type); an attribute that is not one leaves the static schedule."""
    s = rule.schedule
    if s is None or s.dynamic is None:
        return s
    v = dynamic_value(s.dynamic, snap, outer)
    if v is None:
        return s
    try:
        import orjson

        raw = orjson.loads(str(v[1]))
        if isinstance(raw, dict):
            raw = {**raw, "type": s.type, "dynamicValue": None}
        found = parse_schedule(raw, "schedule")
    except (InvalidInput, ValueError):
        return s
    return found if found is not None and found.type == s.type else s


def schedule_active(s: Schedule | None, ts: int) -> bool:
    """Whether ``s`` lets a rule fire at epoch ms ``ts`` (wall-clock time in its zone)."""
    if s is None:
        return True
    local = datetime.fromtimestamp(ts // 1000, s.zone)
    day = local.isoweekday()
    ms = ((local.hour * 60 + local.minute) * 60 + local.second) * 1000 + ts % 1000
    if s.type == "SPECIFIC_TIME":
        if len(s.days) != 7 and day not in s.days:
            return False
        return _in_window(ms, s.starts_on, s.ends_on)
    item = s.items.get(day)
    return item is not None and item[0] and _in_window(ms, item[1], item[2])


def _in_window(ms: int, start: int, end: int) -> bool:
    end = end or DAY_MS
    if start <= end:
        return start <= ms < end
    return ms >= start or ms < end  # wraps midnight


class CountError(ValueError):
    """A spec's dynamic count names an attribute that is not a number (ThingsBoard's NumericParseException)."""


def required_count(spec: Spec, snap: Snapshot, outer: Outer) -> int:
    """DURATION units or REPEATING messages, from the spec's attribute when it has one."""
    pv = spec.count
    if pv is None:
        return 0
    v = dynamic_value(pv.dynamic, snap, outer)
    if v is None:
        return int(pv.default)
    n = as_long(v)
    if n is None:
        attr = pv.dynamic.source_attribute if pv.dynamic else "?"
        raise CountError(f"Could not convert attribute '{attr}' with value '{as_text(v)}' to numeric value!")
    return n


@dataclass
class RuleState:
    """What a DURATION or REPEATING rule remembers between messages (PersistedAlarmRuleState)."""

    event_count: int = 0
    last_event_ts: int = 0
    duration: int = 0
    changed: bool = False

    def reset(self) -> None:
        if self.event_count or self.last_event_ts or self.duration:
            self.event_count = self.last_event_ts = self.duration = 0
            self.changed = True

    def to_json(self) -> dict[str, int]:
        return {"eventCount": self.event_count, "lastEventTs": self.last_event_ts, "duration": self.duration}

    @classmethod
    def from_json(cls, raw: Any) -> RuleState:
        if not isinstance(raw, Mapping):
            return cls()
        try:
            return cls(int(raw.get("eventCount") or 0), int(raw.get("lastEventTs") or 0), int(raw.get("duration") or 0))
        except (TypeError, ValueError):
            return cls()


def evaluate(rule: AlarmRule, state: RuleState, snap: Snapshot, outer: Outer = _no_outer, now: int = 0) -> str:
    """TRUE, FALSE or NOT_YET_TRUE for a rule on a new snapshot (updating ``state``)."""
    at = snap.ts or now
    holds = schedule_active(schedule_for(rule, snap, outer), at) and condition_true(rule.condition, snap, outer)
    spec = rule.spec
    if spec.type == "SIMPLE":
        return TRUE if holds else FALSE
    if not holds:
        return FALSE
    if spec.type == "REPEATING":
        state.event_count += 1
        state.changed = True
        return TRUE if state.event_count >= required_count(spec, snap, outer) else NOT_YET_TRUE
    if state.last_event_ts > 0:
        if snap.ts > state.last_event_ts:
            state.duration += snap.ts - state.last_event_ts
            state.last_event_ts = snap.ts
            state.changed = True
    else:
        state.last_event_ts, state.duration, state.changed = snap.ts, 0, True
    return TRUE if state.duration > spec.unit_ms * required_count(spec, snap, outer) else NOT_YET_TRUE


def evaluate_at(rule: AlarmRule, state: RuleState, ts: int, snap: Snapshot, outer: Outer = _no_outer) -> str:
    """A rule at time ``ts`` with no new message (the node's timer): only a DURATION rule that
    has been true since ``lastEventTs`` can become TRUE; ``state`` is not changed."""
    if rule.spec.type != "DURATION" or state.last_event_ts <= 0:
        return NOT_YET_TRUE if rule.spec.type != "DURATION" else FALSE
    required = rule.spec.unit_ms * required_count(rule.spec, snap, outer)
    if required <= 0 or ts <= state.last_event_ts:
        return NOT_YET_TRUE
    if not schedule_active(schedule_for(rule, snap, outer), ts):
        return FALSE
    return TRUE if state.duration + (ts - state.last_event_ts) > required else NOT_YET_TRUE


def details(rule: AlarmRule, snap: Snapshot, previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """The alarm's details: ``{"data": alarmDetails with ${key} replaced by the value of each
    key of the rule's condition, "dashboardId"}``; a rule without either keeps the old ones."""
    if not rule.details and not rule.dashboard_id:
        return dict(previous or {})
    out: dict[str, Any] = {}
    if rule.details:
        text = rule.details
        for f in rule.condition:
            v = snap.get(f.key)
            if v is not None:
                text = text.replace("${" + f.key.key + "}", _text_of(v))
        out["data"] = text
    if rule.dashboard_id:
        out["dashboardId"] = rule.dashboard_id
    return out


def _text_of(v: Value) -> str:
    return as_text(v) or "null"


# ----------------------------------------------------------------- one alarm of one device
@dataclass(frozen=True)
class CurrentAlarm:
    id: str
    severity: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    """What the node must do: CREATE or UPDATE the alarm at ``severity``, or CLEAR it."""

    kind: str
    severity: str | None
    rule: AlarmRule
    state: RuleState
    details: dict[str, Any]


class AlarmTracker:
    """The rule states of one alarm definition on one device and the alarm it has raised
    (ThingsBoard's AlarmState): :meth:`process` decides, the node acts and reports back."""

    def __init__(self, definition: AlarmDefinition, persisted: Mapping[str, Any] | None = None) -> None:
        self.current: CurrentAlarm | None = None
        self.fetched = False  # the active alarm was looked up (once per tracker)
        self.create_states: dict[str, RuleState] = {}
        self.clear_state = RuleState()
        self.definition = definition
        self.update(definition, persisted)

    def update(self, definition: AlarmDefinition, persisted: Mapping[str, Any] | None = None) -> None:
        """New rules (the profile changed): states of severities still present are kept."""
        old = {s: st.to_json() for s, st in self.create_states.items()}
        saved = persisted.get("createRuleStates") if isinstance(persisted, Mapping) else None
        if isinstance(saved, Mapping):
            old |= dict(saved)
        self.definition = definition
        self.create_states = {s: RuleState.from_json(old.get(s)) for s, _ in definition.create_rules}
        if isinstance(persisted, Mapping) and "clearRuleState" in persisted:
            self.clear_state = RuleState.from_json(persisted.get("clearRuleState"))

    def to_json(self) -> dict[str, Any]:
        return {
            "createRuleStates": {s: st.to_json() for s, st in self.create_states.items()},
            "clearRuleState": self.clear_state.to_json(),
        }

    def _changed(self) -> bool:
        states = [*self.create_states.values(), self.clear_state]
        out = any(s.changed for s in states)
        for s in states:
            s.changed = False
        return out

    def process(
        self,
        snap: Snapshot,
        changed_keys: frozenset[ConditionKey] | None,
        outer: Outer = _no_outer,
        *,
        now: int = 0,
        at: int | None = None,
    ) -> tuple[Action | None, bool]:
        """Decide on a new snapshot (``changed_keys``: only rules using one of them are
        re-checked; None: all) or, with ``at``, on the timer. Returns the action (or None)
        and whether the rule states changed (to persist)."""
        found: tuple[str, AlarmRule, RuleState] | None = None
        for severity, rule in self.definition.create_rules:
            if changed_keys is not None and not (rule.keys & changed_keys):
                continue
            state = self.create_states[severity]
            result = (
                evaluate(rule, state, snap, outer, now) if at is None else evaluate_at(rule, state, at, snap, outer)
            )
            if result == TRUE:
                found = (severity, rule, state)
                break
            if result == FALSE:
                state.reset()
        clear = self.definition.clear_rule
        if found is not None:
            severity, rule, state = found
            self.clear_state.reset()
            kind = "CREATE" if self.current is None else "UPDATE"
            prev = self.current.details if self.current is not None else None
            return Action(kind, severity, rule, state, details(rule, snap, prev)), self._changed()
        if self.current is None or clear is None:
            return None, self._changed()
        if changed_keys is not None and not (clear.keys & changed_keys):
            return None, self._changed()
        result = (
            evaluate(clear, self.clear_state, snap, outer, now)
            if at is None
            else evaluate_at(clear, self.clear_state, at, snap, outer)
        )
        if result == TRUE:
            done = replace(self.clear_state, changed=False)
            action = Action("CLEAR", None, clear, done, details(clear, snap, self.current.details))
            self.clear_state.reset()
            for s in self.create_states.values():
                s.reset()
            return action, self._changed()
        if result == FALSE:
            self.clear_state.reset()
        return None, self._changed()

    def alarm_cleared(self, alarm_id: str | None = None) -> bool:
        """The active alarm was cleared (by the clear rule, a user or the REST API): the
        create rules start again. True when rule states changed."""
        if self.current is None or (alarm_id is not None and self.current.id != alarm_id):
            return False
        self.current = None
        for s in self.create_states.values():
            s.reset()
        return self._changed()
