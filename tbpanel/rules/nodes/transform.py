"""Transformation nodes: a script that rewrites the message, change originator, rename /
copy / delete keys."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import param

from ..message import EntityRef, TbMsg
from .base import SUCCESS, NodeConfigError, Outputs, RuleNode, register, substitute
from .scripted import JsBodyNode


def _one_result(msg: TbMsg, out: Any) -> TbMsg:
    if not isinstance(out, Mapping):
        raise TypeError("transform script must return {msg, metadata, msgType} (or an array of them)")
    data = out["msg"] if "msg" in out else msg.data
    meta = out["metadata"] if "metadata" in out else dict(msg.metadata)
    if not isinstance(meta, Mapping):
        raise TypeError("transform script returned metadata that is not an object")
    mtype = out.get("msgType") or msg.type
    if not isinstance(mtype, str):
        raise TypeError("transform script returned a msgType that is not a string")
    return msg.copy(data=data, metadata={str(k): _text(v) for k, v in meta.items()}, type=mtype)


def _text(v: Any) -> str:
    from ..message import meta_text

    return meta_text(v)


@register
class TransformMsgNode(JsBodyNode):
    """Script returns ``{msg, metadata, msgType}`` (or an array: one message each)."""

    tb_type = "transform.TbTransformMsgNode"
    category = "TRANSFORMATION"

    def process(self, ctx, msg: TbMsg) -> Outputs:
        out = self.run_script(ctx, msg.data, dict(msg.metadata), msg.type)
        if isinstance(out, list):
            return [
                (SUCCESS, _one_result(msg, o).copy(id=msg.id if i == 0 else msg.new_id().id)) for i, o in enumerate(out)
            ]
        return [(SUCCESS, _one_result(msg, out))]


@register
class ChangeOriginatorNode(RuleNode):
    """The originator becomes the device's customer, its tenant, or a device found by name."""

    tb_type = "transform.TbChangeOriginatorNode"
    category = "TRANSFORMATION"
    originator_source: param.Selector[str] = param.Selector(
        default="CUSTOMER", objects=["CUSTOMER", "TENANT", "ENTITY"]
    )
    entity_type = param.String(default="DEVICE")
    entity_name_pattern = param.String(default="")

    def check(self) -> None:
        if self.originator_source == "ENTITY":
            if self.entity_type != "DEVICE":
                raise NodeConfigError("change originator: only DEVICE entities can be looked up by name")
            if not self.entity_name_pattern:
                raise NodeConfigError("change originator: entityNamePattern is required")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if self.originator_source == "TENANT":
            return [(SUCCESS, msg.copy(originator=EntityRef("TENANT", ctx.tenant_id)))]
        registry = ctx.services.need("registry")
        if self.originator_source == "CUSTOMER":
            customer = msg.customer_id
            if customer is None and msg.originator.entity_type == "DEVICE":
                customer = registry.get_device(ctx.own_originator(msg)).customer_id
            if not customer:
                raise ValueError("the originator has no customer")
            return [(SUCCESS, msg.copy(originator=EntityRef("CUSTOMER", customer)))]
        name = substitute(self.entity_name_pattern, msg)
        device = registry.find_device(ctx.tenant_id, name)
        if device is None:
            raise LookupError(f"no device named {name!r}")
        return [(SUCCESS, msg.copy(originator=EntityRef("DEVICE", device.id), customer_id=device.customer_id))]


def _where(msg: TbMsg, in_metadata: bool) -> dict[str, Any]:
    if in_metadata:
        return dict(msg.metadata)
    if not isinstance(msg.data, Mapping):
        raise TypeError("message data is not a JSON object")
    return dict(msg.data)


def _put(msg: TbMsg, in_metadata: bool, values: dict[str, Any]) -> TbMsg:
    return msg.copy(metadata=values) if in_metadata else msg.copy(data=values)


@register
class RenameKeysNode(RuleNode):
    """Renames keys of the data or the metadata (``renameKeysMapping`` old → new)."""

    tb_type = "transform.TbRenameKeysNode"
    category = "TRANSFORMATION"
    rename_keys_mapping = param.Dict(default={})
    rename_in: param.Selector[str] = param.Selector(default="DATA", objects=["DATA", "METADATA"])

    @classmethod
    def from_config(cls, config, *, node_name=""):
        config = dict(config or {})
        if "renameIn" not in config and "fromMetadata" in config:  # ThingsBoard < 3.6
            config["renameIn"] = "METADATA" if config.pop("fromMetadata") else "DATA"
        return super().from_config(config, node_name=node_name)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        meta = self.rename_in == "METADATA"
        values = _where(msg, meta)
        for old, new in self.rename_keys_mapping.items():
            if old in values:
                values[str(new)] = values.pop(old)
        return [(SUCCESS, _put(msg, meta, values))]


class _KeyPatternNode(RuleNode):
    keys = param.List(default=[], item_type=str, doc="Key names or regular expressions.")

    def check(self) -> None:
        for k in self.keys:
            try:
                re.compile(k)
            except re.error as exc:
                raise NodeConfigError(f"key pattern {k!r} is not a regular expression: {exc}") from None

    def matching(self, names: list[str]) -> list[str]:
        pats = [re.compile(k) for k in self.keys]
        return [n for n in names if any(p.fullmatch(n) for p in pats)]


@register
class DeleteKeysNode(_KeyPatternNode):
    """Deletes keys (names or regular expressions) from the data or the metadata."""

    tb_type = "transform.TbDeleteKeysNode"
    category = "TRANSFORMATION"
    delete_from: param.Selector[str] = param.Selector(default="DATA", objects=["DATA", "METADATA"])

    @classmethod
    def from_config(cls, config, *, node_name=""):
        config = dict(config or {})
        if "deleteFrom" not in config and "fromMetadata" in config:
            config["deleteFrom"] = "METADATA" if config.pop("fromMetadata") else "DATA"
        return super().from_config(config, node_name=node_name)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        meta = self.delete_from == "METADATA"
        values = _where(msg, meta)
        for k in self.matching(list(values)):
            del values[k]
        return [(SUCCESS, _put(msg, meta, values))]


@register
class CopyKeysNode(_KeyPatternNode):
    """Copies keys from the metadata to the data (``copyFrom`` METADATA) or back."""

    tb_type = "transform.TbCopyKeysNode"
    category = "TRANSFORMATION"
    copy_from: param.Selector[str] = param.Selector(default="METADATA", objects=["DATA", "METADATA"])

    @classmethod
    def from_config(cls, config, *, node_name=""):
        config = dict(config or {})
        if "copyFrom" not in config and "fromMetadata" in config:
            config["copyFrom"] = "METADATA" if config.pop("fromMetadata") else "DATA"
        return super().from_config(config, node_name=node_name)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        src_meta = self.copy_from == "METADATA"
        src, dst = _where(msg, src_meta), _where(msg, not src_meta)
        for k in self.matching(list(src)):
            dst[k] = src[k] if src_meta else _text(src[k])
        return [(SUCCESS, _put(msg, not src_meta, dst))]
