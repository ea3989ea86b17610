"""The compactor: moves the points of closed UTC months from the hot tier into the cold tier.

A month is closed when its end is older than ``now - grace_ms``; a month with tombstones is
rewritten too, so deleted cold points are finally dropped. Compacting one month
(:meth:`Compactor._compact_month`) is:

1. **read** the month in one snapshot: its write counter ``wc``, the current cold generation,
   its tombstones and its hot rows (:meth:`~Compactor._read_month`);
2. **merge** the old generation's rows that no tombstone hides with the hot rows (hot wins);
3. **write** the result as a new generation and fsync it (:meth:`~Compactor._write_generation`);
4. **switch** in one transaction through the writer: refuse if the month's ``wc`` or generation
   changed since step 1 (a concurrent late write or delete is never lost; the month is retried,
   up to three times per round), else point the manifest at the new generation, delete the
   moved hot rows and the applied tombstones and correct the point counters
   (:meth:`~Compactor._switch`);
5. **retire** the old generation: it is removed once no reader may still use it.

A crash before the switch commits leaves an orphan directory (removed at the next open, see
:meth:`Compactor.remove_orphans`) and the data still in hot; after it, the old generation is
the orphan. Only one process compacts a directory at a time (an ``flock`` on
``compaction.lock``).
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import sqlite as db
from ..clock import now_ms
from .cold import ColdTier
from .columns import Columns, merge_columns
from .faults import storage_fault
from .heap import release_free_heap
from .hot import (
    SQL_ADD_POINTS,
    SQL_DELETE_BLOCKS_OF_MONTH,
    SQL_DELETE_HOT_RANGE,
    SQL_DELETE_PARTITION,
    SQL_DELETE_TOMBSTONE,
    SQL_HOT_MONTHS,
    SQL_MANIFEST,
    SQL_MONTH_COMPACTED,
    SQL_SET_PARTITION,
    SQL_TOMBSTONED_PARTS,
    SQL_TOMBSTONES_OF_PART,
    ReaderPool,
    ReadTransaction,
    current_generation,
    month_hot,
    month_wc,
)
from .series import SeriesIndex
from .snapshot import Snapshots
from .times import month_from_name, month_name, month_of, month_start
from .writer import Writer

log = logging.getLogger(__name__)

#: Points written into closed months since the last round after which the background
#: compactor runs at once (after :data:`BACKFILL_SETTLE_S`) instead of waiting for its timer:
#: a bulk backfill is worth compacting while the data is fresh in everyone's mind.
BACKFILL_POINTS = 50_000
#: Quiet time after a backfill's nudge before compacting (the next batches of the same
#: backfill would otherwise make the month being compacted conflict and retry).
BACKFILL_SETTLE_S = 1.0
#: The background compactor leaves a month alone until no transaction has written it for this
#: long (its write counter stayed put between two looks): compacting a month that is still
#: being written reads all of it, conflicts at the switch and starts again, so that an ingest
#: into closed months spent more CPU re-reading them than writing them. A month busy for
#: longer than :data:`MAX_DEFER_S` is compacted anyway (and may conflict and retry as before).
QUIET_S = 1.0
MAX_DEFER_S = 600.0

#: What :meth:`Compactor.compact` returns.
CompactionStats = dict[str, Any]


class _Conflict(Exception):
    """The month changed while it was being compacted; retry."""


class _Stopped(Exception):
    """The store is closing: the month's compaction is abandoned (nothing of it switched) and
    redone by the next round, after the next start if need be."""


@dataclass
class _Month:
    """One month as one snapshot showed it (step 1)."""

    m: int
    name: str
    wc: int | None  # write counter (None: never written)
    old_gen: int | None  # current cold generation (None: none yet)
    tombs: list[tuple[int, int, int, int]]  # (id, series, start_ts, end_ts)
    hot: Columns  # hot rows sorted by (series, ts)

    @property
    def span(self) -> tuple[int, int]:
        return month_start(self.m), month_start(self.m + 1)


class Compactor:
    """Compacts closed months of one store, given its readers, writer, cold tier, reads
    (to retire generations) and series index (to correct point counters)."""

    def __init__(
        self,
        readers: ReaderPool,
        writer: Writer,
        cold: ColdTier,
        snapshots: Snapshots,
        series: SeriesIndex,
        *,
        lock_path: str,
        grace_ms: int,
    ) -> None:
        self._readers = readers
        self._writer = writer
        self.cold = cold
        self._snapshots = snapshots
        self._series = series
        self.grace_ms = grace_ms
        self._mutex = threading.Lock()
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self._stop = threading.Event()
        self._wake = threading.Event()  # a backfill asks for a round now (see written())
        self._backfilled = 0  # points written into closed months since the last nudge
        self._thread: threading.Thread | None = None
        self._switch_lock = threading.Lock()
        self._switching = False  # the writer is inside a switch of ours (stop() interrupts it)
        #: month -> (write counter, when it was first seen at it, when the month was first
        #: deferred): what the background rounds saw of busy months (see QUIET_S)
        self._seen: dict[int, tuple[int | None, float, float]] = {}
        self._quiet_s = QUIET_S

    # ----------------------------------------------------------------------------- lifecycle
    def start(self, interval_s: float) -> None:
        """Compact every ``interval_s`` seconds on a background thread."""
        self._quiet_s = min(QUIET_S, interval_s)  # a store compacting often waits less
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="tbpanel-compactor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop compacting: a month being compacted is abandoned at its next step (between
        chunks of its read, before its write and before or during its switch, whose statement
        is interrupted), so closing never waits for a whole month; nothing of it is lost,
        its hot rows stay until a later round compacts them. Waits for the compaction running
        (background thread or not) to end."""
        self._stop.set()
        self._wake.set()
        with self._switch_lock:
            if self._switching:  # the writer is running our switch: abort its statement
                self._writer.conn.interrupt()
        if self._thread is not None:
            self._thread.join()
        with self._mutex:  # and a compaction run from another thread (store.compact()) too
            pass

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _Stopped()

    def close(self) -> None:
        try:
            os.close(self._lock_fd)
        except OSError:  # pragma: no cover
            pass

    def written(self, min_ts: int, n: int) -> None:
        """The writer committed ``n`` points, the oldest at ``min_ts``: when a backfill has put
        :data:`BACKFILL_POINTS` into closed months, wake the background compactor (writer
        thread; a no-op unless :meth:`start` was called)."""
        if self._thread is None:
            return
        closed_before = month_start(month_of(now_ms() - self.grace_ms))
        if min_ts >= closed_before:
            return
        self._backfilled += n
        if self._backfilled >= BACKFILL_POINTS:
            self._backfilled = 0
            self._wake.set()

    def _loop(self, interval_s: float) -> None:
        while True:
            # a deferred (busy) month is looked at again soon: one cheap read of its counter
            nudged = self._wake.wait(self._quiet_s if self._seen else interval_s)
            if self._stop.is_set():
                return
            if nudged:  # a backfill: let its next batches land, then compact
                self._wake.clear()
                log.info("a backfill wrote into closed months: compacting now")
                if self._stop.wait(BACKFILL_SETTLE_S):
                    return
            try:
                self.compact(settled_only=True)
            except Exception as exc:
                fault = storage_fault(exc)
                if fault is not None:  # expected while the disk is full: no traceback every round
                    log.warning("background compaction postponed: %s (%s)", fault.split(";")[0], exc)
                else:
                    log.exception("background compaction failed")

    def _try_lock(self) -> bool:
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def remove_orphans(self, conn: sqlite3.Connection) -> None:
        """Remove generation directories that the manifest does not point at."""
        if not self._try_lock():
            return  # another process is compacting; its directories are not orphans
        try:
            current = {(n, g) for n, g in conn.execute(SQL_MANIFEST)}
            for name, gen in self.cold.list_generations():
                if (name, gen) not in current:
                    log.info("removing orphan cold generation %s/g%06d", name, gen)
                    self.cold.remove(name, gen)
            self.cold.remove_empty_month_dirs({n for n, _ in current})
        finally:
            self._unlock()

    # ---------------------------------------------------------------------------- compaction
    def compact(self, before_ts: int | None = None, *, settled_only: bool = False) -> CompactionStats:
        """Move closed months from hot to cold (see :meth:`TelemetryStore.compact`);
        ``settled_only`` (the background rounds): skip the months still being written."""
        stats: CompactionStats = {
            "partitions": 0,
            "points_moved": 0,
            "rows_written": 0,
            "tombstones_applied": 0,
            "partitions_removed": 0,
            "conflicts": 0,
            "skipped": None,
        }
        with self._mutex:
            if not self._try_lock():
                stats["skipped"] = "another process is compacting this store"
                return stats
            try:
                cutoff = now_ms() - self.grace_ms if before_ts is None else int(before_ts)
                months = self._months_to_compact(cutoff)
                if settled_only:
                    months = self._settled(months)
                for m in months:
                    self._check_stop()
                    log.info("compacting %s", month_name(m))
                    self._compact_month(m, stats)
            except _Stopped:
                log.info("compaction stopped: the store is closing; the rest is compacted after the next start")
                stats["skipped"] = "the store is closing"
            finally:
                self._unlock()
        self._snapshots.purge_retired()
        if (stats["partitions"] or stats["partitions_removed"]) and not self._stop.is_set():
            self._give_back_free_pages()
            release_free_heap()  # the month's columns were freed: give the memory back too
        return stats

    def _give_back_free_pages(self) -> None:
        """The moved hot rows left free pages: hand them back to the file system, on a
        connection of our own (the writer's belongs to its thread), a few MiB per step."""
        try:
            conn = db.connect(self._readers.path)
            try:
                freed = db.give_back_free_pages(conn, should_stop=self._stop.is_set)  # closing: later
            finally:
                conn.close()
        except sqlite3.Error as exc:  # only space is at stake: try again after the next compaction
            log.warning("could not give free pages back to the file system: %s", exc)
            return
        if freed:
            log.info("gave %d free pages of the hot tier back to the file system", freed)

    def _months_to_compact(self, cutoff: int) -> list[int]:
        """Months with hot rows that ended by ``cutoff``, and months with tombstones."""
        conn = self._readers.get()
        with ReadTransaction(conn):
            hot_months = [r[0] for r in conn.execute(SQL_HOT_MONTHS)]
            tomb_parts = [r[0] for r in conn.execute(SQL_TOMBSTONED_PARTS)]
        todo = {m for m in hot_months if month_start(m + 1) <= cutoff}
        todo |= {month_from_name(p) for p in tomb_parts}
        return sorted(todo)

    def _settled(self, months: list[int]) -> list[int]:
        """Those of ``months`` whose write counter did not move for :data:`QUIET_S` (at most
        the compaction interval) (or that
        were deferred for :data:`MAX_DEFER_S`); the others are remembered for the next look."""
        conn = self._readers.get()
        with ReadTransaction(conn):
            wcs = {m: month_wc(conn, m) for m in months}
        now = time.monotonic()
        seen, out = self._seen, []
        for m in list(seen):
            if m not in wcs:
                del seen[m]
        for m, wc in wcs.items():
            last = seen.get(m)
            if last is None or last[0] != wc:
                seen[m] = (wc, now, now if last is None else last[2])
                if last is None or now - last[2] < MAX_DEFER_S:
                    continue
            elif now - last[1] < self._quiet_s:
                continue
            del seen[m]
            out.append(m)
        return out

    def _compact_month(self, m: int, stats: CompactionStats) -> None:
        for _attempt in range(3):
            month = self._read_month(m)
            n_hot = len(month.hot["ts"])
            if n_hot == 0 and not month.tombs:
                self._mark_compacted(month)
                return
            old = self._visible_old_rows(month)
            merged = merge_columns(old, month.hot)
            n_rows = len(merged["ts"])
            series, counts = np.unique(merged["series"], return_counts=True)
            self._check_stop()
            new_gen = self._write_generation(month, merged, series, counts)
            deltas = _count_changes(
                merged["series"], series, month.hot["series"], None if old is None else old["series"]
            )
            try:
                self._check_stop()
                self._switch(month, new_gen, n_rows, merged.get("txt") is not None, deltas)
            except _Conflict:
                stats["conflicts"] += 1
                if n_rows:
                    self.cold.remove(month.name, new_gen)
                continue
            except BaseException:
                if n_rows:
                    self.cold.remove(month.name, new_gen)
                raise
            if month.old_gen is not None:
                self._snapshots.retire(month.name, month.old_gen)
            if n_rows:
                stats["partitions"] += 1
            else:
                stats["partitions_removed"] += 1
            stats["points_moved"] += n_hot
            stats["rows_written"] += n_rows
            stats["tombstones_applied"] += len(month.tombs)
            log.info("compacted %s: %d hot points moved, %d rows in the cold tier", month.name, n_hot, n_rows)
            return
        log.info("compaction of %s gave up after repeated concurrent changes; will retry later", month_name(m))

    def _read_month(self, m: int) -> _Month:
        """Step 1: the month's counter, generation, tombstones and hot rows, in one snapshot."""
        name = month_name(m)
        lo, hi = month_start(m), month_start(m + 1)
        conn = self._readers.get()
        with ReadTransaction(conn):
            wc = month_wc(conn, m)
            old_gen = current_generation(conn, name)
            tombs = conn.execute(SQL_TOMBSTONES_OF_PART, (name,)).fetchall()
            # a big month takes seconds to read: closing does not wait (checked between chunks)
            hot = month_hot(conn, lo, hi, m, self._check_stop)
        return _Month(m, name, wc, old_gen, tombs, hot)

    def _mark_compacted(self, month: _Month) -> None:
        """Nothing to move: the month has no hot rows any more, unless it was written since."""
        m = month.m

        def clear(conn: sqlite3.Connection) -> None:
            if month_wc(conn, m) == month.wc:
                conn.execute(SQL_MONTH_COMPACTED, (m,))

        self._writer.call(clear).result()

    def _visible_old_rows(self, month: _Month) -> Columns | None:
        """Step 2: every row of the current generation that no tombstone of the month hides."""
        if month.old_gen is None:
            return None
        p = self.cold.open(month.name, month.old_gen)
        old: Columns = p.read_all()
        if month.tombs:
            keep = np.ones(len(old["ts"]), bool)
            for _tid, sid, a, b in month.tombs:
                loc = p.locate(sid)
                if loc is None:
                    continue
                s0, s1 = loc
                tss = old["ts"][s0:s1]
                keep[s0 + int(np.searchsorted(tss, a)) : s0 + int(np.searchsorted(tss, b))] = False
            if not keep.all():
                old = {c: (None if v is None else v[keep]) for c, v in old.items()}
        return old

    def _write_generation(self, month: _Month, merged: Columns, series: np.ndarray, counts: np.ndarray) -> int:
        """Step 3: write ``merged`` as the month's next generation (nothing when it is empty)."""
        offsets = np.zeros(len(series) + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        existing = [g for nme, g in self.cold.list_generations() if nme == month.name]
        new_gen = max([month.old_gen or 0, *existing]) + 1
        if len(merged["ts"]):
            try:
                self.cold.write_generation(month.name, new_gen, merged, series, offsets)
            except BaseException:
                # e.g. a full disk: a partial generation would hold on to the space it took
                self.cold.remove(month.name, new_gen)
                raise
        return new_gen

    def _switch(self, month: _Month, new_gen: int, n_rows: int, has_txt: bool, deltas: list[tuple[int, int]]) -> None:
        """Step 4: make ``new_gen`` current in one transaction; :class:`_Conflict` if the month
        changed since it was read."""
        m, name = month.m, month.name
        lo, hi = month.span
        hot_series = np.unique(month.hot["series"]).tolist()
        tomb_ids = [(t[0],) for t in month.tombs]

        def commit(conn: sqlite3.Connection) -> None:
            if month_wc(conn, m) != month.wc:
                raise _Conflict(name)
            if current_generation(conn, name) != month.old_gen:
                raise _Conflict(name)
            with self._switch_lock:
                self._check_stop()
                self._switching = True
            try:
                if n_rows:
                    conn.execute(SQL_SET_PARTITION, (name, m, new_gen, n_rows, lo, hi, int(has_txt), now_ms()))
                else:
                    conn.execute(SQL_DELETE_PARTITION, (name,))
                conn.executemany(SQL_DELETE_HOT_RANGE, [(s, lo, hi) for s in hot_series])
                conn.execute(SQL_DELETE_BLOCKS_OF_MONTH, (m,))
                conn.executemany(SQL_DELETE_TOMBSTONE, tomb_ids)
                conn.execute(SQL_MONTH_COMPACTED, (m,))
                conn.executemany(SQL_ADD_POINTS, deltas)
            except sqlite3.OperationalError:
                if self._stop.is_set():  # interrupted by stop(): the writer rolls back
                    raise _Stopped() from None
                raise
            finally:
                with self._switch_lock:
                    self._switching = False
            self._check_stop()  # (the writer rolls the switch back)

        self._writer.call(commit, lambda _: self._series.recounted(deltas)).result()


def _count_changes(
    merged: np.ndarray, merged_distinct: np.ndarray, hot: np.ndarray, old_visible: np.ndarray | None
) -> list[tuple[int, int]]:
    """Per series, ``(change of its stored-points counter, sid)``: the rows it has after the
    rewrite minus the hot rows and visible old rows it had before (arrays of series ids)."""
    universe = np.unique(
        np.concatenate([merged_distinct, hot, old_visible if old_visible is not None else np.empty(0, np.int64)])
    )
    delta = _counts(merged, universe) - _counts(hot, universe)
    if old_visible is not None:
        delta -= _counts(old_visible, universe)
    return [(int(d), int(s)) for d, s in zip(delta, universe) if d]


def _counts(s: np.ndarray, universe: np.ndarray) -> np.ndarray:
    if len(s) == 0:
        return np.zeros(len(universe), np.int64)
    counts: np.ndarray = np.bincount(np.searchsorted(universe, s), minlength=len(universe)).astype(np.int64)
    return counts
