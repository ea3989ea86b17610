"""The wire protocol both WebSocket endpoints share: error codes and close codes, the
command-reading functions (every malformed field is a :class:`CmdError`, which is answered
and leaves the socket open), ThingsBoard's TelemetrySubscriptionUpdate shape, and
:class:`Connection`, what a command handler may use of its socket.

Pure functions and constants, no socket state: ``telemetry.py`` and ``alarms.py`` read their
commands with these, ``sockets.py`` turns a message into commands with
:func:`legacy_commands` / :func:`typed_commands`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Literal, Protocol, overload

from ...entities import Device, EntityRegistry, User
from ...errors import EntityError, NotFound, PermissionDenied
from ...store.aggregate import AGGS
from ...store.payload import TS_MAX
from ...store.values import to_wire_string
from ..base import DENIED
from ..entities import entity_uuid

NO_ERROR, INTERNAL_ERROR, BAD_REQUEST, UNAUTHORIZED = 0, 1, 2, 3
CLOSE_POLICY, CLOSE_BAD_DATA, CLOSE_SERVER_ERROR = 1008, 1007, 1011
AUTH_TIMEOUT_S = 10

#: one command's data: key -> [[ts, value as ThingsBoard's string], ...]
Data = dict[str, list[list[Any]]]


class CmdError(Exception):
    """A command that gets an error update (the socket stays open)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Connection(Protocol):
    """What the command handlers (``telemetry.py``, ``alarms.py``) use of their socket."""

    @property
    def closed(self) -> bool: ...

    def send(self, msg: dict[str, Any]) -> None: ...

    def write_message(self, message: str | bytes | dict[str, Any], binary: bool = False) -> Awaitable[None]: ...

    def close(self, code: int | None = None, reason: str | None = None) -> None: ...


# --------------------------------------------------------------------------- message shapes
def update(cmd_id: int, data: Data) -> dict[str, Any]:
    """A ThingsBoard TelemetrySubscriptionUpdate with data (keys sorted, as its TreeMap)."""
    data = {k: data[k] for k in sorted(data)}
    return {
        "subscriptionId": cmd_id,
        "errorCode": NO_ERROR,
        "errorMsg": None,
        "data": data,
        "latestValues": {k: max(p[0] for p in v) for k, v in data.items() if v},
    }


def error_update(cmd_id: int, code: int, message: str) -> dict[str, Any]:
    return {"subscriptionId": cmd_id, "errorCode": code, "errorMsg": message, "data": None, "latestValues": {}}


def render(series: dict[str, list[tuple[int, int, Any]]]) -> Data:
    """Store series → the wire's ``[[ts, "value as string"], ...]`` per key."""
    return {k: [[ts, to_wire_string(t, v)] for ts, t, v in pts] for k, pts in series.items()}


# --------------------------------------------------------------------------- messages → commands
def legacy_commands(msg: dict[str, Any]) -> list[tuple[str, Any]]:
    """``{"tsSubCmds": [...], "historyCmds": [...], "attrSubCmds": [...]}`` → (kind, cmd) pairs;
    a list field that is not a list is one ``INVALID`` command carrying the message."""
    out: list[tuple[str, Any]] = []
    for name, kind in (
        ("tsSubCmds", "TIMESERIES"),
        ("historyCmds", "TIMESERIES_HISTORY"),
        ("attrSubCmds", "ATTRIBUTES"),
    ):
        cmds = msg.get(name)
        if cmds is None:
            continue
        if not isinstance(cmds, list):
            out.append(("INVALID", f"'{name}' must be a list of commands"))
            continue
        out.extend((kind, c) for c in cmds)
    return out


def typed_commands(msg: dict[str, Any]) -> list[tuple[str, Any]]:
    """``{"cmds": [{"type": ..., ...}, ...]}`` → (TYPE, cmd) pairs; a cmd without a type is
    ``MISSING_TYPE``, a ``cmds`` that is not a list one ``INVALID`` command."""
    cmds = msg.get("cmds")
    if cmds is None:
        return []
    if not isinstance(cmds, list):
        return [("INVALID", "'cmds' must be a list of commands")]
    out: list[tuple[str, Any]] = []
    for c in cmds:
        kind = c.get("type") if isinstance(c, dict) else None
        if not isinstance(kind, str) or not kind:
            out.append(("MISSING_TYPE", c))
        else:
            out.append((kind.upper(), c))
    return out


# --------------------------------------------------------------------------- command fields
@overload
def int_field(cmd: dict[str, Any], name: str, default: int, *, minimum: int = 0, maximum: int = TS_MAX + 1) -> int: ...
@overload
def int_field(
    cmd: dict[str, Any], name: str, default: None = None, *, minimum: int = 0, maximum: int = TS_MAX + 1
) -> int | None: ...
def int_field(
    cmd: dict[str, Any], name: str, default: int | None = None, *, minimum: int = 0, maximum: int = TS_MAX + 1
) -> int | None:
    """An integer field; the default bounds fit every timestamp, count and window (and SQLite)."""
    raw = cmd.get(name)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise CmdError(BAD_REQUEST, f"'{name}' must be an integer, got {raw!r}")
    try:
        value = int(raw)
    except ValueError:
        raise CmdError(BAD_REQUEST, f"'{name}' must be an integer, got {raw!r}") from None
    if isinstance(raw, float) and raw != value:
        raise CmdError(BAD_REQUEST, f"'{name}' must be an integer, got {raw!r}")
    if value < minimum:
        raise CmdError(BAD_REQUEST, f"'{name}' must be at least {minimum}, got {value}")
    if value > maximum:
        raise CmdError(BAD_REQUEST, f"'{name}' must be at most {maximum}, got {value}")
    return value


def cmd_id_of(cmd: Any) -> int:
    if not isinstance(cmd, dict):
        raise CmdError(BAD_REQUEST, f"a command must be a JSON object, got {type(cmd).__name__}")
    if "cmdId" not in cmd:
        raise CmdError(BAD_REQUEST, "'cmdId' is required")
    value = int_field(cmd, "cmdId", minimum=-(2**31), maximum=2**31 - 1)  # a Java int, as ThingsBoard
    if value is None:
        raise CmdError(BAD_REQUEST, "'cmdId' is required")
    if value < 0:
        raise CmdError(BAD_REQUEST, "Cmd id is negative value!")
    return value


@overload
def keys_of(cmd: dict[str, Any], required: Literal[True]) -> list[str]: ...
@overload
def keys_of(cmd: dict[str, Any], required: bool) -> list[str] | None: ...
def keys_of(cmd: dict[str, Any], required: bool) -> list[str] | None:
    """``keys`` ("a,b" or a list) without blanks and repeats; None (every key) when empty."""
    raw = cmd.get("keys")
    if isinstance(raw, list):  # tolerated: the v2 API's list form
        keys = [str(k).strip() for k in raw]
    elif isinstance(raw, str):
        keys = [k.strip() for k in raw.split(",")]
    elif raw is None:
        keys = []
    else:
        raise CmdError(BAD_REQUEST, f"'keys' must be a comma-separated string, got {raw!r}")
    keys = list(dict.fromkeys(k for k in keys if k))
    if not keys:
        if required:
            raise CmdError(BAD_REQUEST, "Keys are empty!")
        return None
    return keys


def agg_of(cmd: dict[str, Any]) -> tuple[str, int]:
    agg = cmd.get("agg") or "NONE"
    if not isinstance(agg, str) or agg.upper() not in AGGS:
        raise CmdError(BAD_REQUEST, f"'agg' must be one of {', '.join(AGGS)}; got {agg!r}")
    agg = agg.upper()
    interval = int_field(cmd, "interval", 0)
    if agg != "NONE" and not interval:
        raise CmdError(BAD_REQUEST, f"'interval' must be a positive number of milliseconds when agg={agg}")
    return agg, interval


def device_of(registry: EntityRegistry, user: User, cmd: dict[str, Any]) -> Device:
    """The device a command names (``entityType``, ``entityId``), if ``user`` may read it —
    checked exactly as the REST API checks it."""
    entity_type, entity_id = cmd.get("entityType"), cmd.get("entityId")
    if not entity_id:
        raise CmdError(BAD_REQUEST, "Device id is empty!")
    if not entity_type:
        raise CmdError(BAD_REQUEST, "Entity type is empty!")
    if not isinstance(entity_type, str) or entity_type.upper() != "DEVICE":
        raise CmdError(BAD_REQUEST, f"tbpanel keeps telemetry for DEVICE entities; got entity type {entity_type!r}")
    try:
        device_id = entity_uuid(entity_id, "entityId")
    except Exception as e:
        raise CmdError(BAD_REQUEST, getattr(e, "message", str(e))) from None
    try:
        return registry.check_device(user, device_id)
    except NotFound:
        raise CmdError(BAD_REQUEST, f"Device with id [{device_id}] is not found") from None
    except PermissionDenied:
        raise CmdError(UNAUTHORIZED, DENIED) from None
    except EntityError as e:
        raise CmdError(BAD_REQUEST, str(e)) from None
