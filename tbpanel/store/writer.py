"""The single writer thread: group commit of queued point batches, plus arbitrary transactions.

Every write of the store goes through one :class:`Writer`: a thread that drains its queue,
writes every queued batch in one transaction (``executemany``), commits, and only then
resolves the batches' futures ("group commit"). With ``synchronous=FULL`` (the default) the
commit has been fsynced to the WAL before any future resolves, so an acknowledged write
survives ``kill -9`` and power loss, and many concurrent requests share one fsync. Deletes
and compaction switches run here too (:meth:`Writer.call`), each in its own transaction
between two groups, so there is never more than one SQLite writer per store instance.

Two rules keep one device from holding everyone else: of the batches drained together, small
ones of other entities are committed before a big one (:func:`_small_first`; the order of each
entity's own batches is kept), and a batch that would give an entity more keys than the store's
:class:`~tbpanel.store.limits.KeyQuota` allows is refused alone, before its group is written.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from .ingest import Batch, entities_of
from .limits import KeyQuota

log = logging.getLogger(__name__)

#: ``done(count, exc)``: how :meth:`Writer.submit_points_done` acknowledges a batch.
Done = Callable[[int, BaseException | None], None]


class _WriteOp:
    """Points waiting for the writer, acknowledged through a ``Future`` or a ``done`` callback."""

    __slots__ = ("points", "future", "done")

    def __init__(self, points: Batch, future: Future[int] | None, done: Done | None = None) -> None:
        self.points = points
        self.future = future
        self.done = done

    def start(self) -> bool:
        """False if the caller cancelled the future before the writer got to it."""
        return self.future is None or self.future.set_running_or_notify_cancel()

    def resolve(self, exc: BaseException | None = None) -> None:
        if self.done is not None:
            try:
                self.done(len(self.points), exc)
            except Exception:  # pragma: no cover - a broken callback must not stop the writer
                log.exception("write acknowledgement callback failed")
        elif self.future is None:  # pragma: no cover - every op has a future or a callback
            return
        elif exc is None:
            self.future.set_result(len(self.points))
        else:
            self.future.set_exception(exc)


class _CallOp:
    __slots__ = ("fn", "on_commit", "future")

    def __init__(
        self, fn: Callable[[sqlite3.Connection], Any], on_commit: Callable[[Any], None] | None, future: Future[Any]
    ) -> None:
        self.fn = fn
        self.on_commit = on_commit
        self.future = future


_STOP = None  # queued by stop(): the writer commits what came before it and ends

#: A batch of at least this many points is "big": small batches queued with it may go first.
BIG_BATCH = 10_000


def _small_first(batches: list[_WriteOp]) -> tuple[list[_WriteOp], list[_WriteOp]]:
    """``(early, late)``: the batches that may be committed before the big ones, and the rest in
    their order. A small batch that writes an entity of a batch already in ``late`` stays behind
    it, so the points of one entity are always written in the order they were queued. Linear in
    the points (the entities of late batches are collected once)."""
    early: list[_WriteOp] = []
    late: list[_WriteOp] = []
    late_entities: set[str] = set()
    for op in batches:
        if len(op.points) >= BIG_BATCH or (late and not late_entities.isdisjoint(entities_of(op.points))):
            late.append(op)
            late_entities.update(entities_of(op.points))
        else:
            early.append(op)
    return early, late


class Writer(threading.Thread):
    """The single writer: group commit of queued point batches, plus arbitrary transactions.

    ``write_group(conn, batches) -> state`` runs inside an open transaction for all batches of
    a group (each a list of points or :class:`~tbpanel.store.ingest.PointColumns`); after
    COMMIT, ``after_commit(batches, state)`` runs (still in this thread) and
    then the futures are resolved. If anything fails before COMMIT completes, the
    transaction is rolled back and every future of the group gets the exception: none of
    their points is stored.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        write_group: Callable[[sqlite3.Connection, list[Batch]], Any],
        after_commit: Callable[[list[Batch], Any], None],
        max_group_points: int = 250_000,
        quota: KeyQuota | None = None,
    ) -> None:
        super().__init__(name="tbpanel-store-writer", daemon=True)
        self.conn = conn
        self._write_group = write_group
        self._after_commit = after_commit
        self._max_group = max_group_points
        #: the per-entity key limit, checked per batch before its group is written
        self._quota = quota
        self._q: queue.SimpleQueue[_WriteOp | _CallOp | None] = queue.SimpleQueue()
        self._stopping = False

    # -- producer side
    def submit_points(self, points: Batch) -> Future[int]:
        fut: Future[int] = Future()
        if self._stopping:
            raise RuntimeError("the telemetry store is closed")
        self._q.put(_WriteOp(points, fut))
        return fut

    def submit_points_done(self, points: Batch, done: Done) -> None:
        """Like :meth:`submit_points`, but ``done(count, exc)`` is called on this thread after
        COMMIT (``exc`` None) or after the rollback: no ``Future`` (and its lock) per batch."""
        if self._stopping:
            raise RuntimeError("the telemetry store is closed")
        self._q.put(_WriteOp(points, None, done))

    def call(
        self, fn: Callable[[sqlite3.Connection], Any], on_commit: Callable[[Any], None] | None = None
    ) -> Future[Any]:
        """Run ``fn(conn)`` in its own write transaction on the writer thread; ``on_commit(result)``
        runs after its COMMIT, before the future resolves to ``fn``'s result."""
        fut: Future[Any] = Future()
        if self._stopping:
            raise RuntimeError("the telemetry store is closed")
        self._q.put(_CallOp(fn, on_commit, fut))
        return fut

    def stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            self._q.put(_STOP)

    # -- consumer side
    def run(self) -> None:
        try:
            while True:
                first = self._q.get()
                ops = [first]
                while True:  # drain: everything queued now goes into this round
                    try:
                        ops.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                stop = False
                batches: list[_WriteOp] = []
                for op in ops:
                    if op is _STOP:
                        stop = True
                        continue
                    if isinstance(op, _WriteOp):
                        batches.append(op)
                        continue
                    if batches:  # a call is a barrier: what was queued before it commits first
                        self._commit_batches(batches)
                        batches = []
                    self._run_call(op)
                if batches:
                    self._commit_batches(batches)
                # drop this round's ops before waiting for the next: an idle writer must not
                # keep the last group's points, or a compaction's month in its switch closure
                del ops, first, batches, op
                if stop:
                    # anything queued after the stop marker is refused
                    while True:
                        try:
                            op = self._q.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(op, _WriteOp):
                            op.resolve(RuntimeError("the telemetry store is closed"))
                        elif op is not _STOP:
                            op.future.set_exception(RuntimeError("the telemetry store is closed"))
                    return
        finally:
            try:
                self.conn.close()
            except Exception:  # pragma: no cover
                log.exception("closing the writer connection failed")

    def _commit_batches(self, batches: list[_WriteOp]) -> None:
        """Commit queued batches in groups of at most ``max_group_points``; small batches that
        share no entity with a big one queued before them go first, in a group of their own,
        so one device's huge message does not hold everyone else's small ones behind it."""
        if len(batches) > 1 and any(len(op.points) >= BIG_BATCH for op in batches):
            early, late = _small_first(batches)
            if early:
                self._commit_batches(early)
            batches = late
        group: list[_WriteOp] = []
        n_group = 0
        for op in batches:
            if group and n_group + len(op.points) > self._max_group:
                self._commit_group(group)
                group, n_group = [], 0
            group.append(op)
            n_group += len(op.points)
        if group:
            self._commit_group(group)

    def _commit_group(self, group: list[_WriteOp]) -> None:
        # a future cancelled before the writer got to it is simply not written
        group = [op for op in group if op.start()]
        if self._quota is not None and group:
            check = self._quota.checker()
            admitted = []
            for op in group:
                refused = check(op.points)
                if refused is None:
                    admitted.append(op)
                else:
                    op.resolve(refused)  # nothing of it is written
            group = admitted
        if not group:
            return
        batches = [op.points for op in group]
        conn = self.conn
        state = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                state = self._write_group(conn, batches)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            log.warning("telemetry write transaction failed (%d points): %s", sum(map(len, batches)), exc)
            for op in group:
                op.resolve(exc)
            return
        try:
            self._after_commit(batches, state)
        except Exception:  # pragma: no cover - bookkeeping must never lose an ack
            log.exception("post-commit bookkeeping failed")
        for op in group:
            op.resolve()

    def _run_call(self, op: _CallOp) -> None:
        if not op.future.set_running_or_notify_cancel():
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = op.fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except Exception as exc:
            op.future.set_exception(exc)
            return
        if op.on_commit is not None:
            try:
                op.on_commit(result)
            except Exception:  # pragma: no cover
                log.exception("post-commit hook failed")
        op.future.set_result(result)
