"""Enrichment nodes: originator attributes, latest telemetry and entity fields into the
metadata (or the data), with ThingsBoard's ``cs_`` / ``ss_`` / ``shared_`` prefixes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import param

from ..message import TbMsg, meta_text
from .base import FAILURE, SUCCESS, Outputs, RuleNode, register

SCOPE_PREFIX = {"CLIENT_SCOPE": "cs_", "SERVER_SCOPE": "ss_", "SHARED_SCOPE": "shared_"}


def _into(msg: TbMsg, fetch_to: str, values: Mapping[str, Any]) -> TbMsg:
    """Put ``values`` into the metadata (as text) or the data (as values)."""
    if fetch_to == "DATA":
        if not isinstance(msg.data, Mapping):
            raise TypeError("cannot add fields to message data that is not a JSON object")
        return msg.copy(data={**msg.data, **values})
    return msg.copy(metadata={**msg.metadata, **{k: meta_text(v) for k, v in values.items()}})


@register
class GetAttributesNode(RuleNode):
    """Originator attributes per scope and latest telemetry (``getLatestValueWithTs``: as
    ``{"ts", "value"}``); ``tellFailureIfAbsent``: Failure naming the keys that are missing."""

    tb_type = "metadata.TbGetAttributesNode"
    category = "ENRICHMENT"
    client_attribute_names = param.List(default=[], item_type=str)
    shared_attribute_names = param.List(default=[], item_type=str)
    server_attribute_names = param.List(default=[], item_type=str)
    latest_ts_key_names = param.List(default=[], item_type=str)
    tell_failure_if_absent = param.Boolean(default=False)
    get_latest_value_with_ts = param.Boolean(default=False)
    fetch_to: param.Selector[str] = param.Selector(default="METADATA", objects=["METADATA", "DATA"])

    def process(self, ctx, msg: TbMsg) -> Outputs:
        values: dict[str, Any] = {}
        missing: list[str] = []
        wanted = {
            "CLIENT_SCOPE": self.client_attribute_names,
            "SHARED_SCOPE": self.shared_attribute_names,
            "SERVER_SCOPE": self.server_attribute_names,
        }
        eid = ctx.own_originator(msg)
        if any(wanted.values()):
            registry = ctx.services.need("registry")
            have = registry.get_attributes_many([eid]).get(eid, {})
            for scope, keys in wanted.items():
                got = have.get(scope, {})
                for k in keys:
                    if k in got:
                        values[SCOPE_PREFIX[scope] + k] = got[k][2]
                    else:
                        missing.append(SCOPE_PREFIX[scope] + k)
        if self.latest_ts_key_names:
            latest = ctx.services.need("store").latest(eid, self.latest_ts_key_names)
            for k in self.latest_ts_key_names:
                if k in latest:
                    ts, _t, v = latest[k]
                    values[k] = {"ts": ts, "value": v} if self.get_latest_value_with_ts else v
                else:
                    missing.append(k)
        out = _into(msg, self.fetch_to, values)
        if missing and self.tell_failure_if_absent:
            return [(FAILURE, out.copy(metadata={**out.metadata, "error": "keys not found: " + ", ".join(missing)}))]
        return [(SUCCESS, out)]


_DEVICE_FIELDS = ("id", "name", "type", "label", "createdTime", "tenantId", "customerId", "additionalInfo")


@register
class GetOriginatorFieldsNode(RuleNode):
    """Entity fields of the originator (``name``, ``type``, ``label`` …) under chosen names."""

    tb_type = "metadata.TbGetOriginatorFieldsNode"
    category = "ENRICHMENT"
    data_mapping = param.Dict(default={"name": "originatorName", "type": "originatorType"})
    ignore_null_strings = param.Boolean(default=False)
    fetch_to: param.Selector[str] = param.Selector(default="METADATA", objects=["METADATA", "DATA"])
    aliases = {"data_mapping": ("fieldsMapping",)}

    def check(self) -> None:
        bad = [f for f in self.data_mapping if f not in _DEVICE_FIELDS]
        if bad:
            raise ValueError(f"unknown originator fields {bad}; known: {', '.join(_DEVICE_FIELDS)}")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if msg.originator.entity_type != "DEVICE":
            raise ValueError(f"originator fields of a {msg.originator.entity_type} are not supported")
        device = ctx.services.need("registry").get_device(ctx.own_originator(msg))
        j = device.to_json()
        fields = {
            "id": device.id,
            "name": device.name,
            "type": device.type,
            "label": device.label,
            "createdTime": device.created_time,
            "tenantId": device.tenant_id,
            "customerId": device.customer_id,
            "additionalInfo": orjson.dumps(j.get("additionalInfo")).decode() if j.get("additionalInfo") else None,
        }
        values = {}
        for f, target in self.data_mapping.items():
            v = fields.get(f)
            if v is None or (self.ignore_null_strings and v == ""):
                continue
            values[str(target)] = v
        return [(SUCCESS, _into(msg, self.fetch_to, values))]


class _OwnerDataNode(RuleNode):
    """Attributes (server scope) or latest telemetry of the originator's customer or tenant,
    under the names of ``dataMapping`` (source key → target key)."""

    category = "ENRICHMENT"
    data_to_fetch: param.Selector[str] = param.Selector(
        default="ATTRIBUTES", objects=["ATTRIBUTES", "LATEST_TELEMETRY"]
    )
    data_mapping = param.Dict(default={"alarmThreshold": "threshold"})
    fetch_to: param.Selector[str] = param.Selector(default="METADATA", objects=["METADATA", "DATA"])
    aliases = {"data_mapping": ("attrMapping",)}

    @classmethod
    def from_config(cls, config, *, node_name=""):
        config = dict(config or {})
        if "dataToFetch" not in config and "telemetry" in config:  # ThingsBoard < 3.6
            config["dataToFetch"] = "LATEST_TELEMETRY" if config.pop("telemetry") else "ATTRIBUTES"
        return super().from_config(config, node_name=node_name)

    def owner(self, ctx: Any, msg: TbMsg) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def process(self, ctx, msg: TbMsg) -> Outputs:
        owner = ctx.own("TENANT" if isinstance(self, GetTenantAttributeNode) else "CUSTOMER", self.owner(ctx, msg))
        keys = [str(k) for k in self.data_mapping]
        if self.data_to_fetch == "ATTRIBUTES":
            got = {
                a["key"]: a["value"] for a in ctx.services.need("registry").get_attributes(owner, "SERVER_SCOPE", keys)
            }
        else:
            got = {k: v[2] for k, v in ctx.services.need("store").latest(owner, keys).items()}
        values = {str(self.data_mapping[k]): got[k] for k in keys if k in got}
        return [(SUCCESS, _into(msg, self.fetch_to, values))]


@register
class GetCustomerAttributeNode(_OwnerDataNode):
    tb_type = "metadata.TbGetCustomerAttributeNode"

    def owner(self, ctx: Any, msg: TbMsg) -> str:
        customer = msg.customer_id
        if customer is None and msg.originator.entity_type == "DEVICE":
            customer = ctx.services.need("registry").get_device(ctx.own_originator(msg)).customer_id
        if msg.originator.entity_type == "CUSTOMER":
            customer = msg.originator.id
        if not customer:
            raise LookupError("the originator has no customer")
        return str(customer)


@register
class GetTenantAttributeNode(_OwnerDataNode):
    tb_type = "metadata.TbGetTenantAttributeNode"

    def owner(self, ctx: Any, msg: TbMsg) -> str:
        return ctx.tenant_id


_UNIT_MS = {"MILLISECONDS": 1, "SECONDS": 1000, "MINUTES": 60_000, "HOURS": 3_600_000, "DAYS": 86_400_000}


@register
class GetTelemetryNode(RuleNode):
    """Originator telemetry of a time window before now: the FIRST or LAST value of each key,
    or ALL (a JSON array of ``{ts, value}``), into the metadata."""

    tb_type = "metadata.TbGetTelemetryNode"
    category = "ENRICHMENT"
    latest_ts_key_names = param.List(default=[], item_type=str)
    fetch_mode: param.Selector[str] = param.Selector(default="FIRST", objects=["FIRST", "LAST", "ALL"])
    order_by: param.Selector[str] = param.Selector(default="ASC", objects=["ASC", "DESC"])
    limit = param.Integer(default=1000, bounds=(1, 1000))
    start_interval = param.Integer(default=2, bounds=(0, None))
    start_interval_time_unit: param.Selector[str] = param.Selector(default="MINUTES", objects=list(_UNIT_MS))
    end_interval = param.Integer(default=1, bounds=(0, None))
    end_interval_time_unit: param.Selector[str] = param.Selector(default="MINUTES", objects=list(_UNIT_MS))

    def check(self) -> None:
        if not self.latest_ts_key_names:
            raise ValueError("get telemetry: latestTsKeyNames is empty")
        if (
            self.start_interval * _UNIT_MS[self.start_interval_time_unit]
            <= self.end_interval * _UNIT_MS[self.end_interval_time_unit]
        ):
            raise ValueError("get telemetry: the interval's start must be before its end")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        now = ctx.now()
        start = now - self.start_interval * _UNIT_MS[self.start_interval_time_unit]
        end = now - self.end_interval * _UNIT_MS[self.end_interval_time_unit]
        store = ctx.services.need("store")
        eid = ctx.own_originator(msg)
        values: dict[str, Any] = {}
        if self.fetch_mode == "ALL":
            got = store.query_raw(eid, self.latest_ts_key_names, start, end, self.limit, self.order_by)
            for k, pts in got.items():
                values[k] = [{"ts": ts, "value": v} for ts, _t, v in pts]
        else:
            order = "ASC" if self.fetch_mode == "FIRST" else "DESC"
            got = store.query_raw(eid, self.latest_ts_key_names, start, end, 1, order)
            for k, pts in got.items():
                values[k] = pts[0][2]
        return [(SUCCESS, _into(msg, "METADATA", values))]
