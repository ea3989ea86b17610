"""The real PyPI clients written for ThingsBoard, unchanged, against a tbpanel server."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from tb_device_http import TBHTTPDevice
from tb_rest_client.models.device_id import DeviceId
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from conftest import ADMIN

T0 = 1_710_000_000_000


def _as_dict(points) -> list[tuple[int, object]]:
    out = []
    for p in points:
        if isinstance(p, dict):
            out.append((p["ts"], p["value"]))
        else:
            out.append((p.ts, p.value))
    return out


@pytest.fixture
def rest(world):
    client = RestClient(base_url=world.url)
    client.login(*ADMIN)
    yield client
    client.stop()


def device_id(world, name):
    did, _ = world.new_device(name)
    return DeviceId(did, "DEVICE")


def test_rest_client_round_trip(rest, world):
    entity = device_id(world, "client-rest")
    rest.save_entity_telemetry(entity, "ANY", [{"ts": T0 + i * 1000, "values": {"temp": 20 + i, "rh": 0.5}}
                                               for i in range(5)])
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


def test_tb_http_device_posts_telemetry(world, rest):
    did, token = world.new_device("client-http-device")
    device = TBHTTPDevice(world.url, token)
    assert device.test_connection()  # posts {} and expects a 2xx
    when = datetime.fromtimestamp(T0 / 1000, tz=timezone.utc).replace(tzinfo=None)
    device.send_telemetry({"pressure": 3.25, "on": True}, timestamp=when, queued=False)
    device.send_attributes({"fw": "2.0"})
    hist = rest.get_timeseries(DeviceId(did, "DEVICE"), start_ts=T0, end_ts=T0 + 1, keys="pressure,on")
    assert _as_dict(hist["pressure"]) == [(T0, "3.25")]
    assert _as_dict(hist["on"]) == [(T0, "true")]
    assert not TBHTTPDevice(world.url, "wrong-token").test_connection()
