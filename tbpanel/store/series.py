"""The series index: which ``(entity, key)`` has which series id, and cheap counters per series.

A series is one key of one entity; its id (``series.id`` in the hot tier, AUTOINCREMENT, never
reused) is what every hot row, cold row and tombstone is keyed by. :class:`SeriesIndex` keeps
an in-memory copy of the ``series`` table plus, per series, the approximate point count and the
newest timestamp (from ``latest``), loaded at open and updated by the writer thread after each
commit. It is only a cache of this instance's view: a series created by another instance
sharing the directory is looked up in SQL (:meth:`SeriesIndex.sid`), and the counters only see
this instance's writes (see "Counting" in :mod:`tbpanel.store.telemetry`).
"""

from __future__ import annotations

import gc
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from .columns import py_value
from .hot import ReaderPool, ReadTransaction, entity_keys, latest_version, series_id, series_with_latest
from .latest import LatestValues


class SeriesIndex:
    """Series ids by ``(entity, key)`` and per-series ``[points, latest ts]`` counters."""

    def __init__(self, readers: ReaderPool) -> None:
        self._readers = readers
        #: guards every field below; the writer thread changes them after commits
        self.lock = threading.RLock()
        #: ``(entity, key) -> sid`` (the writer thread reads it while writing a group)
        self.ids: dict[tuple[str, str], int] = {}
        self._by_entity: dict[str, dict[str, int]] = {}
        self._counts: dict[int, list[Any]] = {}  # sid -> [points, latest_ts]
        self.total_points = 0

    def load(self, conn: sqlite3.Connection, latest: LatestValues) -> None:
        """Fill the index, and ``latest``, from one snapshot (another instance may be writing)."""
        gc_was_on = gc.isenabled()
        gc.disable()  # ~3 new objects per series, no cycles: the collector would double the time
        try:
            with ReadTransaction(conn):
                version = latest_version(conn)
                rows = []
                for sid, entity, key, ts, t, v, points in series_with_latest(conn):
                    self.ids[(entity, key)] = sid
                    self._by_entity.setdefault(entity, {})[key] = sid
                    self._counts[sid] = [points, ts]
                    self.total_points += points
                    if ts is not None:
                        rows.append((entity, key, ts, t, py_value(t, v)))
                latest.load(version, LatestValues.build(rows))
        finally:
            if gc_was_on:
                gc.enable()

    # -------------------------------------------------------------------------------- lookups
    def sid(self, entity: str, key: str) -> int | None:
        sid = self.ids.get((entity, key))
        if sid is None:  # maybe created by another process sharing the directory
            sid = series_id(self._readers.get(), entity, key)
        return sid

    def has(self, entity: str) -> bool:
        """Whether ``entity`` has any series (in memory; SQL only for one this index has not seen)."""
        with self.lock:
            if self._by_entity.get(entity):
                return True
        return bool(self.keys(entity))

    def key_count(self, entity: str) -> int:
        """How many series ``entity`` has in this index (no SQL; the key limit's count)."""
        return len(self._by_entity.get(entity, ()))

    def keys(self, entity: str) -> list[str]:
        """Sorted keys of ``entity`` that have data or a latest value (from SQL: always fresh)."""
        return entity_keys(self._readers.get(), entity)

    def resolve(self, entity: str, keys: Sequence[str] | str | None) -> dict[str, int]:
        """``key -> sid`` of the keys asked for (None: every key of ``entity``) that exist."""
        if keys is None:
            keys = self.keys(entity)
        elif isinstance(keys, str):
            keys = [keys]
        out = {}
        for k in keys:
            sid = self.sid(entity, k)
            if sid is not None:
                out[k] = sid
        return out

    def stats(self, entity: str | None = None) -> dict[str, Any]:
        """Cheap counters (no scan). ``points`` is approximate (see the module docstring)."""
        with self.lock:
            if entity is None:
                return {"points": self.total_points, "series": len(self._counts), "entities": len(self._by_entity)}
            sids = list(self._by_entity.get(entity, {}).values())
            pts = 0
            last = None
            for sid in sids:
                st = self._counts.get(sid)
                if st is None:
                    continue
                pts += st[0]
                if st[1] is not None and (last is None or st[1] > last):
                    last = st[1]
            return {"points": pts, "series": len(sids), "last_ts": last}

    def summary(self) -> dict[str, Any]:
        """Entities, series, points, every key, the newest timestamp and the series ids (reprs)."""
        with self.lock:
            keys = sorted({k for ks in self._by_entity.values() for k in ks})
            last = max((st[1] for st in self._counts.values() if st[1] is not None), default=None)
            return {
                "entities": len(self._by_entity),
                "series": len(self._counts),
                "points": self.total_points,
                "keys": keys,
                "last_ts": last,
                "sids": list(self._counts),
            }

    # ------------------------------------------------------- after commits (writer thread)
    def written(self, new: dict[tuple[str, str], int], lat: Iterable[list[Any]]) -> None:
        """A write group committed: its new series, and per series ``[sid, newest ts, t, v, n]``."""
        with self.lock:
            for (e, k), sid in new.items():
                self.ids[(e, k)] = sid
                self._by_entity.setdefault(e, {})[k] = sid
            counts = self._counts
            total = 0
            for sid, ts, _t, _v, n in lat:
                st = counts.get(sid)
                if st is None:
                    counts[sid] = [n, ts]
                else:
                    st[0] += n
                    if st[1] is None or ts >= st[1]:
                        st[1] = ts
                total += n
            self.total_points += total

    def deleted(self, changes: dict[int, tuple[int, int | None]]) -> None:
        """A delete committed: ``sid -> (points now, latest ts now)``."""
        with self.lock:
            for sid, (pts, lts) in changes.items():
                st = self._counts.get(sid)
                if st is not None:
                    self.total_points += pts - st[0]
                    st[0], st[1] = pts, lts

    def recounted(self, deltas: Iterable[tuple[int, int]]) -> None:
        """A compaction committed: ``(change of the point count, sid)`` per series."""
        with self.lock:
            for d, sid in deltas:
                st = self._counts.get(sid)
                if st is not None:
                    newv = max(0, st[0] + d)
                    self.total_points += newv - st[0]
                    st[0] = newv

    def dropped(self, entity: str, sids: Iterable[int]) -> None:
        """Every series of ``entity`` (ids ``sids``) was deleted."""
        with self.lock:
            keys = self._by_entity.pop(entity, {})
            for k in keys:
                self.ids.pop((entity, k), None)
            for sid in sids:
                st = self._counts.pop(sid, None)
                if st is not None:
                    self.total_points -= st[0]
