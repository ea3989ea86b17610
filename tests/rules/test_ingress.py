"""Every transport and internal event enters the tenant's root rule chain, through a real
``tbpanel serve``: a custom root chain (a script filter keeping temperature > 50 → save time
series and a REST call to a recorder; attribute and alarm events → the recorder) sees the
telemetry of HTTP, MQTT (paho), CoAP, the gateway API and the REST save, and the events of a
REST attribute change and an alarm's ack and clear; a tenant on the default chain keeps the
direct path (nothing queued)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import orjson
import paho.mqtt.client as paho
import pytest
import requests
from aiocoap import POST, Context, Message

from tbpanel.rules.queue import RuleQueue
from tbpanel.rules.store import RuleChainStore
from tests.helpers import Api, ServerProcess, cli
from tests.rules.recorder import Recorder

TS = 1_767_225_600_000
EMAIL, PASSWORD = "ingress@tenant.test", "ingress-pass-1"
OTHER_EMAIL, OTHER_PASSWORD = "default@tenant.test", "default-pass-1"

_EVENT_LABELS = [
    "Attributes Updated",
    "Attributes Deleted",
    "Alarm",
    "Alarm Acknowledged",
    "Alarm Cleared",
    "Connect Event",
    "Disconnect Event",
]
_WRAP = "return {msg: {type: msgType, data: msg, metadata: metadata}, metadata: metadata, msgType: msgType};"


def custom_chain(recorder_url: str) -> dict:
    """ThingsBoard's export format: the chain the tenant imports."""

    def node(t: str, name: str, config: dict) -> dict:
        return {"type": "org.thingsboard.rule.engine." + t, "name": name, "debugMode": False, "configuration": config}

    nodes = [
        node("filter.TbMsgTypeSwitchNode", "switch", {"version": 0}),
        node("filter.TbJsFilterNode", "hot only", {"jsScript": "return msg.temperature > 50;"}),
        node("telemetry.TbMsgTimeseriesNode", "save", {"defaultTTL": 0}),
        node("rest.TbRestApiCallNode", "forward", {"restEndpointUrlPattern": recorder_url + "/t/${deviceName}"}),
        node("telemetry.TbMsgAttributesNode", "save attributes", {"scope": "CLIENT_SCOPE"}),
        node("transform.TbTransformMsgNode", "wrap", {"jsScript": _WRAP}),
        node("rest.TbRestApiCallNode", "events", {"restEndpointUrlPattern": recorder_url + "/e"}),
    ]
    connections = [
        (0, 1, "Post telemetry"),
        (1, 2, "True"),
        (1, 3, "True"),
        (0, 4, "Post attributes"),
        *((0, 5, label) for label in _EVENT_LABELS),
        (5, 6, "Success"),
    ]
    return {
        "ruleChain": {"name": "Hot only", "type": "CORE", "root": True, "debugMode": False, "configuration": None},
        "metadata": {
            "firstNodeIndex": 0,
            "nodes": nodes,
            "connections": [{"fromIndex": a, "toIndex": b, "type": t} for a, b, t in connections],
            "ruleChainConnections": None,
        },
    }


def tenant_id_of(data: Path, title: str) -> str:
    from tbpanel.entities import EntityRegistry

    reg = EntityRegistry(str(data))
    try:
        tenant = reg.find_tenant(title)
        assert tenant is not None
        return str(tenant.id)
    finally:
        reg.close()


def import_root(data: Path, tenant_id: str, doc: dict) -> None:
    """What ``POST /api/ruleChain`` + metadata + root do, written before the server starts."""
    from tbpanel.rules import RuleEngine, import_chain

    q = RuleQueue(data)
    try:
        RuleChainStore(q, RuleEngine()).save(import_chain(doc, tenant_id=tenant_id))
    finally:
        q.close()


def wait_for(what, timeout: float = 20.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


class Site:
    def __init__(self, tmp: Path) -> None:
        self.data = tmp / "data"
        self.recorder = Recorder().start()
        cli("init", "--data", str(self.data), "--admin-email", EMAIL, "--admin-password", PASSWORD, "--tenant", "Hot")
        cli(
            "init",
            "--data",
            str(self.data),
            "--admin-email",
            OTHER_EMAIL,
            "--admin-password",
            OTHER_PASSWORD,
            "--tenant",
            "Plain",
        )
        self.tenant = tenant_id_of(self.data, "Hot")
        import_root(self.data, self.tenant, custom_chain(self.recorder.url))
        self.server = ServerProcess(self.data).start()
        self.url = self.server.url
        self.admin = Api.login(self.url, EMAIL, PASSWORD)
        self.other = Api.login(self.url, OTHER_EMAIL, OTHER_PASSWORD)

    def device(self, api: Api, name: str, gateway: bool = False) -> tuple[str, str]:
        body: dict = {"name": name, "type": "sensor"}
        if gateway:
            body["additionalInfo"] = {"gateway": True}
        r = api.post("/api/device", json=body)
        assert r.status_code == 200, r.text
        did = r.json()["id"]["id"]
        return did, api.get(f"/api/device/{did}/credentials").json()["credentialsId"]

    def history(self, api: Api, did: str, key: str = "temperature") -> list[tuple[int, float]]:
        r = api.get(
            f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries"
            f"?keys={key}&startTs=0&endTs=9999999999999&useStrictDataTypes=true&orderBy=ASC&limit=1000"
        )
        assert r.status_code == 200, r.text
        return [(p["ts"], p["value"]) for p in r.json().get(key, [])]

    def forwarded(self, device_name: str) -> list[dict]:
        return [orjson.loads(b) for m, p, b, _h in list(self.recorder.requests) if p == f"/t/{device_name}"]

    def events(self) -> list[dict]:
        return [orjson.loads(b) for m, p, b, _h in list(self.recorder.requests) if p == "/e"]

    def close(self) -> None:
        self.server.stop()
        self.recorder.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("ingress"))
    yield s
    s.close()


def points(base: int, temps: list[float]) -> list[dict]:
    return [{"ts": base + i, "values": {"temperature": t}} for i, t in enumerate(temps)]


def expect_hot(site: Site, did: str, name: str, sent: list[dict]) -> None:
    hot = [(p["ts"], float(p["values"]["temperature"])) for p in sent if p["values"]["temperature"] > 50]
    assert hot, "the test sends some hot points"
    got = wait_for(lambda: len(site.forwarded(name)) >= len(hot) and site.history(site.admin, did))
    assert got, f"nothing arrived for {name}: {site.recorder.requests!r}"
    assert [(ts, float(v)) for ts, v in site.history(site.admin, did)] == hot  # exactly the filtered points
    assert sorted(f["temperature"] for f in site.forwarded(name)) == sorted(v for _, v in hot)


def test_http_device_telemetry_goes_through_the_chain(site):
    did, token = site.device(site.admin, "http-dev")
    sent = points(TS, [40, 60, 51, 50])
    r = requests.post(f"{site.url}/api/v1/{token}/telemetry", json=sent, timeout=30)
    assert r.status_code == 200  # durably queued
    expect_hot(site, did, "http-dev", sent)


def test_mqtt_device_and_gateway_telemetry_go_through_the_chain(site):
    did, token = site.device(site.admin, "mqtt-dev")
    _gw, gw_token = site.device(site.admin, "gateway-1", gateway=True)
    sent = points(TS + 100, [70, 10, 55])
    gw_sent = points(TS + 200, [80, 20])
    for tok, topic, payload in (
        (token, "v1/devices/me/telemetry", sent),
        (gw_token, "v1/gateway/telemetry", {"gw-child": gw_sent}),
    ):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"c-{tok[:6]}")
        client.username_pw_set(tok)
        client.connect("127.0.0.1", site.server.mqtt_port)
        client.loop_start()
        try:
            info = client.publish(topic, json.dumps(payload), qos=1)
            info.wait_for_publish(20)
            assert info.is_published()  # PUBACK: queued durably
        finally:
            client.disconnect()
            client.loop_stop()
    expect_hot(site, did, "mqtt-dev", sent)
    child = wait_for(lambda: site.admin.get("/api/tenant/devices?deviceName=gw-child").json().get("id"))
    assert child
    expect_hot(site, child["id"], "gw-child", gw_sent)
    # the sessions' CONNECT_EVENT / DISCONNECT_EVENT reached the chain too
    kinds = wait_for(lambda: {e["type"] for e in site.events()} >= {"CONNECT_EVENT", "DISCONNECT_EVENT"})
    assert kinds


def test_coap_and_rest_save_go_through_the_chain(site):
    did, token = site.device(site.admin, "coap-dev")
    sent = points(TS + 300, [90, 30])

    async def post() -> str:
        ctx = await Context.create_client_context()
        try:
            uri = f"coap://127.0.0.1:{site.server.coap_port}/api/v1/{token}/telemetry"
            msg = Message(code=POST, uri=uri, payload=json.dumps(sent).encode())
            return str((await asyncio.wait_for(ctx.request(msg).response, 30)).code)
        finally:
            await ctx.shutdown()

    assert "2.01" in asyncio.run(post())
    expect_hot(site, did, "coap-dev", sent)
    rid, _ = site.device(site.admin, "rest-dev")
    rest_sent = points(TS + 400, [5, 99])
    for p in rest_sent:
        r = site.admin.post(f"/api/plugins/telemetry/DEVICE/{rid}/timeseries/ANY", json=p)
        assert r.status_code == 200, r.text
    expect_hot(site, rid, "rest-dev", rest_sent)


def test_device_attributes_reach_the_chains_save_node(site):
    did, token = site.device(site.admin, "attr-dev")
    r = requests.post(f"{site.url}/api/v1/{token}/attributes", json={"fw": "v1.2"}, timeout=30)
    assert r.status_code == 200
    got = wait_for(lambda: site.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/CLIENT_SCOPE").json())
    assert [(a["key"], a["value"]) for a in got] == [("fw", "v1.2")]


def test_attribute_change_and_alarm_ack_clear_are_messages_of_their_type(site):
    did, _ = site.device(site.admin, "event-dev")
    r = site.admin.post(f"/api/plugins/telemetry/DEVICE/{did}/attributes/SERVER_SCOPE", json={"limit": 42})
    assert r.status_code == 200, r.text
    r = site.admin.delete(f"/api/plugins/telemetry/DEVICE/{did}/SERVER_SCOPE?keys=limit")
    assert r.status_code == 200, r.text
    r = site.admin.post(
        "/api/alarm",
        json={"originator": {"entityType": "DEVICE", "id": did}, "type": "Overheat", "severity": "MAJOR"},
    )
    assert r.status_code == 200, r.text
    alarm_id = r.json()["id"]["id"]
    assert site.admin.post(f"/api/alarm/{alarm_id}/ack").status_code == 200
    assert site.admin.post(f"/api/alarm/{alarm_id}/clear").status_code == 200

    def mine():
        return [e for e in site.events() if e["metadata"].get("deviceName") == "event-dev"]

    got = wait_for(lambda: len(mine()) >= 5 and mine())
    by_type = {e["type"]: e for e in got}
    assert list(by_type) == ["ATTRIBUTES_UPDATED", "ATTRIBUTES_DELETED", "ALARM", "ALARM_ACK", "ALARM_CLEAR"]
    upd = by_type["ATTRIBUTES_UPDATED"]
    assert upd["data"] == {"limit": 42}
    assert upd["metadata"]["scope"] == "SERVER_SCOPE"
    assert upd["metadata"]["userName"] == EMAIL and upd["metadata"]["userId"]
    assert by_type["ATTRIBUTES_DELETED"]["data"] == {"attributes": ["limit"]}
    for kind in ("ALARM", "ALARM_ACK", "ALARM_CLEAR"):
        e = by_type[kind]
        assert e["data"]["id"]["id"] == alarm_id and e["data"]["type"] == "Overheat"
        assert e["metadata"]["userName"] == EMAIL and e["metadata"]["deviceType"] == "sensor"
    assert by_type["ALARM_ACK"]["data"]["acknowledged"] is True
    assert by_type["ALARM_CLEAR"]["data"]["cleared"] is True


def test_a_default_chain_tenant_keeps_the_direct_path(site):
    """Tenant "Plain" has the default root chain (stored at start): its telemetry is stored
    at once (200 = stored) and nothing waits in the queue for it."""
    did, token = site.device(site.other, "plain-dev")
    sent = points(TS, [10, 60])
    r = requests.post(f"{site.url}/api/v1/{token}/telemetry", json=sent, timeout=30)
    assert r.status_code == 200
    assert [v for _ts, v in site.history(site.other, did)] == [10.0, 60.0]  # no wait: stored
    q = RuleQueue(site.data)
    try:
        plain = tenant_id_of(site.data, "Plain")
        assert q.size(plain) == 0 and q.dead_letters(plain) == []
        roots = q.db.all("SELECT name FROM rule_chain WHERE tenant_id = ? AND root = 1", (plain,))
        assert roots == [("Root Rule Chain",)]
    finally:
        q.close()
