"""The live fan-out in-process: hub, document sink, and the telemetry page's domain objects."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from tornado.ioloop import IOLoop

from tbpanel.entities import EntityRegistry, PermissionDenied
from tbpanel.live import LiveHub
from tbpanel.store import open_store
from tbpanel.ui.live_sink import DocumentSink
from tbpanel.views.telemetry import LiveSeries, TelemetryQuery, bucket_aggregate, minmax_decimate

DOUBLE = 2


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "telemetry", synchronous="OFF", compaction_interval_s=0)
    yield s
    s.close()


def test_hub_delivers_on_its_loop_only_matching_points_in_commit_order(store):
    async def main():
        hub = LiveHub(store, IOLoop.current())
        got, threads = [], set()

        def deliver(points):
            got.extend(points)
            threads.add(threading.get_ident())

        sub = hub.subscribe(["a"], ["t"], deliver, tenant="T1")
        everything = []
        hub.subscribe(["a", "b"], None, everything.extend, tenant="T2", kind="page")
        assert (hub.count(), hub.count("T1"), hub.count(kind="page")) == (2, 1, 1)
        # the store's listener runs before write_points returns, so the dispatch is queued
        # on this loop ahead of the to_thread result: no sleeping needed
        await asyncio.to_thread(
            store.write_points,
            [
                ("a", "t", 1, DOUBLE, 1.0),
                ("a", "h", 1, DOUBLE, 2.0),
                ("b", "t", 1, DOUBLE, 3.0),
                ("c", "t", 1, DOUBLE, 4.0),
            ],
        )
        await asyncio.to_thread(store.write_points, [("a", "t", 2, DOUBLE, 5.0)])
        await asyncio.sleep(0)
        assert got == [("a", "t", 1, DOUBLE, 1.0), ("a", "t", 2, DOUBLE, 5.0)]
        assert threads == {threading.get_ident()}
        assert [p[4] for p in everything] == [1.0, 2.0, 3.0, 5.0]
        assert hub.unsubscribe(sub) and not hub.unsubscribe(sub)
        await asyncio.to_thread(store.write_points, [("a", "t", 3, DOUBLE, 6.0)])
        await asyncio.sleep(0)
        assert len(got) == 2 and hub.count() == 1
        hub.close()

    asyncio.run(main())


def test_a_blocked_loop_does_not_hold_up_ingest(store):
    """The writer thread only queues for the loop: it commits while the loop is stuck."""

    async def main():
        hub = LiveHub(store, IOLoop.current())
        got = []
        hub.subscribe(["a"], None, got.extend)
        written = threading.Event()

        def writer():
            for i in range(20):
                store.write_points([("a", "t", i, DOUBLE, float(i))])
            written.set()

        threading.Thread(target=writer).start()
        assert written.wait(60)  # this blocks the loop: nothing can be delivered meanwhile
        assert got == []
        await asyncio.sleep(0)
        assert [p[2] for p in got] == list(range(20))
        hub.close()

    asyncio.run(main())


def test_concurrent_writers_reach_every_subscriber_exactly_once(store):
    async def main():
        hub = LiveHub(store, IOLoop.current())
        one, two = [], []
        hub.subscribe(["a"], None, one.extend)
        hub.subscribe(["a"], ["k0", "k1"], two.extend)

        def writer(n):
            for i in range(200):
                store.submit([("a", f"k{n}", i, DOUBLE, float(i))]).result()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]

        def run_all():
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        await asyncio.to_thread(run_all)
        await asyncio.sleep(0)
        assert sorted((p[1], p[2]) for p in one) == sorted((f"k{n}", i) for n in range(4) for i in range(200))
        assert sorted((p[1], p[2]) for p in two) == sorted((f"k{n}", i) for n in range(2) for i in range(200))
        for n in range(4):  # each writer's points arrive in its own order
            assert [p[2] for p in one if p[1] == f"k{n}"] == list(range(200))
        hub.close()

    asyncio.run(main())


class FakeDoc:
    """What a DocumentSink uses of a Bokeh document, with callbacks run by hand."""

    def __init__(self):
        self.session_context = object()
        self.ticks, self.destroyed = [], []

    def add_next_tick_callback(self, cb):
        self.ticks.append(cb)

    def add_timeout_callback(self, cb, ms):
        self.ticks.append(cb)

    def on_session_destroyed(self, cb):
        self.destroyed.append(cb)

    def run(self):
        ticks, self.ticks = self.ticks, []
        for cb in ticks:
            cb()


def test_document_sink_coalesces_bounds_and_ends_with_its_session(store):
    async def main():
        hub = LiveHub(store, IOLoop.current())
        doc, applied = FakeDoc(), []
        sink = DocumentSink(hub, doc, applied.append, max_pending=3)
        sink.follow(["a"])
        for i in range(5):  # the page is busy: five commits before its next tick
            await asyncio.to_thread(store.write_points, [("a", "t", i, DOUBLE, float(i))])
        await asyncio.sleep(0)
        assert len(doc.ticks) == 1, "one pending callback per document, however many commits"
        doc.run()
        assert [[p[2] for p in batch] for batch in applied] == [[2, 3, 4]] and sink.dropped == 2
        sink.follow(["b"])  # switching device replaces the subscription
        assert hub.count() == 1
        for cb in doc.destroyed:  # Bokeh destroys the session
            cb(None)
        assert hub.count() == 0 and not sink.subscribed
        hub.close()

    asyncio.run(main())


# ------------------------------------------------------------------------- page domain
@pytest.fixture
def platform(tmp_path, store):
    reg = EntityRegistry(tmp_path)
    tenant = reg.create_tenant("T")
    c1, c2 = reg.create_customer(tenant.id, "C1"), reg.create_customer(tenant.id, "C2")
    admin = reg.create_user("admin@t.test", "password1", "TENANT_ADMIN", tenant.id)
    cust = reg.create_user("user@c1.test", "password1", "CUSTOMER_USER", tenant.id, c1.id)
    d1 = reg.save_device(tenant.id, "d1", "sensor", customer_id=c1.id)
    d2 = reg.save_device(tenant.id, "d2", "sensor", customer_id=c2.id)
    yield SimpleNamespace(registry=reg, store=store, admin=admin, customer=cust, d1=d1, d2=d2)
    reg.close()


def test_query_sees_only_the_users_devices(platform):
    q = TelemetryQuery(platform, platform.customer)
    assert [d.name for d in q.devices()] == ["d1"]
    q.device = platform.d2.id
    assert q.may_read()[0] is False
    with pytest.raises(PermissionDenied):
        q.load()
    assert [d.name for d in TelemetryQuery(platform, platform.admin).devices()] == ["d1", "d2"]


def test_a_long_range_reaches_the_browser_reduced(platform):
    day = 86_400_000
    start = 1_700_000_000_000 - 1_700_000_000_000 % day
    n = 60 * 24 * 30  # 30 days of 1-minute data
    ts = start + np.arange(n, dtype=np.int64) * 60_000
    y = np.sin(np.arange(n) / 500.0)
    y[12_345] = 50.0  # a spike that decimation must keep
    platform.store.write_points([(platform.d1.id, "t", int(a), DOUBLE, float(b)) for a, b in zip(ts, y)])
    q = TelemetryQuery(
        platform,
        platform.admin,
        device=platform.d1.id,
        keys=["t"],
        window="fixed",
        start=int(start),
        end=int(start + 30 * day),
        max_points=1000,
    )
    snap = q.load()
    s = snap.series["t"]
    assert s.raw_points == n and len(s.ts) <= 1000
    assert s.y.max() == 50.0 and s.y.min() == y.min() and np.all(np.diff(s.ts) > 0)
    q.agg, q.interval = "AVG", 60_000  # 43,200 buckets asked: widened
    snap = q.load()
    assert len(snap.series["t"].ts) <= 1000 and snap.interval >= 30 * day // 1000
    assert any("widened" in note for note in snap.notes)


def test_decimation_and_aggregation_helpers():
    ts = np.array([0, 1, 2, 3, 10, 11, 12], dtype=np.int64)
    y = np.array([5.0, 1.0, 9.0, 4.0, 2.0, 2.0, 7.0])
    dts, dy = minmax_decimate(ts, y, 0, 20, 2)
    assert dts.tolist() == [1, 2, 10, 12] and dy.tolist() == [1.0, 9.0, 2.0, 7.0]
    mid, val, state = bucket_aggregate("AVG", ts, y, 0, 10)
    assert mid.tolist() == [5.0, 15.0] and val.tolist() == [4.75, 11 / 3]
    assert (state.index, state.count, state.vmin, state.vmax, state.vsum) == (1, 3, 2.0, 7.0, 11.0)


def test_live_series_appends_raw_points_and_skips_what_was_read(platform):
    dev = platform.d1.id
    platform.store.write_points([(dev, "t", 1000, DOUBLE, 1.0), (dev, "s", 1000, 3, "x")])
    q = TelemetryQuery(platform, platform.admin, device=dev, keys=["t"], window="fixed", start=0, end=10_000)
    live = LiveSeries(q.load())
    changes, latest = live.apply(
        [
            (dev, "t", 1000, DOUBLE, 1.0),  # already read
            (dev, "t", 2000, DOUBLE, 2.0),
            (dev, "t", 1500, DOUBLE, 9.0),  # late
            (dev, "s", 2000, 3, "y"),
            ("other", "t", 3000, DOUBLE, 3.0),
            (dev, "t", 20_000, DOUBLE, 4.0),
        ]
    )  # outside the fixed range
    assert list(changes) == ["t"] and (changes["t"].ts, changes["t"].y) == ([2000.0], [2.0])
    assert latest == {"t", "s"} and live.snap.latest["t"][0] == 20_000 and live.snap.latest["s"][2] == "y"


def test_live_series_updates_the_open_bucket_then_appends_new_ones(platform):
    dev = platform.d1.id
    platform.store.write_points([(dev, "t", 1000, DOUBLE, 1.0), (dev, "t", 2000, DOUBLE, 3.0)])
    q = TelemetryQuery(
        platform,
        platform.admin,
        device=dev,
        keys=["t"],
        window="fixed",
        start=0,
        end=100_000,
        agg="SUM",
        interval=10_000,
    )
    snap = q.load()
    assert (snap.series["t"].ts.tolist(), snap.series["t"].y.tolist()) == ([5000.0], [4.0])
    live = LiveSeries(snap)
    changes, _ = live.apply([(dev, "t", 3000, DOUBLE, 10.0)])
    assert changes["t"].replace_last == (5000.0, 14.0) and changes["t"].ts == []
    changes, _ = live.apply(
        [(dev, "t", 12_000, DOUBLE, 1.0), (dev, "t", 13_000, DOUBLE, 2.0), (dev, "t", 25_000, DOUBLE, 5.0)]
    )
    assert (changes["t"].ts, changes["t"].y, changes["t"].replace_last) == ([15_000.0, 25_000.0], [3.0, 5.0], None)
