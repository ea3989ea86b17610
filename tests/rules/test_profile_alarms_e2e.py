"""A device profile's alarm rule raises and clears an alarm from telemetry a device posts over
its HTTP API, on the default root chain (where the post is stored directly and the Device
Profile node runs after the ack): the three parts issue 17 builds separately, end to end."""

from __future__ import annotations

import time
import uuid

import requests

RULE = {
    "id": "hot",
    "alarmType": "Too hot",
    "createRules": {
        "MAJOR": {
            "condition": {
                "condition": [
                    {
                        "key": {"type": "TIME_SERIES", "key": "temperature"},
                        "valueType": "NUMERIC",
                        "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 30}},
                    }
                ],
                "spec": {"type": "SIMPLE"},
            },
            "alarmDetails": "temperature ${temperature}",
        }
    },
    "clearRule": {
        "condition": {
            "condition": [
                {
                    "key": {"type": "TIME_SERIES", "key": "temperature"},
                    "valueType": "NUMERIC",
                    "predicate": {"type": "NUMERIC", "operation": "LESS_OR_EQUAL", "value": {"defaultValue": 25}},
                }
            ],
            "spec": {"type": "SIMPLE"},
        }
    },
}


def alarms_of(world, device_id: str, until, timeout: float = 30) -> list[dict]:
    """The device's alarms once ``until(alarms)`` holds (the profile step runs after the ack)."""
    deadline = time.monotonic() + timeout
    while True:
        r = world.admin.get(f"/api/alarm/DEVICE/{device_id}?pageSize=10&page=0")
        assert r.status_code == 200, r.text
        alarms = r.json()["data"]
        if until(alarms) or time.monotonic() > deadline:
            return alarms
        time.sleep(0.2)


def test_profile_alarm_rule_raises_and_clears_from_device_telemetry(world):
    profile = f"e2e-thermo-{uuid.uuid4().hex[:6]}"
    body = {"name": profile, "type": "DEFAULT", "transportType": "DEFAULT", "profileData": {"alarms": [RULE]}}
    r = world.admin.post("/api/deviceProfile", json=body)
    assert r.status_code == 200, r.text
    did, token = world.new_device(f"{profile}-1", type=profile)
    post = f"{world.url}/api/v1/{token}/telemetry"

    assert requests.post(post, json={"temperature": 22}, timeout=10).status_code == 200
    assert requests.post(post, json={"temperature": 35}, timeout=10).status_code == 200
    raised = alarms_of(world, did, lambda a: any(x["type"] == "Too hot" for x in a))
    [alarm] = [a for a in raised if a["type"] == "Too hot"]
    assert alarm["severity"] == "MAJOR" and alarm["status"] == "ACTIVE_UNACK"
    assert "35" in str(alarm.get("details"))
    # the telemetry itself was stored by the direct path, once
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries?keys=temperature")
    assert r.json()["temperature"][0]["value"] in ("35", 35, 35.0)

    assert requests.post(post, json={"temperature": 20}, timeout=10).status_code == 200
    cleared = alarms_of(world, did, lambda a: all(x["status"].startswith("CLEARED") for x in a))
    assert [a["status"] for a in cleared if a["type"] == "Too hot"] == ["CLEARED_UNACK"]
