"""The durable rule queue: durable puts, per-originator order, retries with back-off from the
failed external node only (service down, then up: nothing lost), dead letters with their
error and a retry action, the schema version, and at-least-once across kill -9."""

from __future__ import annotations

import sqlite3
import time

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.rules.queue import RuleQueue
from tests.rules.helpers import chain, msg
from tests.rules.recorder import Recorder, free_port

REST = "rest.TbRestApiCallNode"


@pytest.fixture
def queue(tmp_path, clock):
    q = RuleQueue(tmp_path, retry_base_ms=1000, retry_max_ms=8000, clock=clock)
    yield q
    q.close()


@pytest.fixture
def recorder():
    r = Recorder().start()
    yield r
    r.stop()


def rest_chain(url, before=()):
    nodes = [*before, (REST, "forward", {"restEndpointUrlPattern": url + "/in/${deviceName}/$[n]"})]
    conns = [(i, i + 1, "Success") for i in range(len(before))]
    return chain("t", nodes, conns)


def test_put_is_durable_and_versioned(tmp_path, queue):
    queue.put([msg(data={"n": i}) for i in range(3)])
    queue.close()
    again = RuleQueue(tmp_path)
    assert again.size() == 3 and again.size("t") == 3 and again.size("other") == 0
    assert [w["msg"]["data"] for w in again.waiting("t")] == [{"n": 0}, {"n": 1}, {"n": 2}]
    again.close()
    conn = sqlite3.connect(tmp_path / "rules.sqlite")
    from tbpanel.rules.queue import MIGRATIONS

    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="schema version 99"):
        RuleQueue(tmp_path)
    with pytest.raises(ValueError, match="tenant_id"):
        RuleQueue(tmp_path / "x.sqlite").put([msg(tenant_id="")])


def test_delivered_messages_leave_the_queue(queue, bare_engine, recorder):
    bare_engine.set_chain(rest_chain(recorder.url))
    queue.put([msg(data={"n": i}) for i in range(5)])
    # one head per originator per step: five steps for one device, in order
    for _ in range(5):
        assert [o.state for o in queue.process_due(bare_engine)] == ["DONE"]
    assert queue.size() == 0
    assert [r[1] for r in recorder.requests] == [f"/in/dev/{i}" for i in range(5)]
    assert orjson.loads(recorder.requests[0][2]) == {"n": 0}


def test_service_down_then_up_retries_with_back_off_and_loses_nothing(queue, bare_engine, clock):
    port = free_port()
    save = (
        "transform.TbTransformMsgNode",
        "stamp",
        {"jsScript": "msg.stamped = true; return {msg: msg, metadata: metadata, msgType: msgType};"},
    )
    c = rest_chain(f"http://127.0.0.1:{port}", before=[save])
    bare_engine.set_chain(c)
    queue.put([msg(data={"n": 0}), msg(data={"n": 1}), msg(data={"n": 7}, originator="d2")])
    out = queue.process_due(bare_engine)
    assert [o.state for o in out] == ["RETRY", "RETRY"] and "forward" in out[0].error
    # nothing is due until the back-off has passed; it doubles per attempt
    assert queue.process_due(bare_engine) == []
    delays = []
    for _ in range(4):
        due = queue.next_due()
        delays.append(due - clock.t)
        clock.t = due
        assert {o.state for o in queue.process_due(bare_engine)} == {"RETRY"}
    assert delays == [1000, 2000, 4000, 8000]
    [w0, w1, w2] = queue.waiting("t")
    assert w0["attempts"] == 5 and w1["attempts"] == 0 and w2["attempts"] == 5 and "refused" in w0["lastError"].lower()
    rec = Recorder(port=port).start()
    try:
        clock.t = queue.next_due()
        while queue.size():
            queue.process_due(bare_engine)
            clock.t += 8000
        got = sorted(r[1] for r in rec.requests)
        assert got == ["/in/dev/0", "/in/dev/1", "/in/dev/7"]
        # order per originator kept: 0 before 1
        paths = [r[1] for r in rec.requests]
        assert paths.index("/in/dev/0") < paths.index("/in/dev/1")
        # retried from the failed node only: the transform before it ran once per message
        stamp = bare_engine.counters[c.nodes[0].id]
        assert stamp.received == 3
        assert all(orjson.loads(r[2])["stamped"] for r in rec.requests)
    finally:
        rec.stop()


def test_error_answers_are_retried_too(queue, bare_engine, recorder, clock):
    bare_engine.set_chain(rest_chain(recorder.url))
    recorder.status = 503
    queue.put([msg(data={"n": 1})])
    [o] = queue.process_due(bare_engine)
    assert o.state == "RETRY" and "HTTP 503" in o.error
    recorder.status = 200
    clock.t = queue.next_due()
    assert [o.state for o in queue.process_due(bare_engine)] == ["DONE"]
    assert len(recorder.requests) == 2


def test_unprocessable_messages_go_to_the_dead_letter_list(queue, bare_engine, recorder):
    bad = ("filter.TbJsFilterNode", "strict", {"jsScript": "if (!msg.ok) throw new Error('not ok'); return true;"})
    c = chain("t", [bad, (REST, "forward", {"restEndpointUrlPattern": recorder.url + "/in"})], [(0, 1, "True")])
    bare_engine.set_chain(c)
    queue.put([msg(data={"ok": False}), msg(data={"ok": True})])
    assert [o.state for o in queue.process_due(bare_engine)] == ["DEAD"]
    [dead] = queue.dead_letters("t")
    assert "not ok" in dead.error and dead.msg.data == {"ok": False} and dead.attempts == 1
    assert queue.dead_letters("other") == []
    # the next message of the originator is no longer blocked
    assert [o.state for o in queue.process_due(bare_engine)] == ["DONE"]
    # the chain is fixed; retrying the dead letter delivers it
    bare_engine.set_chain(chain("t", [(REST, "forward", {"restEndpointUrlPattern": recorder.url + "/in"})], []))
    assert not queue.retry_dead("other", dead.id)
    assert queue.retry_dead("t", dead.id)
    assert queue.dead_letters("t") == []
    assert [o.state for o in queue.process_due(bare_engine)] == ["DONE"]
    assert len(recorder.requests) == 2


def test_max_attempts_ends_in_the_dead_letter_list(tmp_path, bare_engine, clock):
    q = RuleQueue(tmp_path, retry_base_ms=10, max_attempts=3, clock=clock)
    try:
        bare_engine.set_chain(rest_chain(f"http://127.0.0.1:{free_port()}"))
        q.put([msg()])
        states = []
        while q.size():
            clock.t += 1000
            states += [o.state for o in q.process_due(bare_engine)]
        assert states == ["RETRY", "RETRY", "DEAD"]
        assert "gave up after 3 attempts" in q.dead_letters("t")[0].error
    finally:
        q.close()


def test_a_message_for_a_tenant_without_chains_is_a_dead_letter(queue, bare_engine):
    queue.put([msg(tenant_id="nobody")])
    [o] = queue.process_due(bare_engine)
    assert o.state == "DEAD" and "no root rule chain" in queue.dead_letters("nobody")[0].error


def test_worker_thread_drains_the_queue(tmp_path, bare_engine, recorder):
    q = RuleQueue(tmp_path)
    try:
        bare_engine.set_chain(rest_chain(recorder.url))
        worker = q.start_worker(bare_engine)
        q.put([msg(data={"n": i}, originator=f"d{i % 3}") for i in range(30)])
        deadline = time.monotonic() + 60
        while q.size() and time.monotonic() < deadline:
            time.sleep(0.02)
        q.stop_worker(worker)
        assert q.size() == 0 and len(recorder.requests) == 30
    finally:
        q.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    originators=st.lists(st.sampled_from("abc"), min_size=1, max_size=15),
    failures=st.lists(st.integers(0, 3), min_size=15, max_size=15),
)
def test_order_per_originator_and_nothing_lost_under_random_failures(tmp_path_factory, recorder, originators, failures):
    """Whatever fails how often, every message is delivered once it succeeds, each originator's
    messages arrive in the order they were queued, and nothing reaches the dead letters."""
    from tbpanel.rules import RuleEngine, Services
    from tests.rules.conftest import Clock

    clock = Clock()
    q = RuleQueue(tmp_path_factory.mktemp("q"), retry_base_ms=10, retry_max_ms=40, clock=clock)
    engine = RuleEngine(Services(clock=clock))
    attempts: dict[bytes, int] = {}

    def fail(path, body):
        n = orjson.loads(body)["n"]
        attempts[body] = attempts.get(body, 0) + 1
        return attempts[body] <= failures[n]

    recorder.requests.clear()
    recorder.fail = fail
    try:
        engine.set_chain(chain("t", [(REST, "forward", {"restEndpointUrlPattern": recorder.url + "/in"})], []))
        q.put([msg(data={"n": i, "o": o}, originator=o) for i, o in enumerate(originators)])
        for _ in range(500):
            if not q.size():
                break
            q.process_due(engine)
            clock.t += 40
        assert q.size() == 0 and q.dead_letters("t") == []
        got = [orjson.loads(b) for b in recorder.bodies()]
        assert sorted(g["n"] for g in got) == list(range(len(originators)))
        for o in "abc":
            assert [g["n"] for g in got if g["o"] == o] == [i for i, x in enumerate(originators) if x == o]
    finally:
        recorder.fail = None
        engine.close()
        q.close()
