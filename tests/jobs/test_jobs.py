"""Scheduling rules and the task runner: progress, log, failure, cancellation, restart."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tbpanel.jobs import CANCELLED, DONE, FAILED, TaskRunner, add_units, next_run, unit_start


def ms(*args, tz="UTC") -> int:
    return int(datetime(*args, tzinfo=ZoneInfo(tz)).timestamp() * 1000)


def test_unit_start():
    t = ms(2026, 3, 18, 15, 42, 7)
    assert unit_start(t, "HOUR") == ms(2026, 3, 18, 15)
    assert unit_start(t, "DAY") == ms(2026, 3, 18)
    assert unit_start(t, "WEEK") == ms(2026, 3, 16)  # Monday
    assert unit_start(t, "MONTH") == ms(2026, 3, 1)
    assert unit_start(ms(2026, 3, 31, 12, tz="Europe/Berlin"), "MONTH", "Europe/Berlin") == ms(
        2026, 3, 1, tz="Europe/Berlin"
    )


def test_add_units_across_dst_and_month_ends():
    # Berlin switches to summer time on 2026-03-29: one local day is 23 hours long
    start = ms(2026, 3, 28, 0, tz="Europe/Berlin")
    assert add_units(start, 1, "DAY", "Europe/Berlin") == ms(2026, 3, 29, 0, tz="Europe/Berlin")
    assert (
        add_units(ms(2026, 3, 29, tz="Europe/Berlin"), 1, "DAY", "Europe/Berlin") - ms(2026, 3, 29, tz="Europe/Berlin")
        == 23 * 3_600_000
    )
    assert add_units(ms(2026, 1, 31), 1, "MONTH") == ms(2026, 2, 28)
    assert add_units(ms(2028, 1, 31), 1, "MONTH") == ms(2028, 2, 29)
    assert add_units(ms(2026, 11, 15), 3, "MONTH") == ms(2027, 2, 15)
    assert add_units(ms(2026, 1, 1), 2, "WEEK") == ms(2026, 1, 15)
    assert add_units(ms(2026, 1, 1), 5, "HOUR") == ms(2026, 1, 1, 5)


def test_next_run_rules():
    now = ms(2026, 5, 10, 13, 30)
    assert next_run(None, now, 1, "DAY") == now
    assert next_run(None, now, 1, "DAY", at_unit_start=True) == ms(2026, 5, 11)
    assert next_run(ms(2026, 5, 10, 13, 0), now, 2, "HOUR") == ms(2026, 5, 10, 15, 0)
    assert next_run(ms(2026, 5, 10, 13, 7), now, 1, "HOUR", at_unit_start=True) == ms(2026, 5, 10, 14, 0)
    # fell behind: due (in the past), so it runs once now
    assert next_run(ms(2026, 5, 1), now, 1, "DAY") <= now
    with pytest.raises(ValueError):
        next_run(None, now, 0, "DAY")
    with pytest.raises(ValueError):
        next_run(None, now, 1, "YEAR", at_unit_start=True)


@pytest.fixture
def runner(tmp_path):
    r = TaskRunner(tmp_path / "analytics.sqlite", workers=1)
    yield r
    r.shutdown()


def test_task_progress_log_and_result(runner):
    seen = []
    runner.changed.connect(lambda t: seen.append((t.status, round(t.progress, 2))))

    def work(ctx):
        for i in range(4):
            ctx.progress((i + 1) / 4, f"step {i + 1}")
            ctx.log(f"did step {i + 1}")
        return {"segments": 42}

    task = runner.submit("BUILD", work, model_id="m1", tenant_id="t1", params={"k": 1})
    done = runner.wait(task.id, timeout=10)
    assert done.status == DONE and done.progress == 1.0 and done.result == {"segments": 42}
    assert len(done.log_lines) == 4 and done.log_lines[-1].endswith("did step 4")
    assert done.duration_ms is not None and done.duration_ms >= 0
    assert ("IN_PROGRESS", 0.5) in seen and seen[-1][0] == DONE
    assert [t.id for t in runner.list(model_id="m1")] == [task.id]
    assert runner.list(model_id="other") == []


def test_failure_is_recorded_with_its_message(runner):
    def work(ctx):
        raise ValueError("no data for field 'temperature'")

    task = runner.wait(runner.submit("BUILD", work).id, timeout=10)
    assert task.status == FAILED and "no data for field 'temperature'" in task.message
    assert any("ValueError" in line for line in task.log_lines)


def test_cancel_running_and_queued(runner):
    started = threading.Event()

    def slow(ctx):
        started.set()
        while True:
            ctx.check()
            time.sleep(0.01)

    running = runner.submit("REPROCESS", slow)
    queued = runner.submit("REPROCESS", slow)  # one worker: waits behind the first
    assert started.wait(5)
    assert runner.cancel(queued.id) and runner.cancel(running.id)
    assert runner.wait(running.id, timeout=10).status == CANCELLED
    assert runner.wait(queued.id, timeout=10).status == CANCELLED
    assert not runner.cancel(running.id)  # no longer live


def test_history_survives_restart_and_interrupted_tasks_fail(tmp_path):
    path = tmp_path / "analytics.sqlite"
    r = TaskRunner(path)
    done = r.wait(r.submit("BUILD", lambda ctx: {"ok": 1}).id, timeout=10)
    r.shutdown()
    # simulate a crash mid-task: a row left IN_PROGRESS
    import sqlite3

    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO tasks (id, kind, status, progress, message, created_ms, log, params, result) "
        "VALUES ('x', 'REFRESH', 'IN_PROGRESS', 0.3, 'running', 1, '[]', '{}', '{}')"
    )
    db.commit()
    db.close()
    r2 = TaskRunner(path)
    try:
        assert r2.get(done.id).status == DONE and r2.get(done.id).result == {"ok": 1}
        interrupted = r2.get("x")
        assert interrupted.status == FAILED and "interrupted" in interrupted.message
    finally:
        r2.shutdown()
