"""Latest values in memory: ``entity -> key -> (ts, vtype, value)``, ThingsBoard's
``ts_kv_latest`` kept in RAM so :meth:`TelemetryStore.latest_many` answers without SQL.

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
from collections.abc import Iterable, Sequence
from typing import Any

Latest = tuple[int, int, Any]  # (ts, vtype, value)


class LatestValues:
    """The latest ``(ts, vtype, value)`` of every series, as of one latest version."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_entity: dict[str, dict[str, Latest]] = {}  # keys sorted, except for _unsorted
        #: entities whose dict got a key out of order since it was last sorted: sorted once, by
        #: the next reader that wants all their keys (a re-sort per new key made a message with
        #: n new keys cost O(n² log n) on the writer thread)
        self._unsorted: set[str] = set()
        self._version: int | None = None  # None: stale (a foreign commit was missed)
        self._seen = -1  # highest version reported by this instance's writer

    # ------------------------------------------------------------------------ loading
    @staticmethod
    def build(rows: Iterable[tuple[str, str, int, int, Any]]) -> dict[str, dict[str, Latest]]:
        """Rows ``(entity, key, ts, vtype, value)`` ordered by entity and key (values as Python
        types) to the mapping."""
        by_entity: dict[str, dict[str, Latest]] = {}
        for e, k, ts, t, v in rows:
            d = by_entity.get(e)
            if d is None:
                by_entity[e] = d = {}
            d[k] = (ts, t, v)
        return by_entity

    def load(self, version: int, by_entity: dict[str, dict[str, Latest]]) -> None:
        """Set the whole copy (at open, before the writer runs)."""
        with self._lock:
            self._by_entity = by_entity
            self._unsorted = set()
            self._version = version
            self._seen = max(self._seen, version)

    @property
    def stale(self) -> bool:
        """True once a commit of another instance was missed (the copy is empty then)."""
        return self._version is None

    def install(self, version: int, by_entity: dict[str, dict[str, Latest]]) -> bool:
        """Put a reader's snapshot at ``version`` in place of a stale copy, unless this
        instance's writer already reported a later commit. Returns whether it was installed."""
        with self._lock:
            if self._version is not None or self._seen > version:
                return False
            self._by_entity = by_entity
            self._unsorted = set()
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
        self._by_entity = {}
        self._unsorted = set()
        return False

    def written(self, version: int, points: Iterable[tuple[str, str, int, int, Any]]) -> None:
        """Commit ``version`` wrote these ``(entity, key, ts, vtype, value)`` (the newest point
        of each series in the transaction). Same rule as the SQL upsert: a point replaces the
        latest value when its ``ts`` is newer or equal. O(1) per point: a key that lands out
        of order only marks its entity unsorted."""
        with self._lock:
            if not self._advance(version):
                return
            by_entity = self._by_entity
            unsorted = self._unsorted
            for e, k, ts, t, v in points:
                d = by_entity.get(e)
                if d is None:
                    by_entity[e] = {k: (ts, t, v)}
                    continue
                cur = d.get(k)
                if cur is not None:
                    if ts >= cur[0]:
                        d[k] = (ts, t, v)
                    continue
                if e not in unsorted and k < next(reversed(d)):
                    unsorted.add(e)
                d[k] = (ts, t, v)

    def changed(self, version: int, entity: str, values: dict[str, Latest | None]) -> None:
        """Commit ``version`` set these latest values of ``entity`` (None: it has none now)."""
        with self._lock:
            if not self._advance(version):
                return
            d = dict(self._by_entity.get(entity, {}))
            for k, v in values.items():
                if v is None:
                    d.pop(k, None)
                else:
                    d[k] = v
            if d:
                self._by_entity[entity] = dict(sorted(d.items()))
            else:
                self._by_entity.pop(entity, None)
            self._unsorted.discard(entity)

    def dropped(self, version: int, entity: str) -> None:
        """Commit ``version`` deleted every series of ``entity``."""
        with self._lock:
            if self._advance(version):
                self._by_entity.pop(entity, None)
                self._unsorted.discard(entity)

    # ------------------------------------------------------------------------ readers
    def read(
        self, version: int, entities: Sequence[str], keys: Sequence[str] | None
    ) -> dict[str, dict[str, Latest]] | None:
        """``entity -> {key: latest}`` (keys sorted; ``keys`` filters), or None when the copy
        is older than ``version`` (what the database held when the read began) or stale."""
        with self._lock:
            if self._version is None or version > self._version:
                return None
            if keys is None and self._unsorted:
                self._sort(entities)
            return self.answer(self._by_entity, entities, keys)

    def _sort(self, entities: Sequence[str]) -> None:
        """Under the lock: sort the key dicts of those of ``entities`` that need it (once per
        change, not per read: Timsort on an appended run is linear)."""
        by_entity, unsorted = self._by_entity, self._unsorted
        for e in entities:
            if e in unsorted:
                unsorted.discard(e)
                d = by_entity.get(e)
                if d is not None:
                    by_entity[e] = dict(sorted(d.items()))

    @staticmethod
    def answer(
        by_entity: dict[str, dict[str, Latest]], entities: Sequence[str], keys: Sequence[str] | None
    ) -> dict[str, dict[str, Latest]]:
        get = by_entity.get
        if keys is None:
            return {e: dict(get(e, ())) for e in entities}
        ks = sorted(keys)
        out = {}
        for e in entities:
            d = get(e)
            out[e] = {k: d[k] for k in ks if k in d} if d else {}
        return out
