"""Node behaviour on table cases: (node type, configuration, message) → (relation, message).

Nodes that need no storage run on a bare engine; enrichment and action nodes run against a
real platform (entities, telemetry and alarms on SQLite files)."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tbpanel.rules import NodeConfigError
from tbpanel.rules.nodes.actions import compile_expression, rule_user
from tbpanel.rules.nodes.base import substitute
from tbpanel.rules.nodes.filters import haversine_m, in_polygon
from tbpanel.store import ValueType
from tests.rules.helpers import chain, msg

TEL, ATTR = "POST_TELEMETRY_REQUEST", "POST_ATTRIBUTES_REQUEST"
SQUARE = "[[0, 0], [0, 10], [10, 10], [10, 0]]"

# (type, configuration, message kwargs, expected relations, check of the first output or None)
CASES = [
    ("filter.TbJsFilterNode", {"jsScript": "return msg.t > 20;"}, {"data": {"t": 21}}, ["True"], None),
    ("filter.TbJsFilterNode", {"jsScript": "return metadata.deviceType === 'x';"}, {}, ["False"], None),
    (
        "filter.TbJsFilterNode",
        {"scriptLang": "TBEL", "tbelScript": "return msgType == 'POST_TELEMETRY_REQUEST';"},
        {},
        ["True"],
        None,
    ),
    (
        "filter.TbJsSwitchNode",
        {"jsScript": "return msg.t > 20 ? ['hot', 'log'] : 'cold';"},
        {"data": {"t": 30}},
        ["hot", "log"],
        None,
    ),
    (
        "filter.TbJsSwitchNode",
        {"jsScript": "return msg.t > 20 ? ['hot'] : 'cold';"},
        {"data": {"t": 3}},
        ["cold"],
        None,
    ),
    ("filter.TbJsSwitchNode", {"jsScript": "return 42;"}, {}, ["Failure"], None),
    ("filter.TbMsgTypeFilterNode", {"messageTypes": [ATTR]}, {}, ["False"], None),
    ("filter.TbMsgTypeFilterNode", {"messageTypes": [ATTR, TEL]}, {}, ["True"], None),
    ("filter.TbMsgTypeSwitchNode", {"version": 0}, {}, ["Post telemetry"], None),
    ("filter.TbMsgTypeSwitchNode", {}, {"type": ATTR}, ["Post attributes"], None),
    ("filter.TbMsgTypeSwitchNode", {}, {"type": "TO_SERVER_RPC_REQUEST"}, ["RPC Request from Device"], None),
    ("filter.TbMsgTypeSwitchNode", {}, {"type": "CONNECT_EVENT"}, ["Connect Event"], None),
    ("filter.TbMsgTypeSwitchNode", {}, {"type": "SOMETHING_ELSE"}, ["Other"], None),
    ("filter.TbOriginatorTypeFilterNode", {"originatorTypes": ["ASSET"]}, {}, ["False"], None),
    ("filter.TbOriginatorTypeFilterNode", {"originatorTypes": ["DEVICE", "ASSET"]}, {}, ["True"], None),
    ("filter.TbOriginatorTypeSwitchNode", {}, {"entity_type": "ENTITY_VIEW"}, ["Entity View"], None),
    (
        "filter.TbCheckMessageNode",
        {"messageNames": ["t"], "metadataNames": ["deviceName"]},
        {"data": {"t": 1}},
        ["True"],
        None,
    ),
    (
        "filter.TbCheckMessageNode",
        {"messageNames": ["t", "h"], "checkAllKeys": True},
        {"data": {"t": 1}},
        ["False"],
        None,
    ),
    (
        "filter.TbCheckMessageNode",
        {"messageNames": ["t", "h"], "checkAllKeys": False},
        {"data": {"t": 1}},
        ["True"],
        None,
    ),
    (
        "geo.TbGpsGeofencingFilterNode",
        {"fetchPerimeterInfoFromMessageMetadata": False, "polygonsDefinition": SQUARE},
        {"data": {"latitude": 5, "longitude": 5}},
        ["True"],
        None,
    ),
    (
        "geo.TbGpsGeofencingFilterNode",
        {"fetchPerimeterInfoFromMessageMetadata": False, "polygonsDefinition": SQUARE},
        {"data": {"latitude": 5, "longitude": 11}},
        ["False"],
        None,
    ),
    (
        "geo.TbGpsGeofencingFilterNode",
        {
            "fetchPerimeterInfoFromMessageMetadata": False,
            "perimeterType": "CIRCLE",
            "centerLatitude": 50,
            "centerLongitude": 8,
            "range": 2,
            "rangeUnit": "KILOMETER",
        },
        {"data": {"latitude": 50.01, "longitude": 8}},
        ["True"],
        None,
    ),
    (
        "geo.TbGpsGeofencingFilterNode",
        {
            "fetchPerimeterInfoFromMessageMetadata": False,
            "perimeterType": "CIRCLE",
            "centerLatitude": 50,
            "centerLongitude": 8,
            "range": 500,
        },
        {"data": {"latitude": 50.01, "longitude": 8}},
        ["False"],
        None,
    ),
    (
        "geo.TbGpsGeofencingFilterNode",
        {},
        {"data": {"latitude": 5, "longitude": 5}, "metadata": {"ss_perimeter": SQUARE}},
        ["True"],
        None,
    ),
    ("geo.TbGpsGeofencingFilterNode", {}, {"data": {"latitude": 5}}, ["Failure"], None),
    (
        "transform.TbTransformMsgNode",
        {"jsScript": "return {msg: {c: msg.f - 32}, metadata: {unit: 'C', n: 1}, msgType: 'CUSTOM'};"},
        {"data": {"f": 212}},
        ["Success"],
        lambda m: m.data == {"c": 180} and m.metadata == {"unit": "C", "n": "1"} and m.type == "CUSTOM",
    ),
    (
        "transform.TbTransformMsgNode",
        {"jsScript": "return [{msg: {a: 1}}, {msg: {a: 2}}];"},
        {},
        ["Success", "Success"],
        lambda m: m.data == {"a": 1},
    ),
    ("transform.TbTransformMsgNode", {"jsScript": "return 'nope';"}, {}, ["Failure"], None),
    (
        "transform.TbRenameKeysNode",
        {"renameKeysMapping": {"t": "temperature"}, "renameIn": "DATA"},
        {"data": {"t": 1, "h": 2}},
        ["Success"],
        lambda m: m.data == {"temperature": 1, "h": 2},
    ),
    (
        "transform.TbRenameKeysNode",
        {"renameKeysMapping": {"deviceName": "name"}, "fromMetadata": True},
        {},
        ["Success"],
        lambda m: m.metadata["name"] == "dev" and "deviceName" not in m.metadata,
    ),
    (
        "transform.TbDeleteKeysNode",
        {"keys": ["t.*"], "deleteFrom": "DATA"},
        {"data": {"t1": 1, "t2": 2, "h": 3}},
        ["Success"],
        lambda m: m.data == {"h": 3},
    ),
    (
        "transform.TbDeleteKeysNode",
        {"keys": ["ts"], "fromMetadata": True},
        {},
        ["Success"],
        lambda m: "ts" not in m.metadata,
    ),
    (
        "transform.TbCopyKeysNode",
        {"keys": ["deviceName"], "copyFrom": "METADATA"},
        {"data": {"t": 1}},
        ["Success"],
        lambda m: m.data == {"t": 1, "deviceName": "dev"},
    ),
    (
        "transform.TbCopyKeysNode",
        {"keys": ["t"], "copyFrom": "DATA"},
        {"data": {"t": 1.5}},
        ["Success"],
        lambda m: m.metadata["t"] == "1.5",
    ),
    (
        "transform.TbChangeOriginatorNode",
        {"originatorSource": "TENANT"},
        {},
        ["Success"],
        lambda m: m.originator.entity_type == "TENANT" and m.originator.id == "t",
    ),
    (
        "math.TbMathNode",
        {
            "operation": "ADD",
            "arguments": [{"type": "MESSAGE_BODY", "key": "a"}, {"type": "CONSTANT", "key": "2.5"}],
            "result": {"type": "MESSAGE_BODY", "key": "s", "resultValuePrecision": 1},
        },
        {"data": {"a": 1}},
        ["Success"],
        lambda m: m.data == {"a": 1, "s": 3.5},
    ),
    (
        "math.TbMathNode",
        {
            "operation": "SQRT",
            "arguments": [{"type": "MESSAGE_METADATA", "key": "v"}],
            "result": {"type": "MESSAGE_METADATA", "key": "r", "resultValuePrecision": 0},
        },
        {"metadata": {"v": "16"}},
        ["Success"],
        lambda m: m.metadata["r"] == "4",
    ),
    (
        "math.TbMathNode",
        {
            "operation": "CUSTOM",
            "customFunction": "(x - 32) / 1.8 + y^2",
            "arguments": [
                {"name": "x", "type": "MESSAGE_BODY", "key": "f"},
                {"name": "y", "type": "CONSTANT", "key": "2"},
            ],
            "result": {"type": "MESSAGE_BODY", "key": "c", "resultValuePrecision": 2},
        },
        {"data": {"f": 212}},
        ["Success"],
        lambda m: m.data["c"] == 104.0,
    ),
    (
        "math.TbMathNode",
        {"operation": "DIV", "arguments": [{"type": "MESSAGE_BODY", "key": "a"}, {"type": "CONSTANT", "key": "0"}]},
        {"data": {"a": 1}},
        ["Failure"],
        None,
    ),
    (
        "math.TbMathNode",
        {
            "operation": "ADD",
            "arguments": [{"type": "MESSAGE_BODY", "key": "missing"}, {"type": "CONSTANT", "key": "1"}],
        },
        {"data": {}},
        ["Failure"],
        None,
    ),
    ("action.TbLogNode", {"jsScript": "return 'seen ' + msg.t;"}, {"data": {"t": 1}}, ["Success"], None),
    (
        "rpc.TbSendRPCRequestNode",
        {"timeoutInSeconds": 60},
        {"type": "RPC_CALL_FROM_SERVER_TO_DEVICE", "data": {"method": "m", "params": {}}},
        ["Failure"],
        lambda m: "RPC to devices is not available" in m.metadata["error"],
    ),
]


@pytest.mark.parametrize(
    "tb_type, config, kw, relations, check", CASES, ids=[f"{c[0].rsplit('.', 1)[1]}-{i}" for i, c in enumerate(CASES)]
)
def test_node(bare_engine, tb_type, config, kw, relations, check):
    bare_engine.set_chain(chain("t", [(tb_type, "n", config)], []))
    r = bare_engine.process(msg(**kw))
    assert [e.relation for e in r.ended] == relations, [e.msg.metadata.get("error") for e in r.ended]
    if check is not None:
        assert check(r.ended[0].msg)


BAD_CONFIG = [
    ("filter.TbCheckMessageNode", {}, "at least one"),
    (
        "geo.TbGpsGeofencingFilterNode",
        {"fetchPerimeterInfoFromMessageMetadata": False, "polygonsDefinition": "[[1, 2]]"},
        "at least three",
    ),
    (
        "geo.TbGpsGeofencingFilterNode",
        {"fetchPerimeterInfoFromMessageMetadata": False, "perimeterType": "CIRCLE"},
        "circle needs",
    ),
    ("transform.TbDeleteKeysNode", {"keys": ["("]}, "regular expression"),
    ("math.TbMathNode", {"operation": "ADD", "arguments": [{"type": "CONSTANT", "key": "1"}]}, "takes 2"),
    (
        "math.TbMathNode",
        {
            "operation": "CUSTOM",
            "customFunction": "__import__('os').system('x')",
            "arguments": [{"name": "x", "type": "CONSTANT", "key": "1"}],
        },
        "not",
    ),
    (
        "math.TbMathNode",
        {
            "operation": "CUSTOM",
            "customFunction": "x.real",
            "arguments": [{"name": "x", "type": "CONSTANT", "key": "1"}],
        },
        "Attribute",
    ),
    ("transform.TbChangeOriginatorNode", {"originatorSource": "ENTITY"}, "entityNamePattern"),
    ("flow.TbRuleChainInputNode", {}, "ruleChainId"),
    ("action.TbCreateAlarmNode", {"alarmType": "", "alarmDetailsBuildJs": ""}, "alarmType"),
]


@pytest.mark.parametrize("tb_type, config, message", BAD_CONFIG)
def test_bad_configuration_is_refused_at_import(tb_type, config, message):
    with pytest.raises(NodeConfigError, match=message):
        chain("t", [(tb_type, "bad node", config)], [])


def test_patterns():
    m = msg(data={"t": 21.5, "nested": {"k": "v"}, "flag": True}, metadata={"topic": "x/y"})
    assert substitute("a/${deviceName}/$[t]/$[nested.k]/$[flag]/${topic}", m) == "a/dev/21.5/v/true/x/y"
    assert substitute("${nope}-$[nope]", m) == "${nope}-$[nope]"


@settings(max_examples=200, deadline=None)
@given(x=st.floats(-1e6, 1e6), y=st.floats(-1e3, 1e3))
def test_custom_math_agrees_with_python(x, y):
    fn = compile_expression("x * 2 - y / 4 + abs(x) ^ 0.5", ["x", "y"])
    assert math.isclose(fn({"x": x, "y": y}), x * 2 - y / 4 + abs(x) ** 0.5, rel_tol=1e-12, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(lat=st.floats(-80, 80), lon=st.floats(-170, 170))
def test_geofence_square_and_circle(lat, lon):
    assert (
        in_polygon(lat, lon, [[-10, -10], [-10, 10], [10, 10], [10, -10]]) == (-10 < lat < 10 and -10 < lon < 10)
        or abs(abs(lat) - 10) < 1e-9
        or abs(abs(lon) - 10) < 1e-9
    )
    assert haversine_m(lat, lon, lat, lon) == 0


# -- nodes on a real platform ---------------------------------------------------------------
def dmsg(device, tenant, **kw):
    return msg(tenant_id=tenant.id, originator=device.id, **kw)


def test_get_attributes_with_prefixes_and_latest_telemetry(engine, platform, tenant, device):
    reg = platform.registry
    reg.save_attributes(
        device.id, "SERVER_SCOPE", [(1, "threshold", int(ValueType.DOUBLE), 25.0), (1, "on", int(ValueType.BOOL), True)]
    )
    reg.save_attributes(device.id, "CLIENT_SCOPE", [(1, "fw", int(ValueType.STR), "1.2")])
    reg.save_attributes(device.id, "SHARED_SCOPE", [(1, "mode", int(ValueType.LONG), 3)])
    platform.store.write_points([(device.id, "temperature", 1000, int(ValueType.DOUBLE), 21.5)])
    config = {
        "clientAttributeNames": ["fw"],
        "sharedAttributeNames": ["mode"],
        "serverAttributeNames": ["threshold", "on", "absent"],
        "latestTsKeyNames": ["temperature"],
    }
    engine.set_chain(chain(tenant.id, [("metadata.TbGetAttributesNode", "get", config)], []))
    [e] = engine.process(dmsg(device, tenant)).ended
    md = e.msg.metadata
    assert e.relation == "Success"
    assert (md["cs_fw"], md["shared_mode"], md["ss_threshold"], md["ss_on"], md["temperature"]) == (
        "1.2",
        "3",
        "25.0",
        "true",
        "21.5",
    )
    assert "ss_absent" not in md
    engine.set_chain(
        chain(
            tenant.id,
            [
                (
                    "metadata.TbGetAttributesNode",
                    "get",
                    {**config, "tellFailureIfAbsent": True, "getLatestValueWithTs": True, "fetchTo": "DATA"},
                )
            ],
            [],
        )
    )
    [e] = engine.process(dmsg(device, tenant)).ended
    assert e.relation == "Failure" and "ss_absent" in e.msg.metadata["error"]
    assert e.msg.data["temperature"] == {"ts": 1000, "value": 21.5} and e.msg.data["ss_threshold"] == 25.0


def test_originator_fields(engine, tenant, device):
    engine.set_chain(
        chain(
            tenant.id,
            [
                (
                    "metadata.TbGetOriginatorFieldsNode",
                    "f",
                    {"dataMapping": {"name": "deviceName2", "type": "t", "label": "l"}, "ignoreNullStrings": True},
                )
            ],
            [],
        )
    )
    [e] = engine.process(dmsg(device, tenant)).ended
    assert (
        e.msg.metadata["deviceName2"] == "thermostat-1"
        and e.msg.metadata["t"] == "thermostat"
        and "l" not in e.msg.metadata
    )


def test_change_originator_to_a_device_by_name(engine, platform, tenant, device):
    other = platform.registry.save_device(tenant.id, "hub-7", type="hub")
    engine.set_chain(
        chain(
            tenant.id,
            [
                (
                    "transform.TbChangeOriginatorNode",
                    "c",
                    {"originatorSource": "ENTITY", "entityType": "DEVICE", "entityNamePattern": "hub-$[hub]"},
                )
            ],
            [],
        )
    )
    [e] = engine.process(dmsg(device, tenant, data={"hub": 7})).ended
    assert e.relation == "Success" and e.msg.originator.id == other.id
    [e] = engine.process(dmsg(device, tenant, data={"hub": 8})).ended
    assert e.relation == "Failure" and "hub-8" in e.msg.metadata["error"]


def test_save_timeseries_and_attributes_are_durable(engine, platform, tenant, device):
    engine.set_chain(
        chain(
            tenant.id,
            [
                ("filter.TbMsgTypeSwitchNode", "switch", {}),
                ("telemetry.TbMsgTimeseriesNode", "ts", {"defaultTTL": 0}),
                ("telemetry.TbMsgAttributesNode", "attrs", {"scope": "CLIENT_SCOPE"}),
            ],
            [(0, 1, "Post telemetry"), (0, 2, "Post attributes")],
        )
    )
    r = engine.process(dmsg(device, tenant, data={"t": 21.5, "n": 3, "s": "x"}, ts=5000))
    assert r.ok
    got = platform.store.latest(device.id)
    assert {k: (v[0], v[2]) for k, v in got.items()} == {"n": (5000, 3), "s": (5000, "x"), "t": (5000, 21.5)}
    r = engine.process(dmsg(device, tenant, type=ATTR, data={"fw": "v2", "on": True}))
    assert r.ok
    attrs = {a["key"]: a["value"] for a in platform.registry.get_attributes(device.id, "CLIENT_SCOPE")}
    assert attrs == {"fw": "v2", "on": True}
    # a payload the store refuses is a Failure and stores nothing
    r = engine.process(dmsg(device, tenant, data={"bad": float("nan")}))
    assert not r.ok and "NaN" in r.unhandled_failures[0].msg.metadata["error"]
    # save time series takes telemetry messages only
    engine.set_chain(chain(tenant.id, [("telemetry.TbMsgTimeseriesNode", "ts", {})], []))
    r = engine.process(dmsg(device, tenant, type=ATTR, data={"x": 1}))
    assert "unsupported message type" in r.unhandled_failures[0].msg.metadata["error"]


def test_math_into_time_series_and_attribute(engine, platform, tenant, device):
    platform.registry.save_attributes(device.id, "SERVER_SCOPE", [(1, "k", int(ValueType.DOUBLE), 2.0)])
    platform.store.write_points([(device.id, "v", 1, int(ValueType.DOUBLE), 10.0)])
    cfg = {
        "operation": "MULT",
        "arguments": [
            {"type": "ATTRIBUTE", "key": "k", "attributeScope": "SERVER_SCOPE"},
            {"type": "TIME_SERIES", "key": "v"},
        ],
        "result": {"type": "TIME_SERIES", "key": "product", "resultValuePrecision": 2},
    }
    engine.set_chain(chain(tenant.id, [("math.TbMathNode", "m", cfg)], []))
    assert engine.process(dmsg(device, tenant, ts=7000)).ok
    assert platform.store.latest(device.id, ["product"])["product"][::2] == (7000, 20.0)


def test_create_update_and_clear_alarm_with_script_details(engine, platform, tenant, device):
    details = "var d = metadata.prevAlarmDetails ? JSON.parse(metadata.prevAlarmDetails) : {count: 0}; d.count += 1; d.t = msg.t; return d;"
    engine.set_chain(
        chain(
            tenant.id,
            [
                ("filter.TbJsSwitchNode", "check", {"jsScript": "return msg.t > 30 ? ['high'] : ['ok'];"}),
                (
                    "action.TbCreateAlarmNode",
                    "raise",
                    {"alarmType": "Hot", "severity": "${sev}", "alarmDetailsBuildJs": details},
                ),
                (
                    "action.TbClearAlarmNode",
                    "clear",
                    {
                        "alarmType": "Hot",
                        "alarmDetailsBuildJs": "var d = JSON.parse(metadata.prevAlarmDetails); d.cleared = msg.t; return d;",
                    },
                ),
            ],
            [(0, 1, "high"), (0, 2, "ok")],
        )
    )
    heard = []
    platform.alarms.changed.connect(lambda kind, a: heard.append((kind, a.severity, a.cleared)))
    [e] = engine.process(dmsg(device, tenant, data={"t": 35}, metadata={"sev": "MAJOR"})).ended
    assert e.relation == "Created" and e.msg.metadata["isNewAlarm"] == "true" and e.msg.data["type"] == "Hot"
    [e] = engine.process(dmsg(device, tenant, data={"t": 40}, metadata={"sev": "CRITICAL"})).ended
    assert e.relation == "Updated" and e.msg.metadata["isExistingAlarm"] == "true"
    alarm = platform.alarms.repo.active_for(device.id, "Hot")
    assert alarm.severity == "CRITICAL" and alarm.details == {"count": 2, "t": 40}
    [e] = engine.process(dmsg(device, tenant, data={"t": 20})).ended
    assert e.relation == "Cleared"
    [e] = engine.process(dmsg(device, tenant, data={"t": 20})).ended
    assert e.relation == "False"
    assert platform.alarms.repo.active_for(device.id, "Hot") is None
    [cleared] = [a for a in platform.alarms.repo.all() if a.type == "Hot"]
    assert cleared.cleared and cleared.details == {"count": 2, "t": 40, "cleared": 20}
    assert heard[0] == ("UPDATED", "MAJOR", False) and heard[-1][2] is True
    # a bad severity is a Failure, and nothing is raised
    r = engine.process(dmsg(device, tenant, data={"t": 99}, metadata={"sev": "HUGE"}))
    assert not r.ok and "severity" in r.unhandled_failures[0].msg.metadata["error"]
    assert platform.alarms.repo.active_for(device.id, "Hot") is None


def test_a_chain_cannot_touch_another_tenants_device(engine, platform, tenant, device):
    other = platform.registry.create_tenant("Other")
    engine.set_chain(
        chain(other.id, [("action.TbCreateAlarmNode", "raise", {"alarmType": "X", "severity": "MINOR"})], [])
    )
    r = engine.process(msg(tenant_id=other.id, originator=device.id))
    assert not r.ok and "permission" in r.unhandled_failures[0].msg.metadata["error"]
    assert platform.alarms.repo.active_for(device.id, "X") is None


# -- timer nodes -----------------------------------------------------------------------------
def test_deduplication_strategies(bare_engine, clock):
    for strategy, expect in [("FIRST", [{"n": 0}]), ("LAST", [{"n": 2}])]:
        bare_engine.set_chain(
            chain("t", [("deduplication.TbMsgDeduplicationNode", "d", {"interval": 10, "strategy": strategy})], [])
        )
        for n in range(3):
            assert bare_engine.process(msg(data={"n": n})).ended == []
            clock.t += 1000
        assert bare_engine.process(msg(data={"n": 9}, originator="d2")).ended == []
        clock.t += 10_000
        got = sorted((e.msg.originator.id, str(e.msg.data)) for e in bare_engine.tick().ended)
        assert got == sorted([("d1", str(expect[0])), ("d2", str({"n": 9}))])
    bare_engine.set_chain(
        chain(
            "t",
            [("deduplication.TbMsgDeduplicationNode", "d", {"interval": 10, "strategy": "ALL", "outMsgType": "BATCH"})],
            [],
        )
    )
    for n in range(2):
        bare_engine.process(msg(data={"n": n}))
    clock.t += 10_000
    [e] = bare_engine.tick().ended
    assert e.msg.type == "BATCH" and [x["msg"] for x in e.msg.data] == [{"n": 0}, {"n": 1}]


def test_message_count(bare_engine, clock):
    bare_engine.set_chain(
        chain("t", [("action.TbMsgCountNode", "count", {"interval": 60, "telemetryPrefix": "messageCount"})], [])
    )
    for _ in range(5):
        bare_engine.process(msg())
    assert bare_engine.tick().ended == []
    clock.t += 60_000
    [e] = bare_engine.tick().ended
    assert e.msg.data == {"messageCount_tbpanel": 5} and e.msg.originator.entity_type == "TENANT"


def test_generator(bare_engine, clock):
    script = "var n = prevMsg.n === undefined ? 0 : prevMsg.n + 1; return {msg: {n: n}, metadata: {}, msgType: 'POST_TELEMETRY_REQUEST'};"
    bare_engine.set_chain(
        chain(
            "t",
            [
                (
                    "debug.TbMsgGeneratorNode",
                    "gen",
                    {
                        "msgCount": 3,
                        "periodInSeconds": 5,
                        "jsScript": script,
                        "originatorType": "DEVICE",
                        "originatorId": "d9",
                    },
                )
            ],
            [],
        )
    )
    seen = []
    for _ in range(6):
        seen += [e.msg.data["n"] for e in bare_engine.tick().ended]
        clock.t += 5_000
    assert seen == [0, 1, 2]


def test_customer_and_tenant_attributes(engine, platform, tenant, device):
    reg = platform.registry
    customer = reg.create_customer(tenant.id, "C")
    reg.assign_device(device.id, customer.id)
    reg.save_attributes(customer.id, "SERVER_SCOPE", [(1, "limit", int(ValueType.LONG), 40)])
    reg.save_attributes(tenant.id, "SERVER_SCOPE", [(1, "region", int(ValueType.STR), "eu")])
    engine.set_chain(
        chain(
            tenant.id,
            [
                ("metadata.TbGetCustomerAttributeNode", "c", {"dataMapping": {"limit": "customerLimit"}}),
                (
                    "metadata.TbGetTenantAttributeNode",
                    "t",
                    {"attrMapping": {"region": "tenantRegion"}, "telemetry": False},
                ),
            ],
            [(0, 1, "Success")],
        )
    )
    [e] = engine.process(dmsg(device, tenant)).ended
    assert (
        e.relation == "Success" and e.msg.metadata["customerLimit"] == "40" and e.msg.metadata["tenantRegion"] == "eu"
    )


def test_get_telemetry_window(engine, platform, tenant, device, clock):
    pts = [(device.id, "t", clock.t - m * 60_000, int(ValueType.DOUBLE), float(m)) for m in range(10)]
    platform.store.write_points(pts)
    window = {
        "latestTsKeyNames": ["t"],
        "startInterval": 5,
        "startIntervalTimeUnit": "MINUTES",
        "endInterval": 1,
        "endIntervalTimeUnit": "MINUTES",
    }
    for mode, expect in [("FIRST", "5.0"), ("LAST", "2.0")]:
        engine.set_chain(chain(tenant.id, [("metadata.TbGetTelemetryNode", "g", {**window, "fetchMode": mode})], []))
        assert engine.process(dmsg(device, tenant)).ended[0].msg.metadata["t"] == expect
    engine.set_chain(chain(tenant.id, [("metadata.TbGetTelemetryNode", "g", {**window, "fetchMode": "ALL"})], []))
    got = orjson.loads(engine.process(dmsg(device, tenant)).ended[0].msg.metadata["t"])
    assert [p["value"] for p in got] == [5.0, 4.0, 3.0, 2.0]


def test_check_alarm_status(engine, platform, tenant, device):
    engine.set_chain(
        chain(
            tenant.id,
            [
                ("action.TbCreateAlarmNode", "raise", {"alarmType": "A", "severity": "MINOR"}),
                ("filter.TbCheckAlarmStatusNode", "active?", {"alarmStatusList": ["ACTIVE_UNACK"]}),
            ],
            [(0, 1, "Created"), (0, 1, "Updated")],
        )
    )
    [e] = engine.process(dmsg(device, tenant)).ended
    assert (e.node_name, e.relation) == ("active?", "True")
    alarm = platform.alarms.repo.active_for(device.id, "A")
    platform.alarms.ack(rule_user(tenant.id), alarm.id)
    [e] = engine.process(dmsg(device, tenant)).ended
    assert (e.node_name, e.relation) == ("active?", "False")
    with pytest.raises(NodeConfigError, match="unknown alarm statuses"):
        chain(tenant.id, [("filter.TbCheckAlarmStatusNode", "bad", {"alarmStatusList": ["NOPE"]})], [])


@pytest.mark.parametrize(
    "node",
    [
        ("telemetry.TbMsgTimeseriesNode", {}),
        ("telemetry.TbMsgAttributesNode", {"scope": "SERVER_SCOPE"}),
        ("metadata.TbGetAttributesNode", {"serverAttributeNames": ["secret"]}),
        ("metadata.TbGetAttributesNode", {"latestTsKeyNames": ["t"]}),
        ("metadata.TbGetTelemetryNode", {"latestTsKeyNames": ["t"]}),
        ("metadata.TbGetOriginatorFieldsNode", {}),
        ("transform.TbChangeOriginatorNode", {"originatorSource": "CUSTOMER"}),
        ("math.TbMathNode", {"operation": "ABS", "arguments": [{"type": "TIME_SERIES", "key": "t"}]}),
        ("metadata.TbGetCustomerAttributeNode", {"dataMapping": {"secret": "s"}}),
    ],
)
def test_no_node_reaches_another_tenants_device(engine, platform, tenant, device, node):
    """Whatever a message or a node's configuration names (a generator's originatorId, a
    forged message), a chain only reads and writes its own tenant's entities."""
    reg = platform.registry
    customer = reg.create_customer(tenant.id, "C")
    reg.assign_device(device.id, customer.id)
    reg.save_attributes(device.id, "SERVER_SCOPE", [(1, "secret", int(ValueType.STR), "s3cret")])
    reg.save_attributes(customer.id, "SERVER_SCOPE", [(1, "secret", int(ValueType.STR), "s3cret")])
    platform.store.write_points([(device.id, "t", 1, int(ValueType.DOUBLE), 1.0)])
    intruder = reg.create_tenant("Intruder")
    tb_type, cfg = node
    engine.set_chain(chain(intruder.id, [(tb_type, "n", cfg)], []))
    m = msg(
        tenant_id=intruder.id,
        originator=device.id,
        data={"t": 99.0, "x": 1},
        type="POST_TELEMETRY_REQUEST" if "Attributes" not in tb_type else "POST_ATTRIBUTES_REQUEST",
    )
    if tb_type.endswith("TbGetCustomerAttributeNode"):
        m = m.copy(customer_id=customer.id)
    [e] = engine.process(m).ended
    assert e.relation == "Failure" and "does not belong to this tenant" in e.msg.metadata["error"]
    assert "s3cret" not in str(e.msg.to_json())
    assert platform.store.latest(device.id)["t"][2] == 1.0
    assert {a["key"] for a in reg.get_attributes(device.id)} == {"secret"}


def test_a_generator_naming_another_tenants_device_stores_nothing(engine, platform, tenant, device, clock):
    intruder = platform.registry.create_tenant("Intruder")
    script = "return {msg: {t: 666}, metadata: {}, msgType: 'POST_TELEMETRY_REQUEST'};"
    engine.set_chain(
        chain(
            intruder.id,
            [
                (
                    "debug.TbMsgGeneratorNode",
                    "gen",
                    {"msgCount": 1, "periodInSeconds": 1, "jsScript": script, "originatorId": device.id},
                ),
                ("telemetry.TbMsgTimeseriesNode", "save", {}),
            ],
            [(0, 1, "Success")],
        )
    )
    r = engine.tick()
    assert not r.ok and "does not belong" in r.unhandled_failures[0].msg.metadata["error"]
    assert platform.store.latest(device.id) == {}
