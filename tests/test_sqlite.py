"""tbpanel.sqlite: pragmas, numbered migrations, nested transactions and after-commit callbacks."""

from __future__ import annotations

import os
import sqlite3

import pytest

from tbpanel import sqlite as db
from tbpanel.sqlite import Database, connect, migrate

V1 = "CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER);"
V2 = "ALTER TABLE t ADD COLUMN note TEXT; CREATE INDEX t_v ON t(v);"


def test_connect_is_wal_and_full_sync(tmp_path):
    conn = connect(str(tmp_path / "a.sqlite"))
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_migrations_run_once_in_order_and_newer_files_are_refused(tmp_path):
    path = str(tmp_path / "m.sqlite")
    conn = connect(path)
    assert migrate(conn, [V1], what=path) == 0
    conn.execute("INSERT INTO t VALUES ('a', 1)")
    assert migrate(conn, [V1, V2], what=path) == 1
    assert migrate(conn, [V1, V2], what=path) == 2
    assert conn.execute("SELECT k, v, note FROM t").fetchall() == [("a", 1, None)]
    with pytest.raises(RuntimeError, match="schema version 2; this tbpanel understands up to 1"):
        migrate(conn, [V1], what=path)


def test_a_failed_migration_leaves_the_old_version(tmp_path):
    path = str(tmp_path / "f.sqlite")
    conn = connect(path)
    migrate(conn, [V1], what=path)
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn, [V1, "ALTER TABLE t ADD COLUMN x INTEGER; SELECT * FROM missing;"], what=path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert [r[1] for r in conn.execute("PRAGMA table_info(t)")] == ["k", "v"]


def test_nested_transactions_and_after_commit(tmp_path):
    rolled = []
    db = Database(str(tmp_path / "d.sqlite"), [V1], what="d", on_rollback=lambda: rolled.append(1))
    heard = []
    with db.transaction() as c:
        c.execute("INSERT INTO t VALUES ('a', 1)")
        db.after_commit(lambda: heard.append("outer"))
        with pytest.raises(ValueError):
            with db.transaction() as c2:
                c2.execute("INSERT INTO t VALUES ('b', 2)")
                raise ValueError("undo the savepoint only")
        assert heard == []  # nothing announced before the commit
    assert heard == ["outer"] and rolled == [1]
    assert db.all("SELECT k FROM t") == [("a",)]
    with pytest.raises(RuntimeError):
        with db.transaction() as c:
            c.execute("INSERT INTO t VALUES ('c', 3)")
            db.after_commit(lambda: heard.append("never"))
            raise RuntimeError
    assert heard == ["outer"] and db.one("SELECT count(*) FROM t") == (1,)
    db.after_commit(lambda: heard.append("now"))  # no transaction open: runs at once
    assert heard == ["outer", "now"]


def test_new_files_give_free_pages_back(tmp_path):
    path = str(tmp_path / "f.sqlite")
    conn = db.connect(path)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL, set before the first table
    conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b BLOB)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t (b) VALUES (?)", [(bytes(500),) for _ in range(20_000)])
    conn.execute("COMMIT")
    conn.execute("DELETE FROM t WHERE a > 1000")
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert free > 1000
    assert db.give_back_free_pages(conn, step_pages=300) == free  # several steps
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1000
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert os.path.getsize(path) < 1000 * 600 + 200_000
    conn.close()
    old = sqlite3.connect(str(tmp_path / "old.sqlite"))  # a file made without it: left alone
    old.execute("CREATE TABLE t (a)")
    assert db.give_back_free_pages(old) == 0
    old.close()


def test_compaction_gives_the_hot_tiers_pages_back(tmp_path):
    from tbpanel.store import open_store
    from tbpanel.store.values import ValueType as V

    jan = 1_704_067_200_000
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        s.write_points([(f"d{i % 50}", "k", jan + i * 1000, V.DOUBLE, i / 8) for i in range(200_000)])
        hot = os.path.join(s.path, "telemetry.sqlite")
        conn = sqlite3.connect(hot)  # the points into the main file first (bulk writes are blocks,
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # small enough to stay in the WAL)
        conn.close()
        before = os.path.getsize(hot)
        assert s.compact(before_ts=4_102_444_800_000)["points_moved"] == 200_000
        conn = sqlite3.connect(hot)
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        assert os.path.getsize(hot) < before / 4, (os.path.getsize(hot), before)
        assert len(s.query_raw("d7", ["k"], 0, 4_102_444_800_000, limit=10_000)["k"]) == 4_000
