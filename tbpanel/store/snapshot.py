"""Reads that see one snapshot of both tiers, and the reader epochs that keep it valid.

A read (:meth:`Snapshots.collect`) takes, in one SQLite read transaction, the cold manifest,
the tombstones and the hot rows of the series asked for; the cold columns are then read lazily
from the generations that manifest named, and merged with the hot rows into a
:class:`SeriesData` per series (hot wins on equal ``(series, ts)``).

Reader epochs: every public read runs inside :meth:`Snapshots.read`, which registers an epoch
for its whole duration (including lazy column loads), so a generation retired by an in-process
compaction (:meth:`Snapshots.retire`) is removed only after every reader that could have seen
it has finished. Another process sharing the directory may still remove a generation under
us; the generations used are checked to still exist after the read, and the read is retried.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np

from .blocks import BlockCache
from .cold import ColdTier, Partition
from .columns import Columns
from .hot import SQL_PARTITIONS_IN_RANGE, ReaderPool, hot_in_range, tombstones_in_range
from .values import ValueType

log = logging.getLogger(__name__)
T = TypeVar("T")

_BOOL, _LONG, _DOUBLE, _STR, _JSON = (int(x) for x in ValueType)


# --- merged view of one series -------------------------------------------------------------


class _Seg:
    """Rows ``lo+a : lo+b`` of one series in one cold partition, minus tombstoned rows."""

    __slots__ = ("part", "lo", "a", "b", "keep", "ts")

    def __init__(self, part: Partition, lo: int, a: int, b: int, keep: np.ndarray | None, ts_full: np.ndarray) -> None:
        self.part, self.lo, self.a, self.b, self.keep = part, lo, a, b, keep
        ts = ts_full[a:b]
        self.ts = ts if keep is None else ts[keep]

    def column(self, name: str) -> np.ndarray:
        arr = self.part.read(name, self.lo + self.a, self.lo + self.b) if name != "ts" else self.ts
        if name != "ts" and self.keep is not None:
            arr = arr[self.keep]
        return arr


_EMPTY: dict[str, np.ndarray] = {
    "ts": np.empty(0, np.int64),
    "t": np.empty(0, np.int8),
    "num": np.empty(0, np.float64),
    "lng": np.empty(0, np.int64),
    "txt": np.empty(0, object),
}


class SeriesData:
    """One series over a range: cold segments and hot rows merged (hot wins), loaded lazily.

    ``ts`` is sorted ascending; :meth:`column` returns the aligned ``t``/``num``/``lng``/``txt``.
    """

    def __init__(self, segs: list[_Seg], hot: Columns, final: slice | None = None) -> None:
        self._segs = segs
        self._hot = hot
        self._memo: dict[str, np.ndarray] = {}
        hts = hot["ts"]
        nc = sum(len(s.ts) for s in segs)
        # cold segments and hot points in one concatenation (each column is copied once)
        ts = _concat([s.ts for s in segs] + ([hts] if len(hts) else []), np.int64)
        self._keep: np.ndarray | None = None  # rows of that concatenation kept (hot wins)
        self._order: np.ndarray | None = None
        if nc and len(hts):
            cts = ts[:nc]
            # only cold points inside the hot span can be rewritten by hot ones: search those
            # (a year of cold against a fresh month is two binary searches, not 500k)
            a = int(np.searchsorted(cts, hts[0]))
            b = int(np.searchsorted(cts, hts[-1], side="right"))
            if a < b:
                window = cts[a:b]
                pos = np.searchsorted(hts, window)
                dup = hts[np.minimum(pos, len(hts) - 1)] == window
                if dup.any():
                    keep = np.ones(len(ts), bool)
                    keep[a:b] = ~dup
                    self._keep = keep
                    ts = ts[keep]
                    nc -= int(dup.sum())
            if nc and ts[nc - 1] >= hts[0]:
                self._order = np.argsort(ts, kind="stable")
                ts = ts[self._order]
        self._final = final
        if final is not None:
            ts = ts[final]
        self.ts = ts

    def __len__(self) -> int:
        return len(self.ts)

    def column(self, name: str) -> np.ndarray:
        if name == "ts":
            return self.ts
        c: np.ndarray | None = self._memo.get(name)
        if c is not None:
            return c
        hot: np.ndarray | None = self._hot.get(name)
        nh = len(self._hot["ts"])
        if hot is None:  # hot txt absent: no text in the hot rows
            hot = np.full(nh, None, dtype=object) if name == "txt" else _EMPTY[name]
        parts = [s.column(name) for s in self._segs]
        if nh:
            parts.append(hot)
        if len(parts) == 1 and self._order is None and self._final is None and self._keep is None:
            c = parts[0]
        else:
            c = _concat(parts, hot.dtype)
            if self._keep is not None:
                c = c[self._keep]
            if self._order is not None:
                c = c[self._order]
            if self._final is not None:
                c = c[self._final]
        self._memo[name] = c
        return c

    def values(self) -> np.ndarray:
        """Python values of every point (bool/int/float/str) as an object array."""
        t = self.column("t")
        out = np.empty(len(t), dtype=object)
        numeric = t <= _DOUBLE
        if numeric.any():
            num = self.column("num")
            m = t == _DOUBLE
            if m.any():
                out[m] = num[m]
            m = t == _BOOL
            if m.any():
                out[m] = num[m] != 0
            m = t == _LONG
            if m.any():
                out[m] = self.column("lng")[m]
        m = t >= _STR
        if m.any():
            out[m] = self.column("txt")[m]
        return out

    def to_list(self, desc: bool = False) -> list[tuple[int, int, Any]]:
        rows = list(zip(self.ts.tolist(), self.column("t").tolist(), self.values().tolist()))
        if desc:
            rows.reverse()
        return rows


def _concat(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    if not parts:
        return np.empty(0, dtype=dtype)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)


# --- reads ---------------------------------------------------------------------------------


class Snapshots:
    """Consistent reads over the hot tier's readers and the cold tier, with reader epochs."""

    def __init__(self, readers: ReaderPool, cold: ColdTier, hot_cache_bytes: int = 64 << 20) -> None:
        self._readers = readers
        self.cold = cold
        #: merged hot-tier blocks (:class:`~tbpanel.store.blocks.BlockCache`)
        self.hot_cache = BlockCache(hot_cache_bytes)
        self._tl = threading.local()
        # generations retired by compaction are removed once no reader may still use them
        self._epoch_lock = threading.Lock()
        self._epoch = 0
        self._active: dict[int, int] = {}
        self._retired: list[tuple[int, str, int]] = []

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._epoch_lock:
            self._epoch += 1
            tok = self._epoch
            self._active[tok] = tok
        try:
            yield
        finally:
            with self._epoch_lock:
                del self._active[tok]
                pending = bool(self._retired)
            if pending:
                self.purge_retired()

    def read(self, fn: Callable[[], T]) -> T:
        """``fn()`` as one read: generations it uses stay until it returns (retried, up to
        three times, if another process removed one meanwhile). Reads nest."""
        tl = self._tl
        if getattr(tl, "used", None) is not None:  # nested: the outer read checks and retries
            return fn()
        for attempt in range(3):
            used: set[tuple[str, int]] = set()
            tl.used = used
            try:
                with self._reading():
                    result = fn()
                    if all(self.cold.exists(n, g) for n, g in used):
                        return result
                    exc: Exception = FileNotFoundError("a cold generation vanished during the read")
            except FileNotFoundError as e:  # includes zarr's GroupNotFoundError
                exc = e
            finally:
                tl.used = None
            if attempt == 2:
                raise exc
            log.info("cold generation changed during a read (%s); retrying", exc)
            self.cold.forget_all()
        raise AssertionError("unreachable")  # pragma: no cover

    def retire(self, name: str, gen: int) -> None:
        """Generation ``gen`` of ``name`` is superseded: remove it once no read may use it."""
        with self._epoch_lock:
            self._epoch += 1
            self._retired.append((self._epoch, name, gen))
        self.purge_retired()

    def purge_retired(self) -> None:
        with self._epoch_lock:
            oldest: float = min(self._active.values(), default=math.inf)
            ready = [r for r in self._retired if r[0] < oldest]
            self._retired = [r for r in self._retired if r[0] >= oldest]
        for _, name, gen in ready:
            try:
                self.cold.remove(name, gen)
            except Exception:  # pragma: no cover - an orphan is removed at the next open
                log.exception("removing cold generation %s/g%06d failed", name, gen)

    def collect(
        self, sids: Sequence[int], start: int, end: int, limit: int | None = None, desc: bool = False
    ) -> dict[int, SeriesData]:
        """Merged data of each series over ``[start, end)`` from one consistent snapshot; with
        ``limit``, only the first (``desc``: last) ``limit`` points of each.

        Must run inside :meth:`read` (columns of the result load lazily from the cold tier).
        """
        conn = self._readers.get()
        conn.execute("BEGIN")  # one read transaction (inline: every query runs this)
        try:
            parts = conn.execute(SQL_PARTITIONS_IN_RANGE, (start, end)).fetchall()
            tombs = tombstones_in_range(conn, sids, start, end) if parts else {}
            hot = hot_in_range(conn, sids, start, end, limit, desc, self.hot_cache)
        finally:
            conn.execute("COMMIT")
        used = getattr(self._tl, "used", None)
        if used is not None:
            used.update((n, g) for n, g in parts)
        return {sid: self._assemble(sid, parts, tombs.get(sid, ()), hot[sid], start, end, limit, desc) for sid in sids}

    def any(self, sid: int, start: int, end: int) -> bool:
        """Does series ``sid`` have a visible point in ``[start, end)``?"""
        return start < end and self.read(lambda: len(self.collect([sid], start, end, 1, False)[sid]) > 0)

    def _assemble(
        self,
        sid: int,
        parts: list[tuple[str, int]],
        tombs: Sequence[tuple[str, int, int]],
        hot: Columns,
        start: int,
        end: int,
        limit: int | None,
        desc: bool,
    ) -> SeriesData:
        segs: list[_Seg] = []
        need = limit
        for name, gen in reversed(parts) if desc else parts:
            p = self.cold.open(name, gen)
            loc = p.locate(sid)
            if loc is None:
                continue
            lo, hi = loc
            tsf = p.read("ts", lo, hi)
            a = int(np.searchsorted(tsf, start))
            b = int(np.searchsorted(tsf, end))
            if a >= b:
                continue
            keep = None
            for part, ta, tb in tombs:
                if part != name:
                    continue
                i = max(a, int(np.searchsorted(tsf, ta)))
                j = min(b, int(np.searchsorted(tsf, tb)))
                if i < j:
                    if keep is None:
                        keep = np.ones(b - a, bool)
                    keep[i - a : j - a] = False
            nvis = (b - a) if keep is None else int(keep.sum())
            if nvis == 0:
                continue
            if need is not None and nvis > need:
                if keep is None:
                    if desc:
                        a = b - need
                    else:
                        b = a + need
                else:
                    vis = np.flatnonzero(keep)
                    if desc:
                        cut = int(vis[-need])
                        a, keep = a + cut, keep[cut:]
                    else:
                        cut = int(vis[need - 1]) + 1
                        b, keep = a + cut, keep[:cut]
                nvis = need
            segs.append(_Seg(p, lo, a, b, keep, tsf))
            if need is not None:
                need -= nvis
                if need <= 0:
                    break
        if desc:
            segs.reverse()
        final = None
        if limit is not None:
            final = slice(-limit, None) if desc else slice(0, limit)
        return SeriesData(segs, hot, final)
