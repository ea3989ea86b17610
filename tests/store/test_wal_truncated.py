"""After a compaction the hot tier's WAL is cut back to nothing (SQLite keeps a WAL's high-water
mark otherwise: 74 of 98 MiB of a settled data directory), and a reader holding a snapshot only
makes the truncation wait a bounded time, then give up without losing anything."""

from __future__ import annotations

import os
import sqlite3

from tbpanel import sqlite as db
from tbpanel.store import open_store
from tbpanel.store.values import ValueType as V

JAN = 1_704_067_200_000


def test_compaction_leaves_no_wal_behind(tmp_path):
    with open_store(tmp_path / "data", compaction_interval_s=0) as s:
        s.write_points([(f"d{i % 20}", "k", JAN + i * 1000, V.DOUBLE, i / 4) for i in range(100_000)])
        wal = os.path.join(s.path, "telemetry.sqlite-wal")
        assert os.path.getsize(wal) > 1_000_000  # the ingest grew it
        assert s.compact(before_ts=4_102_444_800_000)["points_moved"] == 100_000
        assert os.path.getsize(wal) == 0
        assert len(s.query_raw("d3", ["k"], 0, 4_102_444_800_000, limit=10_000)["k"]) == 5_000


def test_a_reader_makes_the_truncation_give_up_not_wait(tmp_path):
    path = str(tmp_path / "t.sqlite")
    writer = db.connect(path)
    writer.execute("CREATE TABLE t (a)")
    writer.executemany("INSERT INTO t VALUES (?)", [(bytes(300),) for _ in range(2_000)])
    reader = db.connect(path, readonly=True)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 2_000  # holds its snapshot
    writer.execute("INSERT INTO t VALUES (1)")  # a frame the reader's snapshot lacks
    assert db.truncate_wal(writer, wait_ms=20) is False
    assert int(writer.execute("PRAGMA busy_timeout").fetchone()[0]) == 10_000  # restored
    reader.execute("COMMIT")
    assert db.truncate_wal(writer) is True
    assert os.path.getsize(path + "-wal") == 0
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 2_001
    reader.close()
    writer.close()
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone()[0] == 2_001
