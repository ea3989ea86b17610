"""Every SQLite file tbpanel writes is opened here: one set of pragmas, one transaction
discipline, one migration path.

- :func:`connect` — autocommit mode (transactions are explicit), WAL (checked, not assumed),
  ``synchronous=FULL`` by default: a commit that returned is on disk.
- :class:`Database` — one connection behind one re-entrant lock, for the files whose writes
  are small and infrequent (entities, analytics). ``transaction()`` nests as savepoints;
  ``after_commit(fn)`` runs ``fn`` once the outermost transaction commits and drops it if the
  transaction rolls back, so nobody is told about a change that was undone.
- :func:`migrate` — ``PRAGMA user_version`` numbered migrations. Migration *i* (1-based) takes a
  file from version *i-1* to *i*; a file newer than the code is refused with a message, not
  opened. The telemetry store's writer keeps its own connection (it is the hot path: group
  commits on a dedicated thread) but opens and migrates it through these functions too.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("tbpanel.sqlite")


def connect(
    path: str,
    *,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 10_000,
    readonly: bool = False,
    foreign_keys: bool = False,
    cache_kib: int | None = None,
) -> sqlite3.Connection:
    """A connection in autocommit mode with tbpanel's pragmas (WAL, ``synchronous``)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        if not readonly and conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            # a new file: let it give pages back (give_back_free_pages); only possible before
            # the first table exists, and before WAL mode is set
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"cannot put {path} in WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA temp_store = MEMORY")
        if cache_kib:
            conn.execute(f"PRAGMA cache_size = -{int(cache_kib)}")
        if foreign_keys:
            conn.execute("PRAGMA foreign_keys = ON")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
    except BaseException:
        conn.close()
        raise
    return conn


def give_back_free_pages(
    conn: sqlite3.Connection, *, step_pages: int = 4096, should_stop: Callable[[], bool] | None = None
) -> int:
    """Return a file's free pages to the file system; returns how many were freed.

    Deleting rows (the hot tier after a compaction) leaves free pages that SQLite reuses but
    never releases: without this a data directory keeps its high-water mark forever. Works on
    files made with ``auto_vacuum = INCREMENTAL`` (every file :func:`connect` creates); older
    files answer 0 (a one-off ``VACUUM`` converts them). ``step_pages`` per write transaction,
    so other writers get the lock between steps; ``should_stop()`` true ends it between steps
    (a closing store does not wait for the rest, which the next call frees).
    """
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2 = INCREMENTAL
        return 0
    freed = 0
    while True:
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        if free == 0 or (should_stop is not None and should_stop()):
            break
        step = min(free, step_pages)
        # executescript steps the pragma to completion (execute() would free a single page);
        # the connection is in autocommit mode, so there is no transaction for it to commit
        conn.executescript(f"PRAGMA incremental_vacuum({step});")
        freed += step
    truncate_wal(conn)
    return freed


def truncate_wal(conn: sqlite3.Connection, wait_ms: int = 200) -> bool:
    """Checkpoint the whole WAL into the file and cut the WAL to zero bytes; True if done.

    SQLite reuses a WAL from its start after a checkpoint but never shrinks it: after a bulk
    ingest it keeps its high-water mark (74 MiB of a 98 MiB data directory after
    ``benchmarks/ingest_cpu.py``), and the file's freed pages only leave it at a checkpoint.
    A truncating checkpoint holds off new writers while it waits for readers, so it waits at
    most ``wait_ms`` (then gives up: the next call tries again); nothing is lost either way.
    """
    old = int(conn.execute("PRAGMA busy_timeout").fetchone()[0])
    conn.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
    try:
        busy = int(conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0])
    except sqlite3.OperationalError:  # locked past wait_ms
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout = {old}")
    return busy == 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[str], *, what: str) -> int:
    """Bring ``conn``'s file to ``len(migrations)``; returns the version it had.

    Each migration is an SQL script run inside one transaction with the version bump, so a
    crash leaves the file at the old version or the new one. Migration 1 of a file that
    predates versioning is written with ``IF NOT EXISTS``, so files made before it upgrade.
    """
    target = len(migrations)
    first = int(conn.execute("PRAGMA user_version").fetchone()[0])
    while True:
        # the version is read again inside the write lock: two processes opening one old file
        # at once run each migration once, not twice
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > target:
                raise RuntimeError(
                    f"{what} has schema version {version}; this tbpanel understands up to {target}. Upgrade tbpanel."
                )
            if version == target:
                conn.execute("COMMIT")
                return first
            for statement in _statements(migrations[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction); a
    ``;`` inside a string or trigger body does not end a statement."""
    out, buf = [], ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n\t;"):
                out.append(buf.strip())
            buf = ""
    if buf.strip(" \n\t;"):
        out.append(buf.strip())
    return out


class Database:
    """One connection, one lock, nested transactions with after-commit callbacks."""

    def __init__(
        self,
        path: str,
        migrations: Sequence[str],
        *,
        what: str,
        on_rollback: Callable[[], None] | None = None,
        **connect_options: Any,
    ) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._after_commit: list[Callable[[], None]] = []
        self._on_rollback = on_rollback
        self.conn = connect(path, **connect_options)
        try:
            migrate(self.conn, migrations, what=what)
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def in_transaction(self) -> bool:
        """Whether a ``transaction()`` block is open (on any thread: callers hold ``lock``)."""
        return self._depth > 0

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (nested blocks become savepoints); holds the lock throughout."""
        with self._lock:
            depth = self._depth
            if depth == 0:
                self.conn.execute("BEGIN IMMEDIATE")
                self._after_commit = []
            else:
                self.conn.execute(f"SAVEPOINT sp{depth}")
            self._depth = depth + 1
            try:
                yield self.conn
            except BaseException:
                self._depth = depth
                if depth == 0:
                    self._rollback()
                else:
                    self.conn.execute(f"ROLLBACK TO sp{depth}")
                    self.conn.execute(f"RELEASE sp{depth}")
                    if self._on_rollback:
                        self._on_rollback()
                raise
            self._depth = depth
            if depth > 0:
                self.conn.execute(f"RELEASE sp{depth}")
                return
            try:
                self.conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            callbacks, self._after_commit = self._after_commit, []
        for fn in callbacks:  # outside the lock: callbacks may read the database
            try:
                fn()
            except Exception:  # a listener's bug must not undo or hide a commit
                log.exception("after-commit callback failed (%s)", self.path)

    def _rollback(self) -> None:
        self._after_commit = []
        if self._on_rollback:
            self._on_rollback()
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the open transaction commits; at once when none is open."""
        with self._lock:
            if self._depth == 0:
                pending = False
            else:
                self._after_commit.append(fn)
                pending = True
        if not pending:
            fn()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The shared connection for reads (sees the caller's own open transaction, if any)."""
        with self._lock:
            yield self.conn

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            row: tuple[Any, ...] | None = self.conn.execute(sql, tuple(params)).fetchone()
            return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, tuple(params)).fetchall()
