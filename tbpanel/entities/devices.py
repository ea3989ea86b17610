"""Devices and their credentials: each device belongs to one tenant, optionally to one of
its customers, and has a unique access token (the only credential type tbpanel supports).

``device_by_token`` is the ingest hot path: it answers from the :class:`TokenCache` without
taking the lock once a token has been seen; every write below forgets the device's cached
entry first.
"""

from __future__ import annotations

import secrets
import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

from ..clock import now_ms
from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from . import fields
from .models import Device
from .tables import Tables

_DEVICE_COLS = "id, created_time, tenant_id, customer_id, name, type, label, additional_info, device_profile_id"
_DEVICE_SORT = {
    "createdTime": "created_time",
    "name": "name COLLATE NOCASE",
    "type": "type COLLATE NOCASE",
    "label": "label COLLATE NOCASE",
}


def generate_access_token() -> str:
    """A random device access token: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


class DeviceRow(NamedTuple):
    """A device as its row: what queries over thousands of devices read (building a
    :class:`Device` costs tens of microseconds each; a row costs nothing)."""

    id: str
    created_time: int
    tenant_id: str
    customer_id: str | None
    name: str
    type: str
    label: str | None
    additional_info: str | None  # the stored JSON text
    device_profile_id: str | None = None


def device_from_row(row: tuple[Any, ...]) -> Device:
    return Device(  # type: ignore[no-untyped-call]  # param's constructors are untyped
        id=row[0],
        created_time=row[1],
        tenant_id=row[2],
        customer_id=row[3],
        name=row[4],
        type=row[5],
        label=row[6],
        additional_info=fields.load_info(row[7]),
        device_profile_id=row[8] if len(row) > 8 else None,
    )


def _device_filter(tid: str, cid: str | None, type: str | None) -> tuple[str, list[str]]:
    """WHERE clause and parameters: the tenant's devices, only ``cid``'s, only ``type``."""
    where, params = "tenant_id = ?", [tid]
    if cid is not None:
        where += " AND customer_id = ?"
        params.append(cid)
    if type:
        where += " AND type = ?"
        params.append(type)
    return where, params


class Devices(Tables):
    """The registry's device and credential methods (mixin of :class:`EntityRegistry`)."""

    if TYPE_CHECKING:  # from the Profiles mixin (profiles.py)

        def _profile_for_type(self, tid: str, name: str | None, profile_id: Any = None) -> tuple[str, str]: ...

    def save_device(
        self,
        tenant_id: Any,
        name: str,
        type: str | None = None,
        label: str | None = "",
        additional_info: dict[str, Any] | None = None,
        device_id: Any = None,
        access_token: str | None = None,
        customer_id: Any = ...,
        device_profile_id: Any = None,
    ) -> Device:
        """Create (``device_id`` None) or update a device of ``tenant_id``.

        Creating gives a new UUID and, unless ``access_token`` is given, a random 20-character
        URL-safe token. Updating replaces name/type/label/additionalInfo; ``access_token``
        None keeps the token; ``customer_id=...`` (the default) keeps the assignment, None
        unassigns. Errors: NotFound (tenant, device or customer), PermissionDenied (device of
        another tenant), Conflict (name taken in the tenant, token taken by another device),
        InvalidInput (bad values, customer of another tenant).

        The device's profile is ``device_profile_id`` when given, else the profile named
        ``type`` (created when the tenant has none of that name), else the tenant's default;
        its ``type`` is always that profile's name.
        """
        name = fields.text(name, "device name")
        wanted_type = fields.text(type, "device type").strip() if type not in (None, "") else None
        label = fields.optional_text(label, "device label")
        info = fields.info_json(additional_info)
        token = None if access_token is None else fields.access_token(access_token)
        did = None if device_id is None else fields.canonical_id(device_id, "device")
        keep_customer = customer_id is ...
        created_token = None
        with self._lock:  # the cache is filled after the commit, before anyone else writes
            with self.transaction():
                tid = self._require_tenant(tenant_id)
                cid = None if keep_customer else fields.optional_customer(customer_id)
                if cid is not None:
                    self._check_customer_of_tenant(cid, tid)
                pid, type = self._profile_for_type(tid, wanted_type, device_profile_id)
                if did is None:
                    did = str(uuid.uuid4())
                    created = now_ms()
                    self._check_device_name(tid, name, None)
                    if token is None:
                        token = generate_access_token()
                        while self._one("SELECT 1 FROM device WHERE access_token = ?", (token,)):
                            token = generate_access_token()  # pragma: no cover - 2**-120
                    else:
                        self._check_token_free(token, None)
                    self._conn.execute(
                        f"INSERT INTO device ({_DEVICE_COLS}, access_token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (did, created, tid, cid, name, type, label, info, pid, token),
                    )
                    created_token = token
                else:
                    old = self._one("SELECT tenant_id, customer_id, created_time FROM device WHERE id = ?", (did,))
                    if old is None:
                        raise NotFound(f"Device {did} not found")
                    if old[0] != tid:
                        raise PermissionDenied(f"Device {did} belongs to another tenant")
                    if keep_customer:
                        cid = old[1]
                    created = old[2]
                    self._check_device_name(tid, name, did)
                    self._forget_device(did)
                    if token is not None:
                        self._check_token_free(token, did)
                        self._conn.execute("UPDATE device SET access_token = ? WHERE id = ?", (token, did))
                    self._conn.execute(
                        "UPDATE device SET customer_id = ?, name = ?, type = ?, label = ?, "
                        "additional_info = ?, device_profile_id = ? WHERE id = ?",
                        (cid, name, type, label, info, pid, did),
                    )
            device = device_from_row((did, created, tid, cid, name, type, label, info, pid))
            if created_token is not None and not self._db.in_transaction:
                # committed and still under the lock: the new device's first upload is a hit
                self._tokens.put(created_token, device)
        return device

    def _check_device_name(self, tid: str, name: str, own_id: str | None) -> None:
        row = self._one("SELECT id FROM device WHERE tenant_id = ? AND name = ?", (tid, name))
        if row is not None and row[0] != own_id:
            raise Conflict(f"Device with name {name!r} already exists")

    def _check_token_free(self, token: str, own_id: str | None) -> None:
        row = self._one("SELECT id FROM device WHERE access_token = ?", (token,))
        if row is not None and row[0] != own_id:
            raise Conflict("Device credentials are already assigned to another device")

    def get_device(self, device_id: Any) -> Device:
        """The device (NotFound); a device whose token is cached is answered from the cache
        (the rule engine's ingress asks for each uploading device: no query, no new object)."""
        if type(device_id) is str:
            cached = self._tokens.of_device(device_id)
            if cached is not None:
                return cached
        did = fields.canonical_id(device_id, "device")
        row = self._one(f"SELECT {_DEVICE_COLS} FROM device WHERE id = ?", (did,))
        if row is None:
            raise NotFound(f"Device {did} not found")
        return device_from_row(row)

    def find_device(self, tenant_id: Any, name: str) -> Device | None:
        tid = fields.canonical_id(tenant_id, "tenant")
        row = self._one(f"SELECT {_DEVICE_COLS} FROM device WHERE tenant_id = ? AND name = ?", (tid, name))
        return None if row is None else device_from_row(row)

    def device_by_token(self, token: str) -> Device | None:
        """The device whose access token is ``token``, or None (ingest hot path: cached).

        The returned object is shared between callers: do not modify it.
        """
        if type(token) is not str:
            return None
        device = self._tokens.get(token)
        if device is not None:
            return device
        if not token or len(token) > fields.MAX_TOKEN_LENGTH:
            return None
        with self._lock:
            device = self._tokens.get(token)
            if device is not None:
                return device
            row = self._conn.execute(f"SELECT {_DEVICE_COLS} FROM device WHERE access_token = ?", (token,)).fetchone()
            if row is None:
                return None
            device = device_from_row(row)
            # Never cache what an open transaction might roll back. Holding the lock, an open
            # transaction can only be this thread's own transaction() block.
            if not self._db.in_transaction:
                self._tokens.put(token, device)
            return device

    def list_devices(
        self,
        tenant_id: Any,
        customer_id: Any = None,
        page: int = 0,
        page_size: int = 100,
        text_search: str | None = None,
        type: str | None = None,
        sort_property: str = "createdTime",
        sort_order: str = "DESC",
    ) -> tuple[list[Device], int]:
        """One page of the tenant's devices (only ``customer_id``'s when given) and the total.

        ``text_search`` is a case-insensitive substring of the name or label; ``type`` an exact
        device type; ``sort_property`` one of createdTime, name, type, label.
        """
        tid = fields.canonical_id(tenant_id, "tenant")
        cid = fields.optional_customer(customer_id)
        page, page_size = fields.paging(page, page_size)
        order = fields.order(sort_property, sort_order, _DEVICE_SORT)
        where, params = _device_filter(tid, cid, type)
        if text_search:
            where += " AND (name LIKE ? ESCAPE '\\' OR label LIKE ? ESCAPE '\\')"
            params += [fields.like(text_search)] * 2
        with self._lock:
            total = self._count("device", where, params)
            rows = self._all(
                f"SELECT {_DEVICE_COLS} FROM device WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            )
        return [device_from_row(r) for r in rows], total

    def all_devices(
        self,
        tenant_id: Any,
        *,
        customer_id: Any = None,
        type: str | None = None,
        sort_property: str = "name",
        sort_order: str = "ASC",
    ) -> list[Device]:
        """Every device of the tenant (only ``customer_id``'s, only ``type``), unpaged: for the
        server-side work that needs the whole set (a model's devices, a user's visible set)."""
        tid = fields.canonical_id(tenant_id, "tenant")
        cid = fields.optional_customer(customer_id)
        order = fields.order(sort_property, sort_order, _DEVICE_SORT)
        where, params = _device_filter(tid, cid, type)
        rows = self._all(f"SELECT {_DEVICE_COLS} FROM device WHERE {where} ORDER BY {order}", params)
        return [device_from_row(r) for r in rows]

    def find_devices(
        self,
        tenant_id: Any,
        *,
        customer_id: Any = None,
        ids: list[str] | None = None,
        name_prefix: str | None = None,
        types: list[str] | None = None,
    ) -> list[DeviceRow]:
        """The tenant's devices (only ``customer_id``'s) that are among ``ids``, whose name
        starts with ``name_prefix`` (case-insensitive) and whose type is one of ``types``, in
        one SQL query: the scoped candidate set of an entity data query, so nothing of
        another tenant or customer is ever read."""
        where, params = self._find_filter(tenant_id, customer_id, name_prefix, types)
        if where is None:
            return []
        rows: list[tuple[Any, ...]] = []
        if ids is None:
            rows = self._all(f"SELECT {_DEVICE_COLS} FROM device WHERE {where}", params)
        else:
            wanted = list(dict.fromkeys(ids))
            for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                chunk = wanted[i : i + 500]
                rows += self._all(
                    f"SELECT {_DEVICE_COLS} FROM device WHERE {where} AND id IN ({', '.join('?' * len(chunk))})",
                    [*params, *chunk],
                )
        return [DeviceRow(*r) for r in rows]

    def find_devices_page(
        self,
        tenant_id: Any,
        *,
        customer_id: Any = None,
        name_prefix: str | None = None,
        types: list[str] | None = None,
        sort_property: str = "createdTime",
        sort_order: str = "DESC",
        page: int = 0,
        page_size: int = 100,
    ) -> tuple[list[DeviceRow], int]:
        """One page of :meth:`find_devices` (without ``ids``) sorted in SQL, and the total: an
        entity data query that only sorts by a device column reads just its page.
        ``sort_property``: createdTime, name or type (ties by id, names case-insensitively
        then exactly)."""
        where, params = self._find_filter(tenant_id, customer_id, name_prefix, types)
        if where is None:
            return [], 0
        direction = "DESC" if str(sort_order).upper() == "DESC" else "ASC"
        column = {"createdTime": "created_time", "name": "name COLLATE NOCASE", "type": "type COLLATE NOCASE"}
        if sort_property not in column:
            raise InvalidInput(f"devices sort by createdTime, name or type, not {sort_property!r}")
        exact = {"createdTime": "", "name": f", name {direction}", "type": f", type {direction}"}[sort_property]
        order = f"{column[sort_property]} {direction}{exact}, id {direction}"
        page, page_size = fields.paging(page, page_size)
        with self._lock:
            total = self._count("device", where, params)
            rows = self._all(
                f"SELECT {_DEVICE_COLS} FROM device WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            )
        return [DeviceRow(*r) for r in rows], total

    def _find_filter(
        self, tenant_id: Any, customer_id: Any, name_prefix: str | None, types: list[str] | None
    ) -> tuple[str | None, list[Any]]:
        """WHERE and parameters of :meth:`find_devices` (None: it selects nothing)."""
        tid = fields.canonical_id(tenant_id, "tenant")
        cid = fields.optional_customer(customer_id)
        where, params = _device_filter(tid, cid, None)
        if types is not None:
            if not types:
                return None, []
            where += f" AND type IN ({', '.join('?' * len(types))})"
            params += types
        if name_prefix:
            escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where += " AND name LIKE ? ESCAPE '\\'"
            params.append(escaped + "%")
        return where, params

    def delete_device(self, device_id: Any) -> None:
        """Delete a device, its credentials and its attributes."""
        did = fields.canonical_id(device_id, "device")
        with self.transaction():
            self._forget_device(did)
            cur = self._conn.execute("DELETE FROM device WHERE id = ?", (did,))
            if cur.rowcount == 0:
                raise NotFound(f"Device {did} not found")
            self._conn.execute("DELETE FROM attribute WHERE entity_id = ?", (did,))

    def assign_device(self, device_id: Any, customer_id: Any) -> Device:
        """Assign a device to a customer of the same tenant; returns the updated device."""
        did = fields.canonical_id(device_id, "device")
        cid = fields.optional_customer(customer_id)
        if cid is None:
            return self.unassign_device(did)
        with self.transaction():
            device = self.get_device(did)
            self._check_customer_of_tenant(cid, device.tenant_id)
            self._forget_device(did)
            self._conn.execute("UPDATE device SET customer_id = ? WHERE id = ?", (cid, did))
            return self.get_device(did)

    def unassign_device(self, device_id: Any) -> Device:
        did = fields.canonical_id(device_id, "device")
        with self.transaction():
            self._forget_device(did)
            cur = self._conn.execute("UPDATE device SET customer_id = NULL WHERE id = ?", (did,))
            if cur.rowcount == 0:
                raise NotFound(f"Device {did} not found")
            return self.get_device(did)

    def get_credentials(self, device_id: Any) -> str:
        """The device's access token."""
        did = fields.canonical_id(device_id, "device")
        row = self._one("SELECT access_token FROM device WHERE id = ?", (did,))
        if row is None:
            raise NotFound(f"Device {did} not found")
        return str(row[0])

    def set_credentials(self, device_id: Any, token: str) -> None:
        """Replace the device's access token (Conflict if another device has it)."""
        did = fields.canonical_id(device_id, "device")
        token = fields.access_token(token)
        with self.transaction():
            if not self._one("SELECT 1 FROM device WHERE id = ?", (did,)):
                raise NotFound(f"Device {did} not found")
            self._check_token_free(token, did)
            self._forget_device(did)
            self._conn.execute("UPDATE device SET access_token = ? WHERE id = ?", (token, did))

    def device_types(self, tenant_id: Any) -> list[str]:
        tid = fields.canonical_id(tenant_id, "tenant")
        rows = self._all("SELECT DISTINCT type FROM device WHERE tenant_id = ? ORDER BY type", (tid,))
        return [r[0] for r in rows]
