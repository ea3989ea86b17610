"""The ingress's routes on a real platform (SQLite files, the store's writer), in process:
which root chains run compiled, the device profile step of the compiled default chain (run
through the first node only, nothing saved twice), events on either route, RPC to devices."""

from __future__ import annotations

import asyncio

import pytest

from tbpanel.rules import default_root_chain, default_root_json, import_chain
from tbpanel.rules import ingress as ingress_module
from tbpanel.rules.ingress import is_default_chain
from tbpanel.rules.message import ALARM_ACK, ATTRIBUTES_UPDATED, POST_TELEMETRY_REQUEST
from tbpanel.store.payload import parse_telemetry
from tbpanel.store.validate import payload_points
from tests.rules.helpers import chain

T = 1_767_225_600_000
ALARM_RULES = {"alarms": [{"id": "hot", "alarmType": "Hot", "createRules": {}}]}


def rows(device_id: str, body: bytes) -> list:
    return payload_points(device_id, parse_telemetry(body, T))


def test_which_root_chains_run_compiled(tenant):
    assert is_default_chain(default_root_chain(tenant.id))
    doc = default_root_json()
    for i, n in enumerate(doc["metadata"]["nodes"]):  # names and layout do not change behaviour
        n["name"] = f"renamed {i}"
        n["additionalInfo"] = {"layoutX": i, "layoutY": 0}
    assert is_default_chain(import_chain(doc, tenant_id=tenant.id))
    debug = default_root_json()
    debug["metadata"]["nodes"][0]["debugMode"] = True  # debug events need the engine
    assert not is_default_chain(import_chain(debug, tenant_id=tenant.id))
    scoped = default_root_json()
    scoped["metadata"]["nodes"][1]["configuration"]["scope"] = "SERVER_SCOPE"
    assert not is_default_chain(import_chain(scoped, tenant_id=tenant.id))
    rewired = default_root_json()
    rewired["metadata"]["connections"].pop()
    assert not is_default_chain(import_chain(rewired, tenant_id=tenant.id))


def test_a_tenant_without_a_root_gets_the_default_and_runs_it_compiled(platform, tenant, device):
    ingress = platform.rules.ingress
    assert platform.rules.engine.chains(tenant.id) == []
    plan = ingress.plan(tenant.id)
    # ThingsBoard's default root chain starts with the Device Profile node (its alarm rules)
    assert plan.compiled and plan.profile_node_id is not None
    assert [c.title for c in platform.rules.chains.list(tenant.id)] == ["Root Rule Chain"]
    asyncio.run(
        _await(lambda: ingress.telemetry(tenant.id, rows(device.id, b'{"ts": 1767225600000, "values": {"t": 1}}')))
    )
    assert platform.store.latest(device.id, ["t"])["t"][2] == 1
    assert platform.rules.queue.size() == 0  # the direct path: nothing queued
    ingress.event(_event(device, tenant, ATTRIBUTES_UPDATED))  # ends at the Log node: not queued
    assert platform.rules.queue.size() == 0
    # another root chain: the same calls queue
    platform.rules.chains.save(
        chain(tenant.id, [("action.TbLogNode", "log", {"jsScript": "return msgType;"})], [], debug=False)
    )
    assert not ingress.plan(tenant.id).compiled
    asyncio.run(
        _await(
            lambda: ingress.telemetry(
                tenant.id, rows(device.id, b'[{"ts": 1, "values": {"t": 2}}, {"ts": 2, "values": {"t": 3}}]')
            )
        )
    )
    ingress.event(_event(device, tenant, ALARM_ACK))
    waiting = platform.rules.queue.waiting(tenant.id)
    assert [(w["msg"]["type"], w["msg"]["data"], w["msg"]["metadata"]["ts"]) for w in waiting] == [
        (POST_TELEMETRY_REQUEST, {"t": 2}, "1"),  # one message per ts, as ThingsBoard
        (POST_TELEMETRY_REQUEST, {"t": 3}, "2"),
        (ALARM_ACK, {"id": "a"}, waiting[2]["msg"]["metadata"]["ts"]),
    ]
    assert waiting[0]["msg"]["metadata"]["deviceName"] == device.name


def test_a_new_tenants_first_message_on_the_event_loop(platform, tenant, device):
    """The transports call on the loop thread, where mini-racer refuses its time limit: the
    default chain (scripts compiled on import) is made on a helper thread."""
    from tbpanel.rules import ingress as module

    module._DEFAULT_SHAPE.clear()  # as in a fresh process
    body = b'{"ts": 7, "values": {"t": 4}}'
    asyncio.run(_await(lambda: platform.rules.ingress.telemetry(tenant.id, rows(device.id, body))))
    assert platform.store.latest(device.id, ["t"])["t"][2] == 4
    assert platform.rules.ingress.plan(tenant.id).compiled


@pytest.fixture
def profile_node(monkeypatch):
    """Until tbpanel/rules/nodes/profile.py registers TbDeviceProfileNode, the default
    chain's own first node stands in for it: the step must run that node and nothing after."""
    first = default_root_chain("x")
    stand_in = first.nodes[first.first_node_index].type
    monkeypatch.setattr(ingress_module, "PROFILE_NODE", stand_in)
    return stand_in


def test_the_default_chain_profile_step_runs_only_the_first_node(platform, tenant, profile_node):
    reg = platform.registry
    reg.save_device_profile(tenant.id, {"name": "plain"})
    ruled = reg.save_device_profile(tenant.id, {"name": "ruled", "profileData": ALARM_RULES})
    with_rules = reg.save_device(tenant.id, "with-rules", device_profile_id=ruled.id)
    without = reg.save_device(tenant.id, "without", type="plain")
    ingress = platform.rules.ingress
    plan = ingress.plan(tenant.id)
    assert plan.compiled and plan.profile_node_id is not None
    body = b'[{"ts": 10, "values": {"t": 1}}, {"ts": 20, "values": {"t": 2}}]'

    async def post() -> None:
        await ingress.telemetry(tenant.id, rows(with_rules.id, body))
        await ingress.telemetry(tenant.id, rows(without.id, body))
        await ingress.attributes(with_rules, [(30, "fw", 3, "x")])

    asyncio.run(post())
    # stored at once, as always (the ack's meaning)
    assert platform.store.latest(with_rules.id, ["t"])["t"][2] == 2
    assert platform.store.latest(without.id, ["t"])["t"][2] == 2
    assert [a["value"] for a in reg.get_attributes(with_rules.id, "CLIENT_SCOPE")] == ["x"]
    # and queued for the profile node: the ruled device's messages only, one per ts
    platform.executor.submit(lambda: None).result()  # (its ACTIVITY_EVENT is queued off the loop)
    waiting = platform.rules.queue.waiting(tenant.id)
    assert [
        (w["msg"]["originator"]["id"], w["msg"]["type"]) for w in waiting if w["msg"]["type"] != "ACTIVITY_EVENT"
    ] == [
        (with_rules.id, POST_TELEMETRY_REQUEST),
        (with_rules.id, POST_TELEMETRY_REQUEST),
        (with_rules.id, "POST_ATTRIBUTES_REQUEST"),
    ]
    assert len(waiting) == 4  # and the ruled device's ACTIVITY_EVENT: the profile node sees events too
    engine = platform.rules.engine
    outcomes = []
    for _ in range(4):  # one originator: its head at a time
        outcomes += platform.rules.queue.process_due(engine)
    assert [o.state for o in outcomes] == ["DONE"] * 4 and platform.rules.queue.size() == 0
    root = plan.chain
    first = root.nodes[root.first_node_index]
    assert engine.counters[first.id].received == 4
    others = [n for n in root.nodes if n is not first]
    assert all(engine.counters.get(n.id) is None for n in others)  # nothing after it: no second save


def test_rpc_call_nodes_reach_the_rpc_service(platform, tenant, device):
    from tbpanel.entities.models import User
    from tbpanel.rules.message import RPC_CALL_FROM_SERVER_TO_DEVICE, device_msg

    c = chain(tenant.id, [("rpc.TbSendRPCRequestNode", "rpc", {})], [], debug=False)
    platform.rules.engine.set_chain(c)
    msg = device_msg(
        RPC_CALL_FROM_SERVER_TO_DEVICE,
        device.id,
        {"method": "setValve", "params": {"open": True}},
        tenant_id=tenant.id,
        metadata={"persistent": "true", "oneway": "true"},
    )
    assert platform.rules.engine.process(msg).ok
    admin = User(id="u", tenant_id=tenant.id, authority="TENANT_ADMIN", email="a@b")
    requests, total = platform.rpc.list(admin, device.id, status=None, page=0, page_size=10)
    assert total == 1 and requests[0].method == "setValve" and requests[0].params == {"open": True}
    offline = device_msg(RPC_CALL_FROM_SERVER_TO_DEVICE, device.id, {"method": "m"}, tenant_id=tenant.id)
    assert platform.rules.engine.process(offline).unhandled_failures  # not connected, not persistent


def test_activity_and_inactivity_events(platform, tenant, device):
    ingress = platform.rules.ingress
    platform.rules.chains.save(chain(tenant.id, [("action.TbLogNode", "log", {"jsScript": "return msgType;"})], []))
    body = b'{"ts": 5, "values": {"t": 1}}'

    async def post() -> None:
        await ingress.telemetry(tenant.id, rows(device.id, body))
        await ingress.telemetry(tenant.id, rows(device.id, body))  # already active: no second event

    asyncio.run(_await(post))
    platform.executor.submit(lambda: None).result()  # the ACTIVITY_EVENT is queued off the caller's thread
    types = [w["msg"]["type"] for w in platform.rules.queue.waiting(tenant.id)]
    assert sorted(types) == ["ACTIVITY_EVENT", POST_TELEMETRY_REQUEST, POST_TELEMETRY_REQUEST]
    now = platform.rules.engine.services.clock()
    assert ingress.check_inactive(now + 1000) == 0
    assert ingress.check_inactive(now + ingress.inactivity_timeout_ms) == 1
    last = platform.rules.queue.waiting(tenant.id)[-1]["msg"]
    assert last["type"] == "INACTIVITY_EVENT" and last["data"]["active"] is False
    assert last["metadata"]["deviceName"] == device.name


def test_anomaly_created_and_cleared_and_alarm_actions_enter_the_chain(platform, tenant, device):
    """Anomaly transactions (driven through the anomaly service's listener path, as the alarm
    tests do) and a user's alarm ack become messages once committed; the rule engine's own
    alarm changes do not re-enter."""
    from tbpanel.entities.models import User
    from tbpanel.rules.nodes.actions import rule_user
    from tests.helpers.alarms import Harness

    platform.rules.chains.save(chain(tenant.id, [("action.TbLogNode", "log", {"jsScript": "return msgType;"})], []))
    h = Harness(platform, tenant.id)
    m = h.model()
    first = h.run(m, new=[h.anomaly(m, device.id, T, 250)]).created[0]
    h.run(m, end=[(first, {"end_ts": T + 60_000})])
    admin = User(id="u1", tenant_id=tenant.id, authority="TENANT_ADMIN", email="admin@t")
    [alarm] = platform.alarms.repo.all()
    platform.alarms.ack(admin, alarm.id)
    platform.alarms.save(rule_user(tenant.id), {"originator_id": device.id, "type": "ByRule", "severity": "MINOR"})
    msgs = [w["msg"] for w in platform.rules.queue.waiting(tenant.id)]
    assert [x["type"] for x in msgs] == ["ANOMALY_CREATED", "ANOMALY_CLEARED", "ALARM_ACK"]
    created, cleared, ack = msgs
    assert created["originator"] == {"entityType": "DEVICE", "id": device.id}
    assert created["data"]["anomalyId"] == first["id"] and created["data"]["modelId"] == m.id
    assert created["data"]["active"] is True and cleared["data"]["active"] is False
    assert created["metadata"]["deviceName"] == device.name and created["metadata"]["modelName"] == "m"
    assert ack["data"]["id"]["id"] == alarm.id and ack["metadata"]["userId"] == "u1"


def _event(device, tenant, kind):
    from tbpanel.rules.message import device_msg

    return device_msg(kind, device.id, {"id": "a"}, tenant_id=tenant.id, device_name=device.name)


async def _await(start):
    """Call ``start`` on a running loop (the store's acks need one) and await what it returns."""
    return await start()
