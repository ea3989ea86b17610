"""RPC over the HTTP device API against a real server: long poll, answer, 408, device → server
requests, and that one device's token never reaches another device's requests."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

pytestmark = pytest.mark.usefixtures("no_server_errors")


def poll_in_background(url: str, token: str, timeout_ms: int = 20_000) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        r = requests.get(f"{url}/api/v1/{token}/rpc", params={"timeout": timeout_ms}, timeout=60)
        out["status"], out["body"] = r.status_code, (r.json() if r.text else None)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def send_when_polling(world, did: str, body: dict) -> requests.Response:
    """POST the request as soon as the poll has announced the device (409 until then)."""
    deadline = time.monotonic() + 20
    while True:
        r = world.admin.post(f"/api/rpc/twoway/{did}", json=body)
        if r.status_code != 409 or time.monotonic() > deadline:
            return r
        time.sleep(0.05)


def test_long_poll_gets_the_request_and_the_answer_finishes_it(world):
    did, token = world.new_device("http-rpc-poll")
    t, out = poll_in_background(world.url, token)
    result: dict = {}

    def rest():
        result["r"] = send_when_polling(world, did, {"method": "setLed", "params": {"on": True}, "timeout": 20_000})

    caller = threading.Thread(target=rest)
    caller.start()
    t.join(30)
    assert out["status"] == 200, out
    request = out["body"]
    assert request["method"] == "setLed" and request["params"] == {"on": True} and isinstance(request["id"], int)
    other_did, other_token = world.new_device("http-rpc-other")
    r = requests.post(f"{world.url}/api/v1/{other_token}/rpc/{request['id']}", json={"forged": True}, timeout=30)
    assert r.status_code == 404  # another device's token cannot answer it
    r = requests.post(f"{world.url}/api/v1/{token}/rpc/{request['id']}", json={"led": "on"}, timeout=30)
    assert r.status_code == 200, r.text
    caller.join(30)
    assert result["r"].status_code == 200 and result["r"].json() == {"led": "on"}


def test_long_poll_times_out_with_408(world):
    _, token = world.new_device("http-rpc-408")
    r = requests.get(f"{world.url}/api/v1/{token}/rpc", params={"timeout": 200}, timeout=30)
    assert r.status_code == 408 and r.json()["status"] == 408


def test_persistent_waits_for_the_next_poll(world):
    did, token = world.new_device("http-rpc-persistent")
    rpc_id = world.admin.post(
        f"/api/rpc/oneway/{did}", json={"method": "later", "persistent": True, "timeout": 60_000}
    ).json()["rpcId"]
    r = requests.get(f"{world.url}/api/v1/{token}/rpc", params={"timeout": 10_000}, timeout=30)
    assert r.status_code == 200 and r.json()["method"] == "later"
    deadline = time.monotonic() + 20
    while world.admin.get(f"/api/rpc/persistent/{rpc_id}").json()["status"] != "DELIVERED":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_device_to_server_over_http(world):
    _, token = world.new_device("http-rpc-d2s")
    r = requests.post(f"{world.url}/api/v1/{token}/rpc", json={"method": "getCurrentTime", "params": {}}, timeout=30)
    assert r.status_code == 200 and "currentTime" in r.json()
    r = requests.post(f"{world.url}/api/v1/{token}/rpc", json={"method": "getSessionLimits"}, timeout=30)
    assert r.json()["maxPayloadSize"] > 0
    r = requests.post(f"{world.url}/api/v1/{token}/rpc", json={"method": "nope"}, timeout=30)
    assert r.status_code == 200 and "unsupported RPC method" in r.json()["error"]


@pytest.mark.parametrize(
    "method, path, kw, status",
    [
        ("GET", "/api/v1/not-a-token/rpc", {}, 401),
        ("POST", "/api/v1/not-a-token/rpc", {"json": {"method": "x"}}, 401),
        ("POST", "/api/v1/not-a-token/rpc/1", {"json": {}}, 401),
        ("GET", "/api/v1/{token}/rpc?timeout=-1", {}, 400),
        ("GET", "/api/v1/{token}/rpc?timeout=abc", {}, 400),
        ("POST", "/api/v1/{token}/rpc/abc", {"json": {}}, 400),
        ("POST", "/api/v1/{token}/rpc/1", {"data": b"{"}, 400),
        ("POST", "/api/v1/{token}/rpc", {"data": b"{"}, 400),
        ("POST", "/api/v1/{token}/rpc/99999", {"json": {}}, 404),
    ],
)
def test_bad_device_requests(world, method, path, kw, status):
    token = world.token("dev-tenant")
    r = requests.request(method, world.url + path.format(token=token), timeout=30, **kw)
    assert r.status_code == status, r.text
    assert r.json()["message"]


TB_HTTP_RPC = r"""
import json, sys, threading
from tb_device_http import TBHTTPDevice
url, token = sys.argv[1], sys.argv[2]
device = TBHTTPDevice(url, token)
device.connect()
now = device.send_rpc("getCurrentTime")
def on_rpc(request):  # the SDK's long-poll worker: answer through its own send_rpc(rpc_id=...)
    device.send_rpc(request["method"], {"sdk": request["params"]}, rpc_id=request["id"])
device.subscribe("rpc", on_rpc)
print("READY " + json.dumps(now), flush=True)
sys.stdin.readline()
device.unsubscribe("rpc")
"""


def test_tb_http_device_rpc(world, tb_client_python):
    """tb-mqtt-client's TBHTTPDevice: device -> server, and a server request through its long poll."""
    import subprocess

    did, token = world.new_device("http-rpc-sdk")
    proc = subprocess.Popen(
        [str(tb_client_python), "-I", "-c", TB_HTTP_RPC, world.url, token],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        while not line.startswith("READY"):
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "SDK script ended"
        assert "currentTime" in json.loads(line.split(" ", 1)[1]), line
        r = send_when_polling(world, did, {"method": "sdkCall", "params": {"x": 1}, "timeout": 20_000})
        assert r.status_code == 200, r.text
        # the SDK answers with its send_rpc body, {"method", "params"}, which is what ThingsBoard returns too
        assert r.json() == {"method": "sdkCall", "params": {"sdk": {"x": 1}}}
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.kill()
        proc.wait(timeout=30)


def test_waiting_polls_do_not_hold_up_the_server(world):
    """40 long polls waiting at once: uploads and REST reads are still answered meanwhile, and
    each poll ends with its own 408."""
    devices = [world.new_device(f"http-rpc-many-{i}") for i in range(40)]
    polls = [poll_in_background(world.url, token, timeout_ms=8_000) for _, token in devices]
    time.sleep(0.5)
    for i in range(10):
        r = requests.post(f"{world.url}/api/v1/{devices[0][1]}/telemetry", json={"n": i}, timeout=10)
        assert r.status_code == 200
        assert world.admin.get("/api/auth/user").status_code == 200
    assert all(t.is_alive() for t, _ in polls)  # answered while every poll still waited
    for t, out in polls:
        t.join(30)
        assert out["status"] == 408, out


def test_too_many_polls_of_one_device_are_429(world):
    from tbpanel.api.device_attributes import MAX_POLLS_PER_DEVICE

    _, token = world.new_device("http-rpc-429")
    polls = [poll_in_background(world.url, token, timeout_ms=6_000) for _ in range(MAX_POLLS_PER_DEVICE)]
    time.sleep(1.5)  # let them all register first: a probe open meanwhile would take a slot itself
    r = requests.get(f"{world.url}/api/v1/{token}/rpc", params={"timeout": 100}, timeout=30)
    assert r.status_code == 429 and "long polls" in r.json()["message"], r.text
    for t, out in polls:
        t.join(30)
        assert out["status"] == 408
