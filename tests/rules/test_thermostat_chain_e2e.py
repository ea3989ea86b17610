"""ThingsBoard's "Thermostat Alarms" demo chain as a tenant's root chain, end to end over a
real ``tbpanel serve``: imported over REST, thresholds in server attributes set over REST,
telemetry posted by a device over the HTTP device API; its alarms are raised, updated and
cleared as ``GET /api/alarm/DEVICE/{id}`` shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from tests.helpers import Api, ServerProcess, cli
from tests.rules.test_device_rpc_chain import import_root_over_rest
from tests.rules.test_ingress import wait_for

EMAIL, PASSWORD = "thermostat@tenant.test", "thermostat-pass-1"
FIXTURE = Path(__file__).parent / "fixtures" / "thermostat_alarms.json"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data = tmp_path_factory.mktemp("thermostat") / "data"
    cli("init", "--data", str(data), "--admin-email", EMAIL, "--admin-password", PASSWORD, "--tenant", "Thermo")
    server = ServerProcess(data).start()
    yield server, Api.login(server.url, EMAIL, PASSWORD)
    server.stop()


def test_thermostat_chain_raises_and_clears_alarms_from_device_telemetry(site):
    server, api = site
    doc = json.loads(FIXTURE.read_text())
    doc["ruleChain"] = {
        k: v for k, v in doc["ruleChain"].items() if k in ("name", "type", "debugMode", "configuration")
    }
    r = api.post("/api/device", json={"name": "thermostat-1", "type": "thermostat"})
    assert r.status_code == 200, r.text
    did = r.json()["id"]["id"]
    token = api.get(f"/api/device/{did}/credentials").json()["credentialsId"]
    thresholds = {"alarmTemperature": True, "thresholdTemperature": 25, "alarmHumidity": True, "thresholdHumidity": 30}
    r = api.post(f"/api/plugins/telemetry/DEVICE/{did}/attributes/SERVER_SCOPE", json=thresholds)
    assert r.status_code == 200, r.text
    # the chain becomes root after the thresholds are set: their ATTRIBUTES_UPDATED event would
    # run through it too (no temperature in it: "clear") and could land after the first post
    import_root_over_rest(api, doc)

    def post(**values) -> None:
        r = requests.post(f"{server.url}/api/v1/{token}/telemetry", json=values, timeout=30)
        assert r.status_code == 200, r.text

    def alarms(status: str) -> dict[str, dict]:
        r = api.get(f"/api/alarm/DEVICE/{did}?pageSize=10&page=0&searchStatus={status}")
        assert r.status_code == 200, r.text
        return {a["type"]: a for a in r.json()["data"]}

    post(temperature=30, humidity=50)
    high = wait_for(lambda: alarms("ACTIVE").get("High Temperature"))
    assert high and high["severity"] == "MAJOR" and high["details"] == {"triggerValue": 30}
    assert "Low Humidity" not in alarms("ACTIVE")
    post(temperature=31, humidity=20)
    got = wait_for(
        lambda: (
            (a := alarms("ACTIVE")).get("Low Humidity") and a["High Temperature"]["details"]["triggerValue"] == 31 and a
        )
    )
    assert got and got["Low Humidity"]["severity"] == "MINOR" and got["Low Humidity"]["details"] == {"triggerValue": 20}
    post(temperature=22, humidity=45)
    assert wait_for(lambda: not alarms("ACTIVE")), alarms("ACTIVE")
    cleared = alarms("CLEARED")
    assert set(cleared) == {"High Temperature", "Low Humidity"}
    assert cleared["High Temperature"]["details"] == {"triggerValue": 31}
