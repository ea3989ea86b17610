"""Telemetry store: typed round trips, upserts, latest, deletes, compaction, files, failures.

Every test uses a real store (SQLite + Zarr files) in ``tmp_path``; nothing is mocked.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import numpy as np
import pytest

from tbpanel.store import MAX_BUCKETS, QueryError, TelemetryStore, ValueType, open_store

V = ValueType
DAY = 86_400_000
JAN = 1_704_067_200_000  # 2024-01-01T00:00Z
FEB = 1_706_745_600_000  # 2024-02-01T00:00Z
MAR = 1_709_251_200_000  # 2024-03-01T00:00Z
APR = 1_711_929_600_000  # 2024-04-01T00:00Z
FAR = 4_102_444_800_000  # 2100-01-01: compact everything up to here


def manifest(s: TelemetryStore) -> dict[str, tuple[int, int]]:
    con = sqlite3.connect(os.path.join(s.path, "telemetry.sqlite"))
    try:
        return {n: (g, r) for n, g, r in con.execute("SELECT name, generation, rows FROM cold_partitions")}
    finally:
        con.close()


def hot_count(s: TelemetryStore) -> int:
    con = sqlite3.connect(os.path.join(s.path, "telemetry.sqlite"))
    try:
        return con.execute("SELECT count(*) FROM hot").fetchone()[0]
    finally:
        con.close()


def all_raw(s, entity, keys, start=0, end=FAR):
    return s.query_raw(entity, keys, start, end, limit=10**9, order="ASC")


TYPED = [
    ("flag", V.BOOL, True),
    ("off", V.BOOL, False),
    ("big", V.LONG, 2**62 + 1),
    ("neg", V.LONG, -(2**63)),
    ("max", V.LONG, 2**63 - 1),
    ("temp", V.DOUBLE, 21.5),
    ("whole", V.DOUBLE, 42.0),
    ("name", V.STR, "héllo wörld"),
    ("empty", V.STR, ""),
    ("cfg", V.JSON, '{"a":[1,2,{"b":null}]}'),
]


def _check_typed(s):
    got = all_raw(s, "d1", [k for k, _, _ in TYPED])
    for key, vt, val in TYPED:
        assert got[key] == [(JAN + 5, int(vt), val)], key
        ((ts, t, v),) = got[key]
        assert type(v) is type(val), key
    lat = s.latest("d1")
    for key, vt, val in TYPED:
        assert lat[key] == (JAN + 5, int(vt), val)
        assert type(lat[key][2]) is type(val)


def test_typed_round_trip_hot_cold_and_reopen(tmp_path):
    path = tmp_path / "data"
    with open_store(path, compaction_interval_s=0) as s:
        assert s.write_points([("d1", k, JAN + 5, vt, v) for k, vt, v in TYPED]) == len(TYPED)
        _check_typed(s)
        st = s.compact(before_ts=FAR)
        assert st["points_moved"] == len(TYPED)
        assert hot_count(s) == 0
        _check_typed(s)
    with open_store(path, compaction_interval_s=0) as s:
        _check_typed(s)
        assert s.keys("d1") == sorted(k for k, _, _ in TYPED)


def test_write_python_values_uses_classify(store):
    n = store.write("dev", {"a": 1, "b": 2.5, "c": True, "d": "x", "e": {"k": [1]}, "f": None}, ts=JAN)
    assert n == 5
    lat = store.latest("dev")
    assert lat == {
        "a": (JAN, V.LONG, 1),
        "b": (JAN, V.DOUBLE, 2.5),
        "c": (JAN, V.BOOL, True),
        "d": (JAN, V.STR, "x"),
        "e": (JAN, V.JSON, '{"k":[1]}'),
    }
    before = int(time.time() * 1000)
    store.write("dev", {"now": 1})
    assert store.latest("dev", ["now"])["now"][0] >= before


def test_upsert_last_write_wins_hot_and_cold(store):
    store.write_points([("d", "k", JAN + 1, V.LONG, 1), ("d", "k", JAN + 1, V.LONG, 2)])  # same batch
    assert all_raw(store, "d", ["k"])["k"] == [(JAN + 1, V.LONG, 2)]
    store.write_points([("d", "k", JAN + 1, V.DOUBLE, 3.5)])  # later batch, type changes too
    assert all_raw(store, "d", ["k"])["k"] == [(JAN + 1, V.DOUBLE, 3.5)]
    store.compact(before_ts=FAR)
    assert all_raw(store, "d", ["k"])["k"] == [(JAN + 1, V.DOUBLE, 3.5)]
    store.write_points([("d", "k", JAN + 1, V.STR, "hot wins")])  # hot overrides cold
    assert all_raw(store, "d", ["k"])["k"] == [(JAN + 1, V.STR, "hot wins")]
    assert store.query_agg("d", ["k"], JAN, FEB, "COUNT", DAY)["k"] == [(JAN + DAY // 2, V.LONG, 1)]
    store.compact(before_ts=FAR)  # generation 2 keeps the hot value
    assert all_raw(store, "d", ["k"])["k"] == [(JAN + 1, V.STR, "hot wins")]


def test_late_and_out_of_order_points(store):
    pts = [("d", "k", JAN + i * 1000, V.LONG, i) for i in range(100)]
    rng = np.random.default_rng(1)
    order = rng.permutation(100)
    for chunk in np.array_split(order, 7):
        store.write_points([pts[i] for i in chunk])
    got = all_raw(store, "d", ["k"])["k"]
    assert got == [(JAN + i * 1000, V.LONG, i) for i in range(100)]
    assert store.latest("d")["k"] == (JAN + 99_000, V.LONG, 99)


def test_latest_only_moves_forward(store):
    store.write_points([("d", "k", JAN + 10, V.LONG, 10)])
    store.write_points([("d", "k", JAN + 5, V.LONG, 5)])  # late point: latest stays
    assert store.latest("d")["k"] == (JAN + 10, V.LONG, 10)
    store.write_points([("d", "k", JAN + 10, V.DOUBLE, 11.5)])  # equal ts rewrites latest
    assert store.latest("d")["k"] == (JAN + 10, V.DOUBLE, 11.5)
    store.write_points([("d", "k", JAN + 20, V.LONG, 20), ("d", "k", JAN + 15, V.LONG, 15)])
    assert store.latest("d")["k"] == (JAN + 20, V.LONG, 20)
    assert store.latest("d", ["k", "missing"]) == {"k": (JAN + 20, V.LONG, 20)}
    assert store.latest("nobody") == {}


def test_keys_sorted_and_per_entity(store):
    store.write_points(
        [
            ("d", "zeta", JAN, V.LONG, 1),
            ("d", "alpha", JAN, V.LONG, 1),
            ("d", "Mid", JAN, V.LONG, 1),
            ("e", "other", JAN, V.LONG, 1),
        ]
    )
    assert store.keys("d") == ["Mid", "alpha", "zeta"]
    assert store.keys("e") == ["other"]
    assert store.keys("nobody") == []


def test_raw_query_limit_order_and_bounds(store):
    store.write_points([("d", "k", JAN + i, V.LONG, i) for i in range(10)])
    store.write_points([("d", "j", JAN + 3, V.STR, "x")])
    r = store.query_raw("d", ["k"], JAN + 2, JAN + 7, limit=100, order="ASC")["k"]
    assert [p[0] - JAN for p in r] == [2, 3, 4, 5, 6]  # start inclusive, end exclusive
    r = store.query_raw("d", ["k"], JAN + 2, JAN + 7)["k"]  # default DESC, limit 100
    assert [p[0] - JAN for p in r] == [6, 5, 4, 3, 2]
    r = store.query_raw("d", ["k"], JAN, JAN + 10, limit=3)["k"]
    assert [p[2] for p in r] == [9, 8, 7]
    r = store.query_raw("d", ["k"], JAN, JAN + 10, limit=3, order="asc")["k"]
    assert [p[2] for p in r] == [0, 1, 2]
    both = store.query_raw("d", ["k", "j", "none"], JAN, JAN + 5, limit=2)
    assert set(both) == {"k", "j"}  # keys without data are absent
    assert both["j"] == [(JAN + 3, V.STR, "x")]
    assert store.query_raw("d", ["k"], JAN + 100, JAN + 200) == {}
    with pytest.raises(QueryError, match="startTs must be less than endTs"):
        store.query_raw("d", ["k"], JAN + 5, JAN + 5)
    with pytest.raises(QueryError, match="limit"):
        store.query_raw("d", ["k"], JAN, JAN + 5, limit=0)
    with pytest.raises(QueryError, match="orderBy"):
        store.query_raw("d", ["k"], JAN, JAN + 5, order="UP")


def test_raw_query_limit_across_hot_and_cold_months(store):
    pts = [("d", "k", FEB - 5 * DAY + i * DAY, V.LONG, i) for i in range(10)]  # Jan 27 .. Feb 5
    store.write_points(pts)
    store.compact(before_ts=MAR)  # January and February go cold
    store.write_points(
        [
            ("d", "k", FEB - 5 * DAY + 2 * DAY, V.LONG, 200),  # hot override of a cold point
            ("d", "k", FEB + 20 * DAY, V.LONG, 99),
        ]
    )  # hot only
    store.delete("d", ["k"], FEB - 5 * DAY + 7 * DAY, FEB - 5 * DAY + 8 * DAY, delete_latest=False)
    expected = [(FEB - 5 * DAY + i * DAY, V.LONG, 200 if i == 2 else i) for i in range(10) if i != 7]
    expected.append((FEB + 20 * DAY, V.LONG, 99))
    for limit in (1, 2, 3, 5, 8, 9, 10, 11, 50):
        asc = store.query_raw("d", ["k"], 0, FAR, limit=limit, order="ASC")["k"]
        desc = store.query_raw("d", ["k"], 0, FAR, limit=limit, order="DESC")["k"]
        assert asc == expected[:limit]
        assert desc == expected[::-1][:limit]


def test_compaction_moves_data_and_answers_stay_identical(store):
    rng = np.random.default_rng(7)
    ts = np.sort(rng.choice(np.arange(JAN, APR, 60_000), 5000, replace=False))
    pts = []
    for i, t in enumerate(ts.tolist()):
        kind = i % 5
        pts.append(("d", "num", t, V.DOUBLE, float(rng.normal())))
        pts.append(("d", "int", t, V.LONG, int(rng.integers(-1000, 1000))))
        if kind == 0:
            pts.append(("d", "mix", t, V.STR, f"s{i % 13}"))
        elif kind == 1:
            pts.append(("d", "mix", t, V.BOOL, bool(i % 2)))
        elif kind == 2:
            pts.append(("d", "mix", t, V.JSON, f'{{"i":{i}}}'))
        else:
            pts.append(("d", "mix", t, V.LONG, i))
    store.write_points(pts)
    keys = ["num", "int", "mix"]

    def answers():
        out = [all_raw(store, "d", keys), store.query_raw("d", keys, FEB, MAR, limit=17)]
        for agg in ("MIN", "MAX", "AVG", "SUM", "COUNT"):
            out.append(store.query_agg("d", keys, JAN + 12345, APR - 999, agg, 3 * DAY + 17))
            out.append(store.query_agg("d", keys, JAN, APR, agg, None, "WEEK", "Europe/Berlin"))
        return out

    before = answers()
    st = store.compact(before_ts=MAR)  # January and February only
    assert st["partitions"] == 2 and st["points_moved"] > 0
    assert set(manifest(store)) == {"2024-01", "2024-02"}
    assert answers() == before
    st = store.compact(before_ts=FAR)
    assert set(manifest(store)) == {"2024-01", "2024-02", "2024-03"}
    assert hot_count(store) == 0
    assert answers() == before
    assert store.compact(before_ts=FAR)["partitions"] == 0  # nothing left to do


def test_compaction_rewrites_partition_with_late_points(store):
    store.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(5)])
    store.compact(before_ts=FAR)
    assert manifest(store)["2024-01"] == (1, 5)
    gen1 = os.path.join(store.path, "cold", "2024-01", "g000001")
    assert os.path.isdir(gen1)
    # late points into the compacted month: one new, one overriding a cold point
    store.write_points([("d", "k", JAN + 10 * DAY, V.LONG, 10), ("d", "k", JAN + 2 * DAY, V.LONG, 222)])
    assert hot_count(store) == 2
    expect = [(JAN + i * DAY, V.LONG, v) for i, v in [(0, 0), (1, 1), (2, 222), (3, 3), (4, 4), (10, 10)]]
    assert all_raw(store, "d", ["k"])["k"] == expect
    st = store.compact()  # the month is long closed: default cutoff is enough
    assert st["partitions"] == 1 and st["points_moved"] == 2
    assert manifest(store)["2024-01"] == (2, 6)
    assert hot_count(store) == 0
    assert not os.path.exists(gen1)  # old generation removed after the switch
    assert os.path.isdir(os.path.join(store.path, "cold", "2024-01", "g000002"))
    assert all_raw(store, "d", ["k"])["k"] == expect


def test_reopen_keeps_everything_and_removes_orphans(tmp_path):
    path = tmp_path / "data"
    with open_store(path, compaction_interval_s=0) as s:
        s.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(40)])  # Jan + Feb
        s.compact(before_ts=FEB)  # only January
        s.write_points([("d", "k", JAN + 3 * DAY, V.LONG, 333)])  # late, stays hot
        # a crashed compaction: a generation written but never committed
        s.cold.write_generation(
            "2024-01",
            7,
            {
                "ts": np.array([JAN + 5], np.int64),
                "t": np.array([1], np.int8),
                "num": np.array([5.0]),
                "lng": np.array([5], np.int64),
                "txt": None,
            },
            np.array([1], np.int64),
            np.array([0, 1], np.int64),
        )
        expect = all_raw(s, "d", ["k"])
        expect_latest = s.latest("d")
        stats = s.stats("d")
    orphan = os.path.join(path, "cold", "2024-01", "g000007")
    assert os.path.isdir(orphan)
    with open_store(path, compaction_interval_s=0) as s:
        assert not os.path.exists(orphan)
        assert all_raw(s, "d", ["k"]) == expect
        assert s.latest("d") == expect_latest
        assert s.stats("d") == stats
        assert len(expect["k"]) == 40 and expect["k"][3] == (JAN + 3 * DAY, V.LONG, 333)
        s.compact(before_ts=FAR)
        assert all_raw(s, "d", ["k"]) == expect


def test_file_count_is_bounded(tmp_path):
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        pts = []
        for dev in range(400):
            for key in range(5):  # 2,000 series
                for day in range(0, 90, 3):  # ~3 months
                    pts.append((f"device-{dev:04d}", f"key{key}", JAN + day * DAY + dev, V.DOUBLE, float(day)))
        s.write_points(pts)
        st = s.compact(before_ts=FAR)
        assert st["partitions"] == 3 and st["rows_written"] == len(pts)
        assert s.stats()["series"] == 2000
        assert s.query_agg("device-0399", ["key4"], JAN, APR, "COUNT", 90 * DAY)["key4"][0][2] == 30
    n_files = sum(len(files) for _, _, files in os.walk(tmp_path / "data"))
    # one SQLite file (+ WAL/SHM/lock) and a handful of files per month partition
    assert n_files < 60, n_files


def test_delete_hot_and_cold_with_tombstones(store):
    store.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(10)])
    store.compact(before_ts=FAR)  # all ten points in cold
    store.write_points([("d", "k", JAN + 20 * DAY, V.LONG, 20)])  # one hot point
    n = store.delete("d", ["k"], JAN + 2 * DAY, JAN + 5 * DAY, delete_latest=False)
    assert n == 3
    assert [p[2] for p in all_raw(store, "d", ["k"])["k"]] == [0, 1, 5, 6, 7, 8, 9, 20]
    # a point written after the delete into the deleted range is not hidden by the tombstone
    store.write_points([("d", "k", JAN + 3 * DAY, V.LONG, 333)])
    assert [p[2] for p in all_raw(store, "d", ["k"])["k"]] == [0, 1, 333, 5, 6, 7, 8, 9, 20]
    assert store.query_agg("d", ["k"], JAN, FEB, "COUNT", 31 * DAY)["k"][0][2] == 9
    # deleting the hot point
    assert store.delete("d", ["k"], JAN + 20 * DAY, JAN + 21 * DAY, delete_latest=False) == 1
    st = store.compact(before_ts=FAR)  # applies and drops the tombstone
    assert st["tombstones_applied"] == 1
    assert [p[2] for p in all_raw(store, "d", ["k"])["k"]] == [0, 1, 333, 5, 6, 7, 8, 9]
    assert manifest(store)["2024-01"] == (2, 8)
    # a later rewrite must not resurrect or hide anything
    store.write_points([("d", "k", JAN + 4 * DAY, V.LONG, 444)])
    store.compact(before_ts=FAR)
    assert [p[2] for p in all_raw(store, "d", ["k"])["k"]] == [0, 1, 333, 444, 5, 6, 7, 8, 9]


def test_delete_latest_and_rewrite_latest(store):
    store.write_points(
        [("d", "a", JAN + i, V.LONG, i) for i in range(5)]
        + [("d", "b", JAN + i, V.LONG, i) for i in range(5)]
        + [("d", "c", JAN + i, V.LONG, i) for i in range(5)]
    )
    store.compact(before_ts=FAR)
    store.write_points([("d", "a", JAN + 5, V.LONG, 5), ("d", "b", JAN + 5, V.LONG, 5), ("d", "c", JAN + 5, V.LONG, 5)])
    # latest not in range: untouched
    store.delete("d", ["a"], JAN, JAN + 2)
    assert store.latest("d")["a"] == (JAN + 5, V.LONG, 5)
    # delete_latest (default): latest removed, key still listed because data remains
    assert store.delete("d", ["a"], JAN + 4, JAN + 6) == 2
    assert "a" not in store.latest("d")
    assert "a" in store.keys("d")
    # rewrite_latest_if_deleted: newest remaining point (in cold) becomes latest
    assert store.delete("d", ["b"], JAN + 3, JAN + 100, rewrite_latest_if_deleted=True) == 3
    assert store.latest("d")["b"] == (JAN + 2, V.LONG, 2)
    # delete_latest=False keeps the latest value even though its point is gone
    store.delete("d", ["c"], JAN, JAN + 100, delete_latest=False)
    assert store.latest("d")["c"] == (JAN + 5, V.LONG, 5)
    assert store.query_raw("d", ["c"], 0, FAR) == {}
    assert "c" in store.keys("d")
    # all data and the latest value gone: the key disappears
    store.delete("d", ["a"], 0, FAR)
    assert "a" not in store.keys("d")
    assert store.stats("d")["series"] == 3


def test_delete_entity(store):
    store.write_points(
        [("gone", k, JAN + i * DAY, V.DOUBLE, 1.0) for k in ("x", "y") for i in range(40)]
        + [("kept", "x", JAN + i * DAY, V.DOUBLE, 2.0) for i in range(40)]
    )
    store.compact(before_ts=MAR - 1)  # January cold, February hot
    assert store.stats("gone")["points"] == 80
    before_total = store.stats()["points"]
    store.delete_entity("gone")
    assert store.keys("gone") == []
    assert store.latest("gone") == {}
    assert all_raw(store, "gone", ["x", "y"]) == {}
    assert store.stats("gone") == {"points": 0, "series": 0, "last_ts": None}
    assert store.stats()["points"] == before_total - 80
    assert len(all_raw(store, "kept", ["x"])["x"]) == 40
    store.compact(before_ts=FAR)  # the January partition is rewritten without the entity
    assert manifest(store)["2024-01"][1] == 31
    # the same names can be used again and show only the new data
    store.write_points([("gone", "x", JAN + 5, V.LONG, 7)])
    assert all_raw(store, "gone", ["x"]) == {"x": [(JAN + 5, V.LONG, 7)]}
    store.compact(before_ts=FAR)
    assert all_raw(store, "gone", ["x"]) == {"x": [(JAN + 5, V.LONG, 7)]}
    assert len(all_raw(store, "kept", ["x"])["x"]) == 40


def test_listener_receives_committed_points(store):
    got = []
    bad_calls = []

    def listener(points):
        got.extend(points)

    def broken(points):
        bad_calls.append(len(points))
        raise RuntimeError("listener bug")

    store.committed.connect(broken)
    store.committed.connect(listener)
    pts = [("d", "k", JAN + i, V.LONG, i) for i in range(3)]
    assert store.write_points(pts) == 3
    assert got == pts and bad_calls == [3]  # the broken listener did not break the write
    store.committed.disconnect(listener)
    store.write_points([("d", "k", JAN + 9, V.LONG, 9)])
    assert len(got) == 3
    assert len(all_raw(store, "d", ["k"])["k"]) == 4


def test_invalid_points_raise_before_anything_is_queued(store):
    good = ("d", "k", JAN, V.LONG, 1)
    bad = [
        ("d", "k", JAN, V.LONG, object()),
        ("d", "k", JAN, V.LONG, 2**63),
        ("d", "k", JAN, V.DOUBLE, float("nan")),
        ("d", "k", JAN, V.BOOL, "yes"),
        ("d", "k", JAN, V.STR, 5),
        ("d", "k", JAN, 9, 1),
        ("d", "", JAN, V.LONG, 1),
        ("", "k", JAN, V.LONG, 1),
        ("d", "k", -1, V.LONG, 1),
        ("d", "k", "soon", V.LONG, 1),
        ("d", "k", JAN, V.STR, "\ud800"),
        ("d", "k", JAN),
    ]
    for p in bad:
        with pytest.raises(ValueError):
            store.submit([good, p])
    assert store.query_raw("d", ["k"], 0, FAR) == {}
    assert store.stats()["points"] == 0
    assert store.submit([]).result() == 0


def test_failed_transaction_fails_all_its_futures_and_stores_nothing(tmp_path):
    path = tmp_path / "data"
    with open_store(path, compaction_interval_s=0, busy_timeout_ms=300) as s:
        s.write_points([("d", "k", JAN, V.LONG, 0)])
        blocker = sqlite3.connect(os.path.join(s.path, "telemetry.sqlite"), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            futs = [s.submit([("d", "k", JAN + i, V.LONG, i), ("d", "new", JAN + i, V.STR, "x")]) for i in range(1, 4)]
            errors = []
            for f in futs:
                with pytest.raises(sqlite3.OperationalError) as ei:
                    f.result(timeout=30)
                errors.append(str(ei.value))
            assert all("locked" in e for e in errors)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert all_raw(s, "d", ["k", "new"]) == {"k": [(JAN, V.LONG, 0)]}
        assert s.keys("d") == ["k"]
        assert s.stats() == {"points": 1, "series": 1, "entities": 1}
        # the writer keeps working afterwards, and a series id of the failed batch is not lost
        assert s.write_points([("d", "new", JAN + 7, V.STR, "y")]) == 1
        assert all_raw(s, "d", ["new"]) == {"new": [(JAN + 7, V.STR, "y")]}


def test_closed_store_refuses_work(tmp_path):
    s = open_store(tmp_path / "data", compaction_interval_s=0)
    s.write_points([("d", "k", JAN, V.LONG, 1)])
    s.close()
    s.close()  # idempotent
    with pytest.raises(RuntimeError):
        s.submit([("d", "k", JAN, V.LONG, 1)])
    with pytest.raises(RuntimeError):
        s.query_raw("d", ["k"], 0, FAR)


def test_group_commit_many_concurrent_submitters(store):
    futures = []

    def producer(p):
        for b in range(20):
            futures.append(store.submit([(f"dev{p}", "k", JAN + b * 100 + i, V.LONG, b * 100 + i) for i in range(100)]))

    threads = [threading.Thread(target=producer, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(f.result() for f in futures) == 8000
    for p in range(4):
        got = all_raw(store, f"dev{p}", ["k"])["k"]
        assert [v for _, _, v in got] == list(range(2000))
    assert store.stats() == {"points": 8000, "series": 4, "entities": 4}
    assert store.stats("dev1")["last_ts"] == JAN + 1999


def test_compaction_concurrent_with_late_writes_and_deletes(tmp_path):
    """Late writes, overrides and deletes racing the compactor never lose or duplicate points."""
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        expected: dict[int, int] = {}
        pts = [("d", "k", JAN + i * 60_000, V.LONG, i) for i in range(20_000)]  # ~2 weeks
        s.write_points(pts)
        expected.update({JAN + i * 60_000: i for i in range(20_000)})
        stop = threading.Event()
        errors = []

        def compactor():
            try:
                while not stop.is_set():
                    s.compact(before_ts=FAR)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        th = threading.Thread(target=compactor)
        th.start()
        rng = np.random.default_rng(3)
        try:
            for round_ in range(60):
                idx = rng.integers(0, 20_000, 50)
                batch = [("d", "k", JAN + int(i) * 60_000, V.LONG, 100_000 + round_) for i in idx]
                s.write_points(batch)
                for _, _, ts, _, v in batch:
                    expected[ts] = v
                if round_ % 10 == 5:
                    a = JAN + int(rng.integers(0, 19_000)) * 60_000
                    s.delete("d", ["k"], a, a + 30 * 60_000, delete_latest=False)
                    for ts in [t for t in expected if a <= t < a + 30 * 60_000]:
                        del expected[ts]
                time.sleep(0.005)
        finally:
            stop.set()
            th.join()
        assert not errors
        s.compact(before_ts=FAR)
        got = all_raw(s, "d", ["k"])["k"]
        assert [(ts, v) for ts, _, v in got] == sorted(expected.items())


def test_query_errors_say_what_is_wrong(store):
    store.write_points([("d", "k", JAN, V.LONG, 1)])
    with pytest.raises(QueryError, match="startTs must be less than endTs"):
        store.query_agg("d", ["k"], JAN, JAN, "AVG", 1000)
    with pytest.raises(QueryError, match="interval"):
        store.query_agg("d", ["k"], JAN, JAN + 10, "AVG", 0)
    with pytest.raises(QueryError, match="agg"):
        store.query_agg("d", ["k"], JAN, JAN + 10, "MEDIAN", 1)
    with pytest.raises(QueryError, match="raw"):
        store.query_agg("d", ["k"], JAN, JAN + 10, "NONE", 1)
    with pytest.raises(QueryError, match="intervalType"):
        store.query_agg("d", ["k"], JAN, JAN + 10, "AVG", 1, "FORTNIGHT")
    with pytest.raises(QueryError, match="time zone"):
        store.query_agg("d", ["k"], JAN, JAN + 10, "AVG", None, "WEEK", "Mars/Olympus")
    with pytest.raises(QueryError, match=str(MAX_BUCKETS)) as ei:
        store.query_agg("d", ["k"], JAN, JAN + MAX_BUCKETS + 1, "AVG", 1)
    assert "100001 buckets" in str(ei.value)


def test_stats_counts_points_series_and_last_ts(store):
    assert store.stats() == {"points": 0, "series": 0, "entities": 0}
    store.write_points([("a", "x", JAN + i, V.LONG, i) for i in range(10)] + [("b", "y", JAN + 50, V.DOUBLE, 1.0)])
    assert store.stats() == {"points": 11, "series": 2, "entities": 2}
    assert store.stats("a") == {"points": 10, "series": 1, "last_ts": JAN + 9}
    store.compact(before_ts=FAR)
    assert store.stats()["points"] == 11
    store.delete("a", ["x"], JAN, JAN + 5)
    assert store.stats("a")["points"] == 5
    assert store.stats("unknown") == {"points": 0, "series": 0, "last_ts": None}


def test_two_store_instances_share_a_directory(tmp_path):
    """A second TelemetryStore on the same directory (like a notebook next to the server) reads
    correct answers while the first one keeps switching cold generations under it (and so
    does the first one, whose own readers hold back the removal of a retired generation)."""
    path = tmp_path / "data"
    a = open_store(path, compaction_interval_s=0)
    b = None
    try:
        a.write_points([("d", "k", JAN + i * 60_000, V.LONG, 1) for i in range(20_000)])
        a.compact(before_ts=FAR)
        b = open_store(path, compaction_interval_s=0)
        stop = threading.Event()
        switches = []

        def churn():  # late rewrites of existing points, each followed by a new generation
            i = 0
            while not stop.is_set():
                a.write_points([("d", "k", JAN + (i % 20_000) * 60_000, V.LONG, 1)])
                switches.append(a.compact(before_ts=FAR)["partitions"])
                i += 7

        th = threading.Thread(target=churn)
        th.start()
        answers = []
        try:
            t_end = time.monotonic() + 2.0
            while time.monotonic() < t_end:
                for s in (a, b):  # the compacting instance itself, and the other one
                    s.cold.forget_all()  # read from disk every time: widen the race window
                    answers.append(s.query_agg("d", ["k"], JAN, FAR, "SUM", None)["k"][0][2])
        finally:
            stop.set()
            th.join()
        assert sum(switches) >= 2, "no generation switch happened during the reads"
        assert set(answers) == {20_000}
        assert b.keys("d") == ["k"]
        # a new series written by one instance is visible to the other
        a.write_points([("d", "other", JAN, V.STR, "x")])
        assert b.query_raw("d", ["other"], 0, FAR) == {"other": [(JAN, V.STR, "x")]}
    finally:
        a.close()
        if b is not None:
            b.close()


def test_cold_tier_at_an_fsspec_url(tmp_path):
    pytest.importorskip("fsspec")
    url = f"memory://tbpanel-test-{os.getpid()}-{time.time_ns()}/cold"
    with open_store(tmp_path / "data", cold_url=url, compaction_interval_s=0) as s:
        s.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(40)] + [("d", "s", JAN, V.JSON, '{"x":1}')])
        assert s.compact(before_ts=FAR)["partitions"] == 2
        assert not os.path.exists(os.path.join(s.path, "cold"))
        s.write_points([("d", "k", JAN + 1, V.LONG, 99)])
        s.compact(before_ts=FAR)
        assert s.cold.list_generations() == [("2024-01", 2), ("2024-02", 1)]
        expect = all_raw(s, "d", ["k", "s"])
    with open_store(tmp_path / "data", cold_url=url, compaction_interval_s=0) as s:
        assert all_raw(s, "d", ["k", "s"]) == expect
        assert len(expect["k"]) == 41 and expect["s"] == [(JAN, V.JSON, '{"x":1}')]


def test_open_store_at_a_url_keeps_history_there(tmp_path, monkeypatch):
    """``open_store(url)``: history (cold tier) at the URL, recent writes in a local cache."""
    pytest.importorskip("fsspec")
    monkeypatch.setenv("TBPANEL_CACHE", str(tmp_path / "cache"))
    url = f"memory://tbpanel-url-{os.getpid()}-{time.time_ns()}/fleet"
    with open_store(url, compaction_interval_s=0) as s:
        assert s.path.startswith(str(tmp_path / "cache"))
        s.write_points([("d", "k", JAN + i * DAY, V.LONG, i) for i in range(40)])
        assert s.compact(before_ts=FAR)["partitions"] == 2
        expect = all_raw(s, "d", ["k"])
    import fsspec

    assert fsspec.filesystem("memory").exists(url.split("://", 1)[1] + "/cold")
    with open_store(url, compaction_interval_s=0) as s:
        assert all_raw(s, "d", ["k"]) == expect and len(expect["k"]) == 40
    with open_store(f"file://{tmp_path / 'local'}", compaction_interval_s=0) as s:
        assert s.path == str(tmp_path / "local")
