"""An acknowledged write survives SIGKILL of the server process."""

from __future__ import annotations

import threading

import requests

from tests.helpers import ADMIN, Api, ServerProcess, cli


def test_acknowledged_points_survive_kill_9(tmp_path):
    cli("init", "--data", str(tmp_path), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1])
    server = ServerProcess(tmp_path).start()
    admin = Api.login(server.url, *ADMIN)
    did = admin.post("/api/device", json={"name": "durable"}).json()["id"]["id"]
    token = admin.get(f"/api/device/{did}/credentials").json()["credentialsId"]
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def poster(worker: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set() and i < 5000:
            batch = [
                {"ts": 1_000_000 + worker * 10_000_000 + i * 10 + j, "values": {"x": i, "w": worker}} for j in range(10)
            ]
            try:
                r = session.post(f"{server.url}/api/v1/{token}/telemetry", json=batch, timeout=10)
            except requests.RequestException:
                return  # the server died mid-request: that batch was not acknowledged
            if r.status_code == 200:
                with lock:
                    acked.extend(p["ts"] for p in batch)
            i += 1

    threads = [threading.Thread(target=poster, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    while True:
        with lock:
            if len(acked) >= 3000:
                break
        threading.Event().wait(0.01)
    server.kill()  # SIGKILL while posters are mid-flight
    stop.set()
    for t in threads:
        t.join()

    server = ServerProcess(tmp_path).start()
    try:
        admin = Api.login(server.url, *ADMIN)
        r = admin.get(
            f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries",
            params=dict(keys="x", startTs=0, endTs=10**12, limit=10**7, orderBy="ASC"),
        )
        stored = {p["ts"] for p in r.json()["x"]}
        missing = set(acked) - stored
        assert not missing, f"{len(missing)} acknowledged points lost of {len(acked)}"
    finally:
        server.stop()
