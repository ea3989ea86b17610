"""Latest values in memory: ThingsBoard's ``ts_kv_latest`` kept in RAM so
:meth:`TelemetryStore.latest_many` answers without SQL.

The copy is columnar (:class:`LatestTable`): one slot per series in numpy arrays ``ts``, ``t``,
``num`` and ``lng`` (text values in a dict of their own), and per entity a ``key -> slot`` map;
not a ``(ts, vtype, value)`` tuple and three boxed numbers per series. Answers are gathered with
one fancy index per column for all the series asked for.

The SQLite ``latest`` table stays the durable truth; this is a copy of it that is exactly
as of one *latest version*: the counter in the ``latest_version`` table (:mod:`.hot`), which
every transaction that may change a latest value bumps (writes, deletes, ``delete_entity``
-- from any store instance or process on the same files; compaction never changes a latest
value and does not bump it).

- At open the store loads the whole table and its version in one snapshot (:meth:`load`).
- After each COMMIT the writer thread reports what that transaction did with the version it
  read back (:meth:`written`, :meth:`changed`, :meth:`dropped`). Only the commit right after
  the copy's version is applied; a gap means another instance committed in between, so the
  copy becomes *stale* (and is emptied) until a reader reloads it (:meth:`install`).
- A reader first reads the database's current version ``v`` (in its SQL snapshot) and asks
  :meth:`read`: the copy answers when ``v <= version`` (it is at least as new as the
  database was when the read began, and it only ever holds committed values, since it is
  changed after COMMIT); otherwise :meth:`read` returns None and the reader uses SQL: the
  copy is behind another instance's commits, which it cannot see.

A reload can race with this instance's writer: :meth:`install` puts a snapshot in place only
if no later commit of this instance has been reported yet (``seen <= v``); commits up to
``v`` reported afterwards are recognised as already included and skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .values import ValueType

Latest = tuple[int, int, Any]  # (ts, vtype, value)

_BOOL, _LONG, _DOUBLE = int(ValueType.BOOL), int(ValueType.LONG), int(ValueType.DOUBLE)


class LatestTable:
    """The latest ``(ts, vtype, value)`` of many series, as columns (see the module docstring).

    ``_keys[entity]`` maps each key to its slot; its keys are sorted, except for the entities
    in ``_unsorted`` (a key added out of order marks its entity, which the next reader that
    wants all its keys sorts once: a re-sort per new key made a message with n new keys cost
    O(n² log n) on the writer thread). Freed slots are reused."""

    __slots__ = ("_keys", "_unsorted", "ts", "t", "num", "lng", "txt", "_free", "_used")

    def __init__(self, capacity: int = 64) -> None:
        self._keys: dict[str, dict[str, int]] = {}
        self._unsorted: set[str] = set()
        self.ts = np.zeros(capacity, np.int64)
        self.t = np.zeros(capacity, np.int8)
        self.num = np.zeros(capacity, np.float64)
        self.lng = np.zeros(capacity, np.int64)
        self.txt: dict[int, str] = {}  # slot -> STR/JSON value
        self._free: list[int] = []
        self._used = 0

    @classmethod
    def of(cls, by_entity: Mapping[str, Mapping[str, Latest]]) -> LatestTable:
        """A table of ``entity -> {key: (ts, vtype, value)}``."""
        table = cls(max(64, sum(map(len, by_entity.values()))))
        for e, d in by_entity.items():
            for k, (ts, t, v) in d.items():
                table.put(e, k, ts, t, v)
        return table

    def __len__(self) -> int:
        return self._used - len(self._free)

    def nbytes(self) -> int:
        """Bytes of the columns (text values and the key maps not counted)."""
        return int(self.ts.nbytes + self.t.nbytes + self.num.nbytes + self.lng.nbytes)

    # -------------------------------------------------------------------------- changes
    def _slot(self) -> int:
        if self._free:
            return self._free.pop()
        i = self._used
        if i == len(self.ts):
            grow = max(64, len(self.ts))
            for name in ("ts", "t", "num", "lng"):
                col = getattr(self, name)
                setattr(self, name, np.concatenate((col, np.zeros(grow, col.dtype))))
        self._used += 1
        return i

    def _set(self, i: int, ts: int, t: int, v: Any) -> None:
        self.ts[i] = ts
        self.t[i] = t
        if t == _LONG:
            self.lng[i] = v
            self.txt.pop(i, None)
        elif t == _DOUBLE or t == _BOOL:
            self.num[i] = v
            self.txt.pop(i, None)
        else:
            self.txt[i] = v

    def put(self, e: str, k: str, ts: int, t: int, v: Any, newer_only: bool = False) -> None:
        """Set the latest value of ``(e, k)``; ``newer_only``: only if ``ts`` is not older
        than the one it has (the SQL upsert's rule)."""
        d = self._keys.get(e)
        if d is None:
            self._keys[e] = d = {}
        i = d.get(k)
        if i is not None:
            if not newer_only or ts >= self.ts[i]:
                self._set(i, ts, t, v)
            return
        if d and e not in self._unsorted and k < next(reversed(d)):
            self._unsorted.add(e)
        i = self._slot()
        d[k] = i
        self._set(i, ts, t, v)

    def pop(self, e: str, k: str) -> None:
        d = self._keys.get(e)
        i = None if d is None else d.pop(k, None)
        if i is not None:
            self.txt.pop(i, None)
            self._free.append(i)
            if not d:
                self.drop(e)

    def drop(self, e: str) -> None:
        d = self._keys.pop(e, None)
        self._unsorted.discard(e)
        for i in (d or {}).values():
            self.txt.pop(i, None)
            self._free.append(i)

    def sort(self, entities: Iterable[str]) -> None:
        """Sort the key maps of those of ``entities`` that need it (once per change, not per
        read: Timsort on an appended run is linear)."""
        keys, unsorted = self._keys, self._unsorted
        for e in entities:
            if e in unsorted:
                unsorted.discard(e)
                d = keys.get(e)
                if d is not None:
                    keys[e] = dict(sorted(d.items()))

    # --------------------------------------------------------------------------- reading
    def answer(self, entities: Sequence[str], keys: Sequence[str] | None) -> dict[str, dict[str, Latest]]:
        """``entity -> {key: (ts, vtype, value)}`` (keys sorted if the entity's map is, and
        for ``keys``; those without a latest value absent): the slots of every series asked
        for first, then one gather per column."""
        get = self._keys.get
        if keys is not None:
            ks = sorted(keys)
        names: list[tuple[str, list[str]]] = []
        slots: list[int] = []
        for e in entities:
            d = get(e)
            if not d:
                names.append((e, []))
                continue
            if keys is None:
                names.append((e, list(d)))
                slots.extend(d.values())
            else:
                have = [k for k in ks if k in d]
                names.append((e, have))
                slots.extend(d[k] for k in have)
        out: dict[str, dict[str, Latest]] = {}
        if not slots:
            return {e: {} for e, _ in names}
        idx = np.array(slots, np.intp)
        ts, t = self.ts[idx].tolist(), self.t[idx].tolist()
        num, lng = self.num[idx].tolist(), self.lng[idx].tolist()
        txt = self.txt
        j = 0
        for e, ks_e in names:
            row: dict[str, Latest] = {}
            for k in ks_e:
                tc = t[j]
                if tc == _DOUBLE:
                    v: Any = num[j]
                elif tc == _LONG:
                    v = lng[j]
                elif tc == _BOOL:
                    v = num[j] != 0
                else:
                    v = txt[slots[j]]
                row[k] = (ts[j], tc, v)
                j += 1
            out[e] = row
        return out


#: What :meth:`LatestValues.load` and :meth:`LatestValues.install` take.
Snapshot = LatestTable | Mapping[str, Mapping[str, Latest]]


def _table(snapshot: Snapshot) -> LatestTable:
    return snapshot if isinstance(snapshot, LatestTable) else LatestTable.of(snapshot)


class LatestValues:
    """The latest ``(ts, vtype, value)`` of every series, as of one latest version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._table = LatestTable()
        self._version: int | None = None  # None: stale (a foreign commit was missed)
        self._seen = -1  # highest version reported by this instance's writer

    # ------------------------------------------------------------------------ loading
    @staticmethod
    def build(rows: Iterable[tuple[str, str, int, int, Any]]) -> LatestTable:
        """Rows ``(entity, key, ts, vtype, value)`` ordered by entity and key (values as Python
        types) to a table."""
        table = LatestTable()
        put = table.put
        for e, k, ts, t, v in rows:
            put(e, k, ts, t, v)
        return table

    def load(self, version: int, snapshot: Snapshot) -> None:
        """Set the whole copy (at open, before the writer runs)."""
        with self._lock:
            self._table = _table(snapshot)
            self._version = version
            self._seen = max(self._seen, version)

    @property
    def stale(self) -> bool:
        """True once a commit of another instance was missed (the copy is empty then)."""
        return self._version is None

    def __len__(self) -> int:
        """Series with a latest value in the copy."""
        return len(self._table)

    def install(self, version: int, snapshot: Snapshot) -> bool:
        """Put a reader's snapshot at ``version`` in place of a stale copy, unless this
        instance's writer already reported a later commit. Returns whether it was installed."""
        with self._lock:
            if self._version is not None or self._seen > version:
                return False
            self._table = _table(snapshot)
            self._version = version
            return True

    # ------------------------------------------------------------------ writer thread
    def _advance(self, version: int) -> bool:
        """Under the lock: must the change of commit ``version`` be applied to the copy?"""
        if version > self._seen:
            self._seen = version
        if self._version is None or version <= self._version:
            return False  # stale, or already part of a reloaded snapshot
        if version == self._version + 1:
            self._version = version
            return True
        self._version = None  # another instance committed in between: we can't know what
        self._table = LatestTable()
        return False

    def written(self, version: int, points: Iterable[tuple[str, str, int, int, Any]]) -> None:
        """Commit ``version`` wrote these ``(entity, key, ts, vtype, value)`` (the newest point
        of each series in the transaction). Same rule as the SQL upsert: a point replaces the
        latest value when its ``ts`` is newer or equal. O(1) per point."""
        with self._lock:
            if not self._advance(version):
                return
            put = self._table.put
            for e, k, ts, t, v in points:
                put(e, k, ts, t, v, True)

    def changed(self, version: int, entity: str, values: dict[str, Latest | None]) -> None:
        """Commit ``version`` set these latest values of ``entity`` (None: it has none now)."""
        with self._lock:
            if not self._advance(version):
                return
            table = self._table
            for k, v in values.items():
                if v is None:
                    table.pop(entity, k)
                else:
                    table.put(entity, k, *v)

    def dropped(self, version: int, entity: str) -> None:
        """Commit ``version`` deleted every series of ``entity``."""
        with self._lock:
            if self._advance(version):
                self._table.drop(entity)

    # ------------------------------------------------------------------------ readers
    def read(
        self, version: int, entities: Sequence[str], keys: Sequence[str] | None
    ) -> dict[str, dict[str, Latest]] | None:
        """``entity -> {key: latest}`` (keys sorted; ``keys`` filters), or None when the copy
        is older than ``version`` (what the database held when the read began) or stale."""
        with self._lock:
            if self._version is None or version > self._version:
                return None
            if keys is None:
                self._table.sort(entities)
            return self._table.answer(entities, keys)

    @staticmethod
    def answer(snapshot: Snapshot, entities: Sequence[str], keys: Sequence[str] | None) -> dict[str, dict[str, Latest]]:
        """:meth:`read`'s answer from a snapshot (a reloaded table)."""
        table = _table(snapshot)
        if keys is None:
            table.sort(entities)
        return table.answer(entities, keys)
