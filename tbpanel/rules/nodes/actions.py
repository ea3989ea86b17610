"""Action nodes: save time series and attributes, create and clear alarms, log, RPC to a
device, and the timer nodes (generator, delay, deduplication, message count) and math."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import param

from ...store import payload as tb_payload
from ...store.validate import payload_points
from ..message import POST_TELEMETRY_REQUEST, EntityRef, TbMsg, meta_text
from .base import FAILURE, SUCCESS, NodeConfigError, Outputs, RuleNode, Timers, register
from .scripted import JsBodyNode, ScriptedNode


def _msg_ts(msg: TbMsg) -> int:
    try:
        return int(msg.metadata["ts"])
    except (KeyError, ValueError):
        return msg.ts


@register
class MsgTimeseriesNode(RuleNode):
    """Saves the message's telemetry (``{key: value}``, ``{ts, values}`` or an array of them)
    to the originator's time series; Success once durable."""

    tb_type = "telemetry.TbMsgTimeseriesNode"
    category = "ACTION"
    default_ttl = param.Integer(
        default=0, bounds=(0, None), doc="ThingsBoard's TTL (tbpanel keeps data until deleted)."
    )
    config_keys = {"default_ttl": "defaultTTL"}
    use_server_ts = param.Boolean(default=False, doc="Stamp points with the time of processing, not the message's ts.")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if msg.type != POST_TELEMETRY_REQUEST:
            raise ValueError(f"unsupported message type {msg.type} (save time series takes POST_TELEMETRY_REQUEST)")
        ts = ctx.now() if self.use_server_ts else _msg_ts(msg)
        parsed = tb_payload.parse_telemetry(msg.data, ts)
        if self.use_server_ts:
            parsed = [(ts, k, t, v) for _ts, k, t, v in parsed]
        points = payload_points(ctx.own_originator(msg), parsed)
        if points:
            ctx.services.need("store").write_points(points)
        return [(SUCCESS, msg)]


@register
class MsgAttributesNode(RuleNode):
    """Saves the message's data as attributes of ``scope`` (a ``scope`` in the metadata wins)."""

    tb_type = "telemetry.TbMsgAttributesNode"
    category = "ACTION"
    scope: param.Selector[str] = param.Selector(
        default="SERVER_SCOPE", objects=["CLIENT_SCOPE", "SERVER_SCOPE", "SHARED_SCOPE"]
    )
    notify_device = param.Boolean(default=False)
    send_attributes_updated_notification = param.Boolean(default=False)
    update_attributes_only_on_value_change = param.Boolean(default=False)

    @classmethod
    def from_config(cls, config, *, node_name=""):
        config = dict(config or {})
        if isinstance(config.get("notifyDevice"), str):  # old exports say "false"
            config["notifyDevice"] = config["notifyDevice"].lower() == "true"
        return super().from_config(config, node_name=node_name)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        scope = msg.metadata.get("scope") or self.scope
        registry = ctx.services.need("registry")
        ctx.own_originator(msg)
        points = tb_payload.parse_attributes(msg.data, _msg_ts(msg))
        if self.update_attributes_only_on_value_change and points:
            have = {
                a["key"]: a["value"] for a in registry.get_attributes(msg.originator.id, scope, [p[1] for p in points])
            }
            points = [p for p in points if p[1] not in have or have[p[1]] != p[3]]
        if points:
            registry.save_attributes(msg.originator.id, scope, points)
        return [(SUCCESS, msg)]


def rule_user(tenant_id: str) -> Any:
    """The principal the rule engine acts as: the tenant's administrator, so the alarm
    service's own checks keep a chain inside its tenant."""
    from ...entities.models import User

    return User(id="", tenant_id=tenant_id, authority="TENANT_ADMIN", email="rule-engine")


class _AlarmNode(ScriptedNode):
    alarm_type = param.String(default="General Alarm")
    alarm_details_build_js = param.String(default="", doc="Script returning the alarm's details object.")
    alarm_details_build_tbel = param.String(default="")
    script_params = ("alarm_details_build_js", "alarm_details_build_tbel")

    def check(self) -> None:
        if not self.alarm_type:
            raise NodeConfigError("alarmType is required")
        if self.body.strip():
            super().check()

    def details(self, ctx, msg: TbMsg, prev: Mapping[str, Any] | None) -> dict[str, Any]:
        if not self.body.strip():
            return dict(prev or {})
        meta = dict(msg.metadata)
        if prev is not None:
            meta["prevAlarmDetails"] = orjson.dumps(prev).decode()
        out = self.run_script(ctx, msg.data, meta, msg.type)
        if not isinstance(out, dict):
            raise TypeError("alarm details script must return an object")
        return out

    @staticmethod
    def emitted(msg: TbMsg, alarm: Any, flag: str) -> TbMsg:
        return msg.copy(data=alarm.to_json(), metadata={**msg.metadata, flag: "true"})


@register
class CreateAlarmNode(_AlarmNode):
    """Creates the alarm (``Created``) or updates the active one of the same type (``Updated``);
    details come from the script, which sees the old ones as ``metadata.prevAlarmDetails``."""

    tb_type = "action.TbCreateAlarmNode"
    relations = ("Created", "Updated", FAILURE)
    severity = param.String(default="CRITICAL", doc="A severity, or a ${metadata} / $[data] pattern.")
    propagate = param.Boolean(default=False)
    propagate_to_owner = param.Boolean(default=False)
    propagate_to_tenant = param.Boolean(default=False)
    use_message_alarm_data = param.Boolean(default=False)
    overwrite_alarm_details = param.Boolean(default=False)
    dynamic_severity = param.Boolean(default=False)
    relation_types = param.List(default=[], item_type=str)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        from ...alarms.service import parse_severity
        from .base import substitute

        service = ctx.services.need("alarms")
        if msg.originator.entity_type != "DEVICE":
            raise ValueError("tbpanel raises alarms on devices only")
        active = service.repo.active_for(msg.originator.id, self.alarm_type)
        details = self.details(ctx, msg, active.details if active is not None else None)
        severity = parse_severity(substitute(self.severity, msg))
        alarm = service.save(
            rule_user(ctx.tenant_id),
            {
                "originator_id": msg.originator.id,
                "type": self.alarm_type,
                "severity": severity,
                "details": details,
                "propagate": self.propagate,
                "start_ts": _msg_ts(msg) if active is None else None,
                "end_ts": _msg_ts(msg),
            },
        )
        if active is None:
            return [("Created", self.emitted(msg, alarm, "isNewAlarm"))]
        return [("Updated", self.emitted(msg, alarm, "isExistingAlarm"))]


@register
class ClearAlarmNode(_AlarmNode):
    """Clears the active alarm of ``alarmType`` (``Cleared``); no active alarm: ``False``."""

    tb_type = "action.TbClearAlarmNode"
    relations = ("Cleared", "False", FAILURE)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        service = ctx.services.need("alarms")
        active = service.repo.active_for(msg.originator.id, self.alarm_type)
        if active is None:
            return [("False", msg)]
        user = rule_user(ctx.tenant_id)
        details = self.details(ctx, msg, active.details)
        if details != active.details:
            service.save(
                user,
                {
                    "id": active.id,
                    "originator_id": active.originator_id,
                    "type": active.type,
                    "severity": active.severity,
                    "details": details,
                },
            )
        alarm = service.clear(user, active.id)
        return [("Cleared", self.emitted(msg, alarm, "isClearedAlarm"))]


@register
class LogNode(JsBodyNode):
    """Logs what the script returns (a string) to tbpanel's log."""

    tb_type = "action.TbLogNode"

    def process(self, ctx, msg: TbMsg) -> Outputs:
        out = self.run_script(ctx, msg.data, dict(msg.metadata), msg.type)
        ctx.log(out if isinstance(out, str) else orjson.dumps(out).decode())
        return [(SUCCESS, msg)]


@register
class SendRpcRequestNode(RuleNode):
    """Sends an RPC_CALL_FROM_SERVER_TO_DEVICE message to its device through the RPC service."""

    tb_type = "rpc.TbSendRPCRequestNode"
    timeout_in_seconds = param.Integer(default=60, bounds=(1, None))

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if not isinstance(msg.data, Mapping) or "method" not in msg.data:
            raise ValueError("an RPC request needs a 'method' (and 'params') in the message data")
        send = ctx.services.rpc
        if send is None:
            raise RuntimeError("RPC to devices is not available in this rule engine")
        ctx.own_originator(msg)
        send(msg)
        return [(SUCCESS, msg)]


@register
class SendRpcReplyNode(RuleNode):
    """Answers a device's RPC request (``TO_SERVER_RPC_REQUEST``) with the message data: the
    request is found by the metadata keys the configuration names (ThingsBoard's: the service,
    the session and the request id; tbpanel has one service, so its key is not read)."""

    tb_type = "rpc.TbSendRPCReplyNode"
    service_id_meta_data_attribute = param.String(default="serviceId")
    session_id_meta_data_attribute = param.String(default="sessionId")
    request_id_meta_data_attribute = param.String(default="requestId")

    def process(self, ctx, msg: TbMsg) -> Outputs:
        request_id = msg.metadata.get(self.request_id_meta_data_attribute)
        session_id = msg.metadata.get(self.session_id_meta_data_attribute)
        if not request_id or not session_id:
            keys = (self.request_id_meta_data_attribute, self.session_id_meta_data_attribute)
            raise ValueError(f"the metadata has no {keys[0]!r} or {keys[1]!r} to reply to")
        reply = ctx.services.rpc_reply
        if reply is None:
            raise RuntimeError("RPC replies to devices are not available in this rule engine")
        if not msg.data and msg.data != 0:
            raise ValueError("the RPC reply (the message data) is empty")
        if not reply(str(session_id), str(request_id), msg.data):
            raise RuntimeError(f"no device RPC request {request_id} waits for an answer (it timed out?)")
        return [(SUCCESS, msg)]


@register
class AckNode(RuleNode):
    """Acknowledges the message and passes it on (ThingsBoard's flow.TbAckNode)."""

    tb_type = "flow.TbAckNode"
    category = "FLOW"
    relations = (SUCCESS,)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        return [(SUCCESS, msg)]


# -- timer nodes ---------------------------------------------------------------------------
@register
class MsgGeneratorNode(JsBodyNode):
    """Emits a message every ``periodInSeconds`` (``msgCount`` times, 0 = forever); the
    script ``(prevMsg, prevMetadata, prevMsgType)`` returns ``{msg, metadata, msgType}``."""

    tb_type = "debug.TbMsgGeneratorNode"
    category = "ACTION"
    relations = (SUCCESS, FAILURE)
    script_args = ("prevMsg", "prevMetadata", "prevMsgType")
    msg_count = param.Integer(default=0, bounds=(0, None))
    period_in_seconds = param.Number(default=1, bounds=(0.001, None))
    originator_type = param.String(default="DEVICE")
    originator_id = param.String(default=None, allow_None=True)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._next: int | None = None
        self._sent = 0
        self._prev: tuple[Any, dict[str, str], str] = ({}, {}, "")

    def start(self, now: int) -> None:
        self._next = now

    def due(self) -> int | None:
        if self.msg_count and self._sent >= self.msg_count:
            return None
        return self._next

    def process(self, ctx, msg: TbMsg) -> Outputs:
        return [(SUCCESS, msg)]

    def tick(self, ctx, now: int) -> Outputs:
        due = self.due()
        if due is None or due > now:
            return []
        self._next = due + int(self.period_in_seconds * 1000)
        self._sent += 1
        out = self.run_script(ctx, *self._prev)
        if not isinstance(out, Mapping):
            raise TypeError("generator script must return {msg, metadata, msgType}")
        meta = {str(k): meta_text(v) for k, v in (out.get("metadata") or {}).items()}
        msg = TbMsg(
            type=str(out.get("msgType") or POST_TELEMETRY_REQUEST),
            originator=EntityRef(self.originator_type, self.originator_id or ctx.node_id),
            data=out.get("msg", {}),
            metadata={"ts": str(now), **meta},
            tenant_id=ctx.tenant_id,
            ts=now,
        )
        self._prev = (msg.data, dict(msg.metadata), msg.type)
        return [(SUCCESS, msg)]


@register
class MsgDelayNode(RuleNode):
    """Holds each message for ``periodInSeconds`` (or a metadata pattern), then Success;
    more than ``maxPendingMsgs`` waiting: Failure."""

    tb_type = "delay.TbMsgDelayNode"
    period_in_seconds = param.Number(default=60, bounds=(0, None))
    max_pending_msgs = param.Integer(default=1000, bounds=(1, None))
    use_metadata_period_in_seconds_patterns = param.Boolean(default=False)
    period_in_seconds_pattern = param.String(default="")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.timers = Timers()

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if len(self.timers) >= self.max_pending_msgs:
            raise OverflowError(f"max limit of pending messages ({self.max_pending_msgs}) reached")
        period = self.period_in_seconds
        if self.use_metadata_period_in_seconds_patterns:
            from .base import substitute

            period = float(substitute(self.period_in_seconds_pattern, msg))
        self.timers.add(ctx.now() + int(period * 1000), msg)
        return []

    def due(self) -> int | None:
        return self.timers.first()

    def tick(self, ctx, now: int) -> Outputs:
        return [(SUCCESS, m) for m in self.timers.pop_due(now)]


@register
class MsgDeduplicationNode(RuleNode):
    """One message per originator per ``interval`` seconds: the FIRST, the LAST, or ALL of
    them packed into one (data ``[{msg, metadata}, …]``, type ``outMsgType``)."""

    tb_type = "deduplication.TbMsgDeduplicationNode"
    interval = param.Number(default=60, bounds=(0.001, None))
    strategy: param.Selector[str] = param.Selector(default="FIRST", objects=["FIRST", "LAST", "ALL"])
    out_msg_type = param.String(default="POST_TELEMETRY_REQUEST")
    out_queue_name = param.String(default=None, allow_None=True)
    max_pending_msgs = param.Integer(default=100, bounds=(1, None))
    max_retries = param.Integer(default=3, bounds=(0, None))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._windows: dict[EntityRef, tuple[int, list[TbMsg]]] = {}

    def process(self, ctx, msg: TbMsg) -> Outputs:
        end, pending = self._windows.get(msg.originator, (ctx.now() + int(self.interval * 1000), []))
        if len(pending) >= self.max_pending_msgs:
            raise OverflowError(f"max limit of pending messages ({self.max_pending_msgs}) reached for the originator")
        pending.append(msg)
        self._windows[msg.originator] = (end, pending)
        return []

    def due(self) -> int | None:
        return min((end for end, _ in self._windows.values()), default=None)

    def tick(self, ctx, now: int) -> Outputs:
        out: Outputs = []
        for orig, (end, pending) in list(self._windows.items()):
            if end > now:
                continue
            del self._windows[orig]
            if self.strategy == "FIRST":
                out.append((SUCCESS, pending[0]))
            elif self.strategy == "LAST":
                out.append((SUCCESS, pending[-1]))
            else:
                packed = [{"msg": m.data, "metadata": dict(m.metadata)} for m in pending]
                out.append((SUCCESS, pending[-1].new_id(data=packed, type=self.out_msg_type)))
        return out


@register
class MsgCountNode(RuleNode):
    """Counts messages; every ``interval`` seconds emits ``{"<prefix>_tbpanel": count}`` as
    telemetry of the tenant."""

    tb_type = "action.TbMsgCountNode"
    interval = param.Number(default=1, bounds=(0.001, None))
    telemetry_prefix = param.String(default="messageCount")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._count = 0
        self._end: int | None = None

    def process(self, ctx, msg: TbMsg) -> Outputs:
        if self._end is None:
            self._end = ctx.now() + int(self.interval * 1000)
        self._count += 1
        return []

    def due(self) -> int | None:
        return self._end

    def tick(self, ctx, now: int) -> Outputs:
        if self._end is None or self._end > now:
            return []
        count, self._count = self._count, 0
        self._end = now + int(self.interval * 1000)
        msg = TbMsg(
            type=POST_TELEMETRY_REQUEST,
            originator=EntityRef("TENANT", ctx.tenant_id),
            data={f"{self.telemetry_prefix}_tbpanel": count},
            metadata={"delta": str(int(self.interval * 1000)), "ts": str(now)},
            tenant_id=ctx.tenant_id,
            ts=now,
        )
        return [(SUCCESS, msg)]


# -- math ----------------------------------------------------------------------------------
_UNARY: dict[str, Callable[[float], float]] = {
    "SIN": math.sin, "SINH": math.sinh, "COS": math.cos, "COSH": math.cosh, "TAN": math.tan, "TANH": math.tanh,
    "ACOS": math.acos, "ASIN": math.asin, "ATAN": math.atan, "EXP": math.exp, "EXPM1": math.expm1,
    "SQRT": math.sqrt, "CBRT": lambda x: math.copysign(abs(x) ** (1 / 3), x), "LOG": math.log, "LOG10": math.log10,
    "LOG1P": math.log1p, "ABS": abs, "CEIL": math.ceil, "FLOOR": math.floor, "TO_RADIANS": math.radians,
    "TO_DEGREES": math.degrees, "GET_EXP": lambda x: float(math.frexp(x)[1] - 1),
}  # fmt: skip
_BINARY: dict[str, Callable[[float, float], float]] = {
    "ADD": operator.add, "SUB": operator.sub, "MULT": operator.mul, "DIV": operator.truediv,
    "ATAN2": math.atan2, "HYPOT": math.hypot, "FLOOR_DIV": lambda a, b: float(a // b),
    "FLOOR_MOD": lambda a, b: float(a % b), "MIN": min, "MAX": max, "POW": math.pow,
}  # fmt: skip
_FUNCS: dict[str, Callable[..., float]] = {
    **{k.lower(): v for k, v in _UNARY.items()}, "pow": math.pow, "atan2": math.atan2, "hypot": math.hypot,
    "min": min, "max": max, "signum": lambda x: float((x > 0) - (x < 0)), "ln": math.log,
}  # fmt: skip
_OPS: dict[type, Callable[..., float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos,
}  # fmt: skip


def compile_expression(text: str, names: list[str]) -> Callable[[Mapping[str, float]], float]:
    """ThingsBoard's math expressions (exp4j: ``x^2 + sqrt(y)``) as a safe Python function:
    only numbers, the argument names, + - * / % ^ and the math functions; anything else is
    refused when the node is built."""
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise NodeConfigError(f"custom function {text!r} is not an expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names and node.id not in ("pi", "e"):
            if node.id not in _FUNCS:
                raise NodeConfigError(f"custom function uses {node.id!r}, which is not an argument")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCS or node.keywords:
                raise NodeConfigError("custom function calls something that is not a math function")
        elif not isinstance(
            node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.Name, ast.Load, *_OPS.keys())
        ):
            raise NodeConfigError(f"custom function uses {type(node).__name__}, which is not allowed")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise NodeConfigError("custom function may only contain numbers")

    def run(env: Mapping[str, float]) -> float:
        def ev(n: ast.AST) -> float:
            if isinstance(n, ast.Expression):
                return ev(n.body)
            if isinstance(n, ast.Constant):
                return float(n.value)  # type: ignore[arg-type]  # (numbers only: checked above)
            if isinstance(n, ast.Name):
                return float(env[n.id]) if n.id in env else {"pi": math.pi, "e": math.e}[n.id]
            if isinstance(n, ast.BinOp):
                a, b = ev(n.left), ev(n.right)
                if isinstance(n.op, ast.Pow) and abs(b) > 1000:
                    raise OverflowError("exponent too large")
                return float(_OPS[type(n.op)](a, b))
            if isinstance(n, ast.UnaryOp):
                return float(_OPS[type(n.op)](ev(n.operand)))
            assert isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            return float(_FUNCS[n.func.id](*[ev(a) for a in n.args]))

        return ev(tree)

    return run


_ARG_NAMES = ["x", "y", "z", "a", "b", "c", "d", "k", "l", "m", "n", "o", "p", "r", "s", "t"]


@register
class MathNode(RuleNode):
    """Math on message fields, metadata, attributes, latest telemetry or constants; the
    result into the data, the metadata, an attribute or a time series."""

    tb_type = "math.TbMathNode"
    operation: param.Selector[str] = param.Selector(default="ADD", objects=[*_BINARY, *_UNARY, "CUSTOM"])
    arguments = param.List(default=[], doc="[{name, type, key, attributeScope, defaultValue}]")
    custom_function = param.String(default="")
    result = param.Dict(default={"type": "MESSAGE_BODY", "key": "result", "resultValuePrecision": 2})

    def check(self) -> None:
        need = 2 if self.operation in _BINARY else 1 if self.operation in _UNARY else None
        if need is not None and len(self.arguments) != need:
            raise NodeConfigError(f"math: {self.operation} takes {need} argument(s), got {len(self.arguments)}")
        for a in self.arguments:
            if not isinstance(a, dict) or a.get("type") not in (
                "CONSTANT", "MESSAGE_BODY", "MESSAGE_METADATA", "ATTRIBUTE", "TIME_SERIES"
            ):  # fmt: skip
                raise NodeConfigError(f"math: bad argument {a!r}")
        if self.result.get("type") not in ("MESSAGE_BODY", "MESSAGE_METADATA", "ATTRIBUTE", "TIME_SERIES"):
            raise NodeConfigError("math: result.type must be MESSAGE_BODY, MESSAGE_METADATA, ATTRIBUTE or TIME_SERIES")
        if self.operation == "CUSTOM":
            self._fn = compile_expression(self.custom_function, self._names())

    def _names(self) -> list[str]:
        return [str(a.get("name") or _ARG_NAMES[i]) for i, a in enumerate(self.arguments)]

    def _value(self, ctx, msg: TbMsg, arg: Mapping[str, Any]) -> float:
        kind, key = arg["type"], str(arg.get("key", ""))
        if kind in ("ATTRIBUTE", "TIME_SERIES"):
            ctx.own_originator(msg)
        raw: Any = None
        if kind == "CONSTANT":
            raw = key
        elif kind == "MESSAGE_BODY":
            raw = msg.data.get(key) if isinstance(msg.data, Mapping) else None
        elif kind == "MESSAGE_METADATA":
            raw = msg.metadata.get(key)
        elif kind == "ATTRIBUTE":
            scope = arg.get("attributeScope") or "SERVER_SCOPE"
            got = ctx.services.need("registry").get_attributes(msg.originator.id, scope, [key])
            raw = got[0]["value"] if got else None
        else:
            latest = ctx.services.need("store").latest(msg.originator.id, [key])
            raw = latest[key][2] if key in latest else None
        if raw is None:
            raw = arg.get("defaultValue")
        if raw is None or isinstance(raw, bool):
            raise ValueError(f"math argument {key!r} has no numeric value")
        return float(raw)

    def process(self, ctx, msg: TbMsg) -> Outputs:
        vals = [self._value(ctx, msg, a) for a in self.arguments]
        if self.operation in _BINARY:
            value = _BINARY[self.operation](vals[0], vals[1])
        elif self.operation in _UNARY:
            value = float(_UNARY[self.operation](vals[0]))
        else:
            value = self._fn(dict(zip(self._names(), vals)))
        if not math.isfinite(value):
            raise ValueError(f"math result is not a finite number ({value})")
        res = self.result
        precision = res.get("resultValuePrecision")
        if isinstance(precision, int) and not isinstance(precision, bool):
            value = round(value, precision)
            if precision == 0:
                value = int(value)
        key, kind = str(res.get("key") or "result"), res["type"]
        out = msg
        if kind == "MESSAGE_BODY" or res.get("addToBody"):
            if not isinstance(msg.data, Mapping):
                raise TypeError("message data is not a JSON object")
            out = out.copy(data={**out.data, key: value})
        if kind == "MESSAGE_METADATA" or res.get("addToMetadata"):
            out = out.copy(metadata={**out.metadata, key: meta_text(value)})
        pts = tb_payload.parse_values({key: value}, _msg_ts(msg))
        if kind in ("ATTRIBUTE", "TIME_SERIES"):
            ctx.own_originator(msg)
        if kind == "ATTRIBUTE":
            ctx.services.need("registry").save_attributes(
                msg.originator.id, res.get("attributeScope") or "SERVER_SCOPE", pts
            )
        elif kind == "TIME_SERIES":
            ctx.services.need("store").write_points(payload_points(msg.originator.id, pts))
        return [(SUCCESS, out)]
