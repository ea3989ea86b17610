"""``kill -9`` of ``tbpanel serve`` with acknowledged messages still queued for a custom root
chain (save → forward to a REST endpoint that is down): after the restart every message is
processed — saved and forwarded — at least once, in each device's order."""

from __future__ import annotations

import time

import orjson
import requests

from tests.helpers import Api, ServerProcess, cli
from tests.rules.recorder import Recorder
from tests.rules.test_ingress import import_root, tenant_id_of, wait_for

N = 30
T = 1_767_225_600_000
EMAIL, PASSWORD = "kill9@tenant.test", "kill9-pass-1"


def save_and_forward(url: str) -> dict:
    return {
        "ruleChain": {"name": "Save and forward", "type": "CORE", "root": True},
        "metadata": {
            "firstNodeIndex": 0,
            "nodes": [
                {"type": "org.thingsboard.rule.engine.telemetry.TbMsgTimeseriesNode", "name": "save"},
                {
                    "type": "org.thingsboard.rule.engine.rest.TbRestApiCallNode",
                    "name": "forward",
                    "configuration": {"restEndpointUrlPattern": url + "/in/${deviceName}"},
                },
            ],
            "connections": [{"fromIndex": 0, "toIndex": 1, "type": "Success"}],
        },
    }


def test_queued_messages_survive_kill_9_of_the_server(tmp_path):
    data = tmp_path / "data"
    rec = Recorder().start()
    rec.status = 503  # the external system is down: everything waits in the queue
    server = None
    try:
        cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD, "--tenant", "K")
        import_root(data, tenant_id_of(data, "K"), save_and_forward(rec.url))
        server = ServerProcess(data).start()
        admin = Api.login(server.url, EMAIL, PASSWORD)
        tokens = {}
        for name in ("k1", "k2"):
            did = admin.post("/api/device", json={"name": name}).json()["id"]["id"]
            tokens[name] = (did, admin.get(f"/api/device/{did}/credentials").json()["credentialsId"])
        for i in range(N):
            name = "k1" if i % 2 else "k2"
            body = {"ts": T + i, "values": {"n": i}}
            r = requests.post(f"{server.url}/api/v1/{tokens[name][1]}/telemetry", json=body, timeout=30)
            assert r.status_code == 200  # acknowledged = durably queued
        assert wait_for(lambda: len(rec.requests) >= 2)  # the worker runs, the forward fails
        server.kill()  # SIGKILL with the backlog queued
        assert server.proc is not None and server.proc.returncode == -9
        flipped = len(rec.requests)
        rec.status = 200
        server = ServerProcess(data).start()

        def delivered() -> dict[str, list[int]]:
            out: dict[str, list[int]] = {"k1": [], "k2": []}
            for _m, path, body, _h in list(rec.requests)[flipped:]:
                out[path.rsplit("/", 1)[-1]].append(orjson.loads(body)["n"])
            return out

        want = {"k1": list(range(1, N, 2)), "k2": list(range(0, N, 2))}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(set(want[k]) - set(delivered()[k]) for k in want):
            time.sleep(0.1)
        got = delivered()
        for name, ns in want.items():
            firsts = list(dict.fromkeys(got[name]))
            assert firsts == ns  # every message, each device's order kept
            assert len(got[name]) - len(ns) <= 1  # at most the one in flight at the kill, twice
        admin = Api.login(server.url, EMAIL, PASSWORD)
        for name, ns in want.items():
            did = tokens[name][0]
            r = admin.get(
                f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries?keys=n&startTs=0&endTs=9999999999999"
                "&useStrictDataTypes=true&orderBy=ASC&limit=100"
            )
            assert [p["value"] for p in r.json()["n"]] == ns  # each saved (once per ts)
    finally:
        if server is not None:
            server.stop()
        rec.stop()
