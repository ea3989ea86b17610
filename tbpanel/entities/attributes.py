"""Attributes: the latest typed value of each key, per entity and scope (ThingsBoard's
client, server and shared attributes).

Values arrive as the typed ``(ts, key, vtype, value)`` points ``tbpanel.store.payload``
produces (the same :class:`~tbpanel.store.values.ValueType` codes as telemetry) and are kept
in the ``attribute`` table, ``ts`` becoming the key's ``lastUpdateTs``. Reads give the value
back in its stored type. An entity's attributes go with it: deleting a device, user or
customer removes them in the same transaction.

Every save and delete emits :attr:`Attributes.attributes_changed` with one
:class:`AttributeChange` once its transaction has committed: the one way live subscribers
(device sessions, WebSocket subscriptions, long polls) hear of attribute changes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput
from ..events import Signal
from . import fields
from .tables import Tables

ATTRIBUTE_SCOPES = ("CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE")

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class AttributeChange:
    """What one committed save or delete changed on one entity and scope."""

    entity_id: str
    scope: str
    #: ``[{"key", "value", "lastUpdateTs"}]`` as saved (value in its stored type)
    values: list[dict[str, Any]] = field(default_factory=list)
    #: keys that existed and were deleted
    deleted: list[str] = field(default_factory=list)


def check_point(point: Any) -> tuple[int, str, int, Any]:
    """Validate one ``(ts, key, vtype, value)`` attribute point (ValueType codes); returns it
    in stored form (doubles as float, booleans as 0/1)."""
    from tbpanel.store.values import ValueType  # lazy: keep `entities` import light

    try:
        ts, key, vtype, value = point
    except (TypeError, ValueError):
        raise InvalidInput(f"attribute point must be (ts, key, vtype, value), got {point!r}") from None
    if isinstance(ts, bool) or not isinstance(ts, int) or ts < 0:
        raise InvalidInput(f"attribute timestamp must be epoch ms >= 0, got {ts!r}")
    fields.text(key, "attribute key")
    try:
        vtype = ValueType(vtype)
    except ValueError:
        raise InvalidInput(f"unknown value type {vtype!r} for attribute {key!r}") from None
    ok = {
        ValueType.BOOL: isinstance(value, bool),
        ValueType.LONG: isinstance(value, int) and not isinstance(value, bool) and _LONG_MIN <= value <= _LONG_MAX,
        ValueType.DOUBLE: isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
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


def typed_value(t: int, v: Any) -> Any:
    """A stored value in its type: bool, int, float, or text (JSON stays text)."""
    from tbpanel.store.values import ValueType

    if t == ValueType.BOOL:
        return bool(v)
    if t == ValueType.LONG:
        return int(v)
    if t == ValueType.DOUBLE:
        return float(v)
    return v if isinstance(v, str) else str(v)


def _scope(scope: Any) -> str:
    if scope not in ATTRIBUTE_SCOPES:
        raise InvalidInput(f"attribute scope must be one of {', '.join(ATTRIBUTE_SCOPES)}, got {scope!r}")
    return str(scope)


def _key_list(keys: Iterable[str]) -> list[str]:
    """``keys`` as a list of strings (a single string is one key)."""
    key_list = [keys] if isinstance(keys, str) else list(keys)
    if not all(isinstance(k, str) for k in key_list):
        raise InvalidInput("attribute keys must be strings")
    return key_list


class Attributes(Tables):
    """The registry's attribute methods (mixin of :class:`EntityRegistry`)."""

    attributes_changed: Signal[[AttributeChange]]

    def save_attributes(self, entity_id: Any, scope: str, points: Iterable[tuple[int, str, int, Any]]) -> int:
        """Upsert typed ``(ts, key, vtype, value)`` points (as produced by
        ``tbpanel.store.payload``) into ``scope``; ``ts`` becomes the key's lastUpdateTs.
        The whole batch is validated first and written in one transaction. Returns the count."""
        eid = fields.canonical_id(entity_id, "entity")
        scope = _scope(scope)
        rows = [(eid, scope, key, vtype, value, ts) for ts, key, vtype, value in map(check_point, points)]
        if not rows:
            return 0
        with self.transaction():
            self._conn.executemany(
                "INSERT INTO attribute (entity_id, scope, key, t, v, last_update_ts) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (entity_id, scope, key) DO UPDATE SET "
                "t = excluded.t, v = excluded.v, last_update_ts = excluded.last_update_ts",
                rows,
            )
            change = AttributeChange(
                eid, scope, [{"key": k, "value": typed_value(t, v), "lastUpdateTs": ts} for _, _, k, t, v, ts in rows]
            )
            self._db.after_commit(lambda: self.attributes_changed.emit(change))
        return len(rows)

    def get_attributes(
        self, entity_id: Any, scope: str | None = None, keys: Iterable[str] | None = None
    ) -> list[dict[str, Any]]:
        """``[{"key", "value", "lastUpdateTs", "scope"}]`` sorted by scope then key, with the
        value in its stored type (bool/int/float/str; JSON kept as text). ``keys`` that do not
        exist are simply absent."""
        eid = fields.canonical_id(entity_id, "entity")
        where, params = "entity_id = ?", [eid]
        if scope is not None:
            where += " AND scope = ?"
            params.append(_scope(scope))
        if keys is not None:
            key_list = _key_list(keys)
            if not key_list:
                return []
            where += f" AND key IN ({', '.join('?' * len(key_list))})"
            params += key_list
        rows = self._all(
            f"SELECT scope, key, t, v, last_update_ts FROM attribute WHERE {where} ORDER BY scope, key", params
        )
        return [{"key": key, "value": typed_value(t, v), "lastUpdateTs": ts, "scope": sc} for sc, key, t, v, ts in rows]

    def get_attributes_many(
        self, entity_ids: Iterable[str], scope: str | None = None, keys: Iterable[str] | None = None
    ) -> dict[str, dict[str, dict[str, tuple[int, int, Any]]]]:
        """Attributes of many entities in one read: ``entity -> scope -> key ->
        (lastUpdateTs, vtype, value)`` (value in its stored type; only ``scope`` when given,
        only ``keys`` when given). Every entity asked for is in the result (``{}`` when it has
        none). One SQL query per 500 entities, all under the registry lock: what entity data
        queries use instead of one :meth:`get_attributes` per entity."""
        ids = [fields.canonical_id(e, "entity") for e in dict.fromkeys(entity_ids)]
        out: dict[str, dict[str, dict[str, tuple[int, int, Any]]]] = {e: {} for e in ids}
        where, params = "", []
        if scope is not None:
            where += " AND scope = ?"
            params.append(_scope(scope))
        if keys is not None:
            key_list = list(dict.fromkeys(_key_list(keys)))
            if not key_list:
                return out
            where += f" AND key IN ({', '.join('?' * len(key_list))})"
            params += key_list
        with self._lock:
            for i in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                chunk = ids[i : i + 500]
                rows = self._all(
                    "SELECT entity_id, scope, key, t, v, last_update_ts FROM attribute "
                    f"WHERE entity_id IN ({', '.join('?' * len(chunk))}){where}",
                    [*chunk, *params],
                )
                for eid, sc, key, t, v, ts in rows:
                    out[eid].setdefault(sc, {})[key] = (ts, t, typed_value(t, v))
        return out

    def delete_attributes(self, entity_id: Any, scope: str, keys: Iterable[str]) -> int:
        """Delete the given keys of one scope; returns how many existed."""
        eid = fields.canonical_id(entity_id, "entity")
        if scope not in ATTRIBUTE_SCOPES:
            raise InvalidInput(f"attribute scope must be one of {', '.join(ATTRIBUTE_SCOPES)}")
        key_list = _key_list(keys)
        if not key_list:
            return 0
        marks = ", ".join("?" * len(key_list))
        with self.transaction():
            existed = [
                r[0]
                for r in self._all(
                    f"SELECT key FROM attribute WHERE entity_id = ? AND scope = ? AND key IN ({marks}) ORDER BY key",
                    [eid, scope, *key_list],
                )
            ]
            self._conn.execute(
                f"DELETE FROM attribute WHERE entity_id = ? AND scope = ? AND key IN ({marks})", [eid, scope, *key_list]
            )
            if existed:
                change = AttributeChange(eid, scope, deleted=existed)
                self._db.after_commit(lambda: self.attributes_changed.emit(change))
            return len(existed)
