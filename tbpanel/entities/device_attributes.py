"""What a device may read of its attributes, the same on every transport (HTTP, MQTT, CoAP,
gateway): the answer to an attribute request and the body of a shared-attribute push.

A device reads its CLIENT_SCOPE and SHARED_SCOPE attributes, never SERVER_SCOPE. ThingsBoard's
request semantics: no keys at all means every client and shared attribute; keys of one scope
only mean that scope only. Answers omit an empty section, as ThingsBoard's JSON converter does.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import InvalidInput
from .attributes import AttributeChange

#: the request fields and the answer sections, per scope a device reads
SECTIONS = (("clientKeys", "client", "CLIENT_SCOPE"), ("sharedKeys", "shared", "SHARED_SCOPE"))
#: keys one request may name (a bound on the SQL it costs)
MAX_REQUEST_KEYS = 1000


class _Reader(Protocol):
    def get_attributes(self, entity_id: Any, scope: str | None = None, keys: Any = None) -> list[dict[str, Any]]: ...


def key_list(raw: Any, what: str) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` → keys without blanks and repeats; None when absent or empty."""
    if raw is None:
        return None
    if isinstance(raw, str):
        keys = [k.strip() for k in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(k, str) for k in raw):
        keys = [k.strip() for k in raw]
    else:
        raise InvalidInput(f"'{what}' must be a comma-separated string or a list of strings, got {type(raw).__name__}")
    keys = list(dict.fromkeys(k for k in keys if k))
    if len(keys) > MAX_REQUEST_KEYS:
        raise InvalidInput(f"'{what}' names {len(keys)} keys; at most {MAX_REQUEST_KEYS} per request")
    return keys or None


def wanted_scopes(
    client_keys: list[str] | None, shared_keys: list[str] | None, *, all_client: bool = False, all_shared: bool = False
) -> dict[str, list[str] | None]:
    """scope -> keys (None: every key of it) that a request asks for. ThingsBoard's rule:
    neither list given means every client and shared attribute; otherwise only the scopes
    named (``all_client``/``all_shared``: every key of that scope, the HTTP API's flags)."""
    wanted: dict[str, list[str] | None] = {}
    if client_keys is not None or all_client:
        wanted["CLIENT_SCOPE"] = None if all_client else client_keys
    if shared_keys is not None or all_shared:
        wanted["SHARED_SCOPE"] = None if all_shared else shared_keys
    return wanted or {"CLIENT_SCOPE": None, "SHARED_SCOPE": None}


def request_attributes(registry: _Reader, device_id: str, wanted: dict[str, list[str] | None]) -> dict[str, Any]:
    """``{"client": {key: value}, "shared": {key: value}}`` for :func:`wanted_scopes`
    (blocking: call it off the event loop); SERVER_SCOPE is never read, an empty section omitted."""
    answer: dict[str, Any] = {}
    for _field, section, scope in SECTIONS:
        if scope not in wanted:
            continue
        attrs = registry.get_attributes(device_id, scope, wanted[scope])
        if attrs:
            answer[section] = {a["key"]: a["value"] for a in attrs}
    return answer


def shared_update(change: AttributeChange) -> dict[str, Any] | None:
    """The push a device hears for ``change``: ``{key: value}`` for saved shared attributes,
    ``{"deleted": [keys]}`` for deleted ones; None for any other scope (never sent)."""
    if change.scope != "SHARED_SCOPE":
        return None
    if change.deleted:
        return {"deleted": list(change.deleted)}
    if change.values:
        return {v["key"]: v["value"] for v in change.values}
    return None
