"""The device profile node run by the rule engine on a real platform (entities, telemetry and
alarms on SQLite files in a tmp dir): alarms it raises are the alarm service's, rule state
survives a restart, the timer raises DURATION alarms of quiet devices."""

from __future__ import annotations

from typing import Any

import pytest

from tbpanel.alarms import AlarmQuery
from tbpanel.platform import Platform
from tbpanel.rules import RuleEngine, Services, device_msg
from tbpanel.rules.message import ATTRIBUTES_UPDATED, POST_TELEMETRY_REQUEST
from tbpanel.rules.node_state import RuleNodeStates
from tbpanel.rules.nodes.actions import rule_user
from tbpanel.store import payload
from tbpanel.store.validate import payload_points
from tests.rules.conftest import T0
from tests.rules.helpers import chain

PROFILE_NODE = "profile.TbDeviceProfileNode"
MIN = 60_000


def num(key: str, op: str, value: float, dynamic: str | None = None, source: str = "CURRENT_DEVICE") -> dict:
    dyn = {"sourceType": source, "sourceAttribute": dynamic, "inherit": False} if dynamic else None
    return {
        "key": {"type": "TIME_SERIES", "key": key},
        "valueType": "NUMERIC",
        "value": None,
        "predicate": {"type": "NUMERIC", "operation": op, "value": {"defaultValue": value, "dynamicValue": dyn}},
    }


def rule(*filters: dict, spec: dict | None = None, details: str | None = None) -> dict:
    return {"condition": {"condition": list(filters), "spec": spec or {"type": "SIMPLE"}}, "alarmDetails": details}


def set_alarms(platform, tenant, device, *alarms: dict) -> None:
    profile = platform.registry.get_device_profile(device.device_profile_id)
    platform.registry.save_device_profile(
        tenant.id, {"id": profile.id, "name": profile.name, "profileData": {"alarms": list(alarms)}}
    )


def telemetry(tenant, device, ts: int, **values: Any):
    return device_msg(POST_TELEMETRY_REQUEST, device.id, values, tenant_id=tenant.id, device_name=device.name, ts=ts)


def saved(platform, msg) -> Any:
    """Store the message's telemetry first, as the platform does before the chain runs."""
    platform.store.write_points(payload_points(msg.originator.id, payload.parse_telemetry(msg.data, msg.ts)))
    return msg


def alarms_of(platform, tenant, alarm_type: str):
    found, _ = platform.alarms.query(rule_user(tenant.id), AlarmQuery(tenant_id=tenant.id, types=[alarm_type]))
    return found


def relations(result) -> list[str]:
    return sorted(e.relation for e in result.ended)


@pytest.fixture
def profile_chain(tenant):
    def make(config: dict | None = None):
        return chain(tenant.id, [(PROFILE_NODE, "Device Profile Node", config or {})], [])

    return make


def test_alarm_lifecycle_on_saved_messages_with_a_server_attribute_threshold(
    engine, platform, tenant, device, profile_chain, clock
):
    clock.t = T0 + 10 * MIN  # the messages are from before now (a future ts would start the alarm now)
    set_alarms(
        platform, tenant, device,
        {"id": "hot", "alarmType": "High Temperature",
         "createRules": {"MAJOR": rule(num("temperature", "GREATER", 25, dynamic="limit"), details="t=${temperature}")},
         "clearRule": rule(num("temperature", "LESS_OR_EQUAL", 20))},
    )  # fmt: skip
    platform.registry.save_attributes(device.id, "SERVER_SCOPE", [(T0, "limit", 1, 30)])
    engine.set_chain(profile_chain())
    heard = []
    platform.alarms.changed.connect(lambda kind, a: heard.append((kind, a.type, a.severity, a.cleared)))

    r = engine.process(saved(platform, telemetry(tenant, device, T0, temperature=28)))
    assert relations(r) == ["Success"] and alarms_of(platform, tenant, "High Temperature") == []  # 28 <= 30

    r = engine.process(saved(platform, telemetry(tenant, device, T0 + 1000, temperature=31.5)))
    assert relations(r) == ["Alarm Created", "Success"]
    created = next(e.msg for e in r.ended if e.relation == "Alarm Created")
    assert created.type == "ALARM" and created.metadata["isNewAlarm"] == "true"
    assert created.data["severity"] == "MAJOR" and created.data["details"] == {"data": "t=31.5"}
    [a] = alarms_of(platform, tenant, "High Temperature")
    assert (a.severity, a.status, a.start_ts, a.originator_id) == ("MAJOR", "ACTIVE_UNACK", T0 + 1000, device.id)

    r = engine.process(saved(platform, telemetry(tenant, device, T0 + 2000, temperature=33)))
    assert relations(r) == ["Alarm Updated", "Success"]
    assert platform.alarms.repo.active_for(device.id, "High Temperature").details == {"data": "t=33"}

    # the threshold rises above the temperature: no create rule holds, the clear rule does not either
    platform.registry.save_attributes(device.id, "SERVER_SCOPE", [(T0 + 3000, "limit", 1, 40)])
    up = device_msg(
        ATTRIBUTES_UPDATED, device.id, {"limit": 40}, tenant_id=tenant.id, metadata={"scope": "SERVER_SCOPE"}
    )
    assert relations(engine.process(up)) == ["Success"]
    assert platform.alarms.repo.active_for(device.id, "High Temperature") is not None

    r = engine.process(saved(platform, telemetry(tenant, device, T0 + 4000, temperature=19)))
    assert relations(r) == ["Alarm Cleared", "Success"]
    [a] = alarms_of(platform, tenant, "High Temperature")
    assert a.status == "CLEARED_UNACK"
    assert [h[3] for h in heard] == [False, False, True]  # AlarmService.changed: created, updated, cleared


def test_escalation_and_de_escalation_emit_severity_updated(engine, platform, tenant, device, profile_chain):
    set_alarms(
        platform, tenant, device,
        {"id": "t", "alarmType": "Temp",
         "createRules": {"MINOR": rule(num("temperature", "GREATER", 30)), "CRITICAL": rule(num("temperature", "GREATER", 50))}},
    )  # fmt: skip
    engine.set_chain(profile_chain())
    got = []
    for i, t in enumerate([35, 60, 40]):
        r = engine.process(telemetry(tenant, device, T0 + i, temperature=t))
        alarm = [e for e in r.ended if e.relation != "Success"]
        got.append((alarm[0].relation, alarm[0].msg.data["severity"], alarm[0].msg.metadata.get("isSeverityUpdated")))
    assert got == [
        ("Alarm Created", "MINOR", None),
        ("Alarm Severity Updated", "CRITICAL", "true"),
        ("Alarm Severity Updated", "MINOR", "true"),
    ]
    [a] = alarms_of(platform, tenant, "Temp")
    assert a.severity == "MINOR" and a.active


def test_a_user_clearing_the_alarm_lets_the_rules_raise_a_new_one(engine, platform, tenant, device, profile_chain):
    set_alarms(
        platform,
        tenant,
        device,
        {"id": "t", "alarmType": "Temp", "createRules": {"MAJOR": rule(num("temperature", "GREATER", 30))}},
    )
    engine.set_chain(profile_chain())
    engine.process(telemetry(tenant, device, T0, temperature=35))
    first = platform.alarms.repo.active_for(device.id, "Temp")
    platform.alarms.clear(rule_user(tenant.id), first.id)  # from /alarms, say: the node is not told
    r = engine.process(telemetry(tenant, device, T0 + 1, temperature=36))
    assert relations(r) == ["Alarm Created", "Success"]
    assert platform.alarms.repo.active_for(device.id, "Temp").id != first.id


def test_another_tenants_device_is_refused(engine, platform, tenant, device, profile_chain):
    other = platform.registry.create_tenant("Other")
    theirs = platform.registry.save_device(other.id, "their-device")
    engine.set_chain(profile_chain())
    forged = device_msg(POST_TELEMETRY_REQUEST, theirs.id, {"temperature": 99}, tenant_id=tenant.id, ts=T0)
    assert relations(engine.process(forged)) == ["Failure"]


def test_the_timer_raises_a_duration_alarm_of_a_quiet_device(engine, platform, tenant, device, profile_chain, clock):
    spec = {"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 2}}
    set_alarms(platform, tenant, device, {"id": "t", "alarmType": "Hot for long",
                                          "createRules": {"CRITICAL": rule(num("temperature", "GREATER", 30), spec=spec)}})  # fmt: skip
    engine.set_chain(profile_chain())
    engine.process(telemetry(tenant, device, T0, temperature=35))
    engine.process(telemetry(tenant, device, T0 + MIN, temperature=36))
    clock.t = T0 + 2 * MIN
    assert engine.tick().ended == [] and alarms_of(platform, tenant, "Hot for long") == []
    clock.t = T0 + 3 * MIN
    r = engine.tick()
    assert [e.relation for e in r.ended] == ["Alarm Created"]
    assert int(r.ended[0].msg.metadata["alarmConditionDuration"]) == MIN  # what the messages spanned
    [a] = alarms_of(platform, tenant, "Hot for long")
    assert a.severity == "CRITICAL"


def long_heat(data, spec: dict, config: dict, temperatures: list[float]):
    """A platform on ``data`` with one oven whose profile raises "Long heat" when its
    temperature stays above 30 (``spec``), a root chain of one profile node (``config``), and
    the temperatures sent a minute apart; closed again (the restart is the caller's)."""
    alarm = {
        "id": "t",
        "alarmType": "Long heat",
        "createRules": {"MAJOR": rule(num("temperature", "GREATER", 30), spec=spec)},
    }
    p = Platform(data, compaction_interval_s=0)
    try:
        tenant = p.registry.create_tenant("T")
        device = p.registry.save_device(tenant.id, "d1", type="oven")
        set_alarms(p, tenant, device, alarm)
        p.rules.chains.save(chain(tenant.id, [(PROFILE_NODE, "DP", config)], []))
        results = [
            p.rules.engine.process(telemetry(tenant, device, T0 + i * MIN, temperature=t))
            for i, t in enumerate(temperatures)
        ]
    finally:
        p.close()
    return tenant, device, results


@pytest.mark.parametrize("persist", [True, False])
def test_duration_progress_survives_a_restart_when_persisted(tmp_path, persist):
    data = tmp_path / "data"
    spec = {"type": "DURATION", "unit": "SECONDS", "predicate": {"defaultValue": 90}}
    tenant, device, results = long_heat(data, spec, {"persistAlarmRulesState": persist}, [40, 40])
    assert [relations(r) for r in results] == [["Success"], ["Success"]]  # true for one minute
    p = Platform(data, compaction_interval_s=0)
    try:
        r = p.rules.engine.process(telemetry(tenant, device, T0 + 2 * MIN, temperature=41))  # two minutes > 90 s
        assert relations(r) == (["Alarm Created", "Success"] if persist else ["Success"])
        states = RuleNodeStates(p.rules.queue.db).all(p.rules.chains.list(tenant.id)[0].nodes[0].id)
        assert bool(states) is persist
        if persist:
            assert states[0][2]["alarmStates"]["t"]["createRuleStates"]["MAJOR"]["duration"] == 2 * MIN
    finally:
        p.close()


def test_fetch_on_start_lets_the_timer_cover_devices_silent_since_the_restart(tmp_path):
    data = tmp_path / "data"
    spec = {"type": "DURATION", "unit": "MINUTES", "predicate": {"defaultValue": 1}}
    config = {"persistAlarmRulesState": True, "fetchAlarmRulesStateOnStart": True}
    tenant, device, _ = long_heat(data, spec, config, [40])
    p = Platform(data, compaction_interval_s=0)
    try:
        clock = [T0 + 5 * MIN]
        engine = RuleEngine(
            Services(store=p.store, registry=p.registry, alarms=p.alarms, clock=lambda: clock[0],
                     node_states=RuleNodeStates(p.rules.queue.db))
        )  # fmt: skip
        for c in p.rules.chains.list(tenant.id):
            engine.set_chain(c)
        clock[0] += 2 * MIN
        r = engine.tick()
        assert [e.relation for e in r.ended] == ["Alarm Created"]
        assert p.alarms.repo.active_for(device.id, "Long heat") is not None
        engine.close()
    finally:
        p.close()


def test_the_default_root_chain_runs_the_alarm_rules_and_still_stores(engine, platform, tenant, device):
    from tbpanel.rules import default_root_chain

    set_alarms(
        platform,
        tenant,
        device,
        {"id": "t", "alarmType": "Temp", "createRules": {"MAJOR": rule(num("temperature", "GREATER", 30))}},
    )
    engine.set_chain(default_root_chain(tenant.id))
    r = engine.process(telemetry(tenant, device, T0, temperature=35))
    assert sorted((e.node_name, e.relation) for e in r.ended) == [
        ("Device Profile Node", "Alarm Created"),
        ("Save Timeseries", "Success"),
    ]
    assert platform.store.latest(device.id)["temperature"][0] == T0
    assert platform.alarms.repo.active_for(device.id, "Temp").severity == "MAJOR"
