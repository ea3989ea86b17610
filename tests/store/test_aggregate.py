"""Aggregation and bucketing: hypothesis properties against a naive reference, calendar edges.

The reference implementation below is deliberately plain Python (a loop over buckets and
points); the store's implementation is numpy searchsorted + reduceat over both tiers.
"""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.store import MAX_BUCKETS, QueryError, ValueType, open_store
from tbpanel.store.buckets import bucket_edges, bucket_midpoints

V = ValueType
HOUR = 3_600_000
DAY = 24 * HOUR
BASE = 1_704_067_200_000  # 2024-01-01T00:00Z
FAR = 4_102_444_800_000


def utc(s: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=UTC).timestamp() * 1000)


def local(s: str, tz: str) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz)).timestamp() * 1000)


# --- the naive reference -------------------------------------------------------------------


def ref_edges_ms(start: int, end: int, interval: int) -> list[int]:
    edges = []
    k = 0
    while start + k * interval < end:
        edges.append(start + k * interval)
        k += 1
    return edges + [end]


def ref_aggregate(points: dict[int, tuple[int, object]], edges: list[int], agg: str):
    out = []
    items = sorted(points.items())
    for a, b in zip(edges[:-1], edges[1:]):
        mid = a + (b - a) // 2
        vals = [(t, v) for ts, (t, v) in items if a <= ts < b]
        nums = [(t, v) for t, v in vals if t in (V.LONG, V.DOUBLE)]
        strs = [v for t, v in vals if t == V.STR]
        all_long = all(t == V.LONG for t, _ in nums)
        if agg == "COUNT":
            if vals:
                out.append((mid, V.LONG, len(vals)))
        elif agg == "AVG":
            if nums:
                out.append((mid, V.DOUBLE, sum(float(v) for _, v in nums) / len(nums)))
        elif agg == "SUM":
            if nums:
                if all_long:
                    s = sum(v for _, v in nums)
                    out.append((mid, V.LONG, s) if -(2**63) <= s < 2**63 else (mid, V.DOUBLE, float(s)))
                else:
                    out.append((mid, V.DOUBLE, sum(float(v) for _, v in nums)))
        else:
            pick = min if agg == "MIN" else max
            if nums:
                if all_long:
                    out.append((mid, V.LONG, pick(v for _, v in nums)))
                else:
                    out.append((mid, V.DOUBLE, pick(float(v) for _, v in nums)))
            elif strs:
                out.append((mid, V.STR, pick(strs)))
    return out


def assert_same(got, want):
    assert len(got) == len(want), (got, want)
    for g, w in zip(got, want):
        assert g[0] == w[0] and int(g[1]) == int(w[1]), (g, w)
        assert type(g[2]) is type(w[2]), (g, w)
        if isinstance(w[2], float):
            assert math.isclose(g[2], w[2], rel_tol=1e-9, abs_tol=1e-9), (g, w)
        else:
            assert g[2] == w[2], (g, w)


# --- strategies ----------------------------------------------------------------------------

SLOT = 13 * HOUR  # 200 slots of 13 h ≈ 108 days: several UTC months, frequent duplicates

values = st.one_of(
    st.tuples(st.just(V.LONG), st.integers(-1000, 1000)),
    st.tuples(st.just(V.LONG), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just(V.DOUBLE), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)),
    st.tuples(st.just(V.BOOL), st.booleans()),
    st.tuples(st.just(V.STR), st.text(alphabet="abcXYZ09 é", max_size=4)),
    st.tuples(st.just(V.JSON), st.sampled_from(['{"a":1}', "[1,2]", '"s"'])),
)
point = st.tuples(st.integers(0, 200).map(lambda i: BASE + i * SLOT), values)
CUTOFFS = {"jan": utc("2024-02-01T00:00"), "feb": utc("2024-03-01T00:00"), "all": FAR}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    start_slot=st.integers(-5, 205),
    span=st.integers(1, 210 * SLOT),
    interval=st.one_of(st.integers(1, 60).map(lambda h: h * HOUR), st.integers(1, 10**9)),
    limit=st.integers(1, 40),
)
def test_aggregates_match_naive_reference(data, start_slot, span, interval, limit):
    """Batches of random points; between batches some months are compacted to cold and a
    range may be deleted; later batches rewrite some earlier timestamps (hot overriding cold,
    last write wins) and may write into deleted ranges (not hidden by the tombstones)."""
    with tempfile.TemporaryDirectory() as d:
        # synchronous=OFF: this test is about answers, not durability (no fsyncs: faster)
        with open_store(d, compaction_interval_s=0, synchronous="OFF") as s:
            expected: dict[int, tuple[int, object]] = {}
            for b in range(data.draw(st.integers(1, 4), label="batches")):
                pts = data.draw(st.lists(point, min_size=1, max_size=30), label="points")
                if expected:
                    pts += data.draw(
                        st.lists(st.tuples(st.sampled_from(sorted(expected)), values), max_size=10), label="rewrites"
                    )
                compaction = data.draw(st.sampled_from(["none", "jan", "feb", "all"]), label="compact")
                s.write_points([("dev", "k", ts, vt, v) for ts, (vt, v) in pts])
                for ts, (vt, v) in pts:
                    expected[ts] = (vt, v)  # last write wins, also within a batch
                if compaction != "none":
                    s.compact(before_ts=CUTOFFS[compaction])
                rng = data.draw(st.none() | st.tuples(st.integers(0, 200), st.integers(1, 40)), label="delete")
                if rng is not None:  # delete a range: hot rows go, cold ones get a tombstone
                    a, b = BASE + rng[0] * SLOT, BASE + (rng[0] + rng[1]) * SLOT
                    gone = [ts for ts in expected if a <= ts < b]
                    assert s.delete("dev", ["k"], a, b) == len(gone)
                    for ts in gone:
                        del expected[ts]
            start = BASE + start_slot * SLOT - 7
            end = start + span
            n_buckets = -(-span // interval)
            edges = ref_edges_ms(start, end, interval) if n_buckets <= MAX_BUCKETS else None
            for agg in ("MIN", "MAX", "AVG", "SUM", "COUNT"):
                if edges is None:
                    with pytest.raises(QueryError, match=str(MAX_BUCKETS)):
                        s.query_agg("dev", ["k"], start, end, agg, interval)
                    continue
                got = s.query_agg("dev", ["k"], start, end, agg, interval).get("k", [])
                assert_same(got, ref_aggregate(expected, edges, agg))
            in_range = sorted((ts, tv) for ts, tv in expected.items() if start <= ts < end)
            want = [(ts, vt, v) for ts, (vt, v) in in_range]
            got = s.query_raw("dev", ["k"], start, end, limit=limit, order="DESC").get("k", [])
            assert [(a, int(b), c) for a, b, c in got] == want[::-1][:limit]
            got = s.query_raw("dev", ["k"], start, end, limit=limit, order="ASC").get("k", [])
            assert [(a, int(b), c) for a, b, c in got] == want[:limit]


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(BASE - 400 * DAY, BASE + 400 * DAY),
    span=st.integers(1, 200 * DAY),
    interval_type=st.sampled_from(["WEEK", "WEEK_ISO", "MONTH", "QUARTER"]),
    tz=st.sampled_from(
        ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "America/Santiago", "Asia/Kolkata"]
    ),
)
def test_calendar_edges_match_day_by_day_reference(start, span, interval_type, tz):
    end = start + span
    zone = ZoneInfo(tz)
    edges = bucket_edges(start, end, None, interval_type, tz).tolist()
    # reference: walk local dates one by one, keep the period starts strictly inside the range
    d = datetime.fromtimestamp(start / 1000, zone).date()
    last = datetime.fromtimestamp(end / 1000, zone).date()
    want = [start]
    while d <= last:
        d += timedelta(days=1)
        is_start = {
            "WEEK": d.weekday() == 6,
            "WEEK_ISO": d.weekday() == 0,
            "MONTH": d.day == 1,
            "QUARTER": d.day == 1 and d.month in (1, 4, 7, 10),
        }[interval_type]
        if is_start:
            b = int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() * 1000)
            if start < b < end:
                want.append(b)
    want.append(end)
    assert edges == want


def test_calendar_month_across_march_dst_berlin():
    tz = "Europe/Berlin"
    start = local("2024-03-10T12:00", tz)
    end = local("2024-05-02T00:00", tz)
    edges = bucket_edges(start, end, None, "MONTH", tz).tolist()
    assert edges == [start, utc("2024-03-31T22:00"), utc("2024-04-30T22:00"), end]
    # the whole of March local time is 31 days minus the hour skipped on March 31
    march = bucket_edges(local("2024-03-01T00:00", tz), local("2024-04-01T00:00", tz), None, "MONTH", tz)
    assert march.tolist() == [utc("2024-02-29T23:00"), utc("2024-03-31T22:00")]
    assert int(march[1] - march[0]) == 31 * DAY - HOUR


def test_calendar_week_across_march_dst_new_york():
    tz = "America/New_York"
    edges = bucket_edges(utc("2024-03-01T05:00"), utc("2024-03-20T04:00"), None, "WEEK", tz).tolist()
    # Sundays Mar 3 and Mar 10 at midnight EST (UTC-5), Mar 17 at midnight EDT (UTC-4)
    assert edges == [
        utc("2024-03-01T05:00"),
        utc("2024-03-03T05:00"),
        utc("2024-03-10T05:00"),
        utc("2024-03-17T04:00"),
        utc("2024-03-20T04:00"),
    ]
    assert edges[3] - edges[2] == 7 * DAY - HOUR


def test_calendar_week_iso_across_october_dst_berlin():
    tz = "Europe/Berlin"
    edges = bucket_edges(utc("2024-10-23T10:00"), utc("2024-11-06T00:00"), None, "WEEK_ISO", tz).tolist()
    # Mondays Oct 28 at midnight CET (UTC+1, clocks went back on Oct 27) and Nov 4
    assert edges == [utc("2024-10-23T10:00"), utc("2024-10-27T23:00"), utc("2024-11-03T23:00"), utc("2024-11-06T00:00")]
    full = bucket_edges(utc("2024-10-20T22:00"), utc("2024-10-27T23:00"), None, "WEEK_ISO", tz).tolist()
    assert full == [utc("2024-10-20T22:00"), utc("2024-10-27T23:00")]
    assert full[1] - full[0] == 7 * DAY + HOUR


def test_calendar_quarter_new_york():
    tz = "America/New_York"
    edges = bucket_edges(utc("2024-02-15T00:00"), utc("2024-11-15T00:00"), None, "QUARTER", tz).tolist()
    assert edges == [
        utc("2024-02-15T00:00"),
        utc("2024-04-01T04:00"),
        utc("2024-07-01T04:00"),
        utc("2024-10-01T04:00"),
        utc("2024-11-15T00:00"),
    ]


def test_store_month_buckets_in_berlin_count_local_hours(tmp_path):
    tz = "Europe/Berlin"
    start, end = local("2024-03-01T00:00", tz), local("2024-05-01T00:00", tz)
    with open_store(tmp_path / "d", compaction_interval_s=0) as s:
        s.write_points([("dev", "h", t, V.LONG, 1) for t in range(start, end, HOUR)])
        s.compact(before_ts=utc("2024-04-01T00:00"))  # March cold, April hot
        got = s.query_agg("dev", ["h"], start, end, "COUNT", None, "MONTH", tz)["h"]
        a, b, c = start, utc("2024-03-31T22:00"), end
        assert got == [(a + (b - a) // 2, V.LONG, 31 * 24 - 1), (b + (c - b) // 2, V.LONG, 30 * 24)]
        got = s.query_agg("dev", ["h"], start, end, "SUM", None, "WEEK_ISO", tz)["h"]
        assert sum(v for _, _, v in got) == 61 * 24 - 1


def test_bucket_midpoints_and_last_bucket_clipped():
    edges = bucket_edges(0, 25, 10)
    assert edges.tolist() == [0, 10, 20, 25]
    assert bucket_midpoints(edges).tolist() == [5, 15, 22]
    assert bucket_edges(0, 3, 1000).tolist() == [0, 3]
    assert bucket_midpoints(bucket_edges(0, 3, 1000)).tolist() == [1]


def test_bucket_cap_message_states_the_cap():
    with pytest.raises(QueryError) as ei:
        bucket_edges(0, 123_456, 1)
    msg = str(ei.value)
    assert "123456 buckets" in msg and "100000" in msg
    assert len(bucket_edges(0, MAX_BUCKETS, 1)) == MAX_BUCKETS + 1
    with pytest.raises(QueryError, match="100000"):
        bucket_edges(0, 110_000 * 7 * DAY, None, "WEEK", "UTC")


def test_string_min_max_and_type_rules(tmp_path):
    with open_store(tmp_path / "d", compaction_interval_s=0) as s:
        s.write_points(
            [
                # bucket 0: strings only -> lexicographic (code point) min/max
                ("d", "k", 1, V.STR, "banana"),
                ("d", "k", 2, V.STR, "Zebra"),
                ("d", "k", 3, V.STR, "apple"),
                # bucket 1: strings and numbers -> numbers win
                ("d", "k", 11, V.STR, "zzz"),
                ("d", "k", 12, V.LONG, 5),
                ("d", "k", 13, V.DOUBLE, 2.5),
                # bucket 2: bools and JSON only -> nothing for MIN/MAX/AVG/SUM, counted by COUNT
                ("d", "k", 21, V.BOOL, True),
                ("d", "k", 22, V.JSON, '{"a":1}'),
                # bucket 3: longs only, big enough that a float sum would be inexact
                ("d", "k", 31, V.LONG, 2**61 + 1),
                ("d", "k", 32, V.LONG, 2**61 + 3),
                ("d", "k", 33, V.BOOL, False),
                # bucket 4: long sum overflowing 64 bits -> DOUBLE
                ("d", "k", 41, V.LONG, 2**62),
                ("d", "k", 42, V.LONG, 2**62),
            ]
        )
        q = lambda agg: s.query_agg("d", ["k"], 0, 50, agg, 10)["k"]  # noqa: E731
        assert q("MIN") == [(5, V.STR, "Zebra"), (15, V.DOUBLE, 2.5), (35, V.LONG, 2**61 + 1), (45, V.LONG, 2**62)]
        assert q("MAX") == [(5, V.STR, "banana"), (15, V.DOUBLE, 5.0), (35, V.LONG, 2**61 + 3), (45, V.LONG, 2**62)]
        assert q("SUM") == [(15, V.DOUBLE, 7.5), (35, V.LONG, 2**62 + 4), (45, V.DOUBLE, float(2**63))]
        assert q("AVG") == [(15, V.DOUBLE, 3.75), (35, V.DOUBLE, float(2**61 + 2)), (45, V.DOUBLE, float(2**62))]
        assert q("COUNT") == [(5, V.LONG, 3), (15, V.LONG, 3), (25, V.LONG, 2), (35, V.LONG, 3), (45, V.LONG, 2)]
        s.compact(before_ts=FAR)  # same answers from the cold tier
        assert q("MIN")[0] == (5, V.STR, "Zebra")
        assert q("SUM")[1] == (35, V.LONG, 2**62 + 4)
        # a key whose buckets hold only bools has no AVG at all: the key is absent
        s.write_points([("d", "b", 5, V.BOOL, True)])
        assert s.query_agg("d", ["b"], 0, 50, "AVG", 10) == {}
        assert s.query_agg("d", ["b"], 0, 50, "COUNT", 10) == {"b": [(5, V.LONG, 1)]}


def test_sum_of_longs_is_long_mixed_is_double(tmp_path):
    with open_store(tmp_path / "d", compaction_interval_s=0) as s:
        s.write_points(
            [("d", "l", i, V.LONG, i) for i in range(10)]
            + [("d", "m", i, V.LONG if i % 2 else V.DOUBLE, i) for i in range(10)]
        )
        assert s.query_agg("d", ["l", "m"], 0, 10, "SUM", 5) == {
            "l": [(2, V.LONG, 10), (7, V.LONG, 35)],
            "m": [(2, V.DOUBLE, 10.0), (7, V.DOUBLE, 35.0)],
        }
        assert s.query_agg("d", ["l"], 0, 10, "SUM") == {"l": [(5, V.LONG, 45)]}  # one bucket
