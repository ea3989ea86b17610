"""The rules a dashboard's ``configuration`` (ThingsBoard's dashboard JSON) must follow before
it is stored.

ThingsBoard stores the configuration as an opaque JSON document; tbpanel checks the parts it
reads (widgets, their datasources and keys, states and layouts, entity aliases, the time
window) so that a page never meets a dashboard it cannot draw, and a client gets one clear
``InvalidInput`` naming the field (``configuration.widgets.w1.config.datasources[0].entityAliasId``)
instead. Everything else (ThingsBoard's many widget settings, keys tbpanel does not know) is
kept as given, so an export reads back identical. Pure functions: no database.
"""

from __future__ import annotations

import json
import math
import zoneinfo
from typing import Any

from ..errors import InvalidInput
from .aliases import alias_filter

#: largest configuration, as compact JSON text (a dashboard is read whole on every page open)
MAX_CONFIGURATION_BYTES = 4 * 1024 * 1024
#: ThingsBoard's widget types
WIDGET_TYPES = ("timeseries", "latest", "rpc", "alarm", "static")
#: ThingsBoard's data key types
DATA_KEY_TYPES = ("timeseries", "attribute", "function", "alarm", "entityField", "count")
#: ThingsBoard's aggregation types of a time window
AGGREGATION_TYPES = ("NONE", "AVG", "MIN", "MAX", "SUM", "COUNT")


def empty_configuration(title: str = "") -> dict[str, Any]:
    """The configuration of a new dashboard: one root state with an empty 24-column layout,
    the last day in real time."""
    return {
        "description": "",
        "widgets": {},
        "states": {
            "default": {
                "name": title,
                "root": True,
                "layouts": {"main": {"widgets": {}, "gridSettings": {"columns": 24}}},
            }
        },
        "entityAliases": {},
        "timewindow": {"selectedTab": 0, "realtime": {"timewindowMs": 86_400_000}, "aggregation": {"type": "NONE"}},
        "settings": {},
    }


def _object(value: Any, where: str, *, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput(f"{where} must be a JSON array, got {type(value).__name__}")
    return value


def _string(value: Any, where: str, *, required: bool = False, max_len: int = 4096) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise InvalidInput(f"{where} must be a non-empty string" if required else f"{where} must be a string")
    if len(value) > max_len:
        raise InvalidInput(f"{where} is longer than {max_len} characters")
    return value


def _choice(value: Any, where: str, allowed: tuple[Any, ...]) -> None:
    if value is not None and value not in allowed:
        raise InvalidInput(f"{where} must be one of {', '.join(map(str, allowed))}, got {value!r}"[:200])


def _number(value: Any, where: str, *, minimum: float = 0, integer: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if integer and ok and isinstance(value, float):
        ok = value.is_integer()
    if not ok or value < minimum:
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"{where} must be {kind} >= {minimum:g}, got {value!r}"[:160])


def _timewindow(value: Any, where: str) -> None:
    tw = _object(value, where)
    _choice(tw.get("selectedTab"), f"{where}.selectedTab", (0, 1))
    realtime = _object(tw.get("realtime"), f"{where}.realtime")
    _number(realtime.get("timewindowMs"), f"{where}.realtime.timewindowMs", minimum=1, integer=True)
    _number(realtime.get("interval"), f"{where}.realtime.interval", minimum=0, integer=True)
    history = _object(tw.get("history"), f"{where}.history")
    fixed = _object(history.get("fixedTimewindow"), f"{where}.history.fixedTimewindow")
    start, end = fixed.get("startTimeMs"), fixed.get("endTimeMs")
    _number(start, f"{where}.history.fixedTimewindow.startTimeMs", minimum=-(2**62), integer=True)
    _number(end, f"{where}.history.fixedTimewindow.endTimeMs", minimum=-(2**62), integer=True)
    if start is not None and end is not None and start > end:
        raise InvalidInput(f"{where}.history.fixedTimewindow.startTimeMs is after endTimeMs")
    _number(history.get("timewindowMs"), f"{where}.history.timewindowMs", minimum=1, integer=True)
    aggregation = _object(tw.get("aggregation"), f"{where}.aggregation")
    _choice(aggregation.get("type"), f"{where}.aggregation.type", AGGREGATION_TYPES)
    _number(aggregation.get("limit"), f"{where}.aggregation.limit", minimum=1, integer=True)
    zone = _string(tw.get("timezone"), f"{where}.timezone", max_len=100)
    if zone:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"{where}.timezone {zone[:60]!r} is not a time zone name") from None


def _aliases(value: Any) -> dict[str, Any]:
    aliases = _object(value, "configuration.entityAliases")
    for alias_id, alias in aliases.items():
        where = f"configuration.entityAliases.{alias_id}"
        alias = _object(alias, where, required=True)
        if alias.get("id") is not None and alias.get("id") != alias_id:
            raise InvalidInput(f"{where}.id must be {alias_id!r} (its key), got {alias.get('id')!r}"[:200])
        _string(alias.get("alias"), f"{where}.alias", required=True, max_len=255)
        try:
            alias_filter(alias.get("filter"))
        except InvalidInput as exc:
            raise InvalidInput(f"{where}.{exc}") from None
    return aliases


def _datasources(value: Any, where: str, aliases: dict[str, Any]) -> None:
    for i, source in enumerate(_list(value, where)):
        at = f"{where}[{i}]"
        source = _object(source, at, required=True)
        _string(source.get("type"), f"{at}.type", max_len=64)
        alias_id = source.get("entityAliasId")
        if alias_id is not None and (not isinstance(alias_id, str) or alias_id not in aliases):
            raise InvalidInput(f"{at}.entityAliasId {alias_id!r} names no entity alias of the dashboard"[:200])
        for k, key in enumerate(_list(source.get("dataKeys"), f"{at}.dataKeys")):
            kat = f"{at}.dataKeys[{k}]"
            key = _object(key, kat, required=True)
            _string(key.get("name"), f"{kat}.name", required=True, max_len=255)
            _choice(key.get("type"), f"{kat}.type", DATA_KEY_TYPES)
            _string(key.get("label"), f"{kat}.label", max_len=255)
            _string(key.get("units"), f"{kat}.units", max_len=64)


def _widgets(value: Any, aliases: dict[str, Any]) -> dict[str, Any]:
    widgets = _object(value, "configuration.widgets")
    for widget_id, widget in widgets.items():
        where = f"configuration.widgets.{widget_id}"
        widget = _object(widget, where, required=True)
        if widget.get("id") is not None and widget.get("id") != widget_id:
            raise InvalidInput(f"{where}.id must be {widget_id!r} (its key), got {widget.get('id')!r}"[:200])
        _string(widget.get("typeFullFqn"), f"{where}.typeFullFqn", max_len=255)
        _choice(widget.get("type"), f"{where}.type", WIDGET_TYPES)
        config = _object(widget.get("config"), f"{where}.config")
        _string(config.get("title"), f"{where}.config.title", max_len=1024)
        _datasources(config.get("datasources"), f"{where}.config.datasources", aliases)
        if config.get("timewindow") is not None:
            _timewindow(config.get("timewindow"), f"{where}.config.timewindow")
        use = config.get("useDashboardTimewindow")
        if use is not None and not isinstance(use, bool):
            raise InvalidInput(f"{where}.config.useDashboardTimewindow must be true or false")
        _object(config.get("settings"), f"{where}.config.settings")
    return widgets


def _states(value: Any, widgets: dict[str, Any]) -> None:
    states = _object(value, "configuration.states")
    roots = []
    for state_id, state in states.items():
        where = f"configuration.states.{state_id}"
        state = _object(state, where, required=True)
        _string(state.get("name"), f"{where}.name", max_len=255)
        root = state.get("root", False)
        if not isinstance(root, bool):
            raise InvalidInput(f"{where}.root must be true or false")
        if root:
            roots.append(state_id)
        for layout_id, layout in _object(state.get("layouts"), f"{where}.layouts").items():
            lat = f"{where}.layouts.{layout_id}"
            layout = _object(layout, lat, required=True)
            for widget_id, place in _object(layout.get("widgets"), f"{lat}.widgets").items():
                pat = f"{lat}.widgets.{widget_id}"
                if widget_id not in widgets:
                    raise InvalidInput(f"{pat} names no widget of configuration.widgets")
                place = _object(place, pat, required=True)
                for coord in ("row", "col"):
                    _number(place.get(coord), f"{pat}.{coord}", minimum=0)
                for size in ("sizeX", "sizeY"):
                    _number(place.get(size), f"{pat}.{size}", minimum=0)
            grid = _object(layout.get("gridSettings"), f"{lat}.gridSettings")
            _number(grid.get("columns"), f"{lat}.gridSettings.columns", minimum=1, integer=True)
    if len(roots) > 1:
        raise InvalidInput(f"configuration.states: only one state may be root, got {', '.join(roots)}"[:200])


def validate_configuration(value: Any) -> dict[str, Any]:
    """``value`` if it is a configuration tbpanel can store and draw (see the module
    docstring), else InvalidInput naming the first bad field. None is an empty configuration."""
    if value is None:
        return empty_configuration()
    config = _object(value, "configuration", required=True)
    _string(config.get("description"), "configuration.description", max_len=65_536)
    aliases = _aliases(config.get("entityAliases"))
    widgets = _widgets(config.get("widgets"), aliases)
    _states(config.get("states"), widgets)
    if config.get("timewindow") is not None:
        _timewindow(config.get("timewindow"), "configuration.timewindow")
    _object(config.get("settings"), "configuration.settings")
    return config


def configuration_json(config: dict[str, Any]) -> str:
    """The stored text of a checked configuration (compact JSON, key order kept); InvalidInput
    when it is not JSON (NaN) or larger than :data:`MAX_CONFIGURATION_BYTES`."""
    try:
        text = json.dumps(config, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"configuration is not valid JSON: {exc}") from None
    if len(text.encode()) > MAX_CONFIGURATION_BYTES:
        raise InvalidInput(f"configuration is larger than {MAX_CONFIGURATION_BYTES} bytes")
    return text
