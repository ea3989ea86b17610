"""ThingsBoard's device topics: the ``v1/devices/me/...`` names, their ThingsBoard 3.5+ short
forms (``v2/t``, ``v2/a``, ``v2/a/req/{n}`` …) and MQTT topic-filter matching.

The session works on the long (canonical) names only: :func:`inbound` maps what a device
published to its canonical name (remembering whether it was short), and :func:`outbound` gives
the name to answer or push on — a request made on a short topic is answered on the short
response topic, and a push goes to whichever form the device subscribed to.
"""

from __future__ import annotations

from collections.abc import Iterable

DEVICE_TELEMETRY = "v1/devices/me/telemetry"
DEVICE_ATTRIBUTES = "v1/devices/me/attributes"
ATTRIBUTE_REQUEST = "v1/devices/me/attributes/request/"
ATTRIBUTE_RESPONSE = "v1/devices/me/attributes/response/"
RPC_REQUEST = "v1/devices/me/rpc/request/"
RPC_RESPONSE = "v1/devices/me/rpc/response/"

#: (short, canonical) pairs; a name ending in "/" is a prefix followed by a request id
_SHORT = (
    ("v2/t", DEVICE_TELEMETRY),
    ("v2/a", DEVICE_ATTRIBUTES),
    ("v2/a/req/", ATTRIBUTE_REQUEST),
    ("v2/a/res/", ATTRIBUTE_RESPONSE),
    ("v2/r/req/", RPC_REQUEST),
    ("v2/r/res/", RPC_RESPONSE),
)


def _swap(topic: str, pairs: Iterable[tuple[str, str]]) -> str | None:
    for source, target in pairs:
        if source.endswith("/") and topic.startswith(source) and "/" not in topic[len(source) :]:
            return target + topic[len(source) :]
        if topic == source:
            return target
    return None


def inbound(topic: str) -> tuple[str, bool]:
    """``(canonical topic, was it short)`` of a topic a device published to."""
    long = _swap(topic, _SHORT)
    return (long, True) if long is not None else (topic, False)


def short_form(canonical: str) -> str:
    """The short name of a canonical device topic (unchanged when it has none)."""
    return _swap(canonical, ((b, a) for a, b in _SHORT)) or canonical


def outbound(canonical: str, short: bool) -> str:
    """The topic to publish ``canonical`` on for a device that spoke short (or long) names."""
    return short_form(canonical) if short else canonical


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic-filter matching (``+`` one level, ``#`` the rest)."""
    parts, levels = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(parts):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(parts) == len(levels)


def push_topic(filters: Iterable[str], canonical: str) -> str | None:
    """Where to push ``canonical`` for a session holding ``filters``: the long name if a filter
    matches it, else the short name if one matches that, else None (not subscribed)."""
    filters = list(filters)
    for name in (canonical, short_form(canonical)):
        if any(matches(f, name) for f in filters):
            return name
    return None
