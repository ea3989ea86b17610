"""``/api/plugins/telemetry/...``: keys, latest, history (raw and aggregated), save and delete.

ThingsBoard's defaults are kept: ``limit`` 100 and ``orderBy`` DESC for raw queries, the range
``startTs <= ts < endTs``, bucket timestamps at bucket midpoints, and values rendered as
strings unless ``useStrictDataTypes=true``.
"""

from __future__ import annotations

from typing import Any

from ..clock import now_ms
from ..entities import Device, User
from ..platform import Platform
from ..store.aggregate import AGGS
from ..store.buckets import INTERVAL_TYPES
from ..store.payload import TS_MAX, parse_telemetry
from ..store.validate import payload_points
from ..store.values import to_strict, to_wire_string
from .base import ApiError, ApiHandler
from .entities import entity_uuid
from .series_json import series_answer


class TelemetryHandler(ApiHandler):
    """Common argument handling for routes addressed by ``{entityType}/{entityId}``."""

    def device_for(self, entity_type: str, entity_id: str, user: User) -> Device:
        if entity_type.upper() != "DEVICE":
            raise ApiError(400, f"tbpanel keeps telemetry for DEVICE entities; got entity type {entity_type!r}")
        return self.platform.registry.check_device(user, entity_uuid(entity_id, "entity id"))

    def range_args(self, missing: str) -> tuple[int, int]:
        """``startTs <= ts < endTs`` from the query; 400 ``missing`` unless both are given."""
        start = self.int_arg("startTs", None, minimum=0, maximum=TS_MAX + 1)
        end = self.int_arg("endTs", None, minimum=0, maximum=TS_MAX + 1)
        if start is None or end is None:
            raise ApiError(400, missing)
        if start >= end:
            raise ApiError(400, f"startTs ({start}) must be less than endTs ({end})")
        return start, end

    def render_series(self, series: dict[str, list[tuple[int, int, object]]]) -> dict[str, list[dict[str, Any]]]:
        """Store series → ThingsBoard's ``{key: [{"ts", "value"}, ...]}`` (values as strings
        unless ``useStrictDataTypes=true``)."""
        strict = self.bool_arg("useStrictDataTypes", False)
        conv = to_strict if strict else to_wire_string
        return {key: [{"ts": ts, "value": conv(t, v)} for ts, t, v in points] for key, points in series.items()}


class KeysHandler(TelemetryHandler):
    async def get(self, entity_type: str, entity_id: str) -> None:
        device = self.device_for(entity_type, entity_id, self.require_user())
        self.write_json(await self.in_thread(self.platform.store.keys, device.id))


class ValuesHandler(TelemetryHandler):
    """Latest values when no range is given; history otherwise (``/history`` always history)."""

    def initialize(self, platform: Platform, history: bool = False) -> None:
        super().initialize(platform)
        self.history = history

    async def get(self, entity_type: str, entity_id: str) -> None:
        device = self.device_for(entity_type, entity_id, self.require_user())
        has_range = any(self.get_query_argument(p, None) not in (None, "") for p in ("startTs", "endTs"))
        if self.history or has_range:
            self.set_status(200)
            self.finish(await self._history(device.id))
        else:
            self.write_json(await self._latest(device.id))

    async def _latest(self, device_id: str) -> dict[str, list[dict[str, Any]]]:
        keys = self.keys_arg(required=False)
        latest = await self.in_thread(self.platform.store.latest, device_id, keys)
        out = self.render_series({k: [v] for k, v in latest.items()})
        for key in keys or ():
            out.setdefault(key, [{"ts": now_ms(), "value": None}])  # as ThingsBoard answers
        return out

    async def _history(self, device_id: str) -> bytes:
        """The answer's JSON, written from the store's columns (:mod:`.series_json`)."""
        keys = self.keys_arg(required=True)
        start, end = self.range_args("history queries need both 'startTs' and 'endTs' (epoch ms)")
        agg = (self.get_query_argument("agg", "NONE") or "NONE").upper()
        if agg not in AGGS:
            raise ApiError(400, f"agg must be one of {', '.join(AGGS)}; got {agg!r}")
        limit = self.int_arg("limit", 100, minimum=1, maximum=10_000_000)
        order = (self.get_query_argument("orderBy", "DESC") or "DESC").upper()
        if order not in ("ASC", "DESC"):
            raise ApiError(400, f"orderBy must be ASC or DESC; got {order!r}")
        store = self.platform.store
        strict = self.bool_arg("useStrictDataTypes", False)
        if agg == "NONE":
            desc = order == "DESC"
            return await self.in_thread(  # read and JSON in one trip off the loop
                lambda: series_answer(
                    store.query_columns([device_id], keys, start, end, limit=limit, newest=desc),
                    strict=strict,
                    descending=desc,
                )
            )
        interval_type = (self.get_query_argument("intervalType", "MILLISECONDS") or "MILLISECONDS").upper()
        if interval_type not in INTERVAL_TYPES:
            raise ApiError(400, f"intervalType must be one of {', '.join(INTERVAL_TYPES)}; got {interval_type!r}")
        interval = self.int_arg("interval", 0)
        if interval_type == "MILLISECONDS" and (interval is None or interval <= 0):
            raise ApiError(400, f"interval must be a positive number of milliseconds when agg={agg}; got {interval}")
        tz = self.get_query_argument("timeZone", None) or "UTC"
        return await self.in_thread(
            lambda: series_answer(
                store.query_columns(
                    [device_id], keys, start, end, agg=agg, interval=interval, interval_type=interval_type, tz=tz
                ),
                strict=strict,
            )
        )


class SaveTelemetryHandler(TelemetryHandler):
    """``POST .../timeseries/{scope}[/{ttl}]``: server-side save with the device payload shapes."""

    async def post(self, entity_type: str, entity_id: str, scope: str, ttl: str | None = None) -> None:
        device = self.device_for(entity_type, entity_id, self.require_user())
        if not self.request.body.strip():
            raise ApiError(400, "Invalid JSON body: the request body is empty")
        points = parse_telemetry(self.request.body, now_ms())
        if not points:
            raise ApiError(400, "No time series data found in request body")
        # through the tenant's root chain as the device's telemetry (compiled default: stored)
        await self.platform.rules.ingress.telemetry(device.tenant_id, payload_points(device.id, points))
        self.set_status(200)
        self.finish()


class DeleteTelemetryHandler(TelemetryHandler):
    """``DELETE .../timeseries/delete?keys=..&startTs=..&endTs=..``."""

    async def delete(self, entity_type: str, entity_id: str) -> None:
        device = self.device_for(entity_type, entity_id, self.require_user())
        keys = self.keys_arg(required=True)
        if self.bool_arg("deleteAllDataForKeys", False):
            start, end = 0, TS_MAX + 1
        else:
            start, end = self.range_args("give 'startTs' and 'endTs', or deleteAllDataForKeys=true")
        delete_latest = self.bool_arg("deleteLatest", True)
        rewrite = self.bool_arg("rewriteLatestIfDeleted", False)
        await self.in_thread(
            lambda: self.platform.store.delete(
                device.id, keys, start, end, delete_latest=delete_latest, rewrite_latest_if_deleted=rewrite
            )
        )
        self.set_status(200)
        self.finish()
