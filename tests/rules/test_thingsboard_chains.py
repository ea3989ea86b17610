"""ThingsBoard's own chains, imported from its files, behave as in ThingsBoard: the default
root chain stores telemetry and client attributes; the demo Thermostat Alarms chain (called
from a root chain) raises and clears alarms against thresholds in server attributes."""

from __future__ import annotations

import json

from tbpanel.rules import default_root_chain, device_msg, import_chain, telemetry_msgs
from tbpanel.store import ValueType
from tests.rules.conftest import FIXTURES


def test_default_root_chain_stores_like_ingest(engine, platform, tenant, device):
    engine.set_chain(default_root_chain(tenant.id))
    info = dict(device_name=device.name, device_type=device.type)
    for m in telemetry_msgs(device.id, {1000: {"t": 20.5}, 2000: {"t": 21.0, "h": 40}}, tenant_id=tenant.id, **info):
        assert engine.process(m).ok
    assert platform.store.query_raw(device.id, ["t"], 0, 10_000, order="ASC")["t"] == [
        (1000, int(ValueType.DOUBLE), 20.5),
        (2000, int(ValueType.DOUBLE), 21.0),
    ]
    r = engine.process(device_msg("POST_ATTRIBUTES_REQUEST", device.id, {"fw": "v1"}, tenant_id=tenant.id, **info))
    assert r.ok and platform.registry.get_attributes(device.id, "CLIENT_SCOPE")[0]["value"] == "v1"
    # a type with a label but no connection is done at the switch; the rest are logged
    r = engine.process(device_msg("CONNECT_EVENT", device.id, {}, tenant_id=tenant.id, **info))
    assert [(e.node_name, e.relation) for e in r.ended] == [("Message Type Switch", "Connect Event")]
    r = engine.process(device_msg("ANOMALY_CREATED", device.id, {}, tenant_id=tenant.id, **info))
    assert [(e.node_name, e.relation) for e in r.ended] == [("Log Other", "Success")]


def test_thingsboards_current_root_chain_file_runs(engine, platform, tenant, device):
    engine.set_chain(import_chain((FIXTURES / "root_rule_chain.json").read_text(), tenant_id=tenant.id))
    m = device_msg("POST_TELEMETRY_REQUEST", device.id, {"x": 1}, tenant_id=tenant.id, ts=3000)
    assert engine.process(m).ok and platform.store.latest(device.id)["x"][0] == 3000


def test_thermostat_alarms_chain(engine, platform, tenant, device):
    thermostat = import_chain((FIXTURES / "thermostat_alarms.json").read_text(), tenant_id=tenant.id)
    root = default_root_chain(tenant.id)
    doc = root.export_json()
    # the demo root chain sends telemetry through the thermostat chain after saving it
    doc["metadata"]["nodes"].append(
        {
            "type": "org.thingsboard.rule.engine.flow.TbRuleChainInputNode",
            "name": "Thermostat Alarms",
            "configuration": {"ruleChainId": thermostat.id},
        }
    )
    doc["metadata"]["connections"].append(
        {"fromIndex": 0, "toIndex": len(doc["metadata"]["nodes"]) - 1, "type": "Success"}
    )
    root = import_chain(json.loads(json.dumps(doc)), tenant_id=tenant.id)
    engine.set_chain(thermostat)
    engine.set_chain(root)
    reg = platform.registry
    reg.save_attributes(
        device.id,
        "SERVER_SCOPE",
        [
            (1, "alarmTemperature", int(ValueType.BOOL), True),
            (1, "thresholdTemperature", int(ValueType.DOUBLE), 25.0),
            (1, "alarmHumidity", int(ValueType.BOOL), True),
            (1, "thresholdHumidity", int(ValueType.LONG), 30),
        ],
    )

    def post(ts, **values):
        [m] = telemetry_msgs(
            device.id, {ts: values}, tenant_id=tenant.id, device_name=device.name, device_type=device.type
        )
        r = engine.process(m)
        assert r.ok, [e.msg.metadata.get("error") for e in r.unhandled_failures]
        return sorted(e.relation for e in r.ended)

    active = lambda t: platform.alarms.repo.active_for(device.id, t)  # noqa: E731
    assert post(1000, temperature=20, humidity=50) == ["False", "False"]  # nothing to clear
    assert active("High Temperature") is None and active("Low Humidity") is None
    assert post(2000, temperature=30, humidity=50) == ["Created", "False"]
    alarm = active("High Temperature")
    assert alarm.severity == "MAJOR" and alarm.details == {"triggerValue": 30} and alarm.propagate
    assert post(3000, temperature=31, humidity=20) == ["Created", "Updated"]
    assert active("High Temperature").details == {"triggerValue": 31}
    assert active("Low Humidity").severity == "MINOR" and active("Low Humidity").details == {"triggerValue": 20}
    assert post(4000, temperature=22, humidity=45) == ["Cleared", "Cleared"]
    assert active("High Temperature") is None and active("Low Humidity") is None
    # the telemetry was saved by the root chain all along
    assert len(platform.store.query_raw(device.id, ["temperature"], 0, 10_000)["temperature"]) == 4
    # alarms off in the attributes: the switch emits nothing for temperature
    reg.save_attributes(device.id, "SERVER_SCOPE", [(2, "alarmTemperature", int(ValueType.BOOL), False)])
    assert post(5000, temperature=99, humidity=50) == ["False"]
    assert active("High Temperature") is None
