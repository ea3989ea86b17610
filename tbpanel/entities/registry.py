"""The entity registry: tenants, customers, users, devices, device profiles and attributes in SQLite.

One file, ``DATA/entities.sqlite`` (WAL, ``synchronous=FULL``, foreign keys on), created with
mode 0600 because it holds password hashes and device access tokens. It is opened through
:class:`tbpanel.sqlite.Database` and its schema is :data:`~tbpanel.entities.tables.MIGRATIONS`.

This module holds the registry's lifecycle (open, close, the permission checks that need a
lookup, first-run ``init``). The methods come from one mixin per concept, each with its
table's SQL: ``tenants.py``, ``customers.py``, ``users.py``, ``devices.py`` (with
credentials), ``profiles.py`` and ``attributes.py``; the field rules are in ``fields.py``, the permission
rules in ``access.py``, and the schema, shared connection, lock and token cache in
``tables.py``.

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

import os
from pathlib import Path
from typing import Any

from ..errors import Conflict, NotFound, PermissionDenied
from ..events import Signal
from ..sqlite import Database
from . import access, fields
from .attributes import ATTRIBUTE_SCOPES, AttributeChange, Attributes
from .customers import Customers
from .devices import Devices, generate_access_token
from .fields import MAX_NAME_LENGTH
from .models import TENANT_ADMIN, Customer, Device, Tenant, User
from .profiles import DeviceProfile, Profiles
from .tables import MIGRATIONS, TokenCache
from .tenants import Tenants
from .users import Users

__all__ = ["EntityRegistry", "init", "DB_FILE", "ATTRIBUTE_SCOPES", "MAX_NAME_LENGTH", "generate_access_token"]

DB_FILE = "entities.sqlite"
SCHEMA_VERSION = len(MIGRATIONS)


def _create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 unless it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


#: the entity database's WAL after a checkpoint (writes here are small: devices, attributes)
WAL_LIMIT_BYTES = 512 * 1024


class EntityRegistry(Tenants, Customers, Users, Devices, Profiles, Attributes):
    """Tenants, customers, users, devices and attributes of one data directory.

    ``EntityRegistry(data_dir)`` opens (creating if needed) ``data_dir/entities.sqlite``;
    with ``create=False`` a missing database raises :class:`NotFound` instead.
    Use as a context manager or call :meth:`close`.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, create: bool = True) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / DB_FILE
        if not create and not self.path.exists():
            raise NotFound(f"No tbpanel entity database at {self.path}: run `tbpanel init` first")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _create_private_file(self.path)
        self._tokens = TokenCache()
        self.attributes_changed: Signal[[AttributeChange]] = Signal("attributes changed")
        # a rolled-back transaction may have changed (and cached) devices: flush the cache
        self._db = Database(
            str(self.path), MIGRATIONS, what=str(self.path), on_rollback=self._tokens.clear, foreign_keys=True
        )
        # the WAL is cut back to this after each checkpoint (SQLite keeps its high-water mark)
        self._db.conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._db.close()

    def __enter__(self) -> EntityRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EntityRegistry({str(self.data_dir)!r})"

    # -- access checks (used by every REST route; the rules are in access.py) -----------------
    can_read = staticmethod(access.can_read)
    can_write = staticmethod(access.can_write)
    can_manage = staticmethod(access.can_manage)
    can_read_customer = staticmethod(access.can_read_customer)
    can_manage_customer = staticmethod(access.can_manage_customer)

    def check_device(self, user: User, device_id: Any, write: bool = False, *, manage: bool = False) -> Device:
        """The device if ``user`` may read it (``write``: post telemetry; ``manage``: change
        it). Raises InvalidInput (malformed id, HTTP 400), NotFound (unknown, 404) or
        PermissionDenied (another tenant's or customer's device, 403)."""
        return access.require_device(user, self.get_device(device_id), write, manage=manage)

    def check_customer(self, user: User, customer_id: Any, write: bool = False) -> Customer:
        """The customer if ``user`` may read it (``write``: change it, assign devices to it);
        NotFound / PermissionDenied like :meth:`check_device`."""
        return access.require_customer(user, self.get_customer(customer_id), write)

    def check_user(self, user: User, user_id: Any, write: bool = False) -> User:
        """The user ``user_id`` if ``user`` may read it (``write``: change it); NotFound /
        PermissionDenied like :meth:`check_device`."""
        return access.require_user(user, self.get_user(user_id), write)

    def check_device_profile(self, user: User, profile_id: Any) -> DeviceProfile:
        """The profile if it is of ``user``'s tenant (any user of the tenant may read its
        profiles' infos, as in ThingsBoard); NotFound / PermissionDenied otherwise."""
        profile = self.get_device_profile(profile_id)
        if user.tenant_id is None or profile.tenant_id != user.tenant_id:
            raise PermissionDenied(f"Device profile {profile.id} belongs to another tenant")
        return profile


# --------------------------------------------------------------------------------------------
# first-run setup (used by `tbpanel init`)
# --------------------------------------------------------------------------------------------
def init(
    data_dir: str | os.PathLike[str], admin_email: str, admin_password: str, tenant_title: str = "Tenant"
) -> tuple[Tenant, User]:
    """Set up ``data_dir``: the entity database, the JWT secret, a tenant and its
    TENANT_ADMIN. An existing tenant of that title is reused. If ``admin_email`` already
    exists this raises Conflict and changes nothing (it never resets a password)."""
    from .tokens import load_or_create_secret

    email, _ = fields.email(admin_email)
    fields.password(admin_password)
    fields.text(tenant_title, "tenant title")
    with EntityRegistry(data_dir) as registry:
        existing = registry.find_user(email)
        if existing is not None:
            raise Conflict(
                f"A user with email {existing.email!r} already exists in {registry.path}; "
                "init never changes an existing account or its password. "
                "Use `tbpanel user add` to add another user."
            )
        load_or_create_secret(data_dir)
        with registry.transaction():
            tenant = registry.find_tenant(tenant_title) or registry.create_tenant(tenant_title)
            user = registry.create_user(email, admin_password, TENANT_ADMIN, tenant.id)
    return tenant, user
