"""The alarm-rules editor's view model (``views/profiles.py``) without a browser: forms read
ThingsBoard's JSON and write it back, errors land on their fields, a refused save stores
nothing, only the tenant's administrator may edit."""

from __future__ import annotations

import copy

import pytest

from tbpanel.errors import PermissionDenied
from tbpanel.rules import alarm_rules as ar
from tbpanel.views.profiles import ConditionForm, ProfilesView
from tests.rules.test_alarm_rules import THERMOSTAT


@pytest.fixture
def admin(platform, tenant):
    return platform.registry.create_user("admin@t.example", "Secret-pass-1", "TENANT_ADMIN", tenant.id)


def test_forms_round_trip_thingsboards_json(platform, tenant, device, admin):
    profile = platform.registry.get_device_profile(device.device_profile_id)
    data = copy.deepcopy(THERMOSTAT)
    data["alarms"][0]["createRules"]["MAJOR"]["condition"]["condition"].append(
        {"key": {"type": "TIME_SERIES", "key": "humidity"}, "valueType": "NUMERIC",
         "predicate": {"type": "COMPLEX", "operation": "OR", "predicates": [
             {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 10}},
             {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 90}}]}})  # fmt: skip
    platform.registry.save_device_profile(tenant.id, {"id": profile.id, "name": profile.name, "profileData": data})
    view = ProfilesView(platform, admin)
    assert {r["name"]: r["alarms"] for r in view.load_profiles()}[profile.name] == 1
    view.open(profile.id)
    [alarm] = view.alarms
    major = alarm.create_rules[0]
    temp, flag, humidity = major.conditions
    assert (temp.key, temp.operation, temp.threshold, temp.threshold_attribute) == (
        "temperature", "GREATER", "25.0", "temperatureAlarmThreshold")  # fmt: skip
    assert (flag.key_type, flag.value_type, flag.threshold) == ("ATTRIBUTE", "BOOLEAN", "true")
    assert humidity.raw is not None and "complex" in humidity.summary  # kept as it was
    assert ar.parse_alarms({"alarms": view.alarms_json()}) == ar.parse_alarms(data)
    assert view.save() and view.message.startswith("Saved 1 alarm rule")
    assert ar.parse_alarms(platform.registry.get_device_profile(profile.id).profile_data) == ar.parse_alarms(data)


def test_a_new_rule_with_errors_saves_nothing_then_saves_once_corrected(platform, tenant, device, admin):
    profile = platform.registry.get_device_profile(device.device_profile_id)
    before = platform.registry.get_device_profile(profile.id).profile_data
    view = ProfilesView(platform, admin)
    view.open(profile.id)
    alarm = view.add_alarm()
    rule = alarm.create_rules[0]
    cond = rule.conditions[0]
    cond.param.update(key="", threshold="hot")
    rule.param.update(spec_type="REPEATING", count=0, schedule_type="SPECIFIC_TIME", timezone="Mars/Base", starts="9am")
    assert not view.save()
    assert "Nothing was saved" in view.error
    assert set(alarm.errors) == {"alarm_type"}
    assert set(cond.errors) == {"key", "threshold"} and "not a number" in cond.errors["threshold"]
    assert set(rule.errors) == {"count", "timezone", "starts"}
    assert platform.registry.get_device_profile(profile.id).profile_data == before

    alarm.alarm_type = "Overheat"
    cond.param.update(key="temperature", threshold="30")
    rule.param.update(count=3, timezone="Europe/Berlin", starts="09:00", ends="17:30", days=["Mon", "Fri"])
    alarm.add_severity().conditions = [ConditionForm(key="temperature", threshold="20", operation="GREATER")]
    assert view.save(), view.error
    [d] = ar.parse_alarms(platform.registry.get_device_profile(profile.id).profile_data)
    assert d.alarm_type == "Overheat" and [s for s, _ in d.create_rules] == ["CRITICAL", "MAJOR"]
    critical = d.create_rules[0][1]
    assert critical.spec.type == "REPEATING" and critical.spec.count == ar.PredicateValue(3)
    assert critical.schedule == ar.Schedule(
        "SPECIFIC_TIME", "Europe/Berlin", frozenset({1, 5}), 9 * 3_600_000, (17 * 60 + 30) * 60_000
    )


def test_operations_must_fit_the_value_type_and_alarm_types_be_unique(platform, tenant, device, admin):
    view = ProfilesView(platform, admin)
    view.open(device.device_profile_id)
    a, b = view.add_alarm(), view.add_alarm()
    a.alarm_type = b.alarm_type = "Same"
    for alarm in (a, b):
        alarm.create_rules[0].conditions[0].param.update(key="t", threshold="1")
    a.create_rules[0].conditions[0].param.update(value_type="BOOLEAN", operation="GREATER", threshold="true")
    assert not view.save()
    assert "operation" in a.create_rules[0].conditions[0].errors
    assert "already" in b.errors["alarm_type"]


def test_only_the_tenants_administrator_edits(platform, tenant, device, admin):
    customer = platform.registry.save_customer(tenant.id, {"title": "C"})
    user = platform.registry.create_user("c@t.example", "Secret-pass-1", "CUSTOMER_USER", tenant.id, customer.id)
    with pytest.raises(PermissionDenied):
        ProfilesView(platform, user)
    other = platform.registry.create_tenant("Other")
    theirs = platform.registry.default_device_profile(other.id)
    view = ProfilesView(platform, admin)
    with pytest.raises(PermissionDenied):
        view.open(theirs.id)
    assert theirs.id not in {r["id"] for r in view.load_profiles()}
