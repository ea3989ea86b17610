"""Deletes: hot rows go at once, cold points are hidden by tombstones until compaction.

A delete of a range first *plans* in one read (:class:`~tbpanel.store.snapshot.Snapshots`):
how many points of each series are visible in the range (the count it returns), whether the
series keeps any point outside it, and — for ``rewrite_latest_if_deleted`` — the newest point
before the range, which becomes the latest value. Then one transaction through the writer
deletes the hot rows, adds a tombstone per cold generation that holds points of the range,
updates ``latest`` and the counters, and bumps the write counter of every month touched, so a
compaction that read one of them before the delete is refused and retried (nothing deleted
comes back).
"""

from __future__ import annotations

import sqlite3

import numpy as np

from ..clock import now_ms
from .cold import ColdTier
from .hot import (
    SQL_BUMP_ALL_MONTHS,
    SQL_BUMP_MONTHS,
    SQL_CLEAR_LATEST,
    SQL_DELETE_BLOCKS_OF_SERIES,
    SQL_DELETE_HOT_OF_SERIES,
    SQL_DELETE_LATEST_OF_SERIES,
    SQL_DELETE_SERIES_OF_ENTITY,
    SQL_DELETE_TOMBSTONES_OF_SERIES,
    SQL_INSERT_TOMBSTONE,
    SQL_LATEST_TS_AND_POINTS,
    SQL_PARTITION_SPANS,
    SQL_PARTITION_SPANS_IN_RANGE,
    SQL_SERIES_OF_ENTITY,
    SQL_SET_LATEST,
    SQL_SET_POINTS,
    bump_latest_version,
    delete_hot_range,
)
from .latest import Latest, LatestValues
from .payload import TS_MAX, TS_MIN
from .series import SeriesIndex
from .snapshot import Snapshots
from .times import month_of
from .writer import Writer

#: per series: (points visible in the range, has points outside it, the new latest value or None)
_Plan = dict[int, tuple[int, bool, Latest | None]]


class Deleter:
    """Deletes ranges and entities of one store (given its reads, writer, index and caches)."""

    def __init__(
        self, snapshots: Snapshots, writer: Writer, series: SeriesIndex, latest: LatestValues, cold: ColdTier
    ) -> None:
        self._snapshots = snapshots
        self._writer = writer
        self._series = series
        self._latest = latest
        self.cold = cold

    def delete(
        self,
        entity: str,
        sids: dict[str, int],
        start: int,
        end: int,
        delete_latest: bool,
        rewrite_latest_if_deleted: bool,
    ) -> int:
        """Delete ``[start, end)`` of the series ``key -> sid`` of ``entity``; returns how many
        points were visible there (see :meth:`TelemetryStore.delete`)."""
        lo, hi = max(start, TS_MIN), min(end, TS_MAX + 1)
        keys_of = {sid: k for k, sid in sids.items()}
        plan = self._snapshots.read(lambda: self._plan(sids, lo, hi, delete_latest and rewrite_latest_if_deleted))

        def fn(conn: sqlite3.Connection) -> tuple[dict[int, tuple[int, int | None]], dict[str, Latest | None], int]:
            parts = conn.execute(SQL_PARTITION_SPANS_IN_RANGE, (start, end)).fetchall()
            now = now_ms()
            changes = {}
            latest: dict[str, Latest | None] = {}  # key -> its new latest value
            for sid, (count, remains, cand) in plan.items():
                delete_hot_range(conn, sid, start, end)
                for name, gen, ps, pe in parts:
                    a, b = max(start, ps), min(end, pe)
                    if self._cold_has(name, gen, sid, a, b):
                        conn.execute(SQL_INSERT_TOMBSTONE, (sid, name, a, b, now))
                row = conn.execute(SQL_LATEST_TS_AND_POINTS, (sid,)).fetchone()
                if row is None:
                    continue
                lts, points = row
                new_points = max(0, points - count) if remains else 0
                new_lts = lts
                if delete_latest and lts is not None and start <= lts < end:
                    if cand is not None:
                        conn.execute(SQL_SET_LATEST, (cand[0], cand[1], cand[2], sid))
                        new_lts = cand[0]
                    else:
                        conn.execute(SQL_CLEAR_LATEST, (sid,))
                        new_lts = None
                    latest[keys_of[sid]] = cand
                conn.execute(SQL_SET_POINTS, (new_points, sid))
                changes[sid] = (new_points, new_lts)
            conn.execute(SQL_BUMP_MONTHS, (month_of(lo), month_of(max(lo, hi - 1))))
            return changes, latest, bump_latest_version(conn)

        def on_commit(result: tuple[dict[int, tuple[int, int | None]], dict[str, Latest | None], int]) -> None:
            changes, latest, version = result
            self._latest.changed(version, entity, latest)
            self._series.deleted(changes)

        self._writer.call(fn, on_commit).result()
        return sum(p[0] for p in plan.values())

    def _plan(self, sids: dict[str, int], lo: int, hi: int, find_new_latest: bool) -> _Plan:
        collect, any_ = self._snapshots.collect, self._snapshots.any
        plan: _Plan = {}
        for _k, sid in sids.items():
            count = len(collect([sid], lo, hi)[sid]) if lo < hi else 0
            remains = (lo > TS_MIN and any_(sid, TS_MIN, lo)) or (hi <= TS_MAX and any_(sid, hi, TS_MAX + 1))
            cand = None
            if find_new_latest and lo > TS_MIN:
                r = collect([sid], TS_MIN, lo, 1, True)[sid]
                if len(r):
                    t = int(r.column("t")[0])
                    cand = (int(r.ts[0]), t, r.values()[0])
            plan[sid] = (count, remains, cand)
        return plan

    def _cold_has(self, name: str, gen: int, sid: int, a: int, b: int) -> bool:
        """Does the cold generation hold points of ``sid`` in ``[a, b)``? (True when unsure.)"""
        try:
            p = self.cold.open(name, gen)
            loc = p.locate(sid)
            if loc is None:
                return False
            ts = p.read("ts", *loc)
            return int(np.searchsorted(ts, b)) > int(np.searchsorted(ts, a))
        except Exception:
            return True

    def delete_entity(self, entity: str) -> None:
        """Drop every series of ``entity`` (hot rows, latest values, and its cold points)."""

        def fn(conn: sqlite3.Connection) -> tuple[list[int], int]:
            sids = [r[0] for r in conn.execute(SQL_SERIES_OF_ENTITY, (entity,))]
            parts = conn.execute(SQL_PARTITION_SPANS).fetchall()
            now = now_ms()
            for sid in sids:
                conn.execute(SQL_DELETE_HOT_OF_SERIES, (sid,))
                conn.execute(SQL_DELETE_BLOCKS_OF_SERIES, (sid,))
                conn.execute(SQL_DELETE_LATEST_OF_SERIES, (sid,))
                conn.execute(SQL_DELETE_TOMBSTONES_OF_SERIES, (sid,))
                for name, gen, ps, pe in parts:
                    if self._cold_has(name, gen, sid, ps, pe):
                        conn.execute(SQL_INSERT_TOMBSTONE, (sid, name, ps, pe, now))
            conn.execute(SQL_DELETE_SERIES_OF_ENTITY, (entity,))
            conn.execute(SQL_BUMP_ALL_MONTHS)
            return sids, bump_latest_version(conn)

        def on_commit(result: tuple[list[int], int]) -> None:
            sids, version = result
            self._latest.dropped(version, entity)
            self._series.dropped(entity, sids)

        self._writer.call(fn, on_commit).result()
