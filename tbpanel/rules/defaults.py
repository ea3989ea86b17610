"""The root chain a new tenant gets: ThingsBoard's default root chain, node for node.

Device Profile node (the profiles' alarm rules) → ``Success`` → Message Type Switch →
``Post telemetry`` → Save Timeseries, ``Post attributes`` → Save Client Attributes, ``RPC
Request from Device`` → Log, ``RPC Request to Device`` → RPC Call Request, ``Other`` → Log:
ThingsBoard 3.x's layout (4.x dropped the node for calculated fields). The profile node passes
every message on by ``Success`` and stores nothing, so a device without alarm rules is
handled exactly as before; it is the last node of the list so the others keep their indexes.
"""

from __future__ import annotations

from typing import Any

from .chain import RuleChain, import_chain

_LOG = "return '\\nIncoming message:\\n' + JSON.stringify(msg) + '\\nIncoming metadata:\\n' + JSON.stringify(metadata);"


def _node(t: str, name: str, x: int, y: int, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "org.thingsboard.rule.engine." + t,
        "name": name,
        "debugMode": False,
        "configuration": config,
        "additionalInfo": {"layoutX": x, "layoutY": y},
    }


def default_root_json() -> dict[str, Any]:
    """The export file of the default root chain."""
    return {
        "ruleChain": {"name": "Root Rule Chain", "type": "CORE", "root": True, "debugMode": False, "configuration": None},
        "metadata": {
            "firstNodeIndex": 6,
            "nodes": [
                _node("telemetry.TbMsgTimeseriesNode", "Save Timeseries", 824, 156, {"defaultTTL": 0}),
                _node("telemetry.TbMsgAttributesNode", "Save Client Attributes", 825, 52, {"scope": "CLIENT_SCOPE", "notifyDevice": False}),
                _node("filter.TbMsgTypeSwitchNode", "Message Type Switch", 347, 149, {"version": 0}),
                _node("action.TbLogNode", "Log RPC from Device", 825, 266, {"jsScript": _LOG}),
                _node("action.TbLogNode", "Log Other", 825, 379, {"jsScript": _LOG}),
                _node("rpc.TbSendRPCRequestNode", "RPC Call Request", 825, 468, {"timeoutInSeconds": 60}),
                _node("profile.TbDeviceProfileNode", "Device Profile Node", 204, 240,
                      {"persistAlarmRulesState": False, "fetchAlarmRulesStateOnStart": False}),
            ],
            "connections": [
                {"fromIndex": 2, "toIndex": 4, "type": "Other"},
                {"fromIndex": 2, "toIndex": 1, "type": "Post attributes"},
                {"fromIndex": 2, "toIndex": 0, "type": "Post telemetry"},
                {"fromIndex": 2, "toIndex": 3, "type": "RPC Request from Device"},
                {"fromIndex": 2, "toIndex": 5, "type": "RPC Request to Device"},
                {"fromIndex": 6, "toIndex": 2, "type": "Success"},
            ],
            "ruleChainConnections": None,
        },
    }  # fmt: skip


def default_root_chain(tenant_id: str) -> RuleChain:
    return import_chain(default_root_json(), tenant_id=tenant_id)
