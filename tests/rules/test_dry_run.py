"""Dry runs (``tb.rules.dry_run``): a chain replayed over a DataFrame says what each message
would have done — alarms created, updated, cleared, telemetry saved, calls made — and does
none of it: no telemetry written, no alarm row, nothing sent. Also ``tb.rules``' build / save /
import / export, and the dead-letter list with its retry."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tbpanel.errors import InvalidInput, NotFound
from tbpanel.rules import device_msg, import_chain
from tbpanel.rules.tenant_rules import TenantRules
from tbpanel.store import ValueType
from tests.rules.conftest import FIXTURES, T0

RULE_CHAIN = "org.thingsboard.rule.engine.flow.TbRuleChainInputNode"


def thresholds(platform, device) -> None:
    platform.registry.save_attributes(
        device.id,
        "SERVER_SCOPE",
        [
            (1, "alarmTemperature", int(ValueType.BOOL), True),
            (1, "thresholdTemperature", int(ValueType.DOUBLE), 25.0),
            (1, "alarmHumidity", int(ValueType.BOOL), True),
            (1, "thresholdHumidity", int(ValueType.LONG), 30),
        ],
    )


def thermostat_chains(platform, tenant):
    """ThingsBoard's demo: a root chain that saves telemetry, then calls Thermostat Alarms."""
    rules = platform.rules
    thermostat = rules.save(import_chain((FIXTURES / "thermostat_alarms.json").read_text(), tenant_id=tenant.id))
    root = rules.list(tenant)[0]
    assert root.root
    doc = root.export_json()
    doc["metadata"]["nodes"].append(
        {"type": RULE_CHAIN, "name": "Thermostat", "configuration": {"ruleChainId": thermostat.id}}
    )
    doc["metadata"]["connections"].append(
        {"fromIndex": 0, "toIndex": len(doc["metadata"]["nodes"]) - 1, "type": "Success"}
    )
    return rules.save(import_chain(doc, tenant_id=tenant.id, keep_id=True)), thermostat


def test_what_would_have_alarmed(platform, tenant, device):
    thresholds(platform, device)
    root, _ = thermostat_chains(platform, tenant)
    assert root.nodes[0].name == "Save Timeseries"
    ts = pd.to_datetime([T0 + i * 60_000 for i in range(5)], unit="ms", utc=True)
    frame = pd.DataFrame(
        {"temperature": [20.0, 30.0, 31.0, 22.0, None], "humidity": [50, 50, 20, 45, 40]}, index=pd.Index(ts, name="ts")
    )
    report = platform.rules.dry_run(root, frame, device=device.name, tenant=tenant)
    assert list(report["ts"]) == list(ts) and set(report["device"]) == {device.name}
    assert list(report["alarms_created"]) == [[], ["High Temperature (MAJOR)"], ["Low Humidity (MINOR)"], [], []]
    assert list(report["alarms_updated"]) == [[], [], ["High Temperature (MAJOR)"], [], []]
    assert sorted(report["alarms_cleared"][3]) == ["High Temperature (MAJOR)", "Low Humidity (MINOR)"]
    assert report["data"][4] == {"humidity": 40}  # a missing value is left out, not sent as NaN
    assert list(report["timeseries_saved"]) == [2, 2, 2, 2, 1]
    assert "Message Type Switch -[Post telemetry]->" in report["path"][1]
    assert "Check Alarms -[NewTempAlarm]->" in report["path"][1]
    assert report["error"].isna().all()
    # nothing happened for real: no telemetry, no alarm
    assert platform.store.latest(device.id) == {}
    assert platform.alarms.repo.active_for(device.id, "High Temperature") is None
    assert platform.alarms.repo.active_for(device.id, "Low Humidity") is None


def test_long_format_and_real_alarms_as_the_start(platform, tenant, device):
    """A ``device`` column names each row's device; an alarm already active for real is what
    the run starts from (cleared in the run, still active after it)."""
    thresholds(platform, device)
    other = platform.registry.save_device(tenant.id, "thermostat-2", type="thermostat")
    thresholds(platform, other)
    _, thermostat = thermostat_chains(platform, tenant)
    from tbpanel.rules.nodes.actions import rule_user

    real = platform.alarms.save(
        rule_user(tenant.id), {"originator_id": device.id, "type": "High Temperature", "severity": "MAJOR"}
    )
    frame = pd.DataFrame(
        {
            "ts": [T0, T0 + 1000, T0 + 2000],
            "device": [device.name, other.name, other.id],
            "temperature": [21.0, 40.0, 20.0],
            "humidity": [50, 50, 50],
        }
    )
    report = platform.rules.dry_run(thermostat.title, frame, tenant=tenant.title)
    assert list(report["device"]) == [device.name, other.name, other.name]
    assert list(report["alarms_cleared"]) == [["High Temperature (MAJOR)"], [], ["High Temperature (MAJOR)"]]
    assert list(report["alarms_created"]) == [[], ["High Temperature (MAJOR)"], []]
    assert platform.alarms.repo.active_for(device.id, "High Temperature").id == real.id
    assert platform.alarms.repo.active_for(other.id, "High Temperature") is None


def test_the_frame_a_store_query_gives(platform, tenant, device):
    """``tb.store.query(...).to_dataframe()``: a (device, time) index, device names in it."""
    chain = platform.rules.build(
        "hot",
        [
            ("filter.TbJsFilterNode", "hot?", {"jsScript": "return msg.t > 30;"}),
            ("action.TbCreateAlarmNode", "raise", {"alarmType": "Hot", "severity": "MINOR"}),
        ],
        [("hot?", "raise", "True")],
        tenant=tenant,
    )
    times = pd.to_datetime([T0, T0 + 3_600_000, T0 + 7_200_000], unit="ms").astype("datetime64[ms]")
    index = pd.MultiIndex.from_arrays([[device.name] * 3, times], names=["device", "time"])
    report = platform.rules.dry_run(chain, pd.DataFrame({"t": [20.0, 35.0, 40.0]}, index=index), tenant=tenant)
    assert list(report["alarms_created"]) == [[], ["Hot (MINOR)"], []]
    assert list(report["alarms_updated"]) == [[], [], ["Hot (MINOR)"]]
    assert report["ts"][1] == pd.Timestamp(T0 + 3_600_000, unit="ms", tz="UTC")


def test_external_calls_and_rpc_are_recorded_not_made(platform, tenant, device):
    """A REST call to a port nobody listens on would fail for real; in a dry run it is a
    recorded call with its substituted URL, and the path goes on as on Success."""
    chain = platform.rules.build(
        "notify",
        [
            ("rest.TbRestApiCallNode", "call", {"restEndpointUrlPattern": "http://127.0.0.1:9/hook/${deviceName}"}),
            ("transform.TbTransformMsgNode", "to rpc", {"jsScript": "return {msg: {method: 'beep', params: {}}};"}),
            ("rpc.TbSendRPCRequestNode", "rpc", {}),
        ],
        [("call", "to rpc", "Success"), ("to rpc", "rpc", "Success")],
        tenant=tenant,
    )
    frame = pd.DataFrame({"ts": [T0], "t": [1.5]})
    report = platform.rules.dry_run(chain, frame, device=device.id)
    assert report["external_calls"][0] == [f"call: {{'url': 'http://127.0.0.1:9/hook/{device.name}'}}"]
    assert report["rpc_calls"][0] == 1 and report["ended"][0] == ["rpc: Success"]


def test_refusals(platform, tenant, device):
    chain = platform.rules.build("c", [("filter.TbJsFilterNode", "f", {"jsScript": "return true;"})], tenant=tenant)
    with pytest.raises(InvalidInput, match="device"):
        platform.rules.dry_run(chain, pd.DataFrame({"ts": [T0], "t": [1]}), tenant=tenant)
    with pytest.raises(InvalidInput, match="not a device of this tenant"):
        platform.rules.dry_run(chain, pd.DataFrame({"ts": [T0], "t": [1]}), device="nope", tenant=tenant)
    other_tenant = platform.registry.create_tenant("Other")
    stranger = platform.registry.save_device(other_tenant.id, "stranger")
    with pytest.raises(InvalidInput, match="not a device of this tenant"):
        platform.rules.dry_run(chain, pd.DataFrame({"ts": [T0], "t": [1]}), device=stranger.id, tenant=tenant)
    with pytest.raises(InvalidInput, match="TbNoSuchNode"):
        platform.rules.build("x", [("filter.TbNoSuchNode", "n", {})], tenant=tenant)
    with pytest.raises(InvalidInput, match="2 tenants"):
        platform.rules.list()


def test_build_save_export_import(platform, tenant):
    rules = platform.rules
    chain = rules.build(
        "Hot?",
        [
            ("filter.TbJsFilterNode", "hot", {"jsScript": "return msg.t > 30;"}),
            ("action.TbCreateAlarmNode", "alarm", {"alarmType": "Hot", "severity": "MAJOR"}),
        ],
        [("hot", "alarm", "True")],
    )
    saved = rules.save(chain)
    assert [c.title for c in rules.list()] == ["Root Rule Chain", "Hot?"]
    text = rules.export_json("Hot?")
    assert json.loads(text)["metadata"]["connections"] == [{"fromIndex": 0, "toIndex": 1, "type": "True"}]
    again = rules.import_json(text, save=True)
    assert again.id != saved.id
    assert json.loads(rules.export_json(again))["metadata"]["nodes"][1]["configuration"]["alarmType"] == "Hot"
    assert len(rules.list(tenant)) == 3


def test_dead_letters_and_retry(platform, tenant, device):
    """A message a chain cannot process lands in the tenant's dead letters; retry puts it
    back in the queue; another tenant sees none of it."""
    rules = TenantRules(platform.rules, tenant.id)
    broken = rules.import_json(
        {
            "ruleChain": {"name": "broken", "type": "CORE"},
            "metadata": {
                "firstNodeIndex": 0,
                "nodes": [
                    {
                        "type": "org.thingsboard.rule.engine.filter.TbJsFilterNode",
                        "name": "boom",
                        "configuration": {"jsScript": "throw new Error('no');"},
                    }
                ],
                "connections": [],
            },
        },
        root=True,
    )
    assert rules.chains()[0].id == broken.id
    msg = device_msg("POST_TELEMETRY_REQUEST", device.id, {"t": 1}, tenant_id=tenant.id, ts=T0)
    platform.rules.queue.put([msg])
    [outcome] = platform.rules.queue.process_due(platform.rules.engine)
    assert outcome.state == "DEAD"
    [dead] = rules.dead_letters()
    assert dead.msg.id == msg.id and "no" in dead.error
    other = TenantRules(platform.rules, platform.registry.create_tenant("Other").id)
    assert other.dead_letters() == []
    with pytest.raises(NotFound):
        other.retry_dead(dead.id)
    rules.retry_dead(dead.id)
    assert rules.dead_letters() == [] and platform.rules.queue.size(tenant.id) == 1
