"""The real PyPI clients written for ThingsBoard, unchanged, against a tbpanel server.

tb-rest-client runs in the test interpreter; the device SDK (TBHTTPDevice, from tb-mqtt-client)
runs in its own virtualenv as a subprocess (see clients_venv.py for why)."""

from __future__ import annotations

import pytest
from tb_rest_client.models.device_id import DeviceId
from tb_rest_client.rest import ApiException

from tests.helpers.clients_venv import run_client_script

T0 = 1_710_000_000_000


def _as_dict(points) -> list[tuple[int, object]]:
    out = []
    for p in points:
        if isinstance(p, dict):
            out.append((p["ts"], p["value"]))
        else:
            out.append((p.ts, p.value))
    return out


def device_id(world, name):
    did, _ = world.new_device(name)
    return DeviceId(did, "DEVICE")


def test_rest_client_round_trip(rest, world):
    entity = device_id(world, "client-rest")
    rest.save_entity_telemetry(
        entity, "ANY", [{"ts": T0 + i * 1000, "values": {"temp": 20 + i, "rh": 0.5}} for i in range(5)]
    )
    keys = rest.get_timeseries_keys_v1(entity)
    assert sorted(keys) == ["rh", "temp"]
    hist = rest.get_timeseries(entity, start_ts=T0, end_ts=T0 + 10_000, keys="temp", order_by="ASC", limit=100)
    assert _as_dict(hist["temp"]) == [(T0 + i * 1000, str(20 + i)) for i in range(5)]
    avg = rest.get_timeseries(entity, start_ts=T0, end_ts=T0 + 5000, keys="temp", agg="AVG", interval=5000)
    assert _as_dict(avg["temp"]) == [(T0 + 2500, "22.0")]
    latest = rest.get_latest_timeseries(entity, keys="temp,rh")
    assert _as_dict(latest["temp"]) == [(T0 + 4000, "24")]
    rest.delete_entity_timeseries(entity, keys="temp", start_ts=T0, end_ts=T0 + 2000, delete_latest=False)
    hist = rest.get_timeseries(entity, start_ts=T0, end_ts=T0 + 10_000, keys="temp", order_by="ASC")
    assert [ts for ts, _ in _as_dict(hist["temp"])] == [T0 + 2000, T0 + 3000, T0 + 4000]


def test_rest_client_raises_api_exception(rest, world):
    other = DeviceId(world.devices["dev-b"]["id"]["id"], "DEVICE")
    with pytest.raises(ApiException) as err:
        rest.get_timeseries_keys_v1(other)
    assert err.value.status == 403
    with pytest.raises(ApiException) as err:
        rest.get_timeseries(device_id(world, "client-bad"), start_ts=10, end_ts=5, keys="x")
    assert err.value.status == 400


HTTP_DEVICE = r"""
import json, sys
from datetime import datetime, timezone
from tb_device_http import TBHTTPDevice
url, token, t0 = sys.argv[1], sys.argv[2], int(sys.argv[3])
device = TBHTTPDevice(url, token)
out = {"connected": device.test_connection()}  # posts {} and expects a 2xx
when = datetime.fromtimestamp(t0 / 1000, tz=timezone.utc).replace(tzinfo=None)
device.send_telemetry({"pressure": 3.25, "on": True}, timestamp=when, queued=False)
device.send_attributes({"fw": "v2.0"})
out["wrong_token_connected"] = TBHTTPDevice(url, "wrong-token").test_connection()
print("RESULT " + json.dumps(out))
"""


def test_tb_http_device_posts_telemetry(world, rest, tb_client_python, tmp_path):
    did, token = world.new_device("client-http-device")
    out = run_client_script(tb_client_python, HTTP_DEVICE, world.url, token, str(T0), cwd=tmp_path)
    assert out == {"connected": True, "wrong_token_connected": False}
    hist = rest.get_timeseries(DeviceId(did, "DEVICE"), start_ts=T0, end_ts=T0 + 1, keys="pressure,on")
    assert _as_dict(hist["pressure"]) == [(T0, "3.25")]
    assert _as_dict(hist["on"]) == [(T0, "true")]
    attrs = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/CLIENT_SCOPE").json()
    assert {a["key"]: a["value"] for a in attrs} == {"fw": "v2.0"}
