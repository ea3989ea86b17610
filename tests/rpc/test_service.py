"""The RPC domain on a real rpc.sqlite: status life cycle, persistence across a reopen, expiry,
delivery to the newest session, device → server answers. The "device" is a session object
that records what it is sent (the protocol every transport implements)."""

from __future__ import annotations

import queue
import sqlite3
import time

import pytest

from tbpanel.clock import now_ms
from tbpanel.errors import InvalidInput
from tbpanel.rpc import (
    DELIVERED,
    EXPIRED,
    FAILED,
    NOT_HANDLED,
    QUEUED,
    SENT,
    SUCCESSFUL,
    TIMEOUT,
    DeviceNotConnected,
    RpcService,
    parse_request,
)
from tbpanel.rpc.repository import FILE, MIGRATIONS

TENANT, DEVICE, OTHER = (
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
)


class Device:
    """A session that hands every request to the test (like a connected device would)."""

    def __init__(self, service: RpcService, device_id: str = DEVICE, deliver: bool = True):
        self.service, self.device_id, self.deliver = service, device_id, deliver
        self.got: queue.Queue = queue.Queue()

    def send_rpc(self, request) -> None:
        self.got.put(request)
        if self.deliver:
            self.service.delivered(self.device_id, request.request_id)

    def next(self, timeout: float = 10):
        return self.got.get(timeout=timeout)


def request(body: dict, oneway: bool = False, device: str = DEVICE):
    return parse_request(body, tenant_id=TENANT, device_id=device, oneway=oneway, now=now_ms())


def wait_status(service, rpc_id, status, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = service.repo.get(rpc_id)
        if r is not None and r.status == status:
            return r
        time.sleep(0.02)
    raise AssertionError(f"{rpc_id} never became {status}: {service.repo.get(rpc_id)}")


@pytest.fixture
def service(tmp_path):
    s = RpcService(tmp_path, registry=None)
    yield s
    s.close()


def test_two_way_reaches_the_session_and_the_answer_finishes_it(service):
    device = Device(service)
    service.sessions.announce(DEVICE, device)
    call = service.submit(request({"method": "setGpio", "params": {"pin": 7}}))
    assert call.accepted.result(10).status in (QUEUED, SENT)
    sent = device.next()
    assert sent.body == {"method": "setGpio", "params": {"pin": 7}} and sent.request_id > 0
    assert service.reply(OTHER, sent.request_id, {"ok": 1}).result(10) is False  # another device's number
    assert service.reply(DEVICE, sent.request_id, {"ok": 1}).result(10) is True
    done = call.finished.result(10)
    assert (done.status, done.response) == (SUCCESSFUL, {"ok": 1})
    assert service.reply(DEVICE, sent.request_id, {"ok": 2}).result(10) is False  # answered once


def test_one_way_ends_delivered(service):
    service.sessions.announce(DEVICE, Device(service))
    call = service.submit(request({"method": "reboot"}, oneway=True))
    assert call.finished.result(10).status == DELIVERED


def test_non_persistent_without_a_session_is_refused(service):
    with pytest.raises(DeviceNotConnected):
        service.submit(request({"method": "x"})).accepted.result(10)
    withdraw = service.sessions.announce(DEVICE, Device(service))
    withdraw()
    with pytest.raises(DeviceNotConnected):
        service.submit(request({"method": "x"})).accepted.result(10)


def test_no_answer_is_a_timeout(service):
    device = Device(service)
    service.sessions.announce(DEVICE, device)
    call = service.submit(request({"method": "slow", "timeout": 200}))
    device.next()
    assert call.finished.result(10).status == TIMEOUT


def test_persistent_waits_queued_and_goes_out_on_the_next_connect(service):
    call = service.submit(request({"method": "config", "params": [1], "persistent": True, "timeout": 60_000}))
    stored = call.accepted.result(10)
    assert service.repo.get(stored.id).status == QUEUED
    device = Device(service, deliver=False)
    service.sessions.announce(DEVICE, device)
    sent = device.next()
    assert sent.id == stored.id
    assert wait_status(service, stored.id, SENT).request_id == sent.request_id
    service.delivered(DEVICE, sent.request_id)
    wait_status(service, stored.id, DELIVERED)
    service.reply(DEVICE, sent.request_id, "done").result(10)
    assert wait_status(service, stored.id, SUCCESSFUL).response == "done"


def test_persistent_survives_a_reopen_and_is_delivered_after_it(tmp_path):
    s = RpcService(tmp_path, registry=None)
    rid = s.submit(request({"method": "later", "persistent": True, "timeout": 60_000})).accepted.result(10).id
    taken = Device(s, deliver=False)  # sent but never answered before the "crash"
    s.sessions.announce(DEVICE, taken)
    taken.next()
    wait_status(s, rid, SENT)
    s.close()
    s = RpcService(tmp_path, registry=None)
    try:
        assert s.repo.get(rid).status == SENT  # not activated: a reader changes nothing
        s.activate()  # what the server does at start-up
        assert s.repo.get(rid).status == QUEUED  # taken but unfinished: queued again
        device = Device(s)
        s.sessions.announce(DEVICE, device)
        again = device.next()
        assert again.id == rid
        assert s.reply(DEVICE, again.request_id, {"v": 1}).result(10)
        assert wait_status(s, rid, SUCCESSFUL).response == {"v": 1}
    finally:
        s.close()


def test_persistent_expires_unsent(service):
    expiration = now_ms() + 300
    r = service.submit(request({"method": "x", "persistent": True, "expirationTime": expiration}))
    rid = r.accepted.result(10).id
    assert r.finished.result(10).status == EXPIRED
    assert service.repo.get(rid).status == EXPIRED


def test_expired_while_down_is_expired_on_open(tmp_path):
    s = RpcService(tmp_path, registry=None)
    s.repo.insert(request({"method": "x", "persistent": True, "timeout": 60_000}).with_(expiration_time=now_ms() - 1))
    s.close()
    s = RpcService(tmp_path, registry=None)
    try:
        s.activate()
        rows, total = s.repo.by_device(DEVICE, status=None, page=0, page_size=10)
        assert total == 1 and rows[0].status == EXPIRED
    finally:
        s.close()


def test_newest_session_wins_and_a_returned_request_goes_to_the_next(service):
    old, new = Device(service), Device(service, deliver=False)
    service.sessions.announce(DEVICE, old)
    service.sessions.announce(DEVICE, new)
    call = service.submit(request({"method": "m", "oneway": True}, oneway=True))
    got = new.next()
    service.sessions.withdraw(DEVICE, new)
    service.undelivered(DEVICE, got.request_id, "closed")
    assert old.next().id == got.id
    assert call.finished.result(10).status == DELIVERED


def test_list_and_delete(service):
    ids = [
        service.submit(request({"method": f"m{i}", "persistent": True, "timeout": 60_000})).accepted.result(10).id
        for i in range(3)
    ]
    rows, total = service.repo.by_device(DEVICE, status=QUEUED, page=0, page_size=2)
    assert total == 3 and [r.id for r in rows] == ids[::-1][:2]
    service._call(lambda: service._delete(ids[0])).result(10)
    assert service.repo.get(ids[0]) is None
    device = Device(service)
    service.sessions.announce(DEVICE, device)
    assert {device.next().id, device.next().id} == set(ids[1:])  # the deleted one is not sent
    assert device.got.empty()


def test_device_to_server_answers_and_the_rule_engine_hook(service):
    assert "currentTime" in service.device_request(DEVICE, {"method": "getCurrentTime"}, {})
    assert service.device_request(DEVICE, {"method": "getSessionLimits"}, {"maxPayloadSize": 5}) == {
        "maxPayloadSize": 5
    }
    assert "unsupported RPC method 'x'" in service.device_request(DEVICE, {"method": "x"}, {})["error"]
    assert "error" in service.device_request(DEVICE, [1], {})
    service.device_rpc_handler = lambda d, method, params: {"echo": params} if method == "echo" else NOT_HANDLED
    assert service.device_request(DEVICE, {"method": "echo", "params": 3}, {}) == {"echo": 3}
    assert "error" in service.device_request(DEVICE, {"method": "other"}, {})


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "JSON object"),
        ({}, "'method' is required"),
        ({"method": ""}, "'method' is required"),
        ({"method": "x" * 300}, "longer than"),
        ({"method": "m", "timeout": 0}, "'timeout'"),
        ({"method": "m", "timeout": "5"}, "'timeout' must be an integer"),
        ({"method": "m", "timeout": True}, "'timeout' must be an integer"),
        ({"method": "m", "expirationTime": 1}, "not in the future"),
        ({"method": "m", "persistent": "yes"}, "'persistent'"),
        ({"method": "m", "additionalInfo": []}, "'additionalInfo'"),
        ({"method": "m", "params": "x" * 70_000}, "'params' is larger"),
    ],
)
def test_bad_bodies(body, message):
    with pytest.raises(InvalidInput, match=message):
        request(body)


def test_schema_is_versioned(service, tmp_path):
    with sqlite3.connect(tmp_path / FILE) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_retries_end_failed(service):
    device = Device(service, deliver=False)
    service.sessions.announce(DEVICE, device)
    call = service.submit(request({"method": "m", "persistent": True, "retries": 1, "timeout": 60_000}))
    rid = call.accepted.result(10).id
    for _ in range(2):  # the first attempt and one retry fail
        sent = device.next()
        service.undelivered(DEVICE, sent.request_id, "socket closed")
    done = call.finished.result(10)
    assert done.status == FAILED and "not delivered after 2" in done.response["error"]
    assert service.repo.get(rid).status == FAILED


def test_a_final_status_is_never_overwritten(service):
    r = service.submit(request({"method": "m", "persistent": True, "timeout": 60_000})).accepted.result(10)
    assert service.repo.update(r.with_(status=SUCCESSFUL, response=1))
    assert not service.repo.update(r.with_(status=EXPIRED))  # e.g. a second process's deadline
    assert service.repo.get(r.id).status == SUCCESSFUL
