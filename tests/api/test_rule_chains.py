"""ThingsBoard's rule chain REST routes over real HTTP (tb-rest-client 4.4: test_rest_client_surface.py): create,
graph, page, root, delete, the script test; ThingsBoard's thermostat chain imported through
them and exported unchanged; tbpanel's extras (run a message, debug events, counters, dead letters)."""

from __future__ import annotations

import copy
import json
import uuid

import pytest

from tests.rules.conftest import FIXTURES

FILTER = "org.thingsboard.rule.engine.filter.TbJsFilterNode"
ATTRS = "org.thingsboard.rule.engine.telemetry.TbMsgAttributesNode"


def _new_chain(api, name: str | None = None) -> dict:
    r = api.post("/api/ruleChain", json={"name": name or f"rc-{uuid.uuid4().hex[:8]}", "type": "CORE"})
    assert r.status_code == 200, r.text
    return r.json()


def _metadata(chain_id: str, nodes: list, connections: list, first: int | None = 0) -> dict:
    return {
        "ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id},
        "firstNodeIndex": first,
        "nodes": nodes,
        "connections": connections,
        "ruleChainConnections": None,
    }


def _filter_node(script: str = "return msg.t > 20;", debug: bool = True) -> dict:
    return {
        "type": FILTER,
        "name": "hot?",
        "debugMode": debug,
        "configuration": {"scriptLang": "JS", "jsScript": script},
        "additionalInfo": {"layoutX": 300, "layoutY": 150},
    }


def test_create_graph_page_root_delete(world):
    a = world.admin
    chain = _new_chain(a, "rc-crud-" + uuid.uuid4().hex[:6])
    cid = chain["id"]["id"]
    assert chain["id"]["entityType"] == "RULE_CHAIN" and chain["type"] == "CORE" and chain["root"] is False
    assert a.get(f"/api/ruleChain/{cid}").json()["name"] == chain["name"]
    md = _metadata(cid, [_filter_node()], [], 0)
    r = a.post("/api/ruleChain/metadata", json=md)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["firstNodeIndex"] == 0 and saved["nodes"][0]["type"] == FILTER
    assert saved["nodes"][0]["id"]["entityType"] == "RULE_NODE"
    assert a.get(f"/api/ruleChain/{cid}/metadata").json() == saved
    # rename keeps the graph
    r = a.post("/api/ruleChain", json={"id": {"entityType": "RULE_CHAIN", "id": cid}, "name": chain["name"] + "-x"})
    assert r.status_code == 200 and r.json()["name"] == chain["name"] + "-x"
    assert len(a.get(f"/api/ruleChain/{cid}/metadata").json()["nodes"]) == 1
    # PageData, with the tenant's (default) root chain listed too
    page = a.get("/api/ruleChains", params={"pageSize": 100, "page": 0}).json()
    assert {"data", "totalPages", "totalElements", "hasNext"} <= set(page)
    names = {c["name"]: c for c in page["data"]}
    assert chain["name"] + "-x" in names and any(c["root"] for c in page["data"])
    found = a.get("/api/ruleChains", params={"pageSize": 10, "page": 0, "textSearch": "RC-CRUD"}).json()
    assert [c["id"]["id"] for c in found["data"]] == [cid]
    one = a.get("/api/ruleChains", params={"pageSize": 1, "page": 0}).json()
    assert len(one["data"]) == 1 and one["hasNext"] and one["totalPages"] == page["totalElements"]
    # root moves; the root cannot be deleted; another chain can
    old_root = next(c for c in page["data"] if c["root"])["id"]["id"]
    r = a.post(f"/api/ruleChain/{cid}/root")
    assert r.status_code == 200 and r.json()["root"] is True
    assert a.get(f"/api/ruleChain/{old_root}").json()["root"] is False
    r = a.delete(f"/api/ruleChain/{cid}")
    assert r.status_code == 400 and "root" in r.json()["message"]
    assert a.post(f"/api/ruleChain/{old_root}/root").status_code == 200
    assert a.delete(f"/api/ruleChain/{cid}").status_code == 200
    r = a.get(f"/api/ruleChain/{cid}")
    assert r.status_code == 404 and r.json()["errorCode"] == 32


def test_refusals_are_thingsboard_errors(world):
    a = world.admin
    cid = _new_chain(a)["id"]["id"]
    bad = _metadata(cid, [{"type": "org.thingsboard.rule.engine.transform.TbNoSuchNode", "name": "x"}], [])
    r = a.post("/api/ruleChain/metadata", json=bad)
    assert r.status_code == 400 and "org.thingsboard.rule.engine.transform.TbNoSuchNode" in r.json()["message"]
    r = a.post("/api/ruleChain/metadata", json=_metadata(cid, [_filter_node("return (;")], []))
    assert r.status_code == 400 and "SyntaxError" in r.json()["message"]
    r = a.post(
        "/api/ruleChain/metadata",
        json=_metadata(cid, [_filter_node()], [{"fromIndex": 0, "toIndex": 5, "type": "True"}]),
    )
    assert r.status_code == 400
    assert a.get(f"/api/ruleChain/{cid}/metadata").json()["nodes"] == []  # refused bodies changed nothing
    assert a.post("/api/ruleChain", json={"type": "CORE"}).status_code == 400
    assert a.post("/api/ruleChain", json={"name": "e", "type": "EDGE"}).status_code == 400
    assert a.get("/api/ruleChain/not-a-uuid").status_code == 400
    assert a.get(f"/api/ruleChain/{uuid.uuid4()}").status_code == 404
    # another tenant's chain is not found, a customer user is refused
    for api, status in ((world.other_admin, 404), (world.customer, 403)):
        for method, path in (("get", f"/api/ruleChain/{cid}"), ("post", f"/api/ruleChain/{cid}/root")):
            r = getattr(api, method)(path)
            assert r.status_code == status and r.json()["message"], (method, path, r.text)


def test_thermostat_chain_imported_via_rest_exports_identical(world):
    """ThingsBoard's demo thermostat chain through ThingsBoard's own two calls (create, then
    save metadata), read back as an export: the same file, node for node."""
    a = world.admin
    doc = json.loads((FIXTURES / "thermostat_alarms.json").read_text())
    chain = _new_chain(a, doc["ruleChain"]["name"] + " " + uuid.uuid4().hex[:6])
    cid = chain["id"]["id"]
    md = dict(doc["metadata"], ruleChainId={"entityType": "RULE_CHAIN", "id": cid})
    r = a.post("/api/ruleChain/metadata", json=md)
    assert r.status_code == 200, r.text
    exported = {
        "ruleChain": a.get(f"/api/ruleChain/{cid}").json(),
        "metadata": a.get(f"/api/ruleChain/{cid}/metadata").json(),
    }

    def graph(md: dict) -> dict:
        """The metadata without what a save assigns (node ids, the chain id)."""
        md = copy.deepcopy(md)
        md.pop("ruleChainId", None)
        for n in md["nodes"]:
            n.pop("id", None)
        return md

    got, want = exported["metadata"], doc["metadata"]
    assert exported["ruleChain"]["name"] == chain["name"] and exported["ruleChain"]["type"] == "CORE"
    assert (got["firstNodeIndex"], got["connections"]) == (want["firstNodeIndex"], want["connections"])
    for mine, theirs in zip(got["nodes"], want["nodes"], strict=True):
        for k in ("type", "name", "debugMode", "additionalInfo"):
            assert mine[k] == theirs[k], (theirs["name"], k)
        # every configuration key of ThingsBoard's file survives with its value (tbpanel adds the
        # defaults of the keys a file leaves out, as ThingsBoard's UI does when a node is opened)
        for k, v in theirs["configuration"].items():
            assert mine["configuration"][k] == v, (theirs["name"], k)
    # the export imported again (a second chain) exports identical, every byte of the graph
    cid2 = _new_chain(a)["id"]["id"]
    again = dict(got, ruleChainId={"entityType": "RULE_CHAIN", "id": cid2})
    assert a.post("/api/ruleChain/metadata", json=again).status_code == 200
    assert graph(a.get(f"/api/ruleChain/{cid2}/metadata").json()) == graph(got)


@pytest.mark.parametrize(
    ("script_type", "script", "msg", "output", "error"),
    [
        ("filter", "return msg.temperature > 20;", '{"temperature": 42}', "true", ""),
        ("switch", "return ['a', 'b'];", "{}", '["a","b"]', ""),
        ("json", "return {x: metadata.deviceName};", "{}", '{"x":"Device A"}', ""),
        ("string", "return msgType;", "{}", "POST_TELEMETRY_REQUEST", ""),
        ("filter", "return 1;", "{}", "", "boolean"),
        ("filter", "return (;", "{}", "", "SyntaxError"),
        ("filter", "throw new Error('boom');", "{}", "", "boom"),
    ],
)
def test_test_script(world, script_type, script, msg, output, error):
    body = {
        "script": script,
        "scriptType": script_type,
        "argNames": ["msg", "metadata", "msgType"],
        "msg": msg,
        "metadata": {"deviceName": "Device A", "deviceType": "Thermometer"},
        "msgType": "POST_TELEMETRY_REQUEST",
    }
    r = world.admin.post("/api/ruleChain/testScript", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["output"] == output and (error in got["error"] if error else got["error"] == "")


def test_update_script_answers_the_message(world):
    body = {
        "script": "msg.f = msg.c * 9 / 5 + 32; return {msg: msg, metadata: metadata, msgType: msgType};",
        "scriptType": "update",
        "argNames": ["msg", "metadata", "msgType"],
        "msg": '{"c": 100}',
        "metadata": {"deviceName": "D"},
        "msgType": "POST_TELEMETRY_REQUEST",
    }
    got = json.loads(world.admin.post("/api/ruleChain/testScript", json=body).json()["output"])
    assert got == {"msg": {"c": 100, "f": 212}, "metadata": {"deviceName": "D"}, "msgType": "POST_TELEMETRY_REQUEST"}
    assert world.customer.post("/api/ruleChain/testScript", json=body).status_code == 403


def test_run_debug_counters_and_dead_letters(world):
    """A chain with a debug-mode filter: running a message through it records IN/OUT events
    and counts; a failing node with no Failure connection counts an error."""
    a = world.admin
    did = world.devices["dev-a1"]["id"]["id"]
    cid = _new_chain(a)["id"]["id"]
    attrs = {"type": ATTRS, "name": "keep", "debugMode": True, "configuration": {"scope": "SERVER_SCOPE"}}
    strict = _filter_node("if (msg.t === undefined) { throw new Error('no t'); } return msg.t > 20;")
    md = _metadata(cid, [strict, attrs], [{"fromIndex": 0, "toIndex": 1, "type": "True"}])
    nodes = a.post("/api/ruleChain/metadata", json=md).json()["nodes"]
    run = a.post(
        f"/api/tbpanel/ruleChain/{cid}/run",
        json={"deviceId": did, "msgType": "POST_ATTRIBUTES_REQUEST", "data": {"t": 25}},
    )
    assert run.status_code == 200, run.text
    assert [(e["nodeName"], e["relationType"]) for e in run.json()["ended"]] == [("keep", "Success")]
    attrs_now = a.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/SERVER_SCOPE?keys=t").json()
    assert attrs_now[0]["value"] == 25  # really saved: the run has real effects
    cold = a.post(f"/api/tbpanel/ruleChain/{cid}/run", json={"deviceId": did, "data": {"t": 5}}).json()
    assert [(e["nodeName"], e["relationType"]) for e in cold["ended"]] == [("hot?", "False")]
    broken = a.post(f"/api/tbpanel/ruleChain/{cid}/run", json={"deviceId": did, "data": {"u": 1}}).json()
    assert broken["ok"] is False and "no t" in broken["ended"][0]["error"]
    events = a.get(f"/api/tbpanel/ruleChain/{cid}/debug").json()
    kinds = [(e["nodeName"], e["type"], e["relationType"]) for e in events]
    assert kinds[:4] == [
        ("hot?", "IN", None),
        ("hot?", "OUT", "True"),
        ("keep", "IN", None),
        ("keep", "OUT", "Success"),
    ]
    assert any(e["error"] for e in events)
    only = a.get(f"/api/tbpanel/ruleChain/{cid}/debug", params={"nodeId": nodes[1]["id"]["id"]}).json()
    assert {e["nodeName"] for e in only} == {"keep"}
    last_in = a.get(f"/api/ruleNode/{nodes[0]['id']['id']}/debugIn").json()
    assert last_in["type"] == "IN" and last_in["entityId"] == nodes[0]["id"]["id"]
    counters = a.get(f"/api/tbpanel/ruleChain/{cid}/counters").json()
    hot = counters[nodes[0]["id"]["id"]]
    assert hot["received"] == 3 and hot["relations"] == {"True": 1, "False": 1, "Failure": 1} and hot["failures"] == 1
    assert hot["lastError"]
    # another tenant: its device cannot be used, the chain is not found
    other = world.devices["dev-b"]["id"]["id"]
    assert a.post(f"/api/tbpanel/ruleChain/{cid}/run", json={"deviceId": other, "data": {}}).status_code == 404
    assert world.other_admin.get(f"/api/tbpanel/ruleChain/{cid}/debug").status_code == 404
    assert world.other_admin.get(f"/api/ruleNode/{nodes[0]['id']['id']}/debugIn").status_code == 404
    assert isinstance(a.get("/api/tbpanel/rules/deadLetters").json(), list)
    assert a.post("/api/tbpanel/rules/deadLetters/999999/retry").status_code == 404
