"""The entity database's schema, and what the registry's per-table mixins share.

:class:`~tbpanel.entities.registry.EntityRegistry` is assembled from one mixin per concept
(``tenants.py``, ``customers.py``, ``users.py``, ``devices.py``, ``attributes.py``); each
holds its table's SQL and derives from :class:`Tables`, which gives them the one
:class:`~tbpanel.sqlite.Database` (connection, lock, nested transactions), the access-token
cache every device write must invalidate, and the two referential checks several tables make.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import InvalidInput, NotFound
from ..sqlite import Database
from . import fields
from .models import Device

#: The default profile every tenant has (see profiles.py)
DEFAULT_PROFILE_NAME = "default"
#: ThingsBoard's profileData of a new profile
DEFAULT_PROFILE_DATA: dict[str, Any] = {
    "configuration": {"type": "DEFAULT"},
    "transportConfiguration": {"type": "DEFAULT"},
    "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": None},
    "alarms": None,
}
DEFAULT_PROFILE_DATA_JSON = json.dumps(DEFAULT_PROFILE_DATA, separators=(",", ":"))

#: Migration 2 of the entity database: the profile table, a default profile per tenant, one
#: profile per device type in use, and every device pointing at its profile.
_UUID_SQL = (
    "lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' || substr(lower(hex(randomblob(2))), 2)"
    " || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(lower(hex(randomblob(2))), 2)"
    " || '-' || lower(hex(randomblob(6)))"
)
_NOW_SQL = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
_PROFILES_MIGRATION = f"""
CREATE TABLE device_profile (
    id                      TEXT PRIMARY KEY,
    created_time            INTEGER NOT NULL,
    tenant_id               TEXT NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    name                    TEXT NOT NULL,
    description             TEXT,
    type                    TEXT NOT NULL DEFAULT 'DEFAULT',
    transport_type          TEXT NOT NULL DEFAULT 'DEFAULT',
    provision_type          TEXT NOT NULL DEFAULT 'DISABLED',
    is_default              INTEGER NOT NULL DEFAULT 0,
    profile_data            TEXT NOT NULL,
    provision_device_key    TEXT UNIQUE,
    provision_device_secret TEXT,
    UNIQUE (tenant_id, name)
);
CREATE UNIQUE INDEX device_profile_one_default ON device_profile(tenant_id) WHERE is_default = 1;
INSERT INTO device_profile (id, created_time, tenant_id, name, description, is_default, profile_data)
    SELECT {_UUID_SQL}, {_NOW_SQL}, id, '{DEFAULT_PROFILE_NAME}', 'Default device profile', 1,
           '{DEFAULT_PROFILE_DATA_JSON}'
    FROM tenant;
INSERT INTO device_profile (id, created_time, tenant_id, name, description, is_default, profile_data)
    SELECT {_UUID_SQL}, {_NOW_SQL}, tenant_id, type, '', 0, '{DEFAULT_PROFILE_DATA_JSON}'
    FROM (SELECT DISTINCT tenant_id, type FROM device WHERE type <> '{DEFAULT_PROFILE_NAME}');
ALTER TABLE device ADD COLUMN device_profile_id TEXT REFERENCES device_profile(id);
UPDATE device SET device_profile_id =
    (SELECT p.id FROM device_profile p WHERE p.tenant_id = device.tenant_id AND p.name = device.type);
CREATE INDEX device_by_profile ON device(device_profile_id);
"""

#: Migration 3: dashboards (tbpanel/dashboards/store.py) and their assignment to customers. A
#: dashboard goes with its tenant, an assignment with its dashboard or its customer.
_DASHBOARDS_MIGRATION = """
CREATE TABLE dashboard (
    id              TEXT PRIMARY KEY,
    created_time    INTEGER NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    image           TEXT,
    mobile_hide     INTEGER NOT NULL DEFAULT 0,
    mobile_order    INTEGER,
    configuration   TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX dashboard_tenant ON dashboard(tenant_id, created_time);
CREATE TABLE dashboard_customer (
    dashboard_id    TEXT NOT NULL REFERENCES dashboard(id) ON DELETE CASCADE,
    customer_id     TEXT NOT NULL REFERENCES customer(id) ON DELETE CASCADE,
    PRIMARY KEY (dashboard_id, customer_id)
) WITHOUT ROWID;
CREATE INDEX dashboard_customer_by_customer ON dashboard_customer(customer_id, dashboard_id);
"""

#: The schema, one script per ``PRAGMA user_version``. Version 1 is written with
#: ``IF NOT EXISTS`` because files made before versioning (version 0) already have tables.
#: Add a migration by appending a script; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
CREATE TABLE IF NOT EXISTS tenant (
    id              TEXT PRIMARY KEY,
    created_time    INTEGER NOT NULL,
    title           TEXT NOT NULL UNIQUE,
    additional_info TEXT
);
CREATE TABLE IF NOT EXISTS customer (
    id              TEXT PRIMARY KEY,
    created_time    INTEGER NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    contact         TEXT NOT NULL DEFAULT '{}',
    additional_info TEXT,
    UNIQUE (tenant_id, title)
);
CREATE TABLE IF NOT EXISTS users (
    id              TEXT PRIMARY KEY,
    created_time    INTEGER NOT NULL,
    tenant_id       TEXT REFERENCES tenant(id) ON DELETE CASCADE,
    customer_id     TEXT REFERENCES customer(id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    email_key       TEXT NOT NULL UNIQUE,
    authority       TEXT NOT NULL
                    CHECK (authority IN ('SYS_ADMIN', 'TENANT_ADMIN', 'CUSTOMER_USER')),
    first_name      TEXT NOT NULL DEFAULT '',
    last_name       TEXT NOT NULL DEFAULT '',
    enabled         INTEGER NOT NULL DEFAULT 1,
    password_hash   TEXT NOT NULL,
    additional_info TEXT
);
CREATE INDEX IF NOT EXISTS users_tenant_customer ON users(tenant_id, customer_id);
CREATE INDEX IF NOT EXISTS users_customer ON users(customer_id);
CREATE TABLE IF NOT EXISTS device (
    id              TEXT PRIMARY KEY,
    created_time    INTEGER NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenant(id) ON DELETE CASCADE,
    customer_id     TEXT REFERENCES customer(id) ON DELETE SET NULL,
    name            TEXT NOT NULL,
    type            TEXT NOT NULL,
    label           TEXT,
    additional_info TEXT,
    access_token    TEXT NOT NULL UNIQUE,
    UNIQUE (tenant_id, name)
);
CREATE INDEX IF NOT EXISTS device_tenant_created ON device(tenant_id, created_time);
CREATE INDEX IF NOT EXISTS device_customer ON device(customer_id);
CREATE TABLE IF NOT EXISTS attribute (
    entity_id       TEXT NOT NULL,
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL,
    t               INTEGER NOT NULL,
    v,
    last_update_ts  INTEGER NOT NULL,
    PRIMARY KEY (entity_id, scope, key)
) WITHOUT ROWID;
""",
    _PROFILES_MIGRATION,
    _DASHBOARDS_MIGRATION,
)

#: Entries kept in the access-token cache before it is flushed (bounds memory).
TOKEN_CACHE_LIMIT = 200_000


class TokenCache:
    """Access token → device, so that ingest (``device_by_token``) needs no lock or query
    once a token has been seen.

    Reads are lock-free dict lookups; ``put``/``forget``/``clear`` run under the registry
    lock. Every write to a device's row calls :meth:`forget` first, and a rolled-back
    transaction calls :meth:`clear`, so the cache never serves a state the database lacks.
    """

    def __init__(self, limit: int = TOKEN_CACHE_LIMIT) -> None:
        self.limit = limit
        self._devices: dict[str, Device] = {}
        self._token_of: dict[str, str] = {}  # device id -> cached token

    def get(self, token: str) -> Device | None:
        return self._devices.get(token)

    def of_device(self, device_id: str) -> Device | None:
        """The cached device with this id (``get_device`` answers from it), or None."""
        token = self._token_of.get(device_id)
        return None if token is None else self._devices.get(token)

    def put(self, token: str, device: Device) -> None:
        if len(self._devices) >= self.limit:
            self.clear()
        self._devices[token] = device
        self._token_of[device.id] = token

    def forget(self, device_id: str) -> None:
        token = self._token_of.pop(device_id, None)
        if token is not None:
            self._devices.pop(token, None)

    def clear(self) -> None:
        self._devices.clear()
        self._token_of.clear()


class Tables:
    """Base of the table mixins: the shared database and the helpers every table uses.

    Thread safety: one connection behind one re-entrant lock. Every method (and every
    :meth:`transaction` block) holds the lock for its whole duration, so statements of
    different threads never interleave inside a transaction.
    """

    _db: Database
    _tokens: TokenCache

    @property
    def database(self) -> Database:
        """The entity database itself, for stores that keep their tables in it (dashboards)."""
        return self._db

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db.conn

    @property
    def _lock(self) -> threading.RLock:
        return self._db.lock

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one atomic write (nested blocks become savepoints).

        Holds the registry lock for the whole block: keep blocks short.
        """
        with self._db.transaction():
            yield

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self._db.one(sql, params)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._db.all(sql, params)

    def _count(self, table: str, where: str, params: Sequence[Any]) -> int:
        row = self._one(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)
        assert row is not None  # COUNT(*) always answers one row
        return int(row[0])

    def _forget_device(self, device_id: str) -> None:
        self._tokens.forget(device_id)

    def _require_tenant(self, tenant_id: Any) -> str:
        """The canonical id of an existing tenant (NotFound otherwise)."""
        tid = fields.canonical_id(tenant_id, "tenant")
        if not self._one("SELECT 1 FROM tenant WHERE id = ?", (tid,)):
            raise NotFound(f"Tenant {tid} not found")
        return tid

    def _check_customer_of_tenant(self, cid: str, tid: str | None) -> None:
        """``cid`` exists (NotFound) and belongs to tenant ``tid`` (InvalidInput)."""
        row = self._one("SELECT tenant_id FROM customer WHERE id = ?", (cid,))
        if row is None:
            raise NotFound(f"Customer {cid} not found")
        if row[0] != tid:
            raise InvalidInput(f"Customer {cid} belongs to another tenant")
