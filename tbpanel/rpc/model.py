"""ThingsBoard's server-side RPC request: its body rules, its status life cycle and its JSON.

A request is made from a REST body (:func:`parse_request`), lives in memory while it is being
delivered and answered, and — when ``persistent`` — also as a row of ``rpc.sqlite``
(:mod:`.repository`) whose ``status`` walks ThingsBoard's life cycle:

``QUEUED`` (stored, no session took it yet) → ``SENT`` (handed to a device session) →
``DELIVERED`` (written to the device; the end for one-way) → ``SUCCESSFUL`` (the device's
answer to a two-way request arrived). It ends early as ``TIMEOUT`` (sent, but no answer within
``timeout`` ms), ``EXPIRED`` (``expirationTime`` passed before it could be sent or answered)
or ``FAILED`` (a persistent request with ``retries`` that sessions failed to write more than
``retries`` times; without ``retries`` it waits for the next session until it expires).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ..errors import EntityError, InvalidInput

QUEUED, SENT, DELIVERED, SUCCESSFUL = "QUEUED", "SENT", "DELIVERED", "SUCCESSFUL"
TIMEOUT, EXPIRED, FAILED = "TIMEOUT", "EXPIRED", "FAILED"
STATUSES = (QUEUED, SENT, DELIVERED, SUCCESSFUL, TIMEOUT, EXPIRED, FAILED)
#: statuses after which nothing happens to a request any more
FINAL = frozenset({SUCCESSFUL, TIMEOUT, EXPIRED, FAILED})

#: ThingsBoard's default ``timeout`` (ms)
DEFAULT_TIMEOUT_MS = 10_000
#: the longest ``timeout`` accepted (one day); persistent requests may set a later ``expirationTime``
MAX_TIMEOUT_MS = 86_400_000
#: the latest ``expirationTime`` accepted: one year ahead
MAX_EXPIRATION_AHEAD_MS = 366 * 86_400_000
MAX_METHOD_LENGTH = 255
#: the largest ``params`` (as JSON text) and device answer kept
MAX_PARAMS_BYTES = 64 * 1024


class DeviceNotConnected(EntityError):
    """A non-persistent request to a device no session is open for (ThingsBoard answers 409)."""

    status = 409
    error_code = 30


@dataclass(frozen=True)
class RpcRequest:
    """One server → device request (immutable: every change is a new copy via :meth:`with_`)."""

    id: str
    tenant_id: str
    device_id: str
    method: str
    params: Any
    oneway: bool
    persistent: bool
    timeout_ms: int
    expiration_time: int
    created_time: int
    status: str = QUEUED
    #: the device's answer (any JSON value) once SUCCESSFUL, or ``{"error": ...}`` when FAILED
    response: Any = None
    #: the number on the wire (``rpc/request/{n}``, the HTTP poll's ``id``); 0 until sent
    request_id: int = 0
    additional_info: dict[str, Any] | None = None
    retries: int | None = None

    def with_(self, **changes: Any) -> RpcRequest:
        return replace(self, **changes)

    @property
    def body(self) -> dict[str, Any]:
        """What a device receives: ``{"method", "params"}``."""
        return {"method": self.method, "params": self.params}

    def to_json(self) -> dict[str, Any]:
        """ThingsBoard's ``Rpc`` object (``GET /api/rpc/persistent/{rpcId}``)."""
        tenant = {"entityType": "TENANT", "id": self.tenant_id}
        device = {"entityType": "DEVICE", "id": self.device_id}
        return {
            "id": {"entityType": "RPC", "id": self.id},
            "createdTime": self.created_time,
            "tenantId": tenant,
            "deviceId": device,
            "expirationTime": self.expiration_time,
            "request": {
                "id": self.id,
                "tenantId": tenant,
                "deviceId": device,
                "oneway": self.oneway,
                "expirationTime": self.expiration_time,
                # ThingsBoard keeps params as JSON text inside the request body
                "body": {"method": self.method, "params": orjson.dumps(self.params).decode()},
                "persisted": self.persistent,
                "retries": self.retries,
                "additionalInfo": self.additional_info,
            },
            "response": self.response,
            "status": self.status,
            "additionalInfo": self.additional_info,
        }


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"RPC '{key}' must be an integer, got {value!r}")
    return value


def parse_request(body: Any, *, tenant_id: str, device_id: str, oneway: bool, now: int) -> RpcRequest:
    """A new request from ThingsBoard's REST body ``{"method", "params", "timeout",
    "expirationTime", "persistent", "retries", "additionalInfo"}``; InvalidInput (400) with a
    message naming the field otherwise. ``expirationTime`` overrides ``timeout`` for the
    deadline, as in ThingsBoard."""
    if not isinstance(body, dict):
        raise InvalidInput('RPC body must be a JSON object: {"method": "...", "params": {...}}')
    method = body.get("method")
    if not isinstance(method, str) or not method.strip():
        raise InvalidInput("RPC 'method' is required and must be a non-empty string")
    if len(method) > MAX_METHOD_LENGTH:
        raise InvalidInput(f"RPC 'method' is longer than {MAX_METHOD_LENGTH} characters")
    params = body.get("params", {})
    if len(orjson.dumps(params)) > MAX_PARAMS_BYTES:
        raise InvalidInput(f"RPC 'params' is larger than {MAX_PARAMS_BYTES} bytes")
    timeout = _int(body, "timeout")
    timeout = DEFAULT_TIMEOUT_MS if timeout is None else timeout
    if not 1 <= timeout <= MAX_TIMEOUT_MS:
        raise InvalidInput(f"RPC 'timeout' must be 1..{MAX_TIMEOUT_MS} ms, got {timeout}")
    expiration = _int(body, "expirationTime")
    if expiration is None:
        expiration = now + timeout
    elif expiration <= now:
        raise InvalidInput(f"RPC 'expirationTime' {expiration} is not in the future (now is {now})")
    elif expiration > now + MAX_EXPIRATION_AHEAD_MS:
        raise InvalidInput("RPC 'expirationTime' is more than a year ahead")
    persistent = body.get("persistent", False)
    if not isinstance(persistent, bool):
        raise InvalidInput(f"RPC 'persistent' must be true or false, got {persistent!r}")
    retries = _int(body, "retries")
    if retries is not None and not 0 <= retries <= 100:
        raise InvalidInput(f"RPC 'retries' must be 0..100, got {retries}")
    info = body.get("additionalInfo")
    if info is not None and not isinstance(info, dict):
        raise InvalidInput("RPC 'additionalInfo' must be a JSON object")
    return RpcRequest(
        id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        device_id=device_id,
        method=method.strip(),
        params=params,
        oneway=oneway,
        persistent=persistent,
        timeout_ms=timeout,
        expiration_time=expiration,
        created_time=now,
        additional_info=info,
        retries=retries,
    )
