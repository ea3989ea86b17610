"""A real server killed (SIGKILL) while a refresh that raises alarms is running: after a restart
the alarm invariants hold and the lost run can simply be repeated. The deterministic variant,
a process killed exactly inside the anomaly transaction after the alarm writes, is in
test_alarm_lifecycle.py; this one kills wherever the run happens to be."""

from __future__ import annotations

import numpy as np
import requests

from tests.helpers import Api, ServerProcess, cli, wait_task
from tests.helpers.alarms import Harness, check_invariants

HOUR = 3_600_000
T0 = 1_767_225_600_000


def post(url, token, start, end, spike_from=None):
    ts = np.arange(start, end, 300_000)
    values = (
        5
        + np.sin(2 * np.pi * (ts % (24 * HOUR)) / (24 * HOUR))
        + np.random.default_rng(start % 97).normal(0, 0.05, len(ts))
    )
    if spike_from is not None:
        values[ts >= spike_from] += 8
    body = [{"ts": int(t), "values": {"power": round(float(v), 4)}} for t, v in zip(ts, values)]
    assert requests.post(f"{url}/api/v1/{token}/telemetry", json=body, timeout=60).status_code == 200


def test_kill_during_alarm_raising_refresh_then_restart(tmp_path):
    data = tmp_path / "data"
    cli(
        "init",
        "--data",
        str(data),
        "--admin-email",
        "crash@t.test",
        "--admin-password",
        "crash-pass-1",
        "--tenant",
        "Crash",
    )
    server = ServerProcess(data).start()
    try:
        admin = Api.login(server.url, "crash@t.test", "crash-pass-1")
        tokens = []
        for i in range(4):
            did = admin.post("/api/device", json={"name": f"m{i}", "type": "meter"}).json()["id"]["id"]
            token = admin.get(f"/api/device/{did}/credentials").json()["credentialsId"]
            post(server.url, token, T0, T0 + 48 * HOUR)
            tokens.append(token)
        config = {
            "name": "meters",
            "device_type": "meter",
            "fields": ["power"],
            "window": "fixed",
            "segment_ms": HOUR,
            "train_start": T0,
            "train_end": T0 + 48 * HOUR,
        }
        model = admin.post("/api/tbpanel/models", json={"config": config}).json()
        build = admin.post(f"/api/tbpanel/models/{model['id']}/build").json()
        assert wait_task(admin, build["id"])["status"] == "DONE"
        admin.put(f"/api/tbpanel/models/{model['id']}/refresh", json={"enabled": True, "create_alarms": True})
        for token in tokens:  # every device goes wild: the refresh raises one alarm each
            post(server.url, token, T0 + 48 * HOUR, T0 + 54 * HOUR, spike_from=T0 + 50 * HOUR)
        admin.post(f"/api/tbpanel/models/{model['id']}/refresh/run")
        server.kill()
    finally:
        server.stop()

    from tbpanel.platform import Platform

    p = Platform(data, compaction_interval_s=0)
    try:
        tenant = p.registry.find_tenant("Crash")
        h = Harness(p, tenant.id)
        check_invariants(h)
        alarms_before = len(h.alarms())
        # the run that may have been lost is repeated; afterwards every wild device has its alarm
        task = p.tasks.wait(p.anomaly.refresh_now(model["id"], T0 + 54 * HOUR).id, 120)
        assert task.status == "DONE", task.message
        check_invariants(h)
        active = [a for a in h.alarms() if not a.cleared]
        assert len({a.originator_id for a in active}) == 4 and len(h.alarms()) >= alarms_before
    finally:
        p.close()
