"""The rule engine's message: ThingsBoard's ``TbMsg`` as a small immutable value.

A message is what a transport or an internal event hands to a tenant's root chain and what
every node receives and emits. ``metadata`` is a flat ``str -> str`` map (ThingsBoard's
rule: scripts and patterns read metadata as text); ``data`` is the parsed JSON payload.
Nodes never change a message in place: they emit copies (:meth:`TbMsg.copy`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from ..clock import now_ms

# ThingsBoard's message types (TbMsgType) that tbpanel produces or a chain may test for.
POST_TELEMETRY_REQUEST = "POST_TELEMETRY_REQUEST"
POST_ATTRIBUTES_REQUEST = "POST_ATTRIBUTES_REQUEST"
TO_SERVER_RPC_REQUEST = "TO_SERVER_RPC_REQUEST"
RPC_CALL_FROM_SERVER_TO_DEVICE = "RPC_CALL_FROM_SERVER_TO_DEVICE"
ACTIVITY_EVENT = "ACTIVITY_EVENT"
INACTIVITY_EVENT = "INACTIVITY_EVENT"
CONNECT_EVENT = "CONNECT_EVENT"
DISCONNECT_EVENT = "DISCONNECT_EVENT"
ENTITY_CREATED = "ENTITY_CREATED"
ENTITY_UPDATED = "ENTITY_UPDATED"
ENTITY_DELETED = "ENTITY_DELETED"
ATTRIBUTES_UPDATED = "ATTRIBUTES_UPDATED"
ATTRIBUTES_DELETED = "ATTRIBUTES_DELETED"
TIMESERIES_UPDATED = "TIMESERIES_UPDATED"
ALARM = "ALARM"
ALARM_ACK = "ALARM_ACK"
ALARM_CLEAR = "ALARM_CLEAR"
REST_API_REQUEST = "REST_API_REQUEST"
GENERATOR_NODE_SELF_MSG = "GENERATOR_NODE_SELF_MSG"
ANOMALY_CREATED = "ANOMALY_CREATED"  # tbpanel's own: an anomaly model raised an anomaly
ANOMALY_CLEARED = "ANOMALY_CLEARED"

#: The relation label ThingsBoard's message type switch emits for each type ("Other" for the rest).
TYPE_RELATIONS: dict[str, str] = {
    POST_ATTRIBUTES_REQUEST: "Post attributes",
    POST_TELEMETRY_REQUEST: "Post telemetry",
    TO_SERVER_RPC_REQUEST: "RPC Request from Device",
    ACTIVITY_EVENT: "Activity Event",
    INACTIVITY_EVENT: "Inactivity Event",
    CONNECT_EVENT: "Connect Event",
    DISCONNECT_EVENT: "Disconnect Event",
    ENTITY_CREATED: "Entity Created",
    ENTITY_UPDATED: "Entity Updated",
    ENTITY_DELETED: "Entity Deleted",
    ATTRIBUTES_UPDATED: "Attributes Updated",
    ATTRIBUTES_DELETED: "Attributes Deleted",
    ALARM: "Alarm",
    ALARM_ACK: "Alarm Acknowledged",
    ALARM_CLEAR: "Alarm Cleared",
    RPC_CALL_FROM_SERVER_TO_DEVICE: "RPC Request to Device",
    TIMESERIES_UPDATED: "Timeseries Updated",
    REST_API_REQUEST: "REST API request",
}

ENTITY_TYPES = ("DEVICE", "ASSET", "CUSTOMER", "TENANT", "USER", "ENTITY_VIEW", "DASHBOARD", "RULE_CHAIN", "ALARM")


@dataclass(frozen=True)
class EntityRef:
    """An entity as ThingsBoard names one: ``{"entityType": "DEVICE", "id": "…"}``."""

    entity_type: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"entityType": self.entity_type, "id": self.id}


@dataclass(frozen=True)
class TbMsg:
    """One message. ``data`` is JSON-compatible Python (dict, list, str, number, bool, None)."""

    type: str
    originator: EntityRef
    data: Any = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    tenant_id: str = ""
    customer_id: str | None = None
    ts: int = field(default_factory=now_ms)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        bad = [k for k, v in self.metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"message metadata must map strings to strings; not so for {bad[:5]}")

    def copy(self, **changes: Any) -> TbMsg:
        """A new message (same id unless ``id=`` is given) with ``changes`` applied."""
        if "metadata" in changes:
            changes["metadata"] = {str(k): str(v) for k, v in changes["metadata"].items()}
        return replace(self, **changes)

    def new_id(self, **changes: Any) -> TbMsg:
        """A copy with a fresh id: what a node that splits one message into several emits."""
        return self.copy(id=str(uuid.uuid4()), **changes)

    @property
    def data_text(self) -> str:
        return orjson.dumps(self.data).decode()

    def to_json(self) -> dict[str, Any]:
        """The stored / debug-event form (round-trips through :meth:`from_json`)."""
        return {
            "id": self.id,
            "ts": self.ts,
            "type": self.type,
            "originator": self.originator.to_json(),
            "tenantId": self.tenant_id,
            "customerId": self.customer_id,
            "metadata": dict(self.metadata),
            "data": self.data,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TbMsg:
        o = d["originator"]
        return cls(
            id=str(d["id"]),
            ts=int(d["ts"]),
            type=str(d["type"]),
            originator=EntityRef(str(o["entityType"]), str(o["id"])),
            tenant_id=str(d.get("tenantId") or ""),
            customer_id=d.get("customerId"),
            metadata={str(k): str(v) for k, v in (d.get("metadata") or {}).items()},
            data=d.get("data"),
        )


def device_msg(
    type: str,
    device_id: str,
    data: Any,
    *,
    tenant_id: str,
    device_name: str = "",
    device_type: str = "default",
    customer_id: str | None = None,
    ts: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> TbMsg:
    """A message from a device with the metadata every ThingsBoard transport adds
    (``deviceName``, ``deviceType``, ``ts``)."""
    t = now_ms() if ts is None else ts
    meta = {"deviceName": device_name, "deviceType": device_type, "ts": str(t), **(metadata or {})}
    return TbMsg(
        type=type,
        originator=EntityRef("DEVICE", device_id),
        data=data,
        metadata=meta,
        tenant_id=tenant_id,
        customer_id=customer_id,
        ts=t,
    )


def telemetry_msgs(
    device_id: str, values_by_ts: Mapping[int, Mapping[str, Any]], *, tenant_id: str, **device: Any
) -> list[TbMsg]:
    """ThingsBoard's rule for telemetry with several timestamps: one message per ``ts``
    (metadata ``ts``), each carrying that timestamp's key/value object, in time order."""
    return [
        device_msg(POST_TELEMETRY_REQUEST, device_id, dict(values), tenant_id=tenant_id, ts=ts, **device)
        for ts, values in sorted(values_by_ts.items())
    ]


def meta_text(value: Any) -> str:
    """A value as ThingsBoard writes it into metadata: ``true``/``false``, numbers as Java
    prints them (``25.0`` for a double), JSON for objects and arrays, text as it is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    return orjson.dumps(value).decode()
