"""``store.submit_async``: asyncio acknowledgements after COMMIT, one loop wake-up per group.

Real store files in ``tmp_path``; the loop is a real asyncio loop; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading

import pytest

from tbpanel.store import ValueType, open_store
from tbpanel.store.acks import LoopAcks, loop_acks

V = ValueType
JAN = 1_704_067_200_000
FAR = 4_102_444_800_000


def test_submit_async_resolves_after_the_points_are_committed(store, tmp_path):
    async def main():
        n = await store.submit_async([("d", "k", JAN + i, V.LONG, i) for i in range(5)])
        # another connection (not this store's caches) sees them: they are committed
        con = sqlite3.connect(os.path.join(store.path, "telemetry.sqlite"))
        try:
            rows = con.execute("SELECT count(*) FROM hot").fetchone()[0]
        finally:
            con.close()
        return n, rows

    assert asyncio.run(main()) == (5, 5)
    assert [v for _, _, v in store.query_raw("d", ["k"], 0, FAR, limit=10, order="ASC")["k"]] == list(range(5))


def test_many_concurrent_submitters_all_get_their_acknowledgement(store):
    async def main():
        counts = await asyncio.gather(
            *(
                store.submit_async([(f"dev{c}", "k", JAN + i, V.DOUBLE, float(i)) for i in range(10)])
                for c in range(200)
            )
        )
        assert await store.submit_async([]) == 0
        return counts

    assert asyncio.run(main()) == [10] * 200
    assert store.stats() == {"points": 2000, "series": 200, "entities": 200}


def test_acknowledgements_queued_meanwhile_share_one_wake_up_of_the_loop():
    wakeups = []

    class CountingAcks(LoopAcks):
        def _resolve(self):
            wakeups.append(1)
            super()._resolve()

    async def main():
        acks = CountingAcks(asyncio.get_running_loop())
        waiters = [acks.waiter() for _ in range(50)]
        # a "writer" thread acknowledges all 50 while the loop is busy (this coroutine blocks it)
        writer = threading.Thread(target=lambda: [done(i, None) for i, (_, done) in enumerate(waiters)])
        writer.start()
        writer.join()
        assert await asyncio.gather(*(fut for fut, _ in waiters)) == list(range(50))
        failed, done = acks.waiter()
        done(0, OSError("disk full"))
        with pytest.raises(OSError):
            await failed

    asyncio.run(main())
    assert len(wakeups) == 2


def test_invalid_points_raise_at_once_and_failures_reach_the_awaiter(tmp_path):
    async def main(s):
        with pytest.raises(ValueError):
            s.submit_async([("d", "k", "not a ts", V.LONG, 1)])
        blocker = sqlite3.connect(os.path.join(s.path, "telemetry.sqlite"), isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database: the commit fails
        try:
            with pytest.raises(sqlite3.OperationalError):
                await asyncio.wait_for(s.submit_async([("d", "k", JAN, V.LONG, 1)]), 30)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        return await s.submit_async([("d", "k", JAN + 1, V.LONG, 2)])

    with open_store(tmp_path / "data", compaction_interval_s=0, busy_timeout_ms=300) as s:
        assert asyncio.run(main(s)) == 1
        assert s.query_raw("d", ["k"], 0, FAR)["k"] == [(JAN + 1, V.LONG, 2)]


def test_a_cancelled_awaiter_does_not_break_the_others(store):
    async def main():
        gone = store.submit_async([("d", "a", JAN, V.LONG, 1)])
        gone.cancel()  # the client disconnected; the points are still written
        kept = await store.submit_async([("d", "b", JAN, V.LONG, 2)])
        assert loop_acks() is loop_acks()
        return kept

    assert asyncio.run(main()) == 1
    assert set(store.latest("d")) == {"a", "b"}


def test_closed_store_refuses_submit_async(tmp_path):
    s = open_store(tmp_path / "data", compaction_interval_s=0)
    s.close()

    async def main():
        with pytest.raises(RuntimeError):
            s.submit_async([("d", "k", JAN, V.LONG, 1)])

    asyncio.run(main())
