"""Messages with many new keys or many series (issue 15, item 1): they complete, cost what their
size justifies, and other entities' batches are not held behind them; the per-entity key limit.

Ordering is made deterministic without touching the writer: another SQLite connection holds the
database's write lock (as a notebook writing next to the server would), so every batch submitted
meanwhile is queued together, and the order in which their acknowledgements fire is the order the
writer committed them.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from tbpanel.store import open_store
from tbpanel.store.limits import (
    DEFAULT_MAX_KEYS_PER_DEVICE,
    DEFAULT_MAX_POINTS_PER_MESSAGE,
    TooManyKeys,
    TooManyPoints,
    check_points,
)

TS = 1_767_225_600_000  # 2026-01-01


def shuffled_keys(n: int, prefix: str = "k") -> list[str]:
    """``n`` distinct keys in no order (a sorted run would hide a re-sort per new key)."""
    keys = [f"{prefix}{i:06d}" for i in range(n)]
    random.Random(n).shuffle(keys)
    return keys


class HeldWriteLock:
    """``with HeldWriteLock(store):`` another connection holds the write lock meanwhile."""

    def __init__(self, store) -> None:
        self.conn = sqlite3.connect(Path(store.path) / "telemetry.sqlite", isolation_level=None)

    def __enter__(self) -> HeldWriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def acked_in_order(futures: dict[str, Future]) -> list[str]:
    """Names of ``futures`` in the order they resolved (callbacks run on the writer thread)."""
    order: list[str] = []
    lock = threading.Lock()
    for name, fut in futures.items():

        def done(_f: Future, name: str = name) -> None:
            with lock:
                order.append(name)

        fut.add_done_callback(done)
    for fut in futures.values():
        fut.result(timeout=120)
    return order


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "s", compaction_interval_s=0)
    yield s
    s.close()


def test_twenty_thousand_new_keys_in_one_message(store):
    keys = shuffled_keys(20_000)
    store.write("dev", {"first": 1}, ts=TS)
    assert store.write_points([("dev", k, TS, 2, float(i)) for i, k in enumerate(keys)]) == 20_000
    assert store.keys("dev") == sorted([*keys, "first"])
    latest = store.latest("dev")
    assert list(latest) == sorted([*keys, "first"])  # latest values come back sorted
    assert latest[keys[123]] == (TS, 2, 123.0)
    # a later out-of-order key on the same entity: still sorted, old values kept
    store.write("dev", {"a-new-one": 5}, ts=TS + 1)
    latest = store.latest("dev")
    assert list(latest)[0] == "a-new-one" and len(latest) == 20_002
    assert store.latest("dev", [keys[5], "a-new-one"]) == {keys[5]: (TS, 2, 5.0), "a-new-one": (TS + 1, 1, 5)}


def test_other_entities_are_not_held_behind_a_big_message(store):
    store.write("warm", {"x": 1}, ts=TS)
    big = [("big", k, TS, 2, 1.0) for k in shuffled_keys(20_000)]
    with HeldWriteLock(store):
        futures = {
            "big": store.submit(big),
            "other": store.submit([("other", "t", TS, 2, 1.0)]),
            "big-again": store.submit([("big", "t", TS, 2, 2.0)]),  # same entity: stays behind
            "third": store.submit([("third", "t", TS, 2, 1.0)]),
        }
    order = acked_in_order(futures)
    assert order.index("other") < order.index("big")
    assert order.index("third") < order.index("big")
    assert order.index("big") < order.index("big-again")
    assert len(store.keys("big")) == 20_001
    assert store.latest("big", "t") == {"t": (TS, 2, 2.0)}  # written after the big batch


def test_many_series_message_completes_and_does_not_hold_others(store):
    """One batch writing 200 entities x 100 keys (a gateway's message): 20,000 new series."""
    batch = [(f"gw-dev-{d}", k, TS + d, 1, d) for d in range(200) for k in shuffled_keys(100, "m")]
    with HeldWriteLock(store):
        futures = {"many": store.submit(batch), "small": store.submit([("solo", "v", TS, 1, 7)])}
    order = acked_in_order(futures)
    assert order == ["small", "many"]
    assert store.stats()["series"] == 20_001
    latest = store.latest_many([f"gw-dev-{d}" for d in range(200)])
    assert all(len(v) == 100 and list(v) == sorted(v) for v in latest.values())
    assert latest["gw-dev-199"]["m000042"] == (TS + 199, 1, 199)


def test_key_limit_refuses_the_whole_batch(tmp_path):
    with open_store(tmp_path / "s", compaction_interval_s=0, max_keys_per_entity=100) as store:
        store.write_points([("dev", f"k{i}", TS, 1, i) for i in range(90)])
        with pytest.raises(TooManyKeys) as info:
            store.write_points([("dev", f"k{i}", TS + 1, 1, -i) for i in range(80, 111)])  # 21 new
        msg = str(info.value)
        assert "max-keys-per-device" in msg and "100 keys per device" in msg and "adds 21 new" in msg
        assert len(store.keys("dev")) == 90  # nothing of it: neither new keys nor old ones' points
        assert store.latest("dev", "k85") == {"k85": (TS, 1, 85)}
        assert store.write_points([("dev", f"k{i}", TS + 2, 1, i) for i in range(80, 100)]) == 20  # up to 100
        assert store.write_points([("dev", "k3", TS + 3, 1, 3)]) == 1  # known keys still go in
        with pytest.raises(TooManyKeys):
            store.write("dev", {"one-more": 1})
        assert store.write("another-device", {"one-more": 1}) == 1  # per entity
        # two batches in one commit group: the second's new keys are counted after the first's
        store.write_points([("pair", f"p{i}", TS, 1, i) for i in range(50)])
        with HeldWriteLock(store):
            first = store.submit([("pair", f"q{i}", TS, 1, i) for i in range(30)])
            second = store.submit([("pair", f"r{i}", TS, 1, i) for i in range(30)])
            third = store.submit([("pair", "q0", TS + 1, 1, 9)])  # a key of the first batch
        assert first.result(60) == 30 and third.result(60) == 1
        with pytest.raises(TooManyKeys):
            second.result(60)
        assert sorted(store.keys("pair")) == sorted([f"p{i}" for i in range(50)] + [f"q{i}" for i in range(30)])
        assert store.latest("pair", "q0") == {"q0": (TS + 1, 1, 9)}


def test_point_limit_and_defaults():
    check_points(10, 10)
    check_points(10**9, None)
    with pytest.raises(TooManyPoints) as info:
        check_points(11, 10)
    assert "max-points-per-message" in str(info.value) and info.value.status == 413
    assert TooManyKeys("x", 1).status == 400 and TooManyKeys("x", 1).mqtt_reason == 0x97
    assert TooManyPoints("x", 1).mqtt_reason == 0x95
    from tbpanel import cli

    # the CLI states the defaults without importing the store: they must agree
    assert (cli.DEFAULT_MAX_KEYS_PER_DEVICE, cli.DEFAULT_MAX_POINTS_PER_MESSAGE) == (
        DEFAULT_MAX_KEYS_PER_DEVICE,
        DEFAULT_MAX_POINTS_PER_MESSAGE,
    )


def test_close_during_a_compaction_keeps_every_point_and_the_next_compaction_completes(tmp_path):
    """The switch waits for the write lock (held by another connection) while the store closes:
    the compaction is abandoned, its new generation removed, and nothing is lost."""
    month0 = 1_672_531_200_000  # 2023-01: closed
    rows = [(f"e{e}", "v", month0 + i * 60_000, 1, e * 10_000 + i) for e in range(3) for i in range(2_000)]
    path = tmp_path / "s"
    store = open_store(path, compaction_interval_s=0)
    store.write_points(rows)
    result: dict = {}
    compacting = threading.Thread(target=lambda: result.update(store.compact()))
    with HeldWriteLock(store):
        compacting.start()
        for _ in range(6000):  # the new generation is written; its switch waits for the lock
            if store.cold.list_generations():
                break
            threading.Event().wait(0.01)
        assert store.cold.list_generations(), "the compaction never wrote its generation"
        closing = threading.Thread(target=store.close)
        closing.start()
        for _ in range(6000):
            if store._compactor._stop.is_set():
                break
            threading.Event().wait(0.01)
    closing.join(120)
    compacting.join(120)
    assert not closing.is_alive() and not compacting.is_alive()
    assert result["skipped"] == "the store is closing" and result["partitions"] == 0
    with open_store(path, compaction_interval_s=0) as store:
        assert store.cold.list_generations() == []  # the abandoned generation is gone
        again = store.compact()
        assert again["partitions"] == 1 and again["points_moved"] == len(rows)
        for e in range(3):
            ts, v = store.numeric_arrays(f"e{e}", "v", month0, month0 + 31 * 86_400_000)["v"]
            assert list(v) == [e * 10_000 + i for i in range(2_000)]
