"""Device profiles: ThingsBoard's ``DeviceProfile``, one per kind of device of a tenant.

A device's ``type`` is its profile's name: every device points at one profile
(``device.device_profile_id``) and the ``type`` column is kept equal to that profile's name
(renaming a profile renames its devices' type), so the queries that filter by type stay one
column read. A tenant always has exactly one default profile (created with the tenant, named
"default"); saving a device with a type that names no profile creates that profile.

``profileData`` is stored whole, as the client sent it (its alarm rules are for the rule
engine); only its ``provisionConfiguration`` is normalised from the provisioning columns,
because provisioning looks the profile up by its ``provisionDeviceKey``.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from typing import Any

import param

from ..clock import now_ms
from ..errors import Conflict, InvalidInput, NotFound, PermissionDenied
from . import fields
from .models import Entity, entity_id_json
from .tables import DEFAULT_PROFILE_DATA, DEFAULT_PROFILE_DATA_JSON, DEFAULT_PROFILE_NAME, Tables

PROFILE_TYPES = ("DEFAULT",)
TRANSPORT_TYPES = ("DEFAULT", "MQTT", "COAP", "LWM2M", "SNMP")
DISABLED = "DISABLED"
ALLOW_CREATE_NEW_DEVICES = "ALLOW_CREATE_NEW_DEVICES"
CHECK_PRE_PROVISIONED_DEVICES = "CHECK_PRE_PROVISIONED_DEVICES"
PROVISION_TYPES = (DISABLED, ALLOW_CREATE_NEW_DEVICES, CHECK_PRE_PROVISIONED_DEVICES)
#: the stored profileData (JSON text) may not be larger than this
MAX_PROFILE_DATA_BYTES = 1_000_000
MAX_DESCRIPTION_LENGTH = 4096


_COLS = (
    "id, created_time, tenant_id, name, description, type, transport_type, provision_type, "
    "is_default, profile_data, provision_device_key, provision_device_secret"
)
_SORT = {
    "createdTime": "created_time",
    "name": "name COLLATE NOCASE",
    "type": "type",
    "transportType": "transport_type",
    "description": "description COLLATE NOCASE",
    "isDefault": "is_default",
}


class DeviceProfile(Entity):
    """A tenant's device profile (see the module docstring)."""

    entity_type = "DEVICE_PROFILE"
    tenant_id = param.String(default="", doc="Owning tenant's UUID.")
    description = param.String(default="", allow_None=True)
    type = param.String(default="DEFAULT", doc="Profile type: DEFAULT (the only one ThingsBoard CE has).")
    transport_type = param.String(default="DEFAULT")
    provision_type = param.String(
        default=DISABLED, doc="DISABLED, ALLOW_CREATE_NEW_DEVICES or CHECK_PRE_PROVISIONED_DEVICES."
    )
    default = param.Boolean(default=False, doc="The tenant's default profile (exactly one per tenant).")
    profile_data = param.Dict(default=None, allow_None=True, doc="ThingsBoard's profileData, stored whole.")
    provision_device_key = param.String(default=None, allow_None=True)
    provision_device_secret = param.String(default=None, allow_None=True)

    def info_json(self) -> dict[str, Any]:
        """ThingsBoard's DeviceProfileInfo: what customer users may read (no provisioning keys)."""
        return {
            "id": self.entity_id,
            "tenantId": entity_id_json("TENANT", self.tenant_id),
            "name": self.name,
            "image": None,
            "defaultDashboardId": None,
            "type": self.type,
            "transportType": self.transport_type,
        }

    def to_json(self) -> dict[str, Any]:
        """ThingsBoard's DeviceProfile (tenant administrators only: it has the provisioning secret)."""
        data = dict(self.profile_data or DEFAULT_PROFILE_DATA)
        data["provisionConfiguration"] = {
            "type": self.provision_type,
            "provisionDeviceSecret": self.provision_device_secret,
        }
        return {
            "id": self.entity_id,
            "createdTime": self.created_time,
            "tenantId": entity_id_json("TENANT", self.tenant_id),
            "name": self.name,
            "description": self.description,
            "image": None,
            "type": self.type,
            "transportType": self.transport_type,
            "provisionType": self.provision_type,
            "defaultRuleChainId": None,
            "defaultDashboardId": None,
            "defaultQueueName": None,
            "profileData": data,
            "provisionDeviceKey": self.provision_device_key,
            "firmwareId": None,
            "softwareId": None,
            "defaultEdgeRuleChainId": None,
            "default": self.default,
        }


def profile_from_row(row: tuple[Any, ...]) -> DeviceProfile:
    return DeviceProfile(  # type: ignore[no-untyped-call]  # param's constructors are untyped
        id=row[0],
        created_time=row[1],
        tenant_id=row[2],
        name=row[3],
        description=row[4],
        type=row[5],
        transport_type=row[6],
        provision_type=row[7],
        default=bool(row[8]),
        profile_data=json.loads(row[9]) if row[9] else None,
        provision_device_key=row[10],
        provision_device_secret=row[11],
    )


def insert_default_profile(conn: sqlite3.Connection, tenant_id: str) -> str:
    """Create tenant ``tenant_id``'s default profile "default" (inside the caller's transaction)."""
    pid = str(uuid.uuid4())
    conn.execute(
        f"INSERT INTO device_profile ({_COLS}) VALUES (?, ?, ?, ?, ?, 'DEFAULT', 'DEFAULT', ?, 1, ?, NULL, NULL)",
        (pid, now_ms(), tenant_id, DEFAULT_PROFILE_NAME, "Default device profile", DISABLED, DEFAULT_PROFILE_DATA_JSON),
    )
    return pid


def _choice(value: Any, what: str, allowed: tuple[str, ...], default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput(f"{what} must be one of {', '.join(allowed)}, got {str(value)[:60]!r}")
    return value


def _profile_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The checked columns of a profile from ThingsBoard's ``POST /api/deviceProfile`` JSON."""
    name = fields.text(data.get("name"), "device profile name").strip()
    description = fields.optional_text(
        data.get("description"), "device profile description", max_len=MAX_DESCRIPTION_LENGTH
    )
    ptype = _choice(data.get("type"), "device profile type", PROFILE_TYPES, "DEFAULT")
    transport = _choice(data.get("transportType"), "transportType", TRANSPORT_TYPES, "DEFAULT")
    profile_data = data.get("profileData")
    if profile_data is None:
        profile_data = dict(DEFAULT_PROFILE_DATA)
    if not isinstance(profile_data, dict):
        raise InvalidInput(f"profileData must be a JSON object, got {type(profile_data).__name__}")
    provision = profile_data.get("provisionConfiguration")
    if provision is not None and not isinstance(provision, dict):
        raise InvalidInput("profileData.provisionConfiguration must be a JSON object")
    provision = provision or {}
    provision_type = _choice(
        data.get("provisionType") or provision.get("type"), "provisionType", PROVISION_TYPES, DISABLED
    )
    key = data.get("provisionDeviceKey")
    secret = data.get("provisionDeviceSecret") or provision.get("provisionDeviceSecret")
    for value, what in ((key, "provisionDeviceKey"), (secret, "provisionDeviceSecret")):
        if value is not None and value != "":
            fields.text(value, what, max_len=fields.MAX_TOKEN_LENGTH)
    if provision_type == DISABLED:
        key = key or None
        secret = secret or None
    elif not key or not secret:
        raise InvalidInput(f"provisionType {provision_type} needs provisionDeviceKey and provisionDeviceSecret")
    stored = dict(profile_data, provisionConfiguration={"type": provision_type, "provisionDeviceSecret": secret})
    try:
        data_json = json.dumps(stored, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"profileData is not valid JSON: {exc}") from None
    if len(data_json) > MAX_PROFILE_DATA_BYTES:
        raise InvalidInput(f"profileData is larger than {MAX_PROFILE_DATA_BYTES} bytes")
    return {
        "name": name,
        "description": description,
        "type": ptype,
        "transport_type": transport,
        "provision_type": provision_type,
        "profile_data": data_json,
        "provision_device_key": key,
        "provision_device_secret": secret,
    }


class Profiles(Tables):
    """The registry's device-profile methods (mixin of :class:`EntityRegistry`)."""

    def save_device_profile(self, tenant_id: Any, data: dict[str, Any]) -> DeviceProfile:
        """Create, or update when ``data`` has an ``id``, a profile of ``tenant_id`` from
        ThingsBoard's JSON. Renaming a profile renames its devices' ``type``. ``default`` in
        ``data`` is ignored (use :meth:`set_default_device_profile`), except that a tenant's
        first profile is its default. Errors: InvalidInput, NotFound, PermissionDenied
        (another tenant's profile), Conflict (name taken in the tenant, provisioning key taken)."""
        if not isinstance(data, dict):
            raise InvalidInput(f"device profile must be a JSON object, got {type(data).__name__}")
        f = _profile_fields(data)
        pid = None if not data.get("id") else fields.canonical_id(data["id"], "device profile")
        with self.transaction():
            tid = self._require_tenant(tenant_id)
            self._check_profile_unique(tid, f["name"], f["provision_device_key"], pid)
            values = [f[k] for k in ("name", "description", "type", "transport_type", "provision_type")]
            values += [f["profile_data"], f["provision_device_key"], f["provision_device_secret"]]
            if pid is None:
                pid = str(uuid.uuid4())
                first = not self._one("SELECT 1 FROM device_profile WHERE tenant_id = ?", (tid,))
                self._conn.execute(
                    "INSERT INTO device_profile (id, created_time, tenant_id, name, description, type, "
                    "transport_type, provision_type, profile_data, provision_device_key, provision_device_secret, "
                    "is_default) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [pid, now_ms(), tid, *values, 1 if first else 0],
                )
            else:
                old = self._one("SELECT tenant_id, name FROM device_profile WHERE id = ?", (pid,))
                if old is None:
                    raise NotFound(f"Device profile {pid} not found")
                if old[0] != tid:
                    raise PermissionDenied(f"Device profile {pid} belongs to another tenant")
                self._conn.execute(
                    "UPDATE device_profile SET name = ?, description = ?, type = ?, transport_type = ?, "
                    "provision_type = ?, profile_data = ?, provision_device_key = ?, provision_device_secret = ? "
                    "WHERE id = ?",
                    [*values, pid],
                )
                if old[1] != f["name"]:
                    for (did,) in self._all("SELECT id FROM device WHERE device_profile_id = ?", (pid,)):
                        self._forget_device(did)
                    self._conn.execute("UPDATE device SET type = ? WHERE device_profile_id = ?", (f["name"], pid))
            return self.get_device_profile(pid)

    def _check_profile_unique(self, tid: str, name: str, key: str | None, own_id: str | None) -> None:
        row = self._one("SELECT id FROM device_profile WHERE tenant_id = ? AND name = ?", (tid, name))
        if row is not None and row[0] != own_id:
            raise Conflict(f"Device profile with such name already exists: {name!r}")
        if key is not None:
            row = self._one("SELECT id FROM device_profile WHERE provision_device_key = ?", (key,))
            if row is not None and row[0] != own_id:
                raise Conflict("Device profile with such provision device key already exists!")

    def get_device_profile(self, profile_id: Any) -> DeviceProfile:
        pid = fields.canonical_id(profile_id, "device profile")
        row = self._one(f"SELECT {_COLS} FROM device_profile WHERE id = ?", (pid,))
        if row is None:
            raise NotFound(f"Device profile {pid} not found")
        return profile_from_row(row)

    def find_device_profile(self, tenant_id: Any, name: str) -> DeviceProfile | None:
        tid = fields.canonical_id(tenant_id, "tenant")
        row = self._one(f"SELECT {_COLS} FROM device_profile WHERE tenant_id = ? AND name = ?", (tid, name))
        return None if row is None else profile_from_row(row)

    def default_device_profile(self, tenant_id: Any) -> DeviceProfile:
        """The tenant's default profile (created if a tenant somehow has none)."""
        tid = fields.canonical_id(tenant_id, "tenant")
        with self.transaction():
            row = self._one(f"SELECT {_COLS} FROM device_profile WHERE tenant_id = ? AND is_default = 1", (tid,))
            if row is None:
                self._require_tenant(tid)
                return self.get_device_profile(self._profile_for_type(tid, None)[0])
            return profile_from_row(row)

    def device_profile_by_provision_key(self, key: str) -> DeviceProfile | None:
        """The profile whose provisionDeviceKey is ``key`` (keys are unique across tenants)."""
        if not isinstance(key, str) or not key or len(key) > fields.MAX_TOKEN_LENGTH:
            return None
        row = self._one(f"SELECT {_COLS} FROM device_profile WHERE provision_device_key = ?", (key,))
        return None if row is None else profile_from_row(row)

    def list_device_profiles(
        self,
        tenant_id: Any,
        page: int = 0,
        page_size: int = 100,
        text_search: str | None = None,
        sort_property: str = "createdTime",
        sort_order: str = "DESC",
        transport_type: str | None = None,
        ids: list[str] | None = None,
    ) -> tuple[list[DeviceProfile], int]:
        """One page of the tenant's profiles (``text_search``: substring of the name) and the total."""
        tid = fields.canonical_id(tenant_id, "tenant")
        page, page_size = fields.paging(page, page_size)
        order = fields.order(sort_property, sort_order, _SORT)
        where, params = "tenant_id = ?", [tid]
        if text_search:
            where += " AND name LIKE ? ESCAPE '\\'"
            params.append(fields.like(text_search))
        if transport_type:
            where += " AND transport_type = ?"
            params.append(_choice(transport_type, "transportType", TRANSPORT_TYPES, "DEFAULT"))
        if ids is not None:
            wanted = [fields.canonical_id(i, "device profile") for i in ids][:1000]
            where += f" AND id IN ({', '.join('?' * len(wanted)) or 'NULL'})"
            params += wanted
        with self._lock:
            total = self._count("device_profile", where, params)
            rows = self._all(
                f"SELECT {_COLS} FROM device_profile WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, page_size, page * page_size],
            )
        return [profile_from_row(r) for r in rows], total

    def set_default_device_profile(self, profile_id: Any) -> DeviceProfile:
        pid = fields.canonical_id(profile_id, "device profile")
        with self.transaction():
            profile = self.get_device_profile(pid)
            self._conn.execute("UPDATE device_profile SET is_default = 0 WHERE tenant_id = ?", (profile.tenant_id,))
            self._conn.execute("UPDATE device_profile SET is_default = 1 WHERE id = ?", (pid,))
            return self.get_device_profile(pid)

    def delete_device_profile(self, profile_id: Any) -> None:
        """Delete a profile; Conflict (400) for the default profile or one devices still use."""
        pid = fields.canonical_id(profile_id, "device profile")
        with self.transaction():
            profile = self.get_device_profile(pid)
            if profile.default:
                raise Conflict("Deletion of Default Device Profile is prohibited!")
            used = self._count("device", "device_profile_id = ?", [pid])
            if used:
                raise Conflict(
                    f"The device profile referenced by the devices cannot be deleted! ({used} device(s) use it)"
                )
            self._conn.execute("DELETE FROM device_profile WHERE id = ?", (pid,))

    def _profile_for_type(self, tid: str, name: str | None, profile_id: Any = None) -> tuple[str, str]:
        """(profile id, name) for a device being saved, inside the caller's transaction:
        ``profile_id`` when given (it must be the tenant's), else the profile named ``name``
        (created if missing), else the tenant's default (created if missing)."""
        if profile_id is not None:
            pid = fields.canonical_id(profile_id, "device profile")
            row = self._one("SELECT tenant_id, name FROM device_profile WHERE id = ?", (pid,))
            if row is None:
                raise NotFound(f"Device profile {pid} not found")
            if row[0] != tid:
                raise InvalidInput(f"Device profile {pid} belongs to another tenant")
            return pid, row[1]
        if name is None:
            row = self._one("SELECT id, name FROM device_profile WHERE tenant_id = ? AND is_default = 1", (tid,))
            if row is not None:
                return row[0], row[1]
            if self._one("SELECT 1 FROM device_profile WHERE tenant_id = ? AND name = ?", (tid, DEFAULT_PROFILE_NAME)):
                self._conn.execute(
                    "UPDATE device_profile SET is_default = 1 WHERE tenant_id = ? AND name = ?",
                    (tid, DEFAULT_PROFILE_NAME),
                )
                return self._profile_for_type(tid, None)
            return insert_default_profile(self._conn, tid), DEFAULT_PROFILE_NAME
        row = self._one("SELECT id FROM device_profile WHERE tenant_id = ? AND name = ?", (tid, name))
        if row is not None:
            return row[0], name
        pid = str(uuid.uuid4())
        self._conn.execute(
            f"INSERT INTO device_profile ({_COLS}) VALUES (?, ?, ?, ?, '', 'DEFAULT', 'DEFAULT', ?, 0, ?, NULL, NULL)",
            (pid, now_ms(), tid, name, DISABLED, DEFAULT_PROFILE_DATA_JSON),
        )
        return pid, name
