"""``Content-Encoding`` of request bodies and the ``Allow`` header of 405s, against a real server.

gzip bodies are accepted on the device HTTP API and on the REST API (ThingsBoard's clients may
compress), inflated as they stream in and capped at the route's body limit *after*
decompression: a zip bomb is a 413 and never inflated whole. Other codings get 415 naming the
coding, and nothing of a refused body is stored.
"""

from __future__ import annotations

import gzip
import zlib

import pytest
import requests

from tbpanel.api.base import REST_BODY_LIMIT
from tbpanel.api.encoding import BodyEncodingError, GzipInflater, StreamedBody, decode_body

DEVICE_LIMIT = 1 << 20  # Platform.max_body_bytes (the default the world server runs with)


def latest(world, did: str, *keys: str) -> dict:
    r = world.admin.get(
        f"/api/plugins/telemetry/DEVICE/{did}/values/timeseries",
        params={"keys": ",".join(keys), "useStrictDataTypes": "true"},
    )
    assert r.status_code == 200, r.text
    return {k: v[0]["value"] for k, v in r.json().items()}


def bomb(size: int) -> bytes:
    """A gzip body inflating to ``size`` bytes: a JSON string value padded with spaces."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [z.compress(b'{"a": "')]
    chunk = b" " * (1 << 20)
    for _ in range(size // len(chunk)):
        out.append(z.compress(chunk))
    out.append(z.compress(b'"}'))
    out.append(z.flush())
    return b"".join(out)


def gz_headers(encoding: str = "gzip") -> dict:
    return {"Content-Encoding": encoding, "Content-Type": "application/json"}


# ---------------------------------------------------------------------------- device HTTP API
@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZIP", "identity, gzip"])
def test_device_telemetry_and_attributes_in_gzip(world, encoding):
    did, token = world.new_device(f"gz-{encoding.replace(', ', '-')}-{len(encoding)}{encoding[0]}")
    body = gzip.compress(b'{"temperature": 21.5, "n": 3}')
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", data=body, headers=gz_headers(encoding), timeout=30)
    assert r.status_code == 200, r.text
    assert latest(world, did, "temperature", "n") == {"temperature": 21.5, "n": 3}
    r = requests.post(
        f"{world.url}/api/v1/{token}/attributes", data=gzip.compress(b'{"fw": "v2"}'), headers=gz_headers(), timeout=30
    )
    assert r.status_code == 200, r.text
    attrs = world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/values/attributes/CLIENT_SCOPE").json()
    assert {a["key"]: a["value"] for a in attrs} == {"fw": "v2"}


def test_device_gzip_streamed_in_chunks_and_several_members(world):
    did, token = world.new_device("gz-chunked")
    body = gzip.compress(b'[{"ts": 1700000000000, "values": {"a": 1}},') + gzip.compress(
        b'{"ts": 1700000000001, "values": {"a": 2}}]'
    )
    chunks = (body[i : i + 7] for i in range(0, len(body), 7))  # no Content-Length: chunked
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", data=chunks, headers=gz_headers(), timeout=30)
    assert r.status_code == 200, r.text
    assert latest(world, did, "a") == {"a": 2}


def test_device_zip_bomb_is_413_and_stores_nothing(world):
    did, token = world.new_device("gz-bomb")
    body = bomb(64 * DEVICE_LIMIT)  # 64 MiB inflated, ~64 KiB on the wire
    assert len(body) < DEVICE_LIMIT // 8
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", data=body, headers=gz_headers(), timeout=60)
    assert r.status_code == 413, r.text
    assert "decompressed" in r.json()["message"] and str(DEVICE_LIMIT) in r.json()["message"]
    # just over the limit once inflated is refused too; just under is stored
    r = requests.post(
        f"{world.url}/api/v1/{token}/telemetry", data=bomb(DEVICE_LIMIT), headers=gz_headers(), timeout=30
    )
    assert r.status_code == 413, r.text
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []
    fits = gzip.compress(b'{"a": "' + b"x" * 900_000 + b'"' + b" " * (DEVICE_LIMIT - 900_100) + b"}")
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", data=fits, headers=gz_headers(), timeout=30)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"not gzip at all", "Invalid gzip body"),
        (gzip.compress(b'{"a": 1}')[:-6], "truncated"),
        (gzip.compress(b'{"a": 1}') + b"junk", "Invalid gzip body"),
        (gzip.compress(b'{"a": '), "Invalid JSON"),
    ],
    ids=["not gzip", "truncated", "trailing junk", "bad JSON inside"],
)
def test_device_corrupt_gzip_is_400(world, body, expected):
    did, token = world.new_device(f"gz-corrupt-{abs(hash(body)) % 10_000}")
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", data=body, headers=gz_headers(), timeout=30)
    assert r.status_code == 400, r.text
    assert expected in r.json()["message"]
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "zstd", "gzip, br"])
def test_other_codings_are_415_naming_them(world, encoding):
    did, token = world.new_device(f"gz-415-{encoding.replace(', ', '-')}")
    r = requests.post(
        f"{world.url}/api/v1/{token}/telemetry", data=b'{"a": 1}', headers=gz_headers(encoding), timeout=30
    )
    assert r.status_code == 415, r.text
    unsupported = next(e.strip() for e in encoding.split(",") if e.strip() != "gzip")
    assert repr(unsupported) in r.json()["message"] and "gzip" in r.json()["message"]
    r = world.admin.post(
        f"/api/plugins/telemetry/DEVICE/{did}/timeseries/ANY", data=b'{"a": 1}', headers=gz_headers(encoding)
    )
    assert r.status_code == 415, r.text
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []


def test_unknown_token_is_401_before_the_coding_matters(world):
    r = requests.post(f"{world.url}/api/v1/no-such-token/telemetry", data=b"x", headers=gz_headers("br"), timeout=30)
    assert r.status_code == 401


# ---------------------------------------------------------------------------- REST API
def test_rest_bodies_in_gzip(world):
    did, _ = world.new_device("gz-rest")
    r = world.admin.post(
        f"/api/plugins/telemetry/DEVICE/{did}/timeseries/ANY", data=gzip.compress(b'{"v": 7}'), headers=gz_headers()
    )
    assert r.status_code == 200, r.text
    assert latest(world, did, "v") == {"v": 7}
    r = requests.post(
        f"{world.url}/api/auth/login",
        data=gzip.compress(b'{"username": "nobody@x.test", "password": "nope"}'),
        headers=gz_headers(),
        timeout=30,
    )
    assert r.status_code == 401, r.text  # the body was read: a refused login, not a 400
    r = world.admin.post("/api/device", data=gzip.compress(b'{"name": "gz-made-by-rest"}'), headers=gz_headers())
    assert r.status_code == 200 and r.json()["name"] == "gz-made-by-rest", r.text


def test_rest_zip_bomb_is_413(world):
    did, _ = world.new_device("gz-rest-bomb")
    r = world.admin.post(
        f"/api/plugins/telemetry/DEVICE/{did}/timeseries/ANY",
        data=bomb(REST_BODY_LIMIT + (1 << 20)),
        headers=gz_headers(),
    )
    assert r.status_code == 413, r.text
    assert "decompressed" in r.json()["message"]
    r = world.admin.post("/api/device", data=b"\x1f\x8b\x08garbage", headers=gz_headers())
    assert r.status_code == 400 and "Invalid gzip body" in r.json()["message"], r.text
    assert world.admin.get(f"/api/plugins/telemetry/DEVICE/{did}/keys/timeseries").json() == []


# ---------------------------------------------------------------------------- 405 Allow
@pytest.mark.parametrize(
    "method, path, allowed",
    [
        ("GET", "/api/v1/{token}/telemetry", {"POST"}),
        ("PUT", "/api/auth/login", {"POST"}),
        ("PATCH", "/api/device/{did}", {"GET", "DELETE"}),
        ("POST", "/api/tenant/devices", {"GET"}),
        ("PUT", "/api/customer/device/{did}", {"DELETE"}),
    ],
)
def test_405_lists_the_allowed_methods(world, method, path, allowed):
    did, token = world.new_device(f"allow-{method}-{len(path)}")
    r = world.admin.session.request(method, world.url + path.format(did=did, token=token), timeout=30)
    assert r.status_code == 405, r.text
    assert set(m.strip() for m in r.headers["Allow"].split(",")) >= allowed
    assert r.json()["status"] == 405


@pytest.mark.parametrize("path", ["/api/ws", "/api/ws/plugins/telemetry"])
def test_websocket_405_lists_get(world, path):
    r = requests.post(world.url + path, data=b"{}", timeout=30)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"


# ---------------------------------------------------------------------------- the decoder itself
def test_inflater_never_produces_more_than_the_limit_plus_one():
    inflater = GzipInflater(1000)
    out = b""
    body = gzip.compress(b"z" * 10**7)
    with pytest.raises(BodyEncodingError) as err:
        for i in range(0, len(body), 512):
            out += inflater.feed(body[i : i + 512])
    assert err.value.status == 413 and len(out) <= 1000 and inflater.size <= 1001


def test_streamed_body_identity_and_gzip_agree():
    raw = b'{"k": "' + b"v" * 300_000 + b'"}'
    for header, sent in ((None, raw), ("identity", raw), ("gzip", gzip.compress(raw))):
        s = StreamedBody(header, len(raw))
        for i in range(0, len(sent), 4096):
            s.feed(sent[i : i + 4096])
        assert s.result() == raw
    s = StreamedBody(None, len(raw) - 1)
    s.feed(raw)
    with pytest.raises(BodyEncodingError, match="exceeds the limit"):
        s.result()
    with pytest.raises(BodyEncodingError) as err:
        StreamedBody("br", 10)
    assert err.value.status == 415
    assert decode_body("gzip, gzip", gzip.compress(gzip.compress(b"two layers")), 100) == b"two layers"
