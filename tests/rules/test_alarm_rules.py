"""Alarm rules of device profiles as pure functions: ThingsBoard's JSON in, decisions out
(conditions, specs, dynamic thresholds, schedules across DST, escalation, clear)."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tbpanel.errors import InvalidInput
from tbpanel.rules import alarm_rules as ar
from tbpanel.store.values import ValueType as V

TEMP = ar.ConditionKey("TIME_SERIES", "temperature")


def num(op, value=None, dynamic=None):
    v = {"defaultValue": value, "userValue": None, "dynamicValue": dynamic}
    return {"type": "NUMERIC", "operation": op, "value": v}


def flt(key, predicate, *, ktype="TIME_SERIES", value_type="NUMERIC", value=None):
    return {"key": {"type": ktype, "key": key}, "valueType": value_type, "value": value, "predicate": predicate}


def rule(*filters, spec=None, schedule=None, details=None):
    return {"condition": {"condition": list(filters), "spec": spec or {"type": "SIMPLE"}}, "schedule": schedule,
            "alarmDetails": details, "dashboardId": None}  # fmt: skip


def alarm(create, clear=None, alarm_type="High Temperature"):
    return {"id": "a1", "alarmType": alarm_type, "createRules": create, "clearRule": clear, "propagate": False,
            "propagateToOwner": False, "propagateToTenant": False, "propagateRelationTypes": None}  # fmt: skip


def snap_of(values: dict[ar.ConditionKey, ar.Value], ts: int = 1000) -> ar.Snapshot:
    s = ar.Snapshot(values)
    s.values = dict(values)
    s.ts = ts
    return s


def holds(filter_json, value: ar.Value | None, extra=None, outer=None) -> bool:
    f = ar.parse_filter(filter_json, "f")
    values = {} if value is None else {f.key: value}
    return ar.condition_true([f], snap_of({**values, **(extra or {})}), outer or (lambda s, k: None))


# --------------------------------------------------------------------------- conditions, as a table
CASES = [
    (num("GREATER", 25), (V.DOUBLE, 25.5), True),
    (num("GREATER", 25), (V.LONG, 25), False),
    (num("GREATER_OR_EQUAL", 25), (V.LONG, 25), True),
    (num("LESS", 25), (V.STR, "24"), True),  # numeric text is a number (ThingsBoard's getDblValue)
    (num("LESS", 25), (V.STR, "warm"), False),  # other text is no number: false
    (num("EQUAL", 1), (V.BOOL, True), True),  # true is 1
    (num("NOT_EQUAL", 3), (V.LONG, 4), True),
    (num("LESS_OR_EQUAL", "10"), (V.DOUBLE, 10.0), True),  # a threshold given as text
    ({"type": "STRING", "operation": "EQUAL", "value": {"defaultValue": "25.0"}}, (V.DOUBLE, 25.0), True),  # 25.0 prints as Java does
    ({"type": "STRING", "operation": "EQUAL", "value": {"defaultValue": "25"}}, (V.LONG, 25), True),
    ({"type": "STRING", "operation": "STARTS_WITH", "value": {"defaultValue": "err"}}, (V.STR, "error 5"), True),
    ({"type": "STRING", "operation": "CONTAINS", "value": {"defaultValue": "OR"}, "ignoreCase": True}, (V.STR, "error"), True),
    ({"type": "STRING", "operation": "NOT_CONTAINS", "value": {"defaultValue": "or"}}, (V.STR, "error"), False),
    ({"type": "STRING", "operation": "IN", "value": {"defaultValue": 'on, "off, maybe", idle'}}, (V.STR, "off, maybe"), True),
    ({"type": "STRING", "operation": "NOT_IN", "value": {"defaultValue": "on,idle"}}, (V.STR, "off"), True),
    ({"type": "STRING", "operation": "ENDS_WITH", "value": {"defaultValue": "ue"}}, (V.BOOL, True), True),
    ({"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": True}}, (V.BOOL, True), True),
    ({"type": "BOOLEAN", "operation": "NOT_EQUAL", "value": {"defaultValue": True}}, (V.LONG, 0), True),  # 0 is false
    ({"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": "true"}}, (V.STR, "TRUE"), True),
    ({"type": "COMPLEX", "operation": "OR", "predicates": [num("LESS", 0), num("GREATER", 100)]}, (V.DOUBLE, 120.0), True),
    ({"type": "COMPLEX", "operation": "OR", "predicates": [num("LESS", 0), num("GREATER", 100)]}, (V.DOUBLE, 50.0), False),
    ({"type": "COMPLEX", "operation": "AND", "predicates": [num("GREATER", 0), num("LESS", 100)]}, (V.DOUBLE, 50.0), True),
    (num("GREATER", 25), None, False),  # no value: false, whatever the operation
    (num("NOT_EQUAL", 25), None, False),
]  # fmt: skip


@pytest.mark.parametrize(("predicate", "value", "expected"), CASES)
def test_condition_table(predicate, value, expected):
    assert holds(flt("temperature", predicate), value) is expected


@given(
    op=st.sampled_from(ar.OPERATIONS["NUMERIC"]),
    x=st.one_of(st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False)),
    y=st.floats(-1e12, 1e12, allow_nan=False),
    as_text=st.booleans(),
)
def test_numeric_operations_agree_with_python(op, x, y, as_text):
    py = {"EQUAL": x == y, "NOT_EQUAL": x != y, "GREATER": x > y, "LESS": x < y,
          "GREATER_OR_EQUAL": x >= y, "LESS_OR_EQUAL": x <= y}[op]  # fmt: skip
    value = (V.LONG, x) if isinstance(x, int) else (V.DOUBLE, x)
    if as_text:
        value = (V.STR, repr(float(x)))
        py = {"EQUAL": float(x) == y, "NOT_EQUAL": float(x) != y, "GREATER": float(x) > y, "LESS": float(x) < y,
              "GREATER_OR_EQUAL": float(x) >= y, "LESS_OR_EQUAL": float(x) <= y}[op]  # fmt: skip
    assert holds(flt("temperature", num(op, y)), value) is py


@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=1, max_size=6))
def test_a_condition_is_the_and_of_its_filters(pairs):
    filters = [flt(f"k{i}", num("GREATER", t)) for i, (_, t) in enumerate(pairs)]
    values = {ar.ConditionKey("TIME_SERIES", f"k{i}"): (V.DOUBLE, v) for i, (v, _) in enumerate(pairs)}
    parsed = [ar.parse_filter(f, "f") for f in filters]
    each = [ar.condition_true([p], snap_of(values)) for p in parsed]
    assert ar.condition_true(parsed, snap_of(values)) is all(each)
    assert each == [v > t for v, t in pairs]


# --------------------------------------------------------------------------- dynamic thresholds
def test_dynamic_threshold_device_attribute_then_customer_then_tenant_with_inherit():
    limit = ar.ConditionKey("ATTRIBUTE", "tempLimit")
    outer_values = {("CURRENT_CUSTOMER", "tempLimit"): (V.LONG, 40), ("CURRENT_TENANT", "tempLimit"): (V.LONG, 60)}

    def outer(source, key):
        return outer_values.get((source, key))

    def dyn(source, inherit):
        return flt(
            "temperature",
            num("GREATER", 25, {"sourceType": source, "sourceAttribute": "tempLimit", "inherit": inherit}),
        )

    t45 = (V.DOUBLE, 45.0)
    assert holds(dyn("CURRENT_DEVICE", False), t45, {limit: (V.LONG, 50)}, outer) is False  # device: 50
    assert holds(dyn("CURRENT_DEVICE", False), t45, {}, outer) is True  # no attribute: the default 25
    assert holds(dyn("CURRENT_DEVICE", True), t45, {}, outer) is True  # inherit: the customer's 40
    assert holds(dyn("CURRENT_CUSTOMER", True), t45, {}, outer) is True
    del outer_values[("CURRENT_CUSTOMER", "tempLimit")]
    assert holds(dyn("CURRENT_DEVICE", True), t45, {}, outer) is False  # the tenant's 60
    assert holds(dyn("CURRENT_CUSTOMER", False), t45, {}, outer) is True  # no inherit: the default
    assert holds(dyn("CURRENT_TENANT", False), t45, {}, outer) is False
    # an attribute that is no number is ignored (the default applies)
    assert holds(dyn("CURRENT_DEVICE", False), t45, {limit: (V.STR, "high")}, outer) is True


def test_a_constant_key_compares_its_value_with_an_attribute():
    f = flt("enabled", {"type": "BOOLEAN", "operation": "EQUAL",
            "value": {"defaultValue": False, "dynamicValue": {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "alarmOn"}}},
            ktype="CONSTANT", value_type="BOOLEAN", value=True)  # fmt: skip
    on = ar.ConditionKey("ATTRIBUTE", "alarmOn")
    assert holds(f, None, {on: (V.BOOL, True)}) is True
    assert holds(f, None, {on: (V.BOOL, False)}) is False
    assert holds(f, None, {}) is False  # no attribute: a constant has no default


# --------------------------------------------------------------------------- specs
def test_repeating_counts_consecutive_messages_and_a_false_one_resets():
    d = ar.parse_alarm(alarm({"MAJOR": rule(flt("temperature", num("GREATER", 30)),
                                            spec={"type": "REPEATING", "predicate": {"defaultValue": 3}})}))  # fmt: skip
    t = ar.AlarmTracker(d)
    snap = ar.Snapshot(ar.entity_keys([d]))
    kinds = []
    for ts, v in enumerate([31, 32, 20, 33, 34, 35, 36], start=1):
        changed = snap.merge("TIME_SERIES", ts * 1000, [("temperature", (V.LONG, v))])
        action, _ = t.process(snap, changed)
        kinds.append(action.kind if action else None)
        if action:
            t.current = ar.CurrentAlarm("x", action.severity or "", action.details)
    assert kinds == [None, None, None, None, None, "CREATE", "UPDATE"]
    assert t.create_states["MAJOR"].event_count == 4


def test_duration_is_more_than_n_units_of_message_time_then_the_timer():
    d = ar.parse_alarm(alarm({"CRITICAL": rule(flt("temperature", num("GREATER", 30)),
                              spec={"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 1}})}))  # fmt: skip
    t = ar.AlarmTracker(d)
    snap = ar.Snapshot(ar.entity_keys([d]))

    def send(ts, v):
        return t.process(snap, snap.merge("TIME_SERIES", T + ts, [("temperature", (V.LONG, v))]))[0]

    T = 1_000_000
    assert send(0, 40) is None
    assert send(30_000, 41) is None
    assert send(60_000, 42) is None  # exactly one minute is not more than one
    a = send(60_001, 42)
    assert a is not None and a.kind == "CREATE" and a.state.duration == 60_001
    # a false message resets the progress; the timer then raises it without a new message
    assert send(70_000, 10) is None and t.create_states["CRITICAL"].duration == 0
    assert send(100_000, 45) is None
    assert t.process(snap, None, at=T + 150_000)[0] is None
    timed = t.process(snap, None, at=T + 160_001)[0]
    assert timed is not None and timed.severity == "CRITICAL"


def test_duration_count_from_an_attribute_that_is_no_number_is_an_error():
    d = ar.parse_alarm(alarm({"CRITICAL": rule(flt("temperature", num("GREATER", 30)), spec={
        "type": "DURATION", "unit": "SECONDS",
        "predicate": {"defaultValue": 5, "dynamicValue": {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "hold"}}})}))  # fmt: skip
    snap = ar.Snapshot(ar.entity_keys([d]))
    snap.put(ar.ConditionKey("ATTRIBUTE", "hold"), (V.STR, "long"), 0)
    with pytest.raises(ar.CountError, match="'hold' with value 'long'"):
        ar.AlarmTracker(d).process(snap, snap.merge("TIME_SERIES", 1, [("temperature", (V.LONG, 40))]))


# --------------------------------------------------------------------------- schedules and DST
BERLIN = ZoneInfo("Europe/Berlin")


def at(y, m, d, hh, mm):
    return int(datetime(y, m, d, hh, mm, tzinfo=BERLIN).timestamp() * 1000)


def test_specific_time_schedule_is_wall_clock_time_across_both_dst_changes():
    s = ar.parse_schedule({"type": "SPECIFIC_TIME", "timezone": "Europe/Berlin", "daysOfWeek": [1, 2, 3, 4, 5, 6, 7],
                           "startsOn": 9 * 3_600_000, "endsOn": 17 * 3_600_000}, "schedule")  # fmt: skip
    # 2026-03-29: clocks go 02:00 -> 03:00; 2026-10-25: 03:00 -> 02:00
    for day in ((3, 28), (3, 29), (3, 30), (10, 24), (10, 25), (10, 26)):
        assert not ar.schedule_active(s, at(2026, *day, 8, 59)), day
        assert ar.schedule_active(s, at(2026, *day, 9, 0)), day
        assert ar.schedule_active(s, at(2026, *day, 16, 59)), day
        assert not ar.schedule_active(s, at(2026, *day, 17, 0)), day
    # on the spring day 09:30 is only 8.5 hours after midnight (what ThingsBoard measures)
    midnight = at(2026, 3, 29, 0, 0)
    assert at(2026, 3, 29, 9, 30) - midnight == 8.5 * 3_600_000


def test_schedule_days_custom_items_and_a_window_over_midnight():
    weekdays = ar.parse_schedule({"type": "SPECIFIC_TIME", "timezone": "Europe/Berlin", "daysOfWeek": [1, 2, 3, 4, 5],
                                  "startsOn": 22 * 3_600_000, "endsOn": 6 * 3_600_000}, "s")  # fmt: skip
    assert ar.schedule_active(weekdays, at(2026, 3, 27, 23, 0))  # Friday night
    assert ar.schedule_active(weekdays, at(2026, 3, 27, 5, 59))  # Friday morning
    assert not ar.schedule_active(weekdays, at(2026, 3, 28, 23, 0))  # Saturday
    assert not ar.schedule_active(weekdays, at(2026, 3, 27, 12, 0))
    custom = ar.parse_schedule({"type": "CUSTOM", "timezone": "Europe/Berlin", "items": [
        {"dayOfWeek": 7, "enabled": True, "startsOn": 3 * 3_600_000, "endsOn": 4 * 3_600_000},
        {"dayOfWeek": 1, "enabled": False, "startsOn": 0, "endsOn": 0}]}, "s")  # fmt: skip
    assert ar.schedule_active(custom, at(2026, 3, 29, 3, 30))  # DST Sunday: 03:30 exists, 02:30 does not
    assert not ar.schedule_active(custom, at(2026, 3, 30, 3, 30))  # Monday: disabled
    assert not ar.schedule_active(custom, at(2026, 3, 28, 3, 30))  # Saturday: no item


def test_a_rule_outside_its_schedule_does_not_fire():
    sched = {"type": "SPECIFIC_TIME", "timezone": "Europe/Berlin", "daysOfWeek": [7], "startsOn": 0, "endsOn": 0}
    d = ar.parse_alarm(alarm({"MINOR": rule(flt("temperature", num("GREATER", 30)), schedule=sched)}))
    t = ar.AlarmTracker(d)
    snap = ar.Snapshot(ar.entity_keys([d]))
    assert (
        t.process(snap, snap.merge("TIME_SERIES", at(2026, 3, 28, 12, 0), [("temperature", (V.LONG, 40))]))[0] is None
    )
    a = t.process(snap, snap.merge("TIME_SERIES", at(2026, 3, 29, 12, 0), [("temperature", (V.LONG, 40))]))[0]
    assert a is not None and a.kind == "CREATE"


# --------------------------------------------------------------------------- severities and clear
def test_escalation_de_escalation_and_clear_with_details():
    d = ar.parse_alarm(alarm(
        {"MINOR": rule(flt("temperature", num("GREATER", 30)), details="warm: ${temperature}"),
         "CRITICAL": rule(flt("temperature", num("GREATER", 50)), details="hot: ${temperature} (${humidity})")},
        clear=rule(flt("temperature", num("LESS", 20)), details="cool again: ${temperature}")))  # fmt: skip
    assert [s for s, _ in d.create_rules] == ["CRITICAL", "MINOR"]  # highest first, whatever the JSON order
    t = ar.AlarmTracker(d)
    snap = ar.Snapshot(ar.entity_keys([d]))
    seen = []
    for ts, v in enumerate([25, 35, 55.5, 40, 25, 10, 12], start=1):
        action, _ = t.process(
            snap, snap.merge("TIME_SERIES", ts, [("temperature", (V.DOUBLE if isinstance(v, float) else V.LONG, v))])
        )
        seen.append(None if action is None else (action.kind, action.severity, action.details.get("data")))
        if action is not None and action.kind != "CLEAR":
            t.current = ar.CurrentAlarm("x", action.severity or "", action.details)
        elif action is not None:
            t.alarm_cleared("x")
    assert seen == [
        None,
        ("CREATE", "MINOR", "warm: 35"),
        ("UPDATE", "CRITICAL", "hot: 55.5 (${humidity})"),  # unknown keys stay as they are
        ("UPDATE", "MINOR", "warm: 40"),  # de-escalation (see the module docstring)
        None,  # between the rules: the alarm stays
        ("CLEAR", None, "cool again: 10"),
        None,  # nothing active: the clear rule is not checked
    ]


def test_only_rules_using_a_changed_key_are_checked():
    d = ar.parse_alarm(alarm({"MAJOR": rule(flt("temperature", num("GREATER", 30)),
                                            spec={"type": "REPEATING", "predicate": {"defaultValue": 2}})}))  # fmt: skip
    t = ar.AlarmTracker(d)
    snap = ar.Snapshot([TEMP, ar.ConditionKey("TIME_SERIES", "humidity")])
    t.process(snap, snap.merge("TIME_SERIES", 1, [("temperature", (V.LONG, 40))]))
    t.process(snap, snap.merge("TIME_SERIES", 1, [("temperature", (V.LONG, 40))]))  # same ts and value: no news
    t.process(snap, frozenset({ar.ConditionKey("TIME_SERIES", "humidity")}))
    assert t.create_states["MAJOR"].event_count == 1


# --------------------------------------------------------------------------- ThingsBoard's JSON
THERMOSTAT = {  # what ThingsBoard 3.x's UI saves for its "thermostat" demo profile (trimmed ids)
    "alarms": [{
        "id": "highTemperatureAlarmID", "alarmType": "High Temperature", "propagate": False,
        "createRules": {"MAJOR": {"condition": {"condition": [
            {"key": {"type": "TIME_SERIES", "key": "temperature"}, "valueType": "NUMERIC", "value": None,
             "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 25.0, "userValue": None,
                "dynamicValue": {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "temperatureAlarmThreshold", "inherit": False}}}},
            {"key": {"type": "ATTRIBUTE", "key": "temperatureAlarmFlag"}, "valueType": "BOOLEAN", "value": None,
             "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": True, "userValue": None, "dynamicValue": None}}}],
            "spec": {"type": "SIMPLE"}}, "schedule": {"type": "ANY_TIME"},
            "alarmDetails": "Current temperature = ${temperature}", "dashboardId": None}},
        "clearRule": {"condition": {"condition": [
            {"key": {"type": "TIME_SERIES", "key": "temperature"}, "valueType": "NUMERIC", "value": None,
             "predicate": {"type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": {"defaultValue": 25.0, "userValue": None,
                "dynamicValue": {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "temperatureAlarmThreshold", "inherit": False}}}}],
            "spec": {"type": "SIMPLE"}}, "schedule": {"type": "ANY_TIME"}, "alarmDetails": "Current temperature = ${temperature}",
            "dashboardId": None},
        "propagateToOwner": False, "propagateToTenant": False, "propagateRelationTypes": None}],
    "configuration": {"type": "DEFAULT"},
}  # fmt: skip


def test_thingsboard_thermostat_profile_json_in_evaluation_out():
    [d] = ar.parse_alarms(THERMOSTAT)
    assert ar.entity_keys([d]) == {
        TEMP,
        ar.ConditionKey("ATTRIBUTE", "temperatureAlarmFlag"),
        ar.ConditionKey("ATTRIBUTE", "temperatureAlarmThreshold"),
    }
    t = ar.AlarmTracker(d)
    snap = ar.Snapshot(ar.entity_keys([d]))
    snap.put(ar.ConditionKey("ATTRIBUTE", "temperatureAlarmFlag"), (V.BOOL, True), 0)
    snap.put(ar.ConditionKey("ATTRIBUTE", "temperatureAlarmThreshold"), (V.LONG, 30), 0)
    assert t.process(snap, snap.merge("TIME_SERIES", 1, [("temperature", (V.DOUBLE, 28.0))]))[0] is None  # 28 < 30
    a = t.process(snap, snap.merge("TIME_SERIES", 2, [("temperature", (V.DOUBLE, 31.0))]))[0]
    assert a is not None and (a.kind, a.severity, a.details) == (
        "CREATE",
        "MAJOR",
        {"data": "Current temperature = 31.0"},
    )
    t.current = ar.CurrentAlarm("x", "MAJOR", a.details)
    c = t.process(snap, snap.merge("TIME_SERIES", 3, [("temperature", (V.DOUBLE, 29.5))]))[0]
    assert c is not None and c.kind == "CLEAR"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda a: a.update(alarmType=""), "alarms[0].alarmType"),
        (lambda a: a.update(createRules=[]), "alarms[0].createRules"),
        (lambda a: a["createRules"].update(SEVERE=a["createRules"]["MAJOR"]), "alarms[0].createRules key"),
        (lambda a: a["createRules"]["MAJOR"]["condition"].update(condition=[]), "createRules.MAJOR.condition.condition"),
        (lambda a: a["createRules"]["MAJOR"]["condition"]["condition"][0]["predicate"].update(operation="ABOVE"),
         "createRules.MAJOR.condition.condition[0].predicate.operation"),
        (lambda a: a["createRules"]["MAJOR"]["condition"]["condition"][1]["predicate"]["value"].update(defaultValue="yes"),
         "condition.condition[1].predicate.value.defaultValue"),
        (lambda a: a["createRules"]["MAJOR"]["condition"]["condition"][0]["key"].update(type="SERVER_SCOPE"),
         "condition.condition[0].key.type"),
        (lambda a: a["createRules"]["MAJOR"]["condition"].update(spec={"type": "DURATION", "unit": "WEEKS", "predicate": {"defaultValue": 1}}),
         "createRules.MAJOR.condition.spec.unit"),
        (lambda a: a["createRules"]["MAJOR"]["condition"].update(spec={"type": "REPEATING", "predicate": {"defaultValue": 0}}),
         "spec.predicate.defaultValue"),
        (lambda a: a["createRules"]["MAJOR"].update(schedule={"type": "SPECIFIC_TIME", "timezone": "Mars/Base", "daysOfWeek": [1]}),
         "createRules.MAJOR.schedule.timezone"),
        (lambda a: a["createRules"]["MAJOR"].update(schedule={"type": "SPECIFIC_TIME", "timezone": "UTC", "daysOfWeek": [8]}),
         "schedule.daysOfWeek[0]"),
        (lambda a: a["clearRule"]["condition"]["condition"][0]["predicate"]["value"]["dynamicValue"].update(sourceType="CURRENT_USER"),
         "clearRule.condition.condition[0].predicate.value.dynamicValue.sourceType"),
    ],
)  # fmt: skip
def test_errors_name_the_field(mutate, field):
    import copy

    data = copy.deepcopy(THERMOSTAT)
    mutate(data["alarms"][0])
    with pytest.raises(InvalidInput) as e:
        ar.parse_alarms(data)
    assert field in str(e.value), str(e.value)
    assert str(e.value).startswith("profileData.alarms[0]")


def test_an_alarm_without_create_rules_is_accepted_and_never_fires():
    [d] = ar.parse_alarms({"alarms": [{"id": "a", "alarmType": "hot"}]})  # ThingsBoard stores it too
    assert d.create_rules == () and d.clear_rule is None
    snap = ar.Snapshot(ar.entity_keys([d]))
    assert ar.AlarmTracker(d).process(snap, None) == (None, False)


def test_two_alarms_of_one_type_are_refused():
    data = {"alarms": [THERMOSTAT["alarms"][0], {**THERMOSTAT["alarms"][0], "id": "other"}]}
    with pytest.raises(InvalidInput, match=r"alarms\[1\]\.alarmType 'High Temperature' is already used by alarms\[0\]"):
        ar.parse_alarms(data)


def test_conversions_follow_thingsboard():
    assert ar.as_text((V.DOUBLE, 25.0)) == "25.0" and ar.as_text((V.BOOL, 1)) == "true"
    assert ar.as_double((V.STR, " 7.5 ")) == 7.5 and ar.as_double((V.JSON, "{}")) is None
    assert ar.as_bool((V.DOUBLE, 0.1)) is True and ar.as_bool((V.STR, "yes")) is False
    assert ar.as_long((V.DOUBLE, 2.9)) == 2 and ar.as_long((V.STR, "2.5")) is None
    assert math.isnan(ar.as_double((V.DOUBLE, float("nan"))) or float("nan"))
