"""Columnar hot-tier blocks (store/blocks.py): bulk writes read back exactly as row writes do.

The oracle is the same store with blocks switched off (every point one ``hot`` row, the
format before blocks): random sequences of writes, rewrites, range deletes and compactions
must give the same answers, point for point and type for type. Plus: the decoded-block cache
never serves a stale answer (another store instance writes or deletes), an old file upgrades,
SIGKILL during block writes loses no acknowledged point, and a backfill into closed months
starts a compaction without waiting for the timer.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel import sqlite as db
from tbpanel.store import ValueType, blocks, open_store
from tbpanel.store.columns import columns_from_values
from tbpanel.store.hot import MIGRATIONS
from tbpanel.store.telemetry import TelemetryStore

V = ValueType
JAN = 1_704_067_200_000  # 2024-01-01
HALF_DAY = 43_200_000
FEB = 1_706_745_600_000
FAR = 4_102_444_800_000
GRACE = 10**13  # every month written is still open: single-point rows get packed into blocks
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def count(path: str, table: str) -> int:
    con = sqlite3.connect(os.path.join(path, "telemetry.sqlite"))
    try:
        n: int = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return n
    finally:
        con.close()


@contextmanager
def block_threshold(n: int, pack: int = 10**9) -> Iterator[None]:
    old = blocks.BLOCK_MIN_POINTS, blocks.PACK_ROWS
    blocks.BLOCK_MIN_POINTS, blocks.PACK_ROWS = n, pack
    try:
        yield
    finally:
        blocks.BLOCK_MIN_POINTS, blocks.PACK_ROWS = old


def everything(s: TelemetryStore, entity: str) -> dict:
    keys = s.keys(entity)
    return {
        "raw": s.query_raw(entity, keys, 0, FAR, limit=10**9, order="ASC") if keys else {},
        "newest": s.query_raw(entity, keys, 0, FAR, limit=3, order="DESC") if keys else {},
        "oldest_feb": s.query_raw(entity, keys, FEB, FAR, limit=2, order="ASC") if keys else {},
        "avg": s.query_agg(entity, keys, JAN, FAR, "AVG", 7 * 86_400_000) if keys else {},
        "count": s.query_agg(entity, keys, JAN, FAR, "COUNT", 5 * 86_400_000) if keys else {},
        "latest": s.latest(entity),
        "stats": s.stats(entity),
    }


values = st.one_of(
    st.tuples(st.just(int(V.BOOL)), st.booleans()),
    st.tuples(st.just(int(V.LONG)), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(
        st.just(int(V.DOUBLE)),
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([-0.0, 0.1 + 0.2, 1e308, 5e-324, 2.2250738585072014e-308]),
        ),
    ),
    st.tuples(st.just(int(V.STR)), st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)),
    st.tuples(st.just(int(V.JSON)), st.sampled_from(['{"a":[1,2]}', "[]", '{"b":"x,y"}'])),
)
# timestamps on a grid of half days over ~2 months: rewrites collide, batches span two months
point = st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["x", "y"]), st.integers(0, 70), values)
bulk = st.builds(
    lambda e, k, tvs: [(e, k, i, tv) for i, tv in tvs],
    st.sampled_from(["a", "b"]),
    st.sampled_from(["x", "y"]),
    st.lists(st.tuples(st.integers(0, 70), values), min_size=3, max_size=30),
)
few = st.lists(point, min_size=1, max_size=3)  # single-point rows, rewriting block points
write_op = st.tuples(st.just("write"), st.one_of(bulk, few, st.lists(point, min_size=1, max_size=40)))
delete_op = st.tuples(
    st.just("delete"), st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 120), st.integers(1, 60))
)
compact_op = st.tuples(st.just("compact"), st.sampled_from([FEB, JAN + 121 * HALF_DAY + 40 * 86_400_000]))
ops = st.lists(st.one_of(write_op, write_op, write_op, delete_op, compact_op), min_size=1, max_size=12)


def apply(s: TelemetryStore, threshold: int, op: tuple, pack: int = 10**9) -> object:
    kind, arg = op
    with block_threshold(threshold, pack):
        if kind == "write":
            return s.write_points([(e, k, JAN + i * HALF_DAY, t, v) for e, k, i, (t, v) in arg])
        if kind == "delete":
            e, i, span = arg
            return s.delete(e, None, JAN + i * HALF_DAY, JAN + (i + span) * HALF_DAY)
        return {k: v for k, v in s.compact(before_ts=arg).items() if k != "conflicts"}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=ops)
def test_blocks_answer_exactly_as_rows_do(tmp_path_factory, sequence):
    base = tmp_path_factory.mktemp("blocks")
    with (
        open_store(base / "blocks", compaction_interval_s=0, synchronous="OFF", grace_ms=GRACE) as with_blocks,
        open_store(base / "rows", compaction_interval_s=0, synchronous="OFF", grace_ms=GRACE) as rows_only,
    ):
        for op in sequence:
            # blocks from 3 points of a series in one write, rows packed into blocks after 4
            assert apply(with_blocks, 3, op, pack=4) == apply(rows_only, 10**9, op), op
            for e in ("a", "b"):
                assert everything(with_blocks, e) == everything(rows_only, e), op
        assert count(rows_only.path, "hot_blocks") == 0


TYPED = [
    ("flag", V.BOOL, lambda i: i % 3 == 0),
    ("big", V.LONG, lambda i: 2**62 + i if i % 2 else -(2**63) + i),
    ("temp", V.DOUBLE, lambda i: 0.1 * i - 3.0),
    ("name", V.STR, lambda i: f'héllo, {i} "wörld"'),
    ("cfg", V.JSON, lambda i: f'{{"a":[{i},2,{{"b":null}}]}}'),
]


def test_bulk_writes_go_into_blocks_with_types_kept(tmp_path):
    with open_store(tmp_path / "s", compaction_interval_s=0) as s:
        pts = [("d", k, JAN + i * 60_000, int(t), f(i)) for k, t, f in TYPED for i in range(500)]
        assert s.write_points(pts) == len(pts)
        assert count(s.path, "hot") == 0 and count(s.path, "hot_blocks") == len(TYPED)
        raw = s.query_raw("d", None, 0, FAR, limit=10**6, order="ASC")
        for k, t, f in TYPED:
            got = raw[k]
            assert [p[0] for p in got] == [JAN + i * 60_000 for i in range(500)]
            assert all(p[1] == int(t) for p in got)
            expect = [f(i) for i in range(500)]
            assert [p[2] for p in got] == expect and [type(p[2]) for p in got] == [type(x) for x in expect]
        ts, num = s.numeric_arrays("d", ["temp"], 0, FAR)["temp"]
        assert np.array_equal(num, np.array([0.1 * i - 3.0 for i in range(500)]))
        # a single-point rewrite of a block's point wins over it; a later block wins over both
        s.write_points([("d", "temp", JAN + 60_000, int(V.DOUBLE), 99.5)])
        assert s.query_raw("d", "temp", JAN + 60_000, JAN + 120_000, 1)["temp"] == [(JAN + 60_000, 2, 99.5)]
        s.write_points([("d", "temp", JAN + i * 60_000, int(V.DOUBLE), -float(i)) for i in range(100)])
        assert s.query_raw("d", "temp", JAN + 60_000, JAN + 120_000, 1)["temp"] == [(JAN + 60_000, 2, -1.0)]
        assert count(s.path, "hot") == 0  # the row the block rewrote is gone


def test_cached_blocks_never_answer_stale(tmp_path):
    path = tmp_path / "s"
    with open_store(path, compaction_interval_s=0) as s, open_store(path, compaction_interval_s=0) as other:
        s.write_points([("d", "v", JAN + i * 1000, int(V.DOUBLE), float(i)) for i in range(1000)])
        first = s.query_agg("d", "v", JAN, FAR, "SUM", 10**9)["v"]
        assert first == s.query_agg("d", "v", JAN, FAR, "SUM", 10**9)["v"]  # (from the cache)
        other.write_points([("d", "v", JAN + i * 1000, int(V.DOUBLE), 1.0) for i in range(500)])  # another instance
        assert s.query_agg("d", "v", JAN, FAR, "SUM", 10**9)["v"][0][2] == 500 + sum(range(500, 1000))
        other.delete("d", "v", JAN + 900 * 1000, FAR)  # straddles the second block: rewritten smaller
        assert s.query_agg("d", "v", JAN, FAR, "COUNT", 10**9)["v"][0][2] == 900
        assert len(s.query_raw("d", "v", 0, FAR, limit=10**6)["v"]) == 900
        assert s.compact(before_ts=FAR)["points_moved"] == 900
        assert count(str(path), "hot_blocks") == 0
        assert s.query_agg("d", "v", JAN, FAR, "SUM", 10**9)["v"][0][2] == 500 + sum(range(500, 900))


def test_a_version_1_file_upgrades_and_keeps_its_rows(tmp_path):
    path = tmp_path / "s"
    path.mkdir()
    conn = db.connect(str(path / "telemetry.sqlite"))
    db.migrate(conn, MIGRATIONS[:1], what="old")
    conn.close()
    with open_store(path, compaction_interval_s=0) as s:  # (version 1 written as before blocks)
        with block_threshold(10**9):
            s.write_points([("d", "v", JAN + i, int(V.LONG), i) for i in range(100)])
    conn = sqlite3.connect(str(path / "telemetry.sqlite"))
    conn.execute("DROP TABLE hot_blocks")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with open_store(path, compaction_interval_s=0) as s:
        assert s.write_points([("d", "v", JAN + 50 + i, int(V.LONG), -i) for i in range(100)]) == 100
        got = s.query_raw("d", "v", 0, FAR, limit=10**6, order="ASC")["v"]
    assert [v for _, _, v in got] == list(range(50)) + [-i for i in range(100)]


CHILD = f"""
import sys
sys.path.insert(0, {REPO!r})
from tbpanel.store import open_store
store = open_store(sys.argv[1], compaction_interval_s=float(sys.argv[2]), grace_ms=0)
for i in range(100_000):
    pts = [(f"dev{{e}}", "k", {JAN} + (i * 300 + j) * 60_000, 1, i * 1000 + j) for e in range(3) for j in range(300)]
    store.write_points(pts)
    print(i, flush=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("interval", ["0", "0.05"], ids=["writes", "writes-and-compaction"])
def test_sigkill_during_block_writes_loses_no_acknowledged_point(tmp_path, interval):
    path = str(tmp_path / "s")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, path, interval], stdout=subprocess.PIPE, text=True)
    acked = []
    assert proc.stdout is not None
    for line in proc.stdout:
        acked.append(int(line))
        if len(acked) >= 150:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with open_store(path, compaction_interval_s=0) as s:
        for e in range(3):
            got = s.numeric_arrays(f"dev{e}", "k", 0, FAR)["k"]
            ts = ((got[0] - JAN) // 60_000).astype(np.int64)
            n = len(ts)
            assert n >= len(acked) * 300 and n % 300 == 0  # every acknowledged batch, whole
            assert np.array_equal(ts, np.arange(n))
            assert np.array_equal(got[1], (ts // 300) * 1000 + ts % 300)
        assert count(path, "hot_blocks") + count(path, "cold_partitions") > 0


def test_a_backfill_into_closed_months_is_compacted_without_waiting_for_the_timer(tmp_path):
    with open_store(tmp_path / "s", compaction_interval_s=3600) as s:  # the timer never fires here
        n = 60_000
        s.write_points([("d", "v", JAN + i * 30_000, int(V.DOUBLE), float(i)) for i in range(n)])
        deadline = time.time() + 120
        while count(s.path, "cold_partitions") == 0 and time.time() < deadline:
            time.sleep(0.05)
        assert count(s.path, "cold_partitions") == 1  # January 2024 (60,000 half-minutes: 20.8 days)
        assert count(s.path, "hot_blocks") == 0
        assert s.query_agg("d", "v", JAN, FAR, "COUNT", 10**10)["v"][0][2] == n


def test_rows_written_a_point_at_a_time_are_packed_into_blocks(tmp_path):
    now = int(time.time() * 1000)
    with open_store(tmp_path / "s", compaction_interval_s=0) as s:
        for i in range(blocks.PACK_ROWS + 10):
            s.write_points([("d", "v", now - i * 1000, int(V.LONG), i), ("d", "w", now - i, int(V.BOOL), i % 2 == 0)])
        s.write_points([("d", "v", now + 1, int(V.LONG), -1)])  # (queued behind the packing)
        assert count(s.path, "hot_blocks") >= 2 and count(s.path, "hot") < 2 * 20
        got = s.query_raw("d", None, 0, FAR, limit=10**6, order="DESC")
        assert [v for _, _, v in got["v"]] == [-1, *range(blocks.PACK_ROWS + 10)]
        assert [v for _, _, v in got["w"]] == [i % 2 == 0 for i in range(blocks.PACK_ROWS + 10)]


def test_blocks_module_merges_later_blocks_over_earlier(tmp_path):
    def cols(ts: list[int], v: float) -> dict:
        t = np.full(len(ts), int(V.DOUBLE), np.int8)
        return {"ts": np.array(ts, np.int64), "t": t, **columns_from_values(t, np.full(len(ts), v, object))}

    merged = blocks.merge_blocks([cols([1, 2, 3], 1.0), cols([2, 5], 2.0), cols([0, 3], 3.0)])
    assert merged["ts"].tolist() == [0, 1, 2, 3, 5]
    assert merged["num"].tolist() == [3.0, 1.0, 2.0, 3.0, 2.0]
    row = blocks.decode((1, *blocks.encode(cols([7, 8], 4.0))[3:]))
    assert row["ts"].tolist() == [7, 8] and row["lng"] is None and row["txt"] is None
