"""Filter nodes: route a message by a script, its type, its originator, its fields or a geofence."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import param

from ..message import TYPE_RELATIONS, TbMsg
from .base import FAILURE, FALSE, OTHER, TRUE, NodeConfigError, Outputs, RuleNode, register
from .scripted import JsBodyNode

_TF = (TRUE, FALSE, FAILURE)


@register
class JsFilterNode(JsBodyNode):
    """Script returns a boolean: True or False."""

    tb_type = "filter.TbJsFilterNode"
    category = "FILTER"
    relations = _TF

    def process(self, ctx, msg: TbMsg) -> Outputs:
        out = self.run_script(ctx, msg.data, dict(msg.metadata), msg.type)
        if not isinstance(out, bool):
            raise TypeError(f"filter script must return a boolean, got {orjson.dumps(out).decode()[:60]}")
        return [(TRUE if out else FALSE, msg)]


@register
class JsSwitchNode(JsBodyNode):
    """Script returns the relation labels to follow (an array, or one string)."""

    tb_type = "filter.TbJsSwitchNode"
    category = "FILTER"
    relations = (FAILURE,)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        out = self.run_script(ctx, msg.data, dict(msg.metadata), msg.type)
        labels = [out] if isinstance(out, str) else out
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise TypeError("switch script must return an array of relation names (strings)")
        return [(label, msg) for label in dict.fromkeys(labels)]


@register
class MsgTypeFilterNode(RuleNode):
    """True when the message type is one of ``messageTypes``."""

    tb_type = "filter.TbMsgTypeFilterNode"
    category = "FILTER"
    relations = _TF
    message_types = param.List(default=["POST_ATTRIBUTES_REQUEST", "POST_TELEMETRY_REQUEST"], item_type=str)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        return [(TRUE if msg.type in self.message_types else FALSE, msg)]


@register
class MsgTypeSwitchNode(RuleNode):
    """Routes by message type with ThingsBoard's labels (``Post telemetry`` …, else ``Other``)."""

    tb_type = "filter.TbMsgTypeSwitchNode"
    category = "FILTER"
    relations = (*dict.fromkeys(TYPE_RELATIONS.values()), OTHER)
    version = param.Integer(default=0, doc="ThingsBoard's configuration version (kept as it is).")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        return [(TYPE_RELATIONS.get(msg.type, OTHER), msg)]


@register
class OriginatorTypeFilterNode(RuleNode):
    """True when the originator's entity type is one of ``originatorTypes``."""

    tb_type = "filter.TbOriginatorTypeFilterNode"
    category = "FILTER"
    relations = _TF
    originator_types = param.List(default=[], item_type=str)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        return [(TRUE if msg.originator.entity_type in self.originator_types else FALSE, msg)]


@register
class OriginatorTypeSwitchNode(RuleNode):
    """Routes by originator type: ``Device``, ``Asset``, … (ThingsBoard's labels)."""

    tb_type = "filter.TbOriginatorTypeSwitchNode"
    category = "FILTER"
    relations = ("Device", "Asset", "Customer", "Tenant", "User", "Entity View", "Dashboard", FAILURE)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        label = msg.originator.entity_type.replace("_", " ").title()
        return [(label, msg)]


@register
class CheckMessageNode(RuleNode):
    """True when the data has ``messageNames`` and the metadata ``metadataNames`` (all of them,
    or any one with ``checkAllKeys`` false)."""

    tb_type = "filter.TbCheckMessageNode"
    category = "FILTER"
    relations = _TF
    message_names = param.List(default=[], item_type=str)
    metadata_names = param.List(default=[], item_type=str)
    check_all_keys = param.Boolean(default=True)

    def check(self) -> None:
        if not self.message_names and not self.metadata_names:
            raise NodeConfigError("check fields: at least one message or metadata field name is required")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        data = msg.data if isinstance(msg.data, Mapping) else {}
        found = [k in data for k in self.message_names] + [k in msg.metadata for k in self.metadata_names]
        ok = all(found) if self.check_all_keys else any(found)
        return [(TRUE if ok else FALSE, msg)]


_UNITS_M = {"METER": 1.0, "KILOMETER": 1000.0, "FOOT": 0.3048, "MILE": 1609.344, "NAUTICAL_MILE": 1852.0}
_EARTH_M = 6_371_008.8


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_M * math.asin(min(1.0, math.sqrt(a)))


def in_polygon(lat: float, lon: float, polygon: Sequence[Sequence[float]]) -> bool:
    """Ray casting over ``[[lat, lon], …]`` (a point on an edge counts as inside)."""
    inside = False
    n = len(polygon)
    for i in range(n):
        y1, x1 = polygon[i][0], polygon[i][1]
        y2, x2 = polygon[(i + 1) % n][0], polygon[(i + 1) % n][1]
        if (y1 > lat) != (y2 > lat):
            x = x1 + (lat - y1) * (x2 - x1) / (y2 - y1)
            if x == lon:
                return True
            if x > lon:
                inside = not inside
    return inside


def parse_polygons(text: str) -> list[list[list[float]]]:
    """ThingsBoard's ``polygonsDefinition``: ``[[lat, lon], …]`` or several such rings."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("polygonsDefinition must be JSON: [[lat, lon], ...]") from None
    if (
        isinstance(data, list)
        and data
        and all(isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) for c in p) for p in data)
    ):
        data = [data]
    if not (isinstance(data, list) and data and all(isinstance(r, list) and len(r) >= 3 for r in data)):
        raise ValueError("polygonsDefinition must be a list of at least three [lat, lon] points")
    return [[[float(c) for c in p] for p in ring] for ring in data]


@register
class GpsGeofencingFilterNode(RuleNode):
    """True when the message's coordinates are inside the perimeter (polygon or circle)."""

    tb_type = "geo.TbGpsGeofencingFilterNode"
    category = "FILTER"
    relations = _TF
    latitude_key_name = param.String(default="latitude")
    longitude_key_name = param.String(default="longitude")
    perimeter_type: param.Selector[str] = param.Selector(default="POLYGON", objects=["POLYGON", "CIRCLE"])
    fetch_perimeter_info_from_message_metadata = param.Boolean(default=True)
    perimeter_key_name = param.String(default="ss_perimeter")
    polygons_definition = param.String(default="")
    center_latitude = param.Number(default=None, allow_None=True)
    center_longitude = param.Number(default=None, allow_None=True)
    range = param.Number(default=None, allow_None=True, bounds=(0, None))
    range_unit: param.Selector[str] = param.Selector(default="METER", objects=list(_UNITS_M))

    def check(self) -> None:
        if self.fetch_perimeter_info_from_message_metadata:
            return
        if self.perimeter_type == "POLYGON":
            parse_polygons(self.polygons_definition)
        elif None in (self.center_latitude, self.center_longitude, self.range):
            raise NodeConfigError("geofencing: a circle needs centerLatitude, centerLongitude and range")

    def _perimeter(self, msg: TbMsg) -> tuple[str, Any]:
        if not self.fetch_perimeter_info_from_message_metadata:
            if self.perimeter_type == "POLYGON":
                return "POLYGON", parse_polygons(self.polygons_definition)
            return "CIRCLE", (
                self.center_latitude,
                self.center_longitude,
                float(self.range or 0) * _UNITS_M[self.range_unit],
            )
        md = msg.metadata
        if self.perimeter_key_name in md:
            return "POLYGON", parse_polygons(md[self.perimeter_key_name])
        try:
            lat, lon, rng = float(md["centerLatitude"]), float(md["centerLongitude"]), float(md["range"])
        except (KeyError, ValueError):
            raise ValueError("perimeter not found in metadata") from None
        return "CIRCLE", (lat, lon, rng * _UNITS_M.get(md.get("rangeUnit", "METER"), 1.0))

    def process(self, ctx, msg: TbMsg) -> Outputs:
        data = msg.data if isinstance(msg.data, Mapping) else {}
        try:
            lat, lon = float(data[self.latitude_key_name]), float(data[self.longitude_key_name])
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"message has no numeric {self.latitude_key_name!r} / {self.longitude_key_name!r} coordinates"
            ) from None
        kind, perimeter = self._perimeter(msg)
        if kind == "POLYGON":
            inside = any(in_polygon(lat, lon, ring) for ring in perimeter)
        else:
            clat, clon, radius = perimeter
            inside = haversine_m(lat, lon, clat, clon) <= radius
        return [(TRUE if inside else FALSE, msg)]


@register
class CheckAlarmStatusNode(RuleNode):
    """For an alarm message (data = the alarm): True when the alarm's current status is one of
    ``alarmStatusList``."""

    tb_type = "filter.TbCheckAlarmStatusNode"
    category = "FILTER"
    relations = _TF
    alarm_status_list = param.List(default=["ACTIVE_UNACK", "ACTIVE_ACK"], item_type=str)

    def check(self) -> None:
        from ...alarms.model import STATUSES

        bad = [s for s in self.alarm_status_list if s not in STATUSES]
        if bad:
            raise ValueError(f"unknown alarm statuses {bad}; known: {', '.join(STATUSES)}")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        data = msg.data if isinstance(msg.data, Mapping) else {}
        ref = data.get("id")
        alarm_id = ref.get("id") if isinstance(ref, Mapping) else ref
        if not isinstance(alarm_id, str) or not alarm_id:
            raise ValueError("the message is not an alarm (no id in its data)")
        alarm = ctx.services.need("alarms").repo.get(alarm_id)
        if alarm is None or alarm.tenant_id != ctx.tenant_id:
            raise LookupError(f"alarm {alarm_id} not found")
        return [(TRUE if alarm.status in self.alarm_status_list else FALSE, msg)]
