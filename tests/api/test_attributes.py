"""Attributes over REST in three scopes, with requests and tb-rest-client 4.4: every save,
read and delete route form, the scope rules, customer isolation, and the HTTP device's
attribute request and shared-attribute long poll."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests
from tb_rest_client.models.device_id import DeviceId
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from tests.helpers import CUSTOMER_USER

pytestmark = pytest.mark.usefixtures("no_server_errors")
TEL = "/api/plugins/telemetry"


@pytest.fixture
def customer_rest(world):
    client = RestClient(base_url=world.url)
    client.login(*CUSTOMER_USER)
    yield client
    client.stop()


def fresh(world, name: str, customer: str | None = None) -> tuple[str, str]:
    """A new device of tenant A (assigned to ``customer`` when given): (id, access token)."""
    did, token = world.new_device(f"{name}-{time.monotonic_ns()}")
    if customer:
        r = world.admin.post(f"/api/customer/{world.customer_ids[customer]}/device/{did}")
        assert r.status_code == 200, r.text
    return did, token


def values(api, did: str, scope: str | None = None, **params) -> dict:
    path = f"{TEL}/DEVICE/{did}/values/attributes" + (f"/{scope}" if scope else "")
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return {a["key"]: a["value"] for a in r.json()}


def test_save_read_and_delete_in_every_route_form(world):
    did, token = fresh(world, "attr-forms")
    a = world.admin
    assert (
        a.post(f"{TEL}/DEVICE/{did}/attributes/SERVER_SCOPE", json={"calib": 1.5, "site": "north"}).status_code == 200
    )
    assert a.post(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 30}).status_code == 200
    assert a.post(f"{TEL}/{did}/SHARED_SCOPE", json={"mode": "eco", "on": True}).status_code == 200
    assert requests.post(f"{world.url}/api/v1/{token}/attributes", json={"fw": "v1.0"}, timeout=30).status_code == 200
    rows = a.get(f"{TEL}/DEVICE/{did}/values/attributes").json()
    assert {(r["key"], r["value"]) for r in rows} == {
        ("calib", 1.5),
        ("site", "north"),
        ("interval", 30),
        ("mode", "eco"),
        ("on", True),
        ("fw", "v1.0"),
    }
    assert all(set(r) == {"lastUpdateTs", "key", "value"} and r["lastUpdateTs"] > 0 for r in rows)
    assert values(a, did, "SHARED_SCOPE") == {"interval": 30, "mode": "eco", "on": True}
    assert values(a, did, "SERVER_SCOPE", keys="calib,missing") == {"calib": 1.5}
    assert values(a, did, keys="fw,site") == {"fw": "v1.0", "site": "north"}
    assert a.get(f"{TEL}/DEVICE/{did}/keys/attributes").json() == ["calib", "fw", "interval", "mode", "on", "site"]
    assert a.get(f"{TEL}/DEVICE/{did}/keys/attributes/CLIENT_SCOPE").json() == ["fw"]
    # a later save updates value and lastUpdateTs
    first = {r["key"]: r["lastUpdateTs"] for r in rows}
    time.sleep(0.01)
    assert a.post(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 60}).status_code == 200
    now = {r["key"]: r for r in a.get(f"{TEL}/DEVICE/{did}/values/attributes/SHARED_SCOPE").json()}
    assert now["interval"]["value"] == 60 and now["interval"]["lastUpdateTs"] > first["interval"]
    # delete: both path forms, unknown keys are fine, other scopes untouched
    assert a.delete(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", params={"keys": "interval,nope"}).status_code == 200
    assert a.delete(f"{TEL}/{did}/SERVER_SCOPE", params={"keys": "site"}).status_code == 200
    assert values(a, did) == {"calib": 1.5, "mode": "eco", "on": True, "fw": "v1.0"}
    assert a.delete(f"{TEL}/DEVICE/{did}/CLIENT_SCOPE", params={"keys": "fw"}).status_code == 200
    assert "fw" not in values(a, did)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "words"),
    [
        ("post", "/attributes/CLIENT_SCOPE", {"a": 1}, 400, "CLIENT_SCOPE"),
        ("post", "/CLIENT_SCOPE", {"a": 1}, 400, "CLIENT_SCOPE"),
        ("post", "/attributes/WRONG_SCOPE", {"a": 1}, 400, "scope"),
        ("post", "/attributes/SHARED_SCOPE", [1, 2], 400, "object"),
        ("post", "/attributes/SHARED_SCOPE", {}, 400, "No attributes"),
        ("post", "/attributes/SHARED_SCOPE", None, 400, "empty"),
        ("post", "/attributes/SHARED_SCOPE", {"a": {"b": 1}, "": 2}, 400, "key"),
        ("delete", "/SHARED_SCOPE", None, 400, "keys"),
        ("get", "/values/attributes/NOPE_SCOPE", None, 400, "scope"),
        ("get", "/keys/attributes/NOPE_SCOPE", None, 400, "scope"),
    ],
)
def test_bad_requests_are_400_and_store_nothing(world, method, path, body, status, words):
    did, _ = fresh(world, "attr-bad")
    r = getattr(world.admin, method)(f"{TEL}/DEVICE/{did}{path}", json=body)
    assert r.status_code == status, r.text
    assert words.lower() in r.json()["message"].lower()
    assert world.admin.get(f"{TEL}/DEVICE/{did}/values/attributes").json() == []


def test_non_device_entity_and_unknown_device(world):
    did, _ = fresh(world, "attr-entity")
    r = world.admin.post(f"{TEL}/ASSET/{did}/attributes/SERVER_SCOPE", json={"a": 1})
    assert r.status_code == 400 and "DEVICE" in r.json()["message"]
    r = world.admin.get(f"{TEL}/DEVICE/00000000-0000-4000-8000-000000000000/values/attributes")
    assert r.status_code == 404


def test_customer_reads_and_writes_only_its_own_devices(world):
    mine, _ = fresh(world, "attr-mine", "Customer A1")
    theirs, _ = fresh(world, "attr-theirs", "Customer A2")
    for did in (mine, theirs):
        assert world.admin.post(f"{TEL}/DEVICE/{did}/SERVER_SCOPE", json={"secret_cfg": did}).status_code == 200
    c = world.customer
    assert values(c, mine) == {"secret_cfg": mine}
    assert c.post(f"{TEL}/DEVICE/{mine}/SHARED_SCOPE", json={"target": 21}).status_code == 200
    assert values(world.admin, mine, "SHARED_SCOPE") == {"target": 21}
    for method, path, body in (
        ("get", f"{TEL}/DEVICE/{theirs}/values/attributes", None),
        ("get", f"{TEL}/DEVICE/{theirs}/keys/attributes/SERVER_SCOPE", None),
        ("post", f"{TEL}/DEVICE/{theirs}/SHARED_SCOPE", {"target": 1}),
        ("post", f"{TEL}/{theirs}/attributes/SHARED_SCOPE", {"target": 1}),
        ("post", f"{TEL}/{theirs}/SHARED_SCOPE", {"target": 1}),
        ("delete", f"{TEL}/DEVICE/{theirs}/SERVER_SCOPE?keys=secret_cfg", None),
    ):
        r = getattr(c, method)(path, json=body)
        assert r.status_code in (403, 404), (path, r.status_code)
        assert theirs not in r.text or theirs in path
    assert values(world.admin, theirs) == {"secret_cfg": theirs}
    # another tenant's admin sees nothing of tenant A
    assert world.other_admin.get(f"{TEL}/DEVICE/{mine}/values/attributes").status_code == 403


def test_tb_rest_client_attribute_calls(world, rest):
    did, _ = fresh(world, "attr-client")
    entity = DeviceId(did, "DEVICE")
    rest.save_entity_attributes_v2(entity, "SERVER_SCOPE", {"calib": 2.5, "label": "x"})
    rest.save_entity_attributes_v1(entity, "SHARED_SCOPE", {"interval": 15})
    rest.save_device_attributes(entity, "SHARED_SCOPE", {"mode": "eco"})
    got = rest.get_attributes(entity, keys="calib,interval,mode")
    as_dict = {a["key"] if isinstance(a, dict) else a.key: a["value"] if isinstance(a, dict) else a.value for a in got}
    assert as_dict == {"calib": 2.5, "interval": 15, "mode": "eco"}
    shared = rest.get_attributes_by_scope(entity, "SHARED_SCOPE")
    assert sorted(a["key"] if isinstance(a, dict) else a.key for a in shared) == ["interval", "mode"]
    assert sorted(rest.get_attribute_keys(entity)) == ["calib", "interval", "label", "mode"]
    assert rest.get_attribute_keys_by_scope(entity, "SERVER_SCOPE") == ["calib", "label"]
    rest.delete_entity_attributes(entity, "SERVER_SCOPE", keys="label")
    rest.delete_device_attributes(entity, "SHARED_SCOPE", keys="mode")
    assert sorted(rest.get_attribute_keys(entity)) == ["calib", "interval"]
    with pytest.raises(ApiException) as e:
        rest.save_entity_attributes_v2(entity, "CLIENT_SCOPE", {"a": 1})
    assert e.value.status == 400


def test_tb_rest_client_as_customer(world, customer_rest):
    mine, _ = fresh(world, "attr-client-mine", "Customer A1")
    theirs, _ = fresh(world, "attr-client-theirs", "Customer A2")
    customer_rest.save_entity_attributes_v2(DeviceId(mine, "DEVICE"), "SHARED_SCOPE", {"target": 3})
    assert customer_rest.get_attribute_keys(DeviceId(mine, "DEVICE")) == ["target"]
    with pytest.raises(ApiException) as e:
        customer_rest.get_attributes(DeviceId(theirs, "DEVICE"))
    assert e.value.status == 403
    with pytest.raises(ApiException) as e:
        customer_rest.save_entity_attributes_v2(DeviceId(theirs, "DEVICE"), "SHARED_SCOPE", {"target": 3})
    assert e.value.status == 403


# --------------------------------------------------------------------------- HTTP device
def test_device_attribute_request_scopes(world, rest):
    did, token = fresh(world, "attr-device")
    base = f"{world.url}/api/v1/{token}/attributes"
    assert requests.post(base, json={"fw": "v2", "slots": 4}, timeout=30).status_code == 200
    a = world.admin
    assert a.post(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 10, "mode": "eco"}).status_code == 200
    assert a.post(f"{TEL}/DEVICE/{did}/SERVER_SCOPE", json={"server_secret": "s", "fw": "server"}).status_code == 200

    def get(**params):
        r = requests.get(base, params=params, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    assert get() == {"client": {"fw": "v2", "slots": 4}, "shared": {"interval": 10, "mode": "eco"}}
    assert get(clientKeys="fw", sharedKeys="mode") == {"client": {"fw": "v2"}, "shared": {"mode": "eco"}}
    assert get(clientKeys="fw") == {"client": {"fw": "v2"}}
    assert get(sharedKeys="interval,server_secret") == {"shared": {"interval": 10}}
    assert get(sharedKeys="nothing") == {}
    assert get(allSharedKeys="true") == {"shared": {"interval": 10, "mode": "eco"}}
    assert "server_secret" not in requests.get(base, timeout=30).text
    # tb-rest-client's device API
    assert rest.get_device_attributes(token, client_keys="slots", shared_keys="interval") == {
        "client": {"slots": 4},
        "shared": {"interval": 10},
    }
    assert rest.get_device_attributes(token) == get()  # no keys given: everything
    assert requests.get(f"{world.url}/api/v1/not-a-token/attributes", timeout=30).status_code == 401


def _poll(world, token: str, timeout_ms: int, out: dict) -> None:
    """One long poll; retried while refused with 429 (a 1 ms probe of :func:`_until` may hold a
    slot of the device's 16 for a moment)."""
    while True:
        r = requests.get(
            f"{world.url}/api/v1/{token}/attributes/updates",
            params={"timeout": timeout_ms},
            timeout=timeout_ms / 1000 + 30,
        )
        if r.status_code != 429:
            break
        time.sleep(0.05)
    out["status"], out["body"] = r.status_code, r.text


def test_long_poll_times_out_with_408(world, rest):
    _, token = fresh(world, "attr-poll-408")
    out: dict = {}
    _poll(world, token, 300, out)
    assert out["status"] == 408, out
    with pytest.raises(ApiException) as e:  # tb-rest-client's device API long poll
        rest.subscribe_to_attributes(token, timeout=300)
    assert e.value.status == 408
    assert requests.get(f"{world.url}/api/v1/nope/attributes/updates", timeout=30).status_code == 401


def _probe(world, token: str) -> int:
    """A 1 ms poll: 429 while the device already holds its 16 open polls (the limit), else 408."""
    return requests.get(f"{world.url}/api/v1/{token}/attributes/updates?timeout=1", timeout=30).status_code


def _until(world, token: str, status: int) -> None:
    deadline = time.time() + 30
    while _probe(world, token) != status:
        assert time.time() < deadline, f"probe never answered {status}: "
        time.sleep(0.05)


def test_long_poll_answers_the_change_that_arrives_during_it(world):
    """16 polls wait (the per-device limit, seen as a 429 to one more); a server-scope and a
    client-scope change do not answer them; the shared save then answers all of them, and a
    shared deletion answers the next round with ``{"deleted": [...]}``."""
    did, token = fresh(world, "attr-poll")
    a = world.admin
    for change, expected in (
        (lambda: a.post(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", json={"interval": 5}), {"interval": 5}),
        (lambda: a.delete(f"{TEL}/DEVICE/{did}/SHARED_SCOPE", params={"keys": "interval"}), {"deleted": ["interval"]}),
    ):
        outs: list[dict] = [{} for _ in range(16)]
        threads = [threading.Thread(target=_poll, args=(world, token, 60_000, out)) for out in outs]
        for t in threads:
            t.start()
        _until(world, token, 429)  # all 16 are waiting now
        assert a.post(f"{TEL}/DEVICE/{did}/SERVER_SCOPE", json={"hidden": 1}).status_code == 200
        assert requests.post(f"{world.url}/api/v1/{token}/attributes", json={"c": 1}, timeout=30).status_code == 200
        assert _probe(world, token) == 429  # still waiting: neither change was for them
        assert change().status_code == 200
        for t in threads:
            t.join(30)
        assert all(o["status"] == 200 and json.loads(o["body"]) == expected for o in outs), outs


def test_long_poll_released_when_the_client_disconnects(world):
    """Hung-up polls stop waiting at once, not at their timeout: 16 polls with a two-minute
    timeout fill the device's limit, their clients hang up, and the limit frees again."""
    _, token = fresh(world, "attr-poll-drop")
    host, port = world.url.split("//", 1)[1].split(":")
    held: list[socket.socket] = []
    lock = threading.Lock()

    def raw_poll() -> None:
        while True:  # retried when a probe held the 16th slot at that moment (429)
            s = socket.create_connection((host, int(port)), timeout=None)
            with lock:
                held.append(s)
            s.sendall(f"GET /api/v1/{token}/attributes/updates?timeout=120000 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            try:
                head = s.recv(64)
            except OSError:
                return  # closed by the test: the hang-up
            if b" 429 " not in head:
                return
            with lock:
                held.remove(s)
            s.close()

    threads = [threading.Thread(target=raw_poll) for _ in range(16)]
    for t in threads:
        t.start()
    _until(world, token, 429)
    with lock:
        for s in held:
            s.shutdown(socket.SHUT_RDWR)
            s.close()
    for t in threads:
        t.join(30)
    _until(world, token, 408)


def test_device_get_refusal_keeps_the_connection(world):
    """A refused device GET (unknown token, bad parameter) answers on a keep-alive connection
    that then serves the next request (a streaming route's prepare() refusal would drop it)."""
    import http.client

    _, token = fresh(world, "attr-keepalive")
    host, port = world.url.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for path, status in (
            ("/api/v1/not-a-token/attributes", 401),
            (f"/api/v1/{token}/attributes?allSharedKeys=maybe", 400),
            ("/api/v1/not-a-token/attributes/updates?timeout=1", 401),
            (f"/api/v1/{token}/attributes", 200),
        ):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == status, (path, r.status)
    finally:
        conn.close()
