"""The entity registry: tenants, customers, users, devices and attributes in SQLite.

One file, ``DATA/entities.sqlite`` (WAL, ``synchronous=FULL``, foreign keys on), created with
mode 0600 because it holds password hashes and device access tokens. It is opened through
:class:`tbpanel.sqlite.Database`; its schema is :data:`MIGRATIONS` (``PRAGMA user_version``).

Thread safety: one connection guarded by a re-entrant lock. Every method (and every
:meth:`EntityRegistry.transaction` block) holds the lock for its whole duration, so statements
of different threads never interleave inside a transaction. Password hashing and verification
run outside the lock. ``device_by_token`` (the ingest hot path) answers from an in-memory
cache without taking the lock once a token has been seen.

Conventions: ids are canonical UUID strings (``uuid.UUID`` objects, ThingsBoard id objects
``{"entityType": ..., "id": ...}`` and entity objects are accepted too); ``get_*`` raise
:class:`NotFound`, ``find_*`` return ``None``; a customer id equal to ThingsBoard's NULL UUID
means "no customer". Returned objects are snapshots; treat them as read-only.
"""
from __future__ import annotations

import json
import math
import os
import re
import secrets
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..clock import now_ms as _now_ms
from ..sqlite import Database
from . import passwords
from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from .models import (
    AUTHORITIES,
    CUSTOMER_CONTACT_FIELDS,
    CUSTOMER_USER,
    NULL_UUID,
    SYS_ADMIN,
    TENANT_ADMIN,
    Customer,
    Device,
    Entity,
    Tenant,
    User,
)

__all__ = ["EntityRegistry", "init", "DB_FILE", "ATTRIBUTE_SCOPES", "generate_access_token"]

DB_FILE = "entities.sqlite"
ATTRIBUTE_SCOPES = ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE")
MAX_NAME_LENGTH = 255
MAX_TOKEN_LENGTH = 128
MAX_EMAIL_LENGTH = 255
#: Entries kept in the access-token cache before it is flushed (bounds memory).
TOKEN_CACHE_LIMIT = 200_000

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
_TOKEN_BAD_CHARS = re.compile(r"[\s/?#%\\\x00-\x1f\x7f]")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

_DEVICE_SORT = {"createdTime": "created_time", "name": "name COLLATE NOCASE",
                "type": "type COLLATE NOCASE", "label": "label COLLATE NOCASE"}
_CUSTOMER_SORT = {"createdTime": "created_time", "title": "title COLLATE NOCASE",
                  "email": "json_extract(contact, '$.email') COLLATE NOCASE",
                  "country": "json_extract(contact, '$.country') COLLATE NOCASE",
                  "city": "json_extract(contact, '$.city') COLLATE NOCASE"}
_USER_SORT = {"createdTime": "created_time", "email": "email_key",
              "firstName": "first_name COLLATE NOCASE", "lastName": "last_name COLLATE NOCASE"}

#: The schema, one script per ``PRAGMA user_version``. Version 1 is written with
#: ``IF NOT EXISTS`` because files made before versioning (version 0) already have tables.
#: Add a migration by appending a script; never edit a released one.
MIGRATIONS: tuple[str, ...] = ("""
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
""",)
SCHEMA_VERSION = len(MIGRATIONS)

_DEVICE_COLS = "id, created_time, tenant_id, customer_id, name, type, label, additional_info"
_USER_COLS = ("id, created_time, tenant_id, customer_id, email, authority, first_name, "
              "last_name, enabled, additional_info")
_CUSTOMER_COLS = "id, created_time, tenant_id, title, contact, additional_info"


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------

def generate_access_token() -> str:
    """A random device access token: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


def _uuid(value: Any, what: str) -> str:
    """Canonical UUID string from a str / UUID / ThingsBoard id dict / entity object."""
    if isinstance(value, Entity):
        value = value.id
    elif isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(f"{what} id must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidInput(f"Invalid {what} id {value[:60]!r}: not a UUID") from None


def _opt_customer(value: Any) -> str | None:
    """A customer id, or None for "no customer" (None or ThingsBoard's NULL UUID)."""
    if value is None:
        return None
    cid = _uuid(value, "customer")
    return None if cid == NULL_UUID else cid


def _text(value: Any, what: str, *, max_len: int = MAX_NAME_LENGTH) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters")
    if "\x00" in value:
        raise InvalidInput(f"{what} must not contain NUL characters")
    return value


def _opt_text(value: Any, what: str, *, max_len: int = MAX_NAME_LENGTH) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters")
    return value


def _info(value: Any, what: str = "additionalInfo") -> str | None:
    """additionalInfo as JSON text (a JSON object or None)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None


def _load_info(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


def _email(value: Any) -> tuple[str, str]:
    """(email as given but stripped, lower-cased key used for uniqueness)."""
    if not isinstance(value, str):
        raise InvalidInput(f"email must be a string, got {type(value).__name__}")
    email = value.strip()
    if not email:
        raise InvalidInput("email must not be empty")
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL_RE.match(email):
        raise InvalidInput(f"{email[:80]!r} is not a valid email address")
    return email, email.lower()


def _password(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"password must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput("password must not be empty")
    if len(value) > passwords.MAX_PASSWORD_LENGTH:
        raise InvalidInput(f"password is longer than {passwords.MAX_PASSWORD_LENGTH} characters")
    return value


def _access_token(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"access token must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidInput("access token must not be empty")
    if len(value) > MAX_TOKEN_LENGTH:
        raise InvalidInput(f"access token is longer than {MAX_TOKEN_LENGTH} characters")
    if _TOKEN_BAD_CHARS.search(value):
        raise InvalidInput("access token must not contain whitespace, control characters "
                           "or any of / ? # % \\")
    return value


def _paging(page: Any, page_size: Any) -> tuple[int, int]:
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise InvalidInput(f"page must be an integer >= 0, got {page!r}")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise InvalidInput(f"pageSize must be an integer >= 1, got {page_size!r}")
    return page, page_size


def _order(sort_property: str, sort_order: str, allowed: dict[str, str]) -> str:
    column = allowed.get(sort_property)
    if column is None:
        raise InvalidInput(f"Unsupported sortProperty {sort_property!r}; "
                           f"use one of {', '.join(allowed)}")
    direction = str(sort_order).upper()
    if direction not in ("ASC", "DESC"):
        raise InvalidInput(f"sortOrder must be ASC or DESC, got {sort_order!r}")
    return f"{column} {direction}, id {direction}"


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _check_point(point: Any) -> tuple[int, str, int, Any]:
    """Validate one ``(ts, key, vtype, value)`` attribute point (ValueType codes)."""
    from tbpanel.store.values import ValueType  # lazy: keep `entities` import light

    try:
        ts, key, vtype, value = point
    except (TypeError, ValueError):
        raise InvalidInput(f"attribute point must be (ts, key, vtype, value), got {point!r}") from None
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise InvalidInput(f"attribute timestamp must be epoch ms >= 0, got {ts!r}")
    _text(key, "attribute key")
    try:
        vtype = ValueType(vtype)
    except ValueError:
        raise InvalidInput(f"unknown value type {vtype!r} for attribute {key!r}") from None
    ok = {
        ValueType.BOOL: isinstance(value, bool),
        ValueType.LONG: isinstance(value, int) and not isinstance(value, bool)
        and _LONG_MIN <= value <= _LONG_MAX,
        ValueType.DOUBLE: isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value),
        ValueType.STR: isinstance(value, str),
        ValueType.JSON: isinstance(value, str),
    }[vtype]
    if not ok:
        raise InvalidInput(f"value {value!r} of attribute {key!r} does not match type {vtype.name}")
    if vtype == ValueType.DOUBLE:
        value = float(value)
    elif vtype == ValueType.BOOL:
        value = int(value)
    return ts, key, int(vtype), value


def _typed_value(t: int, v: Any) -> Any:
    from tbpanel.store.values import ValueType

    if t == ValueType.BOOL:
        return bool(v)
    if t == ValueType.LONG:
        return int(v)
    if t == ValueType.DOUBLE:
        return float(v)
    return v if isinstance(v, str) else str(v)


def _create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
class EntityRegistry:
    """Tenants, customers, users, devices and attributes of one data directory.

    ``EntityRegistry(data_dir)`` opens (creating if needed) ``data_dir/entities.sqlite``;
    with ``create=False`` a missing database raises :class:`NotFound` instead.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, data_dir: str | os.PathLike, *, create: bool = True):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILE
        if not create and not self.path.exists():
            raise NotFound(f"No tbpanel entity database at {self.path}: run `tbpanel init` first")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _create_private_file(self.path)
        self._token_cache: dict[str, Device] = {}
        self._token_of: dict[str, str] = {}  # device id -> cached token
        # a rolled-back transaction may have changed (and cached) devices: flush the cache
        self._db = Database(str(self.path), MIGRATIONS, what=str(self.path),
                            on_rollback=self._flush_token_cache, foreign_keys=True)

    @property
    def _conn(self) -> sqlite3.Connection:
        return self._db.conn

    @property
    def _lock(self) -> threading.RLock:
        return self._db.lock

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._token_cache.clear()
            self._token_of.clear()
            self._db.close()

    def __enter__(self) -> "EntityRegistry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EntityRegistry({str(self.data_dir)!r})"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one atomic write (nested blocks become savepoints).

        Holds the registry lock for the whole block: keep blocks short.
        """
        with self._db.transaction():
            yield

    def _one(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        return self._db.one(sql, tuple(params))

    def _all(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return self._db.all(sql, tuple(params))

    # -- token cache -------------------------------------------------------------------------
    def _flush_token_cache(self) -> None:
        self._token_cache.clear()
        self._token_of.clear()

    def _forget_device(self, device_id: str) -> None:
        token = self._token_of.pop(device_id, None)
        if token is not None:
            self._token_cache.pop(token, None)

    # -- row converters ----------------------------------------------------------------------
    @staticmethod
    def _tenant(row: tuple) -> Tenant:
        return Tenant(id=row[0], created_time=row[1], title=row[2], name=row[2],
                      additional_info=_load_info(row[3]))

    @staticmethod
    def _customer(row: tuple) -> Customer:
        contact = json.loads(row[4]) if row[4] else {}
        fields = {attr: contact.get(key) for key, attr in CUSTOMER_CONTACT_FIELDS.items()}
        return Customer(id=row[0], created_time=row[1], tenant_id=row[2], title=row[3],
                        name=row[3], additional_info=_load_info(row[5]), **fields)

    @staticmethod
    def _user(row: tuple) -> User:
        return User(id=row[0], created_time=row[1], tenant_id=row[2], customer_id=row[3],
                    email=row[4], name=row[4], authority=row[5], first_name=row[6],
                    last_name=row[7], enabled=bool(row[8]), additional_info=_load_info(row[9]))

    @staticmethod
    def _device(row: tuple) -> Device:
        return Device(id=row[0], created_time=row[1], tenant_id=row[2], customer_id=row[3],
                      name=row[4], type=row[5], label=row[6],
                      additional_info=_load_info(row[7]))

    # =======================================================================================
    # tenants
    # =======================================================================================
    def create_tenant(self, title: str) -> Tenant:
        title = _text(title, "tenant title")
        row = (str(uuid.uuid4()), _now_ms(), title, None)
        with self.transaction():
            if self._one("SELECT 1 FROM tenant WHERE title = ?", (title,)):
                raise Conflict(f"A tenant titled {title!r} already exists")
            self._conn.execute("INSERT INTO tenant VALUES (?, ?, ?, ?)", row)
        return self._tenant(row)

    def get_tenant(self, tenant_id: Any) -> Tenant:
        tid = _uuid(tenant_id, "tenant")
        row = self._one("SELECT id, created_time, title, additional_info FROM tenant "
                        "WHERE id = ?", (tid,))
        if row is None:
            raise NotFound(f"Tenant {tid} not found")
        return self._tenant(row)

    def find_tenant(self, title: str) -> Tenant | None:
        row = self._one("SELECT id, created_time, title, additional_info FROM tenant "
                        "WHERE title = ?", (title,))
        return None if row is None else self._tenant(row)

    def list_tenants(self) -> list[Tenant]:
        rows = self._all("SELECT id, created_time, title, additional_info FROM tenant "
                         "ORDER BY created_time, rowid")  # rowid: creation order within one ms
        return [self._tenant(r) for r in rows]

    def _require_tenant(self, tenant_id: Any) -> str:
        tid = _uuid(tenant_id, "tenant")
        if not self._one("SELECT 1 FROM tenant WHERE id = ?", (tid,)):
            raise NotFound(f"Tenant {tid} not found")
        return tid

    # =======================================================================================
    # customers
    # =======================================================================================
    def create_customer(self, tenant_id: Any, title: str) -> Customer:
        """A new customer of ``tenant_id``; the title is unique per tenant (else Conflict)."""
        return self.save_customer(tenant_id, {"title": title})

    def save_customer(self, tenant_id: Any, data: dict) -> Customer:
        """Create or update a customer from ThingsBoard's ``POST /api/customer`` JSON.

        With an ``id`` in ``data`` the customer is updated (it must belong to the tenant,
        else PermissionDenied; unknown id → NotFound) and all its fields are replaced by
        ``data``'s; without one it is created.
        """
        if not isinstance(data, dict):
            raise InvalidInput(f"customer must be a JSON object, got {type(data).__name__}")
        title = _text(data.get("title"), "customer title")
        contact = {}
        for key in CUSTOMER_CONTACT_FIELDS:
            value = _opt_text(data.get(key), f"customer {key}")
            if value is not None:
                contact[key] = value
        contact_json = json.dumps(contact, separators=(",", ":"))
        info = _info(data.get("additionalInfo"))
        raw_id = data.get("id")
        customer_id = None if raw_id is None else _opt_customer(raw_id)
        with self.transaction():
            tid = self._require_tenant(tenant_id)
            if customer_id is None:
                cid = str(uuid.uuid4())
                row = (cid, _now_ms(), tid, title, contact_json, info)
                self._check_customer_title(tid, title, None)
                self._conn.execute(f"INSERT INTO customer ({_CUSTOMER_COLS}) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", row)
            else:
                old = self._one(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE id = ?",
                                (customer_id,))
                if old is None:
                    raise NotFound(f"Customer {customer_id} not found")
                if old[2] != tid:
                    raise PermissionDenied(f"Customer {customer_id} belongs to another tenant")
                self._check_customer_title(tid, title, customer_id)
                row = (customer_id, old[1], tid, title, contact_json, info)
                self._conn.execute("UPDATE customer SET title = ?, contact = ?, "
                                   "additional_info = ? WHERE id = ?",
                                   (title, contact_json, info, customer_id))
        return self._customer(row)

    def _check_customer_title(self, tid: str, title: str, own_id: str | None) -> None:
        row = self._one("SELECT id FROM customer WHERE tenant_id = ? AND title = ?", (tid, title))
        if row is not None and row[0] != own_id:
            raise Conflict(f"Customer with title {title!r} already exists")

    def get_customer(self, customer_id: Any) -> Customer:
        cid = _uuid(customer_id, "customer")
        row = self._one(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE id = ?", (cid,))
        if row is None:
            raise NotFound(f"Customer {cid} not found")
        return self._customer(row)

    def find_customer(self, tenant_id: Any, title: str) -> Customer | None:
        tid = _uuid(tenant_id, "tenant")
        row = self._one(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE tenant_id = ? "
                        "AND title = ?", (tid, title))
        return None if row is None else self._customer(row)

    def list_customers(self, tenant_id: Any, page: int = 0, page_size: int = 100,
                       text_search: str | None = None, sort_property: str = "title",
                       sort_order: str = "ASC") -> tuple[list[Customer], int]:
        """One page of the tenant's customers (``text_search``: case-insensitive substring of
        the title) and the total number matching."""
        tid = _uuid(tenant_id, "tenant")
        page, page_size = _paging(page, page_size)
        order = _order(sort_property, sort_order, _CUSTOMER_SORT)
        where, params = "tenant_id = ?", [tid]
        if text_search:
            where += " AND title LIKE ? ESCAPE '\\'"
            params.append(_like(text_search))
        with self._lock:
            total = self._one(f"SELECT COUNT(*) FROM customer WHERE {where}", params)[0]
            rows = self._all(f"SELECT {_CUSTOMER_COLS} FROM customer WHERE {where} "
                             f"ORDER BY {order} LIMIT ? OFFSET ?",
                             [*params, page_size, page * page_size])
        return [self._customer(r) for r in rows], total

    def delete_customer(self, customer_id: Any) -> None:
        """Delete a customer: its devices become unassigned, its users are deleted."""
        cid = _uuid(customer_id, "customer")
        with self.transaction():
            if not self._one("SELECT 1 FROM customer WHERE id = ?", (cid,)):
                raise NotFound(f"Customer {cid} not found")
            for (device_id,) in self._all("SELECT id FROM device WHERE customer_id = ?", (cid,)):
                self._forget_device(device_id)
            self._conn.execute("UPDATE device SET customer_id = NULL WHERE customer_id = ?", (cid,))
            self._conn.execute("DELETE FROM attribute WHERE entity_id IN "
                               "(SELECT id FROM users WHERE customer_id = ?)", (cid,))
            self._conn.execute("DELETE FROM users WHERE customer_id = ?", (cid,))
            self._conn.execute("DELETE FROM attribute WHERE entity_id = ?", (cid,))
            self._conn.execute("DELETE FROM customer WHERE id = ?", (cid,))

    # =======================================================================================
    # users
    # =======================================================================================
    def create_user(self, email: str, password: str, authority: str, tenant_id: Any,
                    customer_id: Any = None, first_name: str = "", last_name: str = "") -> User:
        """A new user. ``authority`` is SYS_ADMIN (``tenant_id`` None), TENANT_ADMIN
        (``tenant_id`` required, no customer) or CUSTOMER_USER (``customer_id`` of a customer
        of the same tenant required). Emails are unique, case-insensitively."""
        email, email_key = _email(email)
        password = _password(password)
        if authority not in AUTHORITIES:
            raise InvalidInput(f"authority must be one of {', '.join(AUTHORITIES)}, "
                               f"got {authority!r}")
        first_name = _opt_text(first_name, "first name") or ""
        last_name = _opt_text(last_name, "last name") or ""
        cid = _opt_customer(customer_id)
        if authority == SYS_ADMIN:
            if tenant_id is not None or cid is not None:
                raise InvalidInput("a SYS_ADMIN user belongs to no tenant and no customer")
            tid = None
        else:
            if tenant_id is None:
                raise InvalidInput(f"a {authority} user needs a tenant")
            tid = _uuid(tenant_id, "tenant")
            if authority == TENANT_ADMIN and cid is not None:
                raise InvalidInput("a TENANT_ADMIN user must not have a customer")
            if authority == CUSTOMER_USER and cid is None:
                raise InvalidInput("a CUSTOMER_USER user needs a customer")
        if self.find_user(email) is not None:  # early, before spending time on the hash
            raise Conflict(f"A user with email {email!r} already exists")
        password_hash = passwords.hash_password(password)
        user_id = str(uuid.uuid4())
        created = _now_ms()
        with self.transaction():
            if tid is not None:
                self._require_tenant(tid)
            if cid is not None:
                row = self._one("SELECT tenant_id FROM customer WHERE id = ?", (cid,))
                if row is None:
                    raise NotFound(f"Customer {cid} not found")
                if row[0] != tid:
                    raise InvalidInput(f"Customer {cid} belongs to another tenant")
            if self._one("SELECT 1 FROM users WHERE email_key = ?", (email_key,)):
                raise Conflict(f"A user with email {email!r} already exists")
            self._conn.execute(
                "INSERT INTO users (id, created_time, tenant_id, customer_id, email, email_key, "
                "authority, first_name, last_name, enabled, password_hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (user_id, created, tid, cid, email, email_key, authority, first_name, last_name,
                 password_hash))
        return User(id=user_id, created_time=created, tenant_id=tid, customer_id=cid,
                    email=email, name=email, authority=authority, first_name=first_name,
                    last_name=last_name, enabled=True)

    def authenticate(self, email: str, password: str) -> User | None:
        """The user when ``email``/``password`` match an enabled account, else None.

        Unknown emails cost the same scrypt time as known ones (no user enumeration by timing).
        """
        if not isinstance(email, str) or not isinstance(password, str):
            return None
        row = self._one(f"SELECT {_USER_COLS}, password_hash FROM users WHERE email_key = ?",
                        (email.strip().lower(),))
        if row is None:
            passwords.dummy_verify(password)
            return None
        if not passwords.verify_password(password, row[-1]):
            return None
        user = self._user(row[:-1])
        return user if user.enabled else None

    def get_user(self, user_id: Any) -> User:
        uid = _uuid(user_id, "user")
        row = self._one(f"SELECT {_USER_COLS} FROM users WHERE id = ?", (uid,))
        if row is None:
            raise NotFound(f"User {uid} not found")
        return self._user(row)

    def find_user(self, email: str) -> User | None:
        if not isinstance(email, str):
            return None
        row = self._one(f"SELECT {_USER_COLS} FROM users WHERE email_key = ?",
                        (email.strip().lower(),))
        return None if row is None else self._user(row)

    def set_password(self, user_id: Any, password: str) -> None:
        uid = _uuid(user_id, "user")
        password = _password(password)
        self.get_user(uid)  # NotFound before spending time on the hash
        password_hash = passwords.hash_password(password)
        with self.transaction():
            cur = self._conn.execute("UPDATE users SET password_hash = ? WHERE id = ?",
                                     (password_hash, uid))
            if cur.rowcount == 0:
                raise NotFound(f"User {uid} not found")

    def set_user_enabled(self, user_id: Any, enabled: bool) -> User:
        uid = _uuid(user_id, "user")
        with self.transaction():
            cur = self._conn.execute("UPDATE users SET enabled = ? WHERE id = ?",
                                     (1 if enabled else 0, uid))
            if cur.rowcount == 0:
                raise NotFound(f"User {uid} not found")
            return self.get_user(uid)

    def list_users(self, tenant_id: Any, customer_id: Any = None, page: int = 0,
                   page_size: int = 100, text_search: str | None = None,
                   authority: str | None = None, sort_property: str = "email",
                   sort_order: str = "ASC") -> tuple[list[User], int]:
        """One page of a tenant's users (optionally one customer's, or one authority's)."""
        tid = _uuid(tenant_id, "tenant")
        cid = _opt_customer(customer_id)
        page, page_size = _paging(page, page_size)
        order = _order(sort_property, sort_order, _USER_SORT)
        where, params = "tenant_id = ?", [tid]
        if cid is not None:
            where += " AND customer_id = ?"
            params.append(cid)
        if authority is not None:
            if authority not in AUTHORITIES:
                raise InvalidInput(f"authority must be one of {', '.join(AUTHORITIES)}")
            where += " AND authority = ?"
            params.append(authority)
        if text_search:
            where += (" AND (email LIKE ? ESCAPE '\\' OR first_name LIKE ? ESCAPE '\\' "
                      "OR last_name LIKE ? ESCAPE '\\')")
            params += [_like(text_search)] * 3
        with self._lock:
            total = self._one(f"SELECT COUNT(*) FROM users WHERE {where}", params)[0]
            rows = self._all(f"SELECT {_USER_COLS} FROM users WHERE {where} ORDER BY {order} "
                             "LIMIT ? OFFSET ?", [*params, page_size, page * page_size])
        return [self._user(r) for r in rows], total

    def delete_user(self, user_id: Any) -> None:
        uid = _uuid(user_id, "user")
        with self.transaction():
            cur = self._conn.execute("DELETE FROM users WHERE id = ?", (uid,))
            if cur.rowcount == 0:
                raise NotFound(f"User {uid} not found")
            self._conn.execute("DELETE FROM attribute WHERE entity_id = ?", (uid,))

    # =======================================================================================
    # devices
    # =======================================================================================
    def save_device(self, tenant_id: Any, name: str, type: str | None = "default",
                    label: str | None = "", additional_info: dict | None = None,
                    device_id: Any = None, access_token: str | None = None,
                    customer_id: Any = ...) -> Device:
        """Create (``device_id`` None) or update a device of ``tenant_id``.

        Creating gives a new UUID and, unless ``access_token`` is given, a random 20-character
        URL-safe token. Updating replaces name/type/label/additionalInfo; ``access_token``
        None keeps the token; ``customer_id=...`` (the default) keeps the assignment, None
        unassigns. Errors: NotFound (tenant, device or customer), PermissionDenied (device of
        another tenant), Conflict (name taken in the tenant, token taken by another device),
        InvalidInput (bad values, customer of another tenant).
        """
        name = _text(name, "device name")
        type = _text(type, "device type") if type not in (None, "") else "default"
        label = _opt_text(label, "device label")
        info = _info(additional_info)
        token = None if access_token is None else _access_token(access_token)
        did = None if device_id is None else _uuid(device_id, "device")
        with self.transaction():
            tid = self._require_tenant(tenant_id)
            if customer_id is ...:
                cid = ...
            else:
                cid = _opt_customer(customer_id)
                if cid is not None:
                    self._check_customer_of_tenant(cid, tid)
            if did is None:
                did = str(uuid.uuid4())
                created = _now_ms()
                if cid is ...:
                    cid = None
                self._check_device_name(tid, name, None)
                if token is None:
                    token = generate_access_token()
                    while self._one("SELECT 1 FROM device WHERE access_token = ?", (token,)):
                        token = generate_access_token()  # pragma: no cover - 2**-120
                else:
                    self._check_token_free(token, None)
                self._conn.execute(
                    f"INSERT INTO device ({_DEVICE_COLS}, access_token) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (did, created, tid, cid, name, type, label, info, token))
            else:
                old = self._one("SELECT tenant_id, customer_id, created_time FROM device "
                                "WHERE id = ?", (did,))
                if old is None:
                    raise NotFound(f"Device {did} not found")
                if old[0] != tid:
                    raise PermissionDenied(f"Device {did} belongs to another tenant")
                if cid is ...:
                    cid = old[1]
                created = old[2]
                self._check_device_name(tid, name, did)
                self._forget_device(did)
                if token is not None:
                    self._check_token_free(token, did)
                    self._conn.execute("UPDATE device SET access_token = ? WHERE id = ?",
                                       (token, did))
                self._conn.execute(
                    "UPDATE device SET customer_id = ?, name = ?, type = ?, label = ?, "
                    "additional_info = ? WHERE id = ?", (cid, name, type, label, info, did))
        return self._device((did, created, tid, cid, name, type, label, info))

    def _check_customer_of_tenant(self, cid: str, tid: str) -> None:
        row = self._one("SELECT tenant_id FROM customer WHERE id = ?", (cid,))
        if row is None:
            raise NotFound(f"Customer {cid} not found")
        if row[0] != tid:
            raise InvalidInput(f"Customer {cid} belongs to another tenant")

    def _check_device_name(self, tid: str, name: str, own_id: str | None) -> None:
        row = self._one("SELECT id FROM device WHERE tenant_id = ? AND name = ?", (tid, name))
        if row is not None and row[0] != own_id:
            raise Conflict(f"Device with name {name!r} already exists")

    def _check_token_free(self, token: str, own_id: str | None) -> None:
        row = self._one("SELECT id FROM device WHERE access_token = ?", (token,))
        if row is not None and row[0] != own_id:
            raise Conflict("Device credentials are already assigned to another device")

    def get_device(self, device_id: Any) -> Device:
        did = _uuid(device_id, "device")
        row = self._one(f"SELECT {_DEVICE_COLS} FROM device WHERE id = ?", (did,))
        if row is None:
            raise NotFound(f"Device {did} not found")
        return self._device(row)

    def find_device(self, tenant_id: Any, name: str) -> Device | None:
        tid = _uuid(tenant_id, "tenant")
        row = self._one(f"SELECT {_DEVICE_COLS} FROM device WHERE tenant_id = ? AND name = ?",
                        (tid, name))
        return None if row is None else self._device(row)

    def device_by_token(self, token: str) -> Device | None:
        """The device whose access token is ``token``, or None (ingest hot path: cached).

        The returned object is shared between callers: do not modify it.
        """
        if type(token) is not str:
            return None
        device = self._token_cache.get(token)
        if device is not None:
            return device
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        with self._lock:
            device = self._token_cache.get(token)
            if device is not None:
                return device
            row = self._conn.execute(f"SELECT {_DEVICE_COLS} FROM device "
                                     "WHERE access_token = ?", (token,)).fetchone()
            if row is None:
                return None
            device = self._device(row)
            # Never cache what an open transaction might roll back. Holding the lock, an open
            # transaction can only be this thread's own transaction() block.
            if not self._conn.in_transaction:
                if len(self._token_cache) >= TOKEN_CACHE_LIMIT:
                    self._flush_token_cache()
                self._token_cache[token] = device
                self._token_of[device.id] = token
            return device

    def list_devices(self, tenant_id: Any, customer_id: Any = None, page: int = 0,
                     page_size: int = 100, text_search: str | None = None,
                     type: str | None = None, sort_property: str = "createdTime",
                     sort_order: str = "DESC") -> tuple[list[Device], int]:
        """One page of the tenant's devices (only ``customer_id``'s when given) and the total.

        ``text_search`` is a case-insensitive substring of the name or label; ``type`` an exact
        device type; ``sort_property`` one of createdTime, name, type, label.
        """
        tid = _uuid(tenant_id, "tenant")
        cid = _opt_customer(customer_id)
        page, page_size = _paging(page, page_size)
        order = _order(sort_property, sort_order, _DEVICE_SORT)
        where, params = "tenant_id = ?", [tid]
        if cid is not None:
            where += " AND customer_id = ?"
            params.append(cid)
        if type:
            where += " AND type = ?"
            params.append(type)
        if text_search:
            where += " AND (name LIKE ? ESCAPE '\\' OR label LIKE ? ESCAPE '\\')"
            params += [_like(text_search)] * 2
        with self._lock:
            total = self._one(f"SELECT COUNT(*) FROM device WHERE {where}", params)[0]
            rows = self._all(f"SELECT {_DEVICE_COLS} FROM device WHERE {where} "
                             f"ORDER BY {order} LIMIT ? OFFSET ?",
                             [*params, page_size, page * page_size])
        return [self._device(r) for r in rows], total

    def all_devices(self, tenant_id: Any, *, customer_id: Any = None, type: str | None = None,
                    sort_property: str = "name", sort_order: str = "ASC") -> list[Device]:
        """Every device of the tenant (only ``customer_id``'s, only ``type``), unpaged: for the
        server-side work that needs the whole set (a model's devices, a user's visible set)."""
        tid = _uuid(tenant_id, "tenant")
        cid = _opt_customer(customer_id)
        order = _order(sort_property, sort_order, _DEVICE_SORT)
        where, params = "tenant_id = ?", [tid]
        if cid is not None:
            where += " AND customer_id = ?"
            params.append(cid)
        if type:
            where += " AND type = ?"
            params.append(type)
        rows = self._all(f"SELECT {_DEVICE_COLS} FROM device WHERE {where} ORDER BY {order}", params)
        return [self._device(r) for r in rows]

    def delete_device(self, device_id: Any) -> None:
        """Delete a device, its credentials and its attributes."""
        did = _uuid(device_id, "device")
        with self.transaction():
            self._forget_device(did)
            cur = self._conn.execute("DELETE FROM device WHERE id = ?", (did,))
            if cur.rowcount == 0:
                raise NotFound(f"Device {did} not found")
            self._conn.execute("DELETE FROM attribute WHERE entity_id = ?", (did,))

    def assign_device(self, device_id: Any, customer_id: Any) -> Device:
        """Assign a device to a customer of the same tenant; returns the updated device."""
        did = _uuid(device_id, "device")
        cid = _opt_customer(customer_id)
        if cid is None:
            return self.unassign_device(did)
        with self.transaction():
            device = self.get_device(did)
            self._check_customer_of_tenant(cid, device.tenant_id)
            self._forget_device(did)
            self._conn.execute("UPDATE device SET customer_id = ? WHERE id = ?", (cid, did))
            return self.get_device(did)

    def unassign_device(self, device_id: Any) -> Device:
        did = _uuid(device_id, "device")
        with self.transaction():
            self._forget_device(did)
            cur = self._conn.execute("UPDATE device SET customer_id = NULL WHERE id = ?", (did,))
            if cur.rowcount == 0:
                raise NotFound(f"Device {did} not found")
            return self.get_device(did)

    def get_credentials(self, device_id: Any) -> str:
        """The device's access token."""
        did = _uuid(device_id, "device")
        row = self._one("SELECT access_token FROM device WHERE id = ?", (did,))
        if row is None:
            raise NotFound(f"Device {did} not found")
        return row[0]

    def set_credentials(self, device_id: Any, token: str) -> None:
        """Replace the device's access token (Conflict if another device has it)."""
        did = _uuid(device_id, "device")
        token = _access_token(token)
        with self.transaction():
            if not self._one("SELECT 1 FROM device WHERE id = ?", (did,)):
                raise NotFound(f"Device {did} not found")
            self._check_token_free(token, did)
            self._forget_device(did)
            self._conn.execute("UPDATE device SET access_token = ? WHERE id = ?", (token, did))

    def device_types(self, tenant_id: Any) -> list[str]:
        tid = _uuid(tenant_id, "tenant")
        rows = self._all("SELECT DISTINCT type FROM device WHERE tenant_id = ? ORDER BY type",
                         (tid,))
        return [r[0] for r in rows]

    # =======================================================================================
    # attributes
    # =======================================================================================
    def save_attributes(self, entity_id: Any, scope: str,
                        points: Iterable[tuple[int, str, int, Any]]) -> int:
        """Upsert typed ``(ts, key, vtype, value)`` points (as produced by
        ``tbpanel.store.payload``) into ``scope``; ``ts`` becomes the key's lastUpdateTs.
        The whole batch is validated first and written in one transaction. Returns the count."""
        eid = _uuid(entity_id, "entity")
        if scope not in ATTRIBUTE_SCOPES:
            raise InvalidInput(f"attribute scope must be one of {', '.join(ATTRIBUTE_SCOPES)}, "
                               f"got {scope!r}")
        rows = [(eid, scope, key, vtype, value, ts)
                for ts, key, vtype, value in map(_check_point, points)]
        if not rows:
            return 0
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO attribute (entity_id, scope, key, t, v, last_update_ts) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity_id, scope, key) DO UPDATE SET "
                "t = excluded.t, v = excluded.v, last_update_ts = excluded.last_update_ts",
                rows)
        return len(rows)

    def get_attributes(self, entity_id: Any, scope: str | None = None,
                       keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """``[{"key", "value", "lastUpdateTs", "scope"}]`` sorted by scope then key, with the
        value in its stored type (bool/int/float/str; JSON kept as text). ``keys`` that do not
        exist are simply absent."""
        eid = _uuid(entity_id, "entity")
        where, params = "entity_id = ?", [eid]
        if scope is not None:
            if scope not in ATTRIBUTE_SCOPES:
                raise InvalidInput(f"attribute scope must be one of "
                                   f"{', '.join(ATTRIBUTE_SCOPES)}, got {scope!r}")
            where += " AND scope = ?"
            params.append(scope)
        if keys is not None:
            key_list = [keys] if isinstance(keys, str) else list(keys)
            if not key_list:
                return []
            if not all(isinstance(k, str) for k in key_list):
                raise InvalidInput("attribute keys must be strings")
            where += f" AND key IN ({', '.join('?' * len(key_list))})"
            params += key_list
        rows = self._all(f"SELECT scope, key, t, v, last_update_ts FROM attribute "
                         f"WHERE {where} ORDER BY scope, key", params)
        return [{"key": key, "value": _typed_value(t, v), "lastUpdateTs": ts, "scope": sc}
                for sc, key, t, v, ts in rows]

    def delete_attributes(self, entity_id: Any, scope: str, keys: Iterable[str]) -> int:
        """Delete the given keys of one scope; returns how many existed."""
        eid = _uuid(entity_id, "entity")
        if scope not in ATTRIBUTE_SCOPES:
            raise InvalidInput(f"attribute scope must be one of {', '.join(ATTRIBUTE_SCOPES)}")
        key_list = [keys] if isinstance(keys, str) else list(keys)
        if not key_list:
            return 0
        if not all(isinstance(k, str) for k in key_list):
            raise InvalidInput("attribute keys must be strings")
        with self.transaction():
            cur = self._conn.execute(
                f"DELETE FROM attribute WHERE entity_id = ? AND scope = ? "
                f"AND key IN ({', '.join('?' * len(key_list))})", [eid, scope, *key_list])
            return cur.rowcount

    # =======================================================================================
    # access checks (used by every REST route)
    # =======================================================================================
    @staticmethod
    def can_read(user: User, device: Device) -> bool:
        """TENANT_ADMIN: devices of its tenant; CUSTOMER_USER: its customer's devices;
        SYS_ADMIN: none."""
        if user is None or not user.enabled:
            return False
        if user.authority == TENANT_ADMIN:
            return user.tenant_id == device.tenant_id
        if user.authority == CUSTOMER_USER:
            return (user.tenant_id == device.tenant_id and user.customer_id is not None
                    and device.customer_id == user.customer_id)
        return False

    @staticmethod
    def can_write(user: User, device: Device) -> bool:
        """Write telemetry/attributes of the device: same rule as reading (customer users may
        post server-side telemetry of their own devices)."""
        return EntityRegistry.can_read(user, device)

    @staticmethod
    def can_manage(user: User, device: Device) -> bool:
        """Update, delete, (un)assign the device or read/change its credentials: only a
        TENANT_ADMIN of the device's tenant."""
        return (user is not None and user.enabled and user.authority == TENANT_ADMIN
                and user.tenant_id == device.tenant_id)

    def check_device(self, user: User, device_id: Any, write: bool = False, *,
                     manage: bool = False) -> Device:
        """The device if ``user`` may read it (``write``: post telemetry; ``manage``: change
        it). Raises InvalidInput (malformed id, HTTP 400), NotFound (unknown, 404) or
        PermissionDenied (another tenant's or customer's device, 403)."""
        device = self.get_device(device_id)
        if manage:
            allowed = self.can_manage(user, device)
        elif write:
            allowed = self.can_write(user, device)
        else:
            allowed = self.can_read(user, device)
        if not allowed:
            raise PermissionDenied("You don't have permission to perform this operation!")
        return device

    @staticmethod
    def can_read_customer(user: User, customer: Customer) -> bool:
        if user is None or not user.enabled:
            return False
        if user.authority == TENANT_ADMIN:
            return user.tenant_id == customer.tenant_id
        if user.authority == CUSTOMER_USER:
            return user.tenant_id == customer.tenant_id and user.customer_id == customer.id
        return False

    @staticmethod
    def can_manage_customer(user: User, customer: Customer) -> bool:
        return (user is not None and user.enabled and user.authority == TENANT_ADMIN
                and user.tenant_id == customer.tenant_id)

    def check_customer(self, user: User, customer_id: Any, write: bool = False) -> Customer:
        """The customer if ``user`` may read it (``write``: change it, assign devices to it);
        NotFound / PermissionDenied like :meth:`check_device`."""
        customer = self.get_customer(customer_id)
        allowed = (self.can_manage_customer if write else self.can_read_customer)(user, customer)
        if not allowed:
            raise PermissionDenied("You don't have permission to perform this operation!")
        return customer


# --------------------------------------------------------------------------------------------
# first-run setup (used by `tbpanel init`)
# --------------------------------------------------------------------------------------------
def init(data_dir: str | os.PathLike, admin_email: str, admin_password: str,
         tenant_title: str = "Tenant") -> tuple[Tenant, User]:
    """Set up ``data_dir``: the entity database, the JWT secret, a tenant and its
    TENANT_ADMIN. An existing tenant of that title is reused. If ``admin_email`` already
    exists this raises Conflict and changes nothing (it never resets a password)."""
    from .tokens import load_or_create_secret

    email, _ = _email(admin_email)
    _password(admin_password)
    _text(tenant_title, "tenant title")
    with EntityRegistry(data_dir) as registry:
        existing = registry.find_user(email)
        if existing is not None:
            raise Conflict(
                f"A user with email {existing.email!r} already exists in {registry.path}; "
                "init never changes an existing account or its password. "
                "Use `tbpanel user add` to add another user.")
        load_or_create_secret(data_dir)
        with registry.transaction():
            tenant = registry.find_tenant(tenant_title) or registry.create_tenant(tenant_title)
            user = registry.create_user(email, admin_password, TENANT_ADMIN, tenant.id)
    return tenant, user
