"""Device HTTP API against a real server: every payload shape, type rule and error path."""

from __future__ import annotations

import time

import pytest
import requests


def history(world, did, keys, start=0, end=None, **params):
    end = end or int(time.time() * 1000) + 86_400_000
    r = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries",
        params=dict(keys=",".join(keys), startTs=start, endTs=end, **params),
    )
    assert r.status_code == 200, r.text
    return r.json()


def post(world, token, body, path="telemetry", **kw):
    return requests.post(f"{world.url}/api/v1/{token}/{path}", data=body, timeout=30, **kw)


def test_flat_object_uses_server_time_and_types(world):
    did, token = world.new_device("dev-types")
    before = int(time.time() * 1000)
    r = post(
        world,
        token,
        b'{"temperature": 21.5, "busy": true, "count": 7, "label": "ok", '
        b'"cfg": {"a": [1, 2]}, "n": "42", "skip": null}',
    )
    after = int(time.time() * 1000)
    assert r.status_code == 200 and r.content == b""
    data = history(world, did, ["temperature", "busy", "count", "label", "cfg", "n", "skip"], useStrictDataTypes="true")
    assert data["temperature"][0]["value"] == 21.5
    assert data["busy"][0]["value"] is True
    assert data["count"][0]["value"] == 7
    assert data["label"][0]["value"] == "ok"
    assert data["cfg"][0]["value"] == '{"a":[1,2]}'
    assert data["n"][0]["value"] == 42  # numeric strings are cast
    assert "skip" not in data  # JSON null is skipped
    assert before <= data["temperature"][0]["ts"] <= after
    text = history(world, did, ["temperature", "busy", "count"])
    assert text["busy"][0]["value"] == "true" and text["count"][0]["value"] == "7"


def test_timestamped_and_array_payloads(world):
    did, token = world.new_device("dev-shapes")
    assert post(world, token, b'{"ts": 1634712287000, "values": {"t": 1}}').status_code == 200
    assert (
        post(
            world, token, b'[{"ts": 1634712288000, "values": {"t": 2}}, {"ts": 1634712289000, "values": {"t": 3.5}}]'
        ).status_code
        == 200
    )
    # an object with only "ts" is not timestamped: "ts" is then a telemetry key
    assert post(world, token, b'{"ts": 5}').status_code == 200
    data = history(world, did, ["t", "ts"], useStrictDataTypes="true", orderBy="ASC")
    assert [p["value"] for p in data["t"]] == [1, 2, 3.5]
    assert [p["ts"] for p in data["t"]] == [1634712287000, 1634712288000, 1634712289000]
    assert data["ts"][0]["value"] == 5


def test_same_ts_last_write_wins(world):
    did, token = world.new_device("dev-upsert")
    for v in (1, 2, 3):
        assert post(world, token, f'{{"ts": 1700000000000, "values": {{"x": {v}}}}}').status_code == 200
    assert history(world, did, ["x"])["x"] == [{"ts": 1700000000000, "value": "3"}]


def test_empty_object_is_a_noop_probe(world):
    did, token = world.new_device("dev-probe")
    assert post(world, token, b"{}").status_code == 200
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries")
    assert r.json() == []


def test_unknown_token_is_401_before_the_body(world):
    r = post(world, "no-such-token", b"not json at all")
    assert r.status_code == 401
    assert r.json()["status"] == 401 and "token" in r.json()["message"].lower()


@pytest.mark.parametrize(
    "body, words",
    [
        (b'{"a": 1', "invalid json"),
        (b"not json", "invalid json"),
        (b"", "empty"),
        (b'[{"a": 1}, 5]', "element 1"),
        (b'"text"', "object"),
        (b'{"ts": "yesterday", "values": {"a": 1}}', "ts"),
        (b'{"ts": -5, "values": {"a": 1}}', "ts"),
        (b'{"ts": 1.5, "values": {"a": 1}}', "ts"),
        (b'{"ts": 99999999999999999, "values": {"a": 1}}', "ts"),
        (b'{"ts": 1700000000000, "values": [1, 2]}', "values"),
        (b'{"a": NaN}', "invalid json"),
        (b'{"a": 123456789012345678901234567890}', "64-bit"),
    ],
)
def test_bad_payloads_are_400_and_store_nothing(world, body, words):
    did, token = world.new_device(f"dev-bad-{abs(hash(body))}")
    # a good point first in the same array must not survive a later bad element
    r = post(world, token, body)
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["status"] == 400 and words in err["message"].lower(), err
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []


def test_array_with_one_bad_element_stores_nothing(world):
    did, token = world.new_device("dev-partial")
    r = post(world, token, b'[{"ts": 1700000000000, "values": {"good": 1}}, {"ts": "bad", "values": {"x": 1}}]')
    assert r.status_code == 400
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []


def test_oversized_body_is_413(world):
    did, token = world.new_device("dev-big")
    body = b'{"blob": "' + b"x" * (2 << 20) + b'"}'
    r = post(world, token, body)
    assert r.status_code == 413
    assert "limit" in r.json()["message"]
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []


def test_chunked_oversized_body_is_413(world):
    _, token = world.new_device("dev-big-chunked")

    def gen():
        yield b'{"blob": "'
        for _ in range(40):
            yield b"y" * 65536
        yield b'"}'

    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", data=gen(), timeout=30)
    assert r.status_code == 413


def test_attributes(world):
    did, token = world.new_device("dev-attrs")
    assert post(world, token, b'{"fw": "1.2.3", "mode": 2, "on": false}', "attributes").status_code == 200
    r = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes")
    got = {a["key"]: a["value"] for a in r.json()}
    assert got == {"fw": "1.2.3", "mode": 2, "on": False}
    assert post(world, token, b"[1]", "attributes").status_code == 400
    assert post(world, "bad-token", b"{}", "attributes").status_code == 401
