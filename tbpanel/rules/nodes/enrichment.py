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
        if any(wanted.values()):
            registry = ctx.services.need("registry")
            have = registry.get_attributes_many([msg.originator.id]).get(msg.originator.id, {})
            for scope, keys in wanted.items():
                got = have.get(scope, {})
                for k in keys:
                    if k in got:
                        values[SCOPE_PREFIX[scope] + k] = got[k][2]
                    else:
                        missing.append(SCOPE_PREFIX[scope] + k)
        if self.latest_ts_key_names:
            latest = ctx.services.need("store").latest(msg.originator.id, self.latest_ts_key_names)
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
        device = ctx.services.need("registry").get_device(msg.originator.id)
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
