"""Anomaly models and tasks over REST against a real server, including who may do what."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.helpers import wait_task

HOUR = 3_600_000
T0 = 1_767_225_600_000  # 2026-01-01 UTC


@pytest.fixture(scope="module")
def fleet(world):
    """Three 'meter' devices with 3 days of 5-minute data; meter-1 has a spike on day 3."""
    devices = []
    for i in range(3):
        did, token = world.new_device(f"meter-{i}", type="meter")
        ts = np.arange(T0, T0 + 72 * HOUR, 300_000)
        rng = np.random.default_rng(i)
        values = 5 + np.sin(2 * np.pi * (ts % (24 * HOUR)) / (24 * HOUR)) + rng.normal(0, 0.05, len(ts))
        if i == 1:
            values[(ts >= T0 + 60 * HOUR) & (ts < T0 + 62 * HOUR)] += 6
        body = [{"ts": int(t), "values": {"power": round(float(v), 4)}} for t, v in zip(ts, values)]
        assert requests.post(f"{world.url}/api/v1/{token}/telemetry", json=body, timeout=30).status_code == 200
        devices.append(did)
    return devices


@pytest.fixture(scope="module")
def model(world, fleet):
    config = {
        "name": "meters",
        "device_type": "meter",
        "fields": ["power"],
        "train_start": T0,
        "train_end": T0 + 72 * HOUR,
        "window": "fixed",
        "segment_ms": HOUR,
    }
    r = world.admin.post("/api/tbpanel/models", json={"config": config})
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["status"] == "NEW" and m["config"]["segment_ms"] == HOUR
    task = world.admin.post(f"/api/tbpanel/models/{m['id']}/build").json()
    assert task["kind"] == "BUILD"
    done = wait_task(world.admin, task["id"])
    assert done["status"] == "DONE", done
    return world.admin.get(f"/api/tbpanel/models/{m['id']}").json()


def test_build_and_anomalies(world, fleet, model):
    assert model["status"] == "READY" and model["counts"]["anomalies"] >= 1
    anomalies = world.admin.get(f"/api/tbpanel/models/{model['id']}/anomalies").json()
    spike = [a for a in anomalies if a["item"] == fleet[1] and T0 + 59 * HOUR <= a["startTs"] <= T0 + 61 * HOUR]
    assert spike and spike[0]["score"] >= 100 and spike[0]["scoreIndex"] > 0
    only = world.admin.get(f"/api/tbpanel/models/{model['id']}/anomalies", params={"item": fleet[1]}).json()
    assert {a["item"] for a in only} == {fleet[1]}
    tasks = world.admin.get(f"/api/tbpanel/models/{model['id']}/tasks").json()
    assert tasks[0]["kind"] == "BUILD" and tasks[0]["status"] == "DONE" and tasks[0]["durationMs"] >= 0
    listed = world.admin.get("/api/tbpanel/models").json()
    assert model["id"] in [m["id"] for m in listed]


def test_refresh_settings_and_run(world, model):
    url = f"/api/tbpanel/models/{model['id']}/refresh"
    r = world.admin.put(url, json={"enabled": True, "every": 1, "unit": "DAY", "at_unit_start": True})
    assert r.status_code == 200 and r.json()["enabled"] and r.json()["unit"] == "DAY"
    assert world.admin.get(url).json()["at_unit_start"] is True
    assert world.admin.put(url, json={"unit": "YEAR"}).status_code == 400
    task = world.admin.post(url + "/run").json()
    assert wait_task(world.admin, task["id"])["status"] == "DONE"


def test_reprocess_validation_and_run(world, fleet, model):
    url = f"/api/tbpanel/models/{model['id']}/reprocess"
    assert world.admin.post(url, json={"startTs": T0}).status_code == 400
    assert world.admin.post(url, json={"startTs": T0 + 5, "endTs": T0}).status_code == 400
    assert world.admin.post(url, json={"startTs": T0, "endTs": T0 + HOUR, "items": ["not-a-uuid"]}).status_code == 400
    b = world.devices["dev-b"]["id"]["id"]
    assert world.admin.post(url, json={"startTs": T0, "endTs": T0 + HOUR, "items": [b]}).status_code == 403
    task = world.admin.post(url, json={"startTs": T0 + 48 * HOUR, "endTs": T0 + 72 * HOUR, "items": [fleet[1]]}).json()
    done = wait_task(world.admin, task["id"])
    assert done["status"] == "DONE" and done["result"]["created"] >= 1


def test_update_rules(world, model):
    url = f"/api/tbpanel/models/{model['id']}"
    r = world.admin.put(url, json={"config": {"threshold_percent": 3.0}})
    assert r.status_code == 400 and "threshold_percent" in r.json()["message"] and "rebuild" in r.json()["message"]
    r = world.admin.put(url, json={"config": {"name": "meters v2"}})
    assert r.status_code == 200 and r.json()["name"] == "meters v2"
    assert world.admin.put(url, json={"config": {"window": "zigzag"}}).status_code == 400
    assert world.admin.put(url, json={"config": {"no_such_knob": 1}}).status_code == 400


def test_experiment_task(world, model):
    r = world.admin.post(
        f"/api/tbpanel/models/{model['id']}/experiments",
        json={"variants": {"loose": {"threshold_percent": 10.0}}, "startTs": T0, "endTs": T0 + 72 * HOUR},
    )
    assert r.status_code == 200, r.text
    done = wait_task(world.admin, r.json()["id"])
    assert done["status"] == "DONE", done
    assert [row["variant"] for row in done["result"]["comparison"]] == ["current", "loose"]


def test_cancel_unknown_and_finished_tasks(world, model):
    tasks = world.admin.get(f"/api/tbpanel/models/{model['id']}/tasks").json()
    r = world.admin.post(f"/api/tbpanel/tasks/{tasks[-1]['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancelRequested"] is False
    assert world.admin.get("/api/tbpanel/tasks/00000000-0000-0000-0000-000000000000").status_code == 404


def test_create_validation(world):
    r = world.admin.post("/api/tbpanel/models", json={"config": {"window": "zigzag"}})
    assert r.status_code == 400 and "window" in r.json()["message"]
    assert world.admin.post("/api/tbpanel/models", data=b"[1]").status_code == 400


def test_authorisation(world, model):
    mid = model["id"]
    tasks = world.admin.get(f"/api/tbpanel/models/{mid}/tasks").json()
    routes = [
        ("get", f"/api/tbpanel/models/{mid}"),
        ("get", f"/api/tbpanel/models/{mid}/anomalies"),
        ("post", f"/api/tbpanel/models/{mid}/build"),
        ("get", f"/api/tbpanel/tasks/{tasks[0]['id']}"),
        ("delete", f"/api/tbpanel/models/{mid}"),
        ("get", f"/api/tbpanel/models/{mid}/tasks"),
    ]
    for method, path in routes:
        assert getattr(world.anon, method)(path).status_code == 401, path
        assert getattr(world.customer, method)(path).status_code == 403, path
        assert getattr(world.other_admin, method)(path).status_code == 403, path
    assert world.other_admin.get("/api/tbpanel/models").json() == []
    assert world.customer.get("/api/tbpanel/models").status_code == 403


def test_openapi_describes_every_model_route():
    spec = json.loads((Path(__file__).resolve().parent.parent.parent / "docs" / "openapi.json").read_text())
    from tbpanel.api.models import model_patterns

    described = set(spec["paths"])
    for pattern, *_ in model_patterns(None):
        path = pattern.replace("/?", "").replace("([^/]+)", "{id}")
        assert path in described, f"{path} is missing from docs/openapi.json"
