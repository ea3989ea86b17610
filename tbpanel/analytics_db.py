"""``analytics.sqlite``: anomaly models, anomalies, alarms and the task history — one file, one schema.

The anomalies and the alarms they cause are in one file so that an anomaly change and the alarm
transition it causes commit in one transaction (:func:`open_database`: one
:class:`~tbpanel.sqlite.Database` shared by :class:`~tbpanel.anomaly.repository.AnomalyRepository`
and :class:`~tbpanel.alarms.AlarmRepository`). The task history is there too, so a data
directory keeps everything analytics in one file; :class:`~tbpanel.jobs.TaskRunner` writes it
through a connection of its own (:func:`connect`, see there why).

The schema is :data:`MIGRATIONS`, numbered by ``PRAGMA user_version`` (:func:`tbpanel.sqlite.migrate`):
migration 1 is the tables as they were before the file had a version, with ``IF NOT EXISTS``, so
files made before it upgrade in place. A schema change appends a migration; it never edits one.
"""

from __future__ import annotations

import sqlite3
from os import PathLike

from .sqlite import Database, migrate
from .sqlite import connect as sqlite_connect

FILE = "analytics.sqlite"

_V1 = """
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    status TEXT NOT NULL, message TEXT NOT NULL DEFAULT '', trained TEXT,
    created_ms INTEGER NOT NULL, built_ms INTEGER, refresh TEXT NOT NULL DEFAULT '{}',
    last_refresh_end_ms INTEGER, last_refresh_run_ms INTEGER, refits INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS models_tenant ON models(tenant_id);

CREATE TABLE IF NOT EXISTS anomalies (
    id TEXT PRIMARY KEY, model_id TEXT NOT NULL, item TEXT NOT NULL,
    start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL, score REAL NOT NULL,
    score_index REAL NOT NULL, cluster INTEGER NOT NULL, detected_at INTEGER NOT NULL,
    active INTEGER NOT NULL, n_segments INTEGER NOT NULL, details TEXT NOT NULL DEFAULT '{}',
    suppressed INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS anomalies_model_item ON anomalies(model_id, item, start_ts);

CREATE TABLE IF NOT EXISTS alarms (
    id TEXT PRIMARY KEY, created_time INTEGER NOT NULL, tenant_id TEXT NOT NULL, customer_id TEXT,
    type TEXT NOT NULL, originator_type TEXT NOT NULL, originator_id TEXT NOT NULL,
    originator_name TEXT NOT NULL DEFAULT '', severity TEXT NOT NULL, severity_rank INTEGER NOT NULL,
    acknowledged INTEGER NOT NULL DEFAULT 0, cleared INTEGER NOT NULL DEFAULT 0,
    start_ts INTEGER NOT NULL, end_ts INTEGER NOT NULL, ack_ts INTEGER NOT NULL DEFAULT 0,
    clear_ts INTEGER NOT NULL DEFAULT 0, details TEXT NOT NULL DEFAULT '{}',
    propagate INTEGER NOT NULL DEFAULT 0, anomaly_id TEXT, model_id TEXT);
CREATE INDEX IF NOT EXISTS alarms_tenant_created ON alarms(tenant_id, created_time);
CREATE INDEX IF NOT EXISTS alarms_originator ON alarms(originator_id, type, cleared);
CREATE INDEX IF NOT EXISTS alarms_anomaly ON alarms(anomaly_id);
-- the storm guard as a constraint: a bug can never leave two active alarms of one type on a device
CREATE UNIQUE INDEX IF NOT EXISTS alarms_one_active ON alarms(originator_id, type) WHERE cleared = 0;

CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY, kind TEXT, model_id TEXT, tenant_id TEXT, status TEXT,
    progress REAL, message TEXT, created_ms INTEGER, started_ms INTEGER,
    finished_ms INTEGER, log TEXT, params TEXT, result TEXT);
CREATE INDEX IF NOT EXISTS tasks_model ON tasks(model_id, created_ms);
"""

#: Migration *i* takes the file from version *i - 1* to *i*.
MIGRATIONS: tuple[str, ...] = (_V1,)


def open_database(path: str | PathLike[str]) -> Database:
    """The shared connection for models, anomalies and alarms, the file brought to the current schema."""
    return Database(str(path), MIGRATIONS, what=str(path))


def connect(path: str | PathLike[str]) -> sqlite3.Connection:
    """A connection of its own to the file (brought to the current schema), for the task runner:
    its records are written from worker threads and read by pages and handlers on the event loop,
    and must commit on their own, never inside (and never rolled back with) an anomaly transaction
    that the same thread has open on the shared :class:`~tbpanel.sqlite.Database`. With WAL, its
    reads and writes also never queue behind the lock of a long anomaly transaction."""
    conn = sqlite_connect(str(path))
    try:
        migrate(conn, MIGRATIONS, what=str(path))
    except BaseException:
        conn.close()
        raise
    return conn
