"""The telemetry store: one object that writes, reads, aggregates, deletes and compacts.

::

    from tbpanel.store import open_store
    store = open_store("data/demo")                      # creates the directory
    store.write(device_id, {"temperature": 21.5})        # durable when it returns
    store.query_agg(device_id, ["temperature"], start, end, "AVG", 3_600_000)
    ds = store.query([device_id], ["temperature"], interval="1h", agg="avg")  # xarray

:class:`TelemetryStore` is a facade: each concept lives in a module of its own (see
docs/architecture.md, "store/ modules"), and this class wires them together and checks the
arguments of the public API.

Data flow: :meth:`TelemetryStore.submit` validates points synchronously (:mod:`.validate`; a
bad point raises ``ValueError`` before anything is queued), hands them to the single writer
thread (:mod:`.writer`: group commit into the SQLite hot tier of :mod:`.hot`, WAL,
``synchronous=FULL``) and returns a ``Future`` resolved after COMMIT; then
:attr:`TelemetryStore.committed` is emitted with the points. A compactor
(:mod:`.compaction`, a background thread every ``compaction_interval_s`` seconds, or
:meth:`TelemetryStore.compact`) moves the points of closed UTC months into the Zarr cold tier
(:mod:`.cold`); a month is closed when its end is older than ``now - grace_ms``. Queries read
both tiers in one SQLite snapshot and merge them (:mod:`.snapshot`; hot wins on equal
``(series, ts)``); aggregation is vectorised numpy (:mod:`.aggregate`) over bucket edges from
:mod:`.buckets`; :meth:`TelemetryStore.query` builds an ``xarray.Dataset`` (:mod:`.xarray`).

Crash safety of compaction: the new generation is written and fsynced *before* one SQLite
transaction (through the writer) switches the manifest, deletes the moved hot rows and the
applied tombstones. A crash before that commit leaves an orphan directory (removed at the
next open) and the data still in hot; after it, the old generation is the orphan. The commit
is refused if any transaction wrote or deleted points of that month since the compactor read
it (``month_state.wc``), so a concurrent late write or delete is never lost; the month is
simply retried.

Counting: ``stats()["points"]`` and the counts returned by :meth:`TelemetryStore.delete` are
best effort (kept as counters, never a scan). Every acknowledged point is counted when
written, so rewriting an existing ``(series, ts)`` counts it again: for a point already in the
cold tier the next compaction of its month corrects that, for a point still in the hot tier
the extra count stays. ``delete`` returns the number of points visible in the range just
before the delete (concurrent writes into the same range may make it off) and subtracts it;
a series left with no data at all is reset to exactly 0.

Sharing a directory: several ``TelemetryStore`` objects (threads of one process, or several
processes, e.g. a notebook next to the server) may open the same directory. SQLite
serialises their writes; series ids are created race-free; only one of them compacts at a
time (an ``flock`` on ``compaction.lock``); a reader whose cold generation is removed by
another instance retries on a fresh snapshot. The in-memory counters of :meth:`stats` only
see the writes of their own instance. Latest values are answered from an in-memory copy
(:mod:`tbpanel.store.latest`) only while it is current; after another instance's commit
they come from SQL (or a reloaded copy), so they are always fresh.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import html
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ..clock import now_ms
from ..events import Signal
from . import blocks, summary
from .acks import loop_acks
from .aggregate import AggResult, aggregate, normalize_agg
from .buckets import QueryError, bucket_edges, check_range
from .cold import ColdTier
from .compaction import CompactionStats, Compactor
from .delete import Deleter
from .fleet_query import SeriesColumns, query_columns
from .hot import (
    CACHE_KIB,
    SQL_ENTITIES_WITH_DATA,
    SYNCHRONOUS_MODES,
    GroupState,
    ReaderPool,
    db_path,
    latest_of,
    latest_version,
    open_database,
    pack_rows,
    read_all_latest,
    write_group,
)
from .ingest import Batch, GroupPoints, PointColumns
from .latest import Latest, LatestValues
from .limits import KeyQuota
from .series import SeriesIndex
from .snapshot import SeriesData, Snapshots
from .times import month_of, month_start, parse_interval, to_ms
from .validate import Point, ValidPoints, validate_points
from .values import ValueType, classify
from .writer import Writer

if TYPE_CHECKING:
    import xarray as xr

__all__ = ["TelemetryStore", "open_store", "resolve_location", "Point", "parse_interval", "to_ms", "validate_points"]

_DOUBLE = int(ValueType.DOUBLE)
#: Defaults of the store's two caches of decoded data (``tbpanel serve --cold-cache-mib`` /
#: ``--hot-cache-mib``): cold-tier chunks and merged hot-tier blocks, least recently used out.
COLD_CACHE_BYTES = 128 << 20
HOT_CACHE_BYTES = 32 << 20
T = TypeVar("T")
#: the keys argument of the queries: one key, several, or None for every key of the entity
Keys = Sequence[str] | str | None


class TelemetryStore:
    """Telemetry persistence: SQLite hot tier + Zarr cold tier. See the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        cold_url: str | None = None,
        *,
        synchronous: str = "FULL",
        compaction_interval_s: float = 60,
        grace_ms: int = 86_400_000,
        busy_timeout_ms: int = 10_000,
        cache_bytes: int = COLD_CACHE_BYTES,
        hot_cache_bytes: int = HOT_CACHE_BYTES,
        sqlite_cache_kib: int = CACHE_KIB,
        chunk_rows: int = 1_000_000,
        compressor: str = "zstd",
        max_keys_per_entity: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        os.makedirs(self.path, exist_ok=True)
        sync = str(synchronous).upper()
        if sync not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
        self.synchronous = sync
        self.grace_ms = int(grace_ms)
        self.compaction_interval_s = float(compaction_interval_s or 0)
        self._closed = False
        #: ``refs -> {ref: device id}`` for the refs it recognises (names): set by whoever knows
        #: the devices (:class:`~tbpanel.platform.Platform` sets one over its registry); the
        #: store itself knows devices only by the entity ids it stores.
        self.device_ids: Callable[[list[str]], dict[str, str]] | None = None
        self._db = db_path(self.path)
        #: emitted on the writer thread after each commit of points, with those points
        self.committed: Signal[[list[Point]]] = Signal("TelemetryStore.committed")

        self.cold = ColdTier(
            cold_url or os.path.join(self.path, "cold"),
            chunk_rows=chunk_rows,
            cache_bytes=cache_bytes,
            compressor=compressor,
            fsync=sync != "OFF",
            storage_options=storage_options,
        )  # OFF: no durability anywhere (scratch stores)
        self.cold.claim(self.path)  # before anything at a URL is written or removed
        wconn = open_database(self._db, synchronous=sync, busy_timeout_ms=busy_timeout_ms, cache_kib=sqlite_cache_kib)
        self._readers = ReaderPool(self._db, busy_timeout_ms, sqlite_cache_kib)
        # in-memory mirrors (the writer thread updates them after each commit)
        self._series = SeriesIndex(self._readers)
        self._latest = LatestValues()  # latest_many() answers from it
        self._series.load(wconn, self._latest)
        self._snapshots = Snapshots(self._readers, self.cold, hot_cache_bytes)
        self._row_counts: dict[int, int] = {}  # sid -> single-point rows written (writer thread)

        ids = self._series.ids
        #: the per-entity key limit (None: none); a batch over it fails with ``TooManyKeys``
        self.key_quota = KeyQuota(max_keys_per_entity, ids, self._series.key_count)
        self._writer = Writer(
            wconn, lambda conn, points: write_group(conn, ids, points), self._after_commit, quota=self.key_quota
        )
        self._compactor = Compactor(
            self._readers,
            self._writer,
            self.cold,
            self._snapshots,
            self._series,
            lock_path=os.path.join(self.path, "compaction.lock"),
            grace_ms=self.grace_ms,
        )
        self._compactor.remove_orphans(wconn)
        self._deleter = Deleter(self._snapshots, self._writer, self._series, self._latest, self.cold)
        self._writer.start()
        if self.compaction_interval_s > 0:
            self._compactor.start(self.compaction_interval_s)

    # ----------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the compactor and the writer (queued writes are committed first); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._compactor.stop()
        self._writer.stop()
        self._writer.join()
        self._readers.close()
        self.cold.forget_all()
        self._compactor.close()

    def __enter__(self) -> TelemetryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._closed:
            return f"<TelemetryStore {self.path!r} closed>"
        return summary.text(self.path, summary.store_summary(self._series, self._readers.get(), self.path))

    def _repr_html_(self) -> str:
        """What a notebook shows for ``store``: enough to know what is in it before querying."""
        if self._closed:
            return f"<b>TelemetryStore</b> <code>{html.escape(self.path)}</code> (closed)"
        return summary.html_table(self.path, summary.store_summary(self._series, self._readers.get(), self.path))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the telemetry store is closed")

    # --------------------------------------------------------------------------------- writes
    def submit(self, points: Iterable[Point] | PointColumns) -> Future[int]:
        """Queue points for the writer; the future resolves to their count after COMMIT.

        Points are validated here (unless they are :class:`~tbpanel.store.validate.ValidPoints`
        already): an invalid point raises ``ValueError`` and nothing of the batch is queued. If
        the transaction fails, the future carries the exception and none of the batch is stored.
        """
        self._check_open()
        pts = _checked(points)
        if not pts:
            fut: Future[int] = Future()
            fut.set_result(0)
            return fut
        return self._writer.submit_points(pts)

    def submit_async(self, points: Iterable[Point] | PointColumns) -> asyncio.Future[int]:
        """:meth:`submit` for a coroutine on a running asyncio loop: ``await`` the result for
        the count once the points are durable. Invalid points raise ``ValueError`` here.

        Cheaper per call than ``asyncio.wrap_future(store.submit(...))``: no thread-safe
        ``Future`` per batch, and the loop is woken once per commit group (:mod:`.acks`).
        """
        self._check_open()
        pts = _checked(points)
        fut, done = loop_acks().waiter()
        if pts:
            self._writer.submit_points_done(pts, done)
        else:
            fut.set_result(0)
        return fut

    def write_points(self, points: Iterable[Point]) -> int:
        """Write points and wait until they are durable; returns how many."""
        return self.submit(points).result()

    def write(self, entity: str, values: dict[str, Any], ts: int | None = None) -> int:
        """Write one timestamped set of Python values (typed with ``values.classify``)."""
        ts = now_ms() if ts is None else ts
        pts = []
        for key, raw in values.items():
            typed = classify(raw)
            if typed is None:
                continue
            pts.append((entity, key, ts, int(typed[0]), typed[1]))
        return self.write_points(pts) if pts else 0

    def _after_commit(self, batches: list[Batch], state: GroupState) -> None:
        """Writer thread, after the COMMIT of a write group: mirrors first, then listeners."""
        new, lat, names, version, min_ts = state
        self._latest.written(version, [(*names[sid], ts, t, v) for sid, ts, t, v, _n in lat.values()])
        self._series.written(new, lat.values())
        self._compactor.written(min_ts, sum(map(len, batches)))
        self._count_rows(lat.values())
        one = batches[0]
        self.committed.emit(one if len(batches) == 1 and type(one) is not PointColumns else GroupPoints(batches))  # type: ignore[arg-type]

    def _count_rows(self, written: Iterable[list[Any]]) -> None:
        """Writer thread: count the single-point rows written per series; at
        :data:`~tbpanel.store.blocks.PACK_ROWS` queue a transaction that packs the series'
        rows of open months into blocks (:func:`~tbpanel.store.hot.pack_rows`)."""
        counts, limit = self._row_counts, blocks.PACK_ROWS
        for sid, _ts, _t, _v, n in written:
            if n >= blocks.BLOCK_MIN_POINTS:
                continue
            c = counts.get(sid, 0) + n
            if c < limit:
                counts[sid] = c
                continue
            counts.pop(sid, None)
            since = month_start(month_of(now_ms() - self.grace_ms))
            try:
                self._writer.call(functools.partial(pack_rows, sid=sid, since=since))
            except RuntimeError:  # closing: the rows stay rows
                return

    # -------------------------------------------------------------------------------- lookups
    def keys(self, entity: str) -> list[str]:
        """Sorted keys of ``entity`` that have data or a latest value."""
        self._check_open()
        return self._series.keys(entity)

    def entities(self) -> list[str]:
        """Sorted ids of the entities that have data or a latest value."""
        self._check_open()
        return [r[0] for r in self._readers.get().execute(SQL_ENTITIES_WITH_DATA)]

    def latest(self, entity: str, keys: Keys = None) -> dict[str, Latest]:
        """Latest value per key: ``key -> (ts, vtype, value)``; keys without one are absent."""
        return self.latest_many([entity], keys)[entity]

    def latest_many(self, entities: Iterable[str], keys: Keys = None) -> dict[str, dict[str, Latest]]:
        """Latest values of many entities in one read: ``entity -> {key: (ts, vtype, value)}``.

        Every entity asked for is in the result, with ``{}`` when it has no latest value;
        keys are sorted. Answered from memory (:mod:`.latest`) when this instance's copy is
        current -- one tiny SQL read checks that -- otherwise (another instance or process
        wrote since) by SQL, one query per 500 entities, all from one snapshot.
        """
        self._check_open()
        ents = list(dict.fromkeys(entities))
        if isinstance(keys, str):
            keys = [keys]
        key_args = None if keys is None else list(dict.fromkeys(keys))
        if not ents or key_args == []:
            return {e: {} for e in ents}
        conn = self._readers.get()
        conn.execute("BEGIN")  # (not ReadTransaction: this runs per request, every µs counts)
        try:
            version = latest_version(conn)
            out = self._latest.read(version, ents, key_args)
            if out is None and self._latest.stale:  # missed another instance's commit: reload
                version, by_entity = read_all_latest(conn)
                out = LatestValues.answer(by_entity, ents, key_args)
                self._latest.install(version, by_entity)
            if out is None:  # behind another instance's commits
                out = latest_of(conn, ents, key_args)
        finally:
            conn.execute("COMMIT")
        return out

    def stats(self, entity: str | None = None) -> dict[str, Any]:
        """Cheap counters (no scan). ``points`` is approximate (see the module docstring)."""
        return self._series.stats(entity)

    # -------------------------------------------------------------------------------- queries
    def query_raw(
        self, entity: str, keys: Keys, start: int, end: int, limit: int = 100, order: str = "DESC"
    ) -> dict[str, list[tuple[int, int, Any]]]:
        """Raw points with ``start <= ts < end``: per key at most ``limit``, ordered as asked."""
        self._check_open()
        start, end = int(start), int(end)
        check_range(start, end)
        order_u = str(order).upper()
        if order_u not in ("ASC", "DESC"):
            raise QueryError(f"orderBy must be ASC or DESC, got {order!r}")
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise QueryError(f"limit must be a positive integer, got {limit!r}")
        sids = self._series.resolve(entity, keys)
        if not sids:
            return {}

        def run() -> dict[str, list[tuple[int, int, Any]]]:
            data = self._snapshots.collect(list(sids.values()), start, end, int(limit), order_u == "DESC")
            out = {}
            for k, sid in sids.items():
                sd = data[sid]
                if len(sd):
                    out[k] = sd.to_list(desc=order_u == "DESC")
            return out

        return self._snapshots.read(run)

    def query_agg(
        self,
        entity: str,
        keys: Keys,
        start: int,
        end: int,
        agg: str,
        interval: int | None = None,
        interval_type: str = "MILLISECONDS",
        tz: str = "UTC",
    ) -> dict[str, list[tuple[int, int, Any]]]:
        """Aggregated buckets per key (ascending, empty buckets omitted, keys without data absent)."""
        self._check_open()
        agg_u = normalize_agg(agg)
        start, end = int(start), int(end)
        edges = bucket_edges(start, end, interval, interval_type, tz)
        sids = self._series.resolve(entity, keys)

        def one(sd: SeriesData) -> list[tuple[int, int, Any]] | None:
            res = aggregate(agg_u, edges, sd.ts, sd.column)
            return res.to_list() if len(res) else None

        return self._per_series(sids, start, end, one)

    def _per_series(
        self, sids: dict[str, int], start: int, end: int, one: Callable[[SeriesData], T | None]
    ) -> dict[str, T]:
        """``{key: one(series data)}`` over one consistent read; series with no points, or for
        which ``one`` returns None, are left out (ThingsBoard omits keys without data)."""
        if not sids:
            return {}

        def run() -> dict[str, T]:
            data = self._snapshots.collect(list(sids.values()), start, end)
            out = {}
            for key, sid in sids.items():
                sd = data[sid]
                if len(sd):
                    value = one(sd)
                    if value is not None:
                        out[key] = value
            return out

        return self._snapshots.read(run)

    def numeric_arrays(self, entity: str, keys: Keys, start: int, end: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every numeric point of each key in ``[start, end)`` as ``(ts int64, values float64)``.

        Longs and doubles as float64, booleans as 0/1; string and JSON points are left out.
        This is what analytics (anomaly models) read: arrays, never Python tuples per point.
        """
        self._check_open()
        check_range(int(start), int(end))
        sids = self._series.resolve(entity, keys)

        def one(sd: SeriesData) -> tuple[np.ndarray, np.ndarray] | None:
            numeric = sd.column("t") <= _DOUBLE
            ts, num = sd.ts, sd.column("num")
            if not numeric.all():
                ts, num = ts[numeric], num[numeric]
            return (np.asarray(ts, np.int64), np.asarray(num, np.float64)) if len(ts) else None

        return self._per_series(sids, int(start), int(end), one)

    def query_agg_arrays(
        self,
        entity: str,
        keys: Keys,
        start: int,
        end: int,
        agg: str,
        interval: int | None = None,
        interval_type: str = "MILLISECONDS",
        tz: str = "UTC",
    ) -> dict[str, AggResult]:
        """Like :meth:`query_agg` but returns :class:`AggResult` arrays (no Python tuples)."""
        self._check_open()
        agg_u = normalize_agg(agg)
        edges = bucket_edges(int(start), int(end), interval, interval_type, tz)
        sids = self._series.resolve(entity, keys)

        def one(sd: SeriesData) -> AggResult | None:
            res = aggregate(agg_u, edges, sd.ts, sd.column)
            return res if len(res) else None

        return self._per_series(sids, int(start), int(end), one)

    def query_columns(
        self,
        entities: Sequence[str],
        keys: Sequence[str] | None,
        start: int,
        end: int,
        *,
        agg: str = "NONE",
        interval: int | None = None,
        interval_type: str = "MILLISECONDS",
        tz: str = "UTC",
        limit: int | None = None,
        newest: bool = False,
    ) -> list[SeriesColumns]:
        """Many entities × keys in one consistent read, as numpy columns per series (see
        :func:`.fleet_query.query_columns`: raw points keep their exact types)."""
        self._check_open()
        return query_columns(
            self._series,
            self._snapshots,
            list(entities),
            None if keys is None else list(keys),
            start,
            end,
            agg=agg,
            interval=interval,
            interval_type=interval_type,
            tz=tz,
            limit=limit,
            newest=newest,
        )

    def query(
        self,
        devices: str | Iterable[str],
        keys: str | Iterable[str] | None = None,
        start: Any = None,
        end: Any = None,
        interval: Any = None,
        agg: str | None = None,
        *,
        interval_type: str = "MILLISECONDS",
        tz: str = "UTC",
    ) -> xr.Dataset:
        """Query into an ``xarray.Dataset`` with dims ``("device", "time")``.

        ``agg`` None/"NONE" returns every raw point in range (union of timestamps on
        ``time``); otherwise one value per bucket at the bucket midpoint. ``interval`` is ms
        or a string like ``"1h"``; ``start``/``end`` are epoch ms, datetimes or ISO strings
        (``start=None``: the earliest point, ``end=None``: now + 1 ms). Numeric and bool values
        become float64 (bool as 0/1); keys holding text become object arrays. Missing cells
        are NaN. Each variable's ``attrs["key"]`` is its key (variables named ``device`` or
        ``time`` are renamed with a trailing underscore). See :mod:`.xarray`.

        ``devices`` are entity ids; a device the store holds nothing for is looked up with
        :attr:`device_ids` (a store opened through ``tbpanel.connect`` accepts device names,
        and the ``device`` axis keeps what was asked), otherwise it is a ``KeyError`` naming it.
        """
        from .xarray import query_dataset  # xarray is imported on first use

        self._check_open()
        asked = [devices] if isinstance(devices, str) else list(dict.fromkeys(devices))
        ids = self._entity_ids(asked)
        ds = query_dataset(
            self._series, self._snapshots, ids, keys, start, end, interval, agg, interval_type=interval_type, tz=tz
        )
        return ds if ids == asked else ds.assign_coords(device=np.array(asked, dtype=object))

    def _entity_ids(self, devices: list[str]) -> list[str]:
        """The entity id of each device asked for: itself when the store has series for it, else
        what :attr:`device_ids` makes of it; a ``KeyError`` names the ones nobody recognises."""
        unknown = [d for d in devices if not self._series.has(d)]
        if not unknown:
            return devices
        found = self.device_ids(unknown) if self.device_ids is not None else {}
        missing = [d for d in unknown if d not in found]
        if missing:
            names = ", ".join(repr(d) for d in missing)
            hint = (
                "neither a device id nor a device name"
                if self.device_ids is not None
                else "no data for it in this store, which knows devices by entity id; "
                "open the data directory with tbpanel.connect(...) to query by device name"
            )
            raise KeyError(f"unknown device {names}: {hint}")
        ids = [found.get(d, d) for d in devices]
        if len(set(ids)) < len(ids):
            raise KeyError(f"devices {devices!r} name the same device more than once")
        return ids

    # -------------------------------------------------------------------------------- deletes
    def delete(
        self,
        entity: str,
        keys: Keys,
        start: int,
        end: int,
        delete_latest: bool = True,
        rewrite_latest_if_deleted: bool = False,
    ) -> int:
        """Delete points with ``start <= ts < end`` of the given keys (None: all keys).

        Hot rows are deleted; cold points are hidden by a tombstone until their month is
        rewritten. Returns the number of points that were visible in the range just before
        the delete (best effort under concurrent writes to the same range).
        """
        self._check_open()
        start, end = int(start), int(end)
        check_range(start, end)
        sids = self._series.resolve(entity, keys)
        if not sids:
            return 0
        return self._deleter.delete(entity, sids, start, end, delete_latest, rewrite_latest_if_deleted)

    def delete_entity(self, entity: str) -> None:
        """Drop every series of ``entity`` (hot rows, latest values, and its cold points)."""
        self._check_open()
        self._deleter.delete_entity(entity)

    # ----------------------------------------------------------------------------- compaction
    def compact(self, before_ts: int | None = None) -> CompactionStats:
        """Move closed months from hot to cold (and rewrite months with tombstones).

        A month is closed when its end is ``<= before_ts`` (default ``now - grace_ms``).
        Returns stats: ``partitions`` written, ``points_moved`` from hot, ``rows_written``,
        ``tombstones_applied``, ``conflicts`` (retries after concurrent changes) and
        ``skipped`` (a reason, or None).
        """
        self._check_open()
        return self._compactor.compact(before_ts)


def _checked(points: Iterable[Point] | PointColumns) -> Batch:
    """Points as the writer takes them: validated here unless they are already
    (:class:`~tbpanel.store.validate.ValidPoints`, :class:`~tbpanel.store.ingest.PointColumns`)."""
    if type(points) is ValidPoints or type(points) is PointColumns:
        return points
    return validate_points(points)


def open_store(
    path: str | os.PathLike[str],
    cold_url: str | None = None,
    *,
    synchronous: str = "FULL",
    compaction_interval_s: float = 60,
    grace_ms: int = 86_400_000,
    storage_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> TelemetryStore:
    """Open (creating if needed) the telemetry store in directory ``path`` (or at a URL: see
    :func:`resolve_location`).

    ``cold_url``: where the Zarr cold tier lives (a path or an fsspec URL; default
    ``path/cold``). ``storage_options``: the URL's fsspec options, e.g. ``{"endpoint_url":
    "http://127.0.0.1:9000", "key": ..., "secret": ...}`` for an S3-compatible service (s3fs;
    the ``s3`` extra); a URL's cold tier can be used only with the hot tier that first wrote it
    (:class:`~tbpanel.store.object_store.ForeignColdTier` otherwise). ``synchronous``: SQLite's durability level (FULL: an acknowledged write
    survives power loss; NORMAL: survives a killed process; OFF: scratch data, and cold
    generations are not fsynced either). ``compaction_interval_s``: background compaction period (0 disables).
    ``grace_ms``: how long after its end a month stays writable in the hot tier before it is
    compacted. Extra keyword arguments: ``busy_timeout_ms``, ``cache_bytes`` (decoded cold
    chunks), ``hot_cache_bytes`` (merged hot blocks), ``sqlite_cache_kib`` (page cache per SQLite
    connection), ``chunk_rows``,
    ``compressor`` ("lz4" or "zstd"), ``max_keys_per_entity`` (None: no limit; a batch that
    would give an entity more keys fails with :class:`~tbpanel.store.limits.TooManyKeys`).
    """
    path, cold_url = resolve_location(path, cold_url)
    return TelemetryStore(
        path,
        cold_url,
        synchronous=synchronous,
        compaction_interval_s=compaction_interval_s,
        grace_ms=grace_ms,
        storage_options=storage_options,
        **kwargs,
    )


def resolve_location(path_or_url: str | os.PathLike[str], cold_url: str | None = None) -> tuple[str, str | None]:
    """``open_store`` takes a directory or a URL. With an fsspec URL (``s3://bucket/fleet``,
    ``memory://x``) the history — the Zarr cold tier — lives at ``<url>/cold``, and the hot tier
    (recent writes, not yet compacted; SQLite needs a local file) in a local cache directory,
    ``$TBPANEL_CACHE`` or ``~/.cache/tbpanel``, named after the URL."""
    text = os.fspath(path_or_url)
    if text.startswith("file://"):
        return text[len("file://") :], cold_url
    if "://" not in text:
        return text, cold_url
    cache = Path(os.environ.get("TBPANEL_CACHE") or Path.home() / ".cache" / "tbpanel")
    local = cache / "stores" / hashlib.sha256(text.encode()).hexdigest()[:16]
    return str(local), cold_url or text.rstrip("/") + "/cold"
