"""Device → server RPC through a custom root chain, over a real ``tbpanel serve``: the chain
(imported over REST) answers ``TO_SERVER_RPC_REQUEST`` with a script-built reply (transform →
"RPC call reply"), over MQTT (paho), the HTTP device API and CoAP; ``getCurrentTime`` is still answered by tbpanel."""

from __future__ import annotations

import asyncio
import json
import queue
from concurrent.futures import Future

import paho.mqtt.client as paho
import pytest
import requests
from aiocoap import POST, Context, Message

from tests.helpers import Api, ServerProcess, cli

EMAIL, PASSWORD = "rpcchain@tenant.test", "rpcchain-pass-1"
_REPLY = (
    "if (msg.method === 'silent') { return {msg: msg, metadata: metadata, msgType: 'SILENT'}; }"
    "return {msg: {echo: msg.method, doubled: msg.params.x * 2, device: metadata.deviceName,"
    " type: metadata.deviceType}, metadata: metadata, msgType: msgType};"
)


def rpc_chain() -> dict:
    def node(t: str, name: str, config: dict) -> dict:
        return {"type": "org.thingsboard.rule.engine." + t, "name": name, "debugMode": False, "configuration": config}

    nodes = [
        node("filter.TbMsgTypeSwitchNode", "switch", {"version": 0}),
        node("transform.TbTransformMsgNode", "build reply", {"jsScript": _REPLY}),
        node("filter.TbJsFilterNode", "not silent", {"jsScript": "return msgType !== 'SILENT';"}),
        node("rpc.TbSendRPCReplyNode", "reply", {"requestIdMetaDataAttribute": "requestId"}),
    ]
    connections = [(0, 1, "RPC Request from Device"), (1, 2, "Success"), (2, 3, "True")]
    return {
        "ruleChain": {"name": "RPC answers", "type": "CORE", "debugMode": False},
        "metadata": {
            "firstNodeIndex": 0,
            "nodes": nodes,
            "connections": [{"fromIndex": a, "toIndex": b, "type": t} for a, b, t in connections],
        },
    }


def import_root_over_rest(api: Api, doc: dict) -> str:
    """``POST /api/ruleChain`` + ``/api/ruleChain/metadata`` + ``/root``; the chain's id."""
    r = api.post("/api/ruleChain", json=doc["ruleChain"])
    assert r.status_code == 200, r.text
    chain_id = r.json()["id"]["id"]
    meta = {"ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id}, **doc["metadata"]}
    r = api.post("/api/ruleChain/metadata", json=meta)
    assert r.status_code == 200, r.text
    r = api.post(f"/api/ruleChain/{chain_id}/root")
    assert r.status_code == 200, r.text
    return chain_id


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data = tmp_path_factory.mktemp("rpcchain") / "data"
    cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD, "--tenant", "Rpc")
    server = ServerProcess(data).start()
    api = Api.login(server.url, EMAIL, PASSWORD)
    import_root_over_rest(api, rpc_chain())
    r = api.post("/api/device", json={"name": "rpc-dev", "type": "thermo"})
    assert r.status_code == 200, r.text
    token = api.get(f"/api/device/{r.json()['id']['id']}/credentials").json()["credentialsId"]
    yield server, token
    server.stop()


def test_http_device_rpc_is_answered_by_the_chain(site):
    server, token = site
    r = requests.post(f"{server.url}/api/v1/{token}/rpc", json={"method": "twice", "params": {"x": 21}}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"echo": "twice", "doubled": 42, "device": "rpc-dev", "type": "thermo"}
    # answered by tbpanel itself, as ThingsBoard's transport does
    r = requests.post(f"{server.url}/api/v1/{token}/rpc", json={"method": "getCurrentTime", "params": {}}, timeout=30)
    assert isinstance(r.json()["currentTime"], int)


def test_mqtt_device_rpc_is_answered_by_the_chain(site):
    server, token = site
    got: queue.Queue = queue.Queue()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="rpc-chain-dev")
    client.username_pw_set(token)
    client.on_message = lambda _c, _u, m: got.put((m.topic, json.loads(m.payload)))
    client.connect("127.0.0.1", server.mqtt_port)
    client.loop_start()
    try:
        client.subscribe("v1/devices/me/rpc/response/+", qos=1)
        client.publish("v1/devices/me/rpc/request/7", json.dumps({"method": "twice", "params": {"x": 5}}), qos=1)
        topic, answer = got.get(timeout=20)
        assert topic == "v1/devices/me/rpc/response/7"
        assert answer == {"echo": "twice", "doubled": 10, "device": "rpc-dev", "type": "thermo"}
    finally:
        client.loop_stop()
        client.disconnect()


def test_coap_device_rpc_is_answered_by_the_chain(site):
    server, token = site

    async def ask() -> bytes:
        ctx = await Context.create_client_context()
        try:
            uri = f"coap://127.0.0.1:{server.coap_port}/api/v1/{token}/rpc"
            body = json.dumps({"method": "twice", "params": {"x": 4}}).encode()
            response = await ctx.request(Message(code=POST, uri=uri, payload=body)).response
            return bytes(response.payload)
        finally:
            await ctx.shutdown()

    assert json.loads(asyncio.run(ask())) == {"echo": "twice", "doubled": 8, "device": "rpc-dev", "type": "thermo"}


def test_an_unanswered_request_times_out_and_a_late_reply_finds_nothing():
    import asyncio
    from concurrent.futures import Future

    from tbpanel.rules.engine import RuleEngine
    from tbpanel.rules.ingress import Ingress

    ingress = Ingress(RuleEngine(), None, None)  # type: ignore[arg-type]  # only the RPC waiting is used
    ingress.device_rpc_timeout_ms = 50
    waiting: Future = Future()
    ingress._rpc_waiting[("s", "1")] = waiting
    answer = asyncio.run(ingress.rpc_answer(waiting, {"method": "late"}))
    assert answer == {"error": "unsupported RPC method 'late': no rule answered it within 50 ms"}
    assert waiting.cancelled() and not ingress.rpc_reply("s", "1", {"too": "late"})
    # a plain answer (default chain, getCurrentTime) passes through
    assert asyncio.run(ingress.rpc_answer({"currentTime": 1}, {"method": "getCurrentTime"})) == {"currentTime": 1}
