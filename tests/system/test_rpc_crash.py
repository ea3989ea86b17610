"""A persistent RPC survives ``kill -9`` of the server: a request stored while the device was
offline, and one the device had received but not answered, are both delivered after the
restart and finish SUCCESSFUL; rpc.sqlite passes its integrity check after the kill."""

from __future__ import annotations

import sqlite3
import time

from tests.helpers import Api, ServerProcess, cli
from tests.helpers.rpc_device import PahoRpcDevice

EMAIL, PASSWORD = "rpc-crash@t.test", "rpc-crash-pass-1"


def status(api: Api, rpc_id: str) -> dict:
    r = api.get(f"/api/rpc/persistent/{rpc_id}")
    assert r.status_code == 200, r.text
    return r.json()


def wait(api: Api, rpc_id: str, want: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (got := status(api, rpc_id))["status"] != want:
        assert time.monotonic() < deadline, got
        time.sleep(0.05)
    return got


def test_persistent_rpc_survives_kill_9(tmp_path):
    data = tmp_path / "data"
    cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD, "--tenant", "RpcCrash")
    server = ServerProcess(data).start()
    try:
        admin = Api.login(server.url, EMAIL, PASSWORD)
        did = admin.post("/api/device", json={"name": "valve", "type": "valve"}).json()["id"]["id"]
        token = admin.get(f"/api/device/{did}/credentials").json()["credentialsId"]
        body = {"persistent": True, "timeout": 120_000}
        taken = admin.post(f"/api/rpc/twoway/{did}", json={"method": "taken", "params": 1, **body}).json()["rpcId"]
        with PahoRpcDevice(server.mqtt_port, token, answer=None) as dev:
            assert dev.requests.get(timeout=20)[1]["method"] == "taken"  # received, never answered
            wait(admin, taken, "DELIVERED")
        offline = admin.post(f"/api/rpc/twoway/{did}", json={"method": "offline", "params": 2, **body}).json()["rpcId"]
        assert status(admin, offline)["status"] == "QUEUED"
        server.kill()
    finally:
        server.stop()
    with sqlite3.connect(data / "rpc.sqlite") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    server = ServerProcess(data).start()
    try:
        admin = Api.login(server.url, EMAIL, PASSWORD)
        assert status(admin, taken)["status"] == "QUEUED"  # taken but unanswered: sent again
        assert status(admin, offline)["status"] == "QUEUED"
        with PahoRpcDevice(server.mqtt_port, token) as dev:
            methods = sorted(dev.requests.get(timeout=20)[1]["method"] for _ in range(2))
            assert methods == ["offline", "taken"]
            assert wait(admin, taken, "SUCCESSFUL")["response"] == {"echo": "taken", "params": 1}
            assert wait(admin, offline, "SUCCESSFUL")["response"] == {"echo": "offline", "params": 2}
    finally:
        server.stop()
