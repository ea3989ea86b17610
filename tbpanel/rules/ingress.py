"""Where messages enter the tenants' root rule chains: the device transports' telemetry,
attributes and RPC requests, and tbpanel's internal events (attribute changes, alarm changes,
sessions, anomalies).

Every message goes to its tenant's root chain (a tenant without one gets the default chain,
:meth:`~.store.RuleChainStore.ensure_root`), by one of two routes that :meth:`Ingress.plan`
picks per tenant with a cheap check (the root chain object is cached until it changes):

- **compiled** — the root chain is the unmodified default chain (same nodes, configuration
  and connections as :func:`~.defaults.default_root_chain`; names and layout may differ, no
  node in debug mode). That chain saves telemetry and client attributes and logs everything
  else, which is exactly tbpanel's direct ingest path, so the transports keep it: the store's
  group commit, an ack once the points are durable, live pushes from the commit. Internal
  events would end at the Log node: they are not queued at all. When the default chain starts
  with the device profile node and the device's profile has alarm rules, the message is also
  queued to run through that one node after the save (:meth:`RuleQueue.put` ``only=``), so
  the alarm rules see it and nothing is saved twice; the ack still means "stored".
- **queued** — any other root chain: the message (telemetry: one per ``ts``, as ThingsBoard)
  is put in the durable :class:`~.queue.RuleQueue` and the transport acks once ``put``
  returned — "durably queued"; the queue's worker runs it through the chain (per-originator
  order, retries of external nodes, dead letters).

A device's RPC request (``TO_SERVER_RPC_REQUEST``) other than ``getCurrentTime`` and
``getSessionLimits`` enters a custom root chain only (:meth:`Ingress.device_rpc`); the device's
session waits for an "RPC call reply" node (:meth:`Ingress.rpc_reply`) or the timeout.

A payload the store would refuse (bad JSON, a bad value, the point limit) is refused before
either route, as before; only the key quota is checked later on the queued route (by the save
node: the message goes to the dead-letter list with the reason).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from ..store.ingest import PointColumns
from ..store.values import ValueType
from .chain import RuleChain
from .defaults import default_root_chain
from .engine import RuleEngine, RuleEngineError
from .message import (
    ACTIVITY_EVENT,
    ALARM,
    ALARM_ACK,
    ALARM_CLEAR,
    ANOMALY_CLEARED,
    ANOMALY_CREATED,
    ATTRIBUTES_DELETED,
    ATTRIBUTES_UPDATED,
    CONNECT_EVENT,
    DISCONNECT_EVENT,
    INACTIVITY_EVENT,
    POST_ATTRIBUTES_REQUEST,
    TO_SERVER_RPC_REQUEST,
    EntityRef,
    TbMsg,
    device_msg,
    telemetry_msgs,
)
from .queue import RuleQueue
from .script import off_loop
from .store import RuleChainStore

if TYPE_CHECKING:
    from ..alarms.model import Alarm
    from ..entities import Device, EntityRegistry, User
    from ..store import TelemetryStore

log = logging.getLogger("tbpanel.rules.ingress")
T = TypeVar("T")

#: ThingsBoard's device profile node (r-alarmrules); the default root chain may start with it
PROFILE_NODE = "org.thingsboard.rule.engine.profile.TbDeviceProfileNode"
#: how long a device's "its profile has alarm rules" answer is trusted (profile edits show up
#: within this time; the check stays off the database on the hot path)
PROFILE_CACHE_S = 2.0
#: ThingsBoard's default inactivity timeout (``state.defaultInactivityTimeoutInSec``)
INACTIVITY_TIMEOUT_MS = 600_000
#: how long a device → server RPC request waits for a chain's "RPC call reply" (ThingsBoard's
#: ``transport.client_side_rpc.timeout``)
DEVICE_RPC_TIMEOUT_MS = 60_000
#: the metadata ``serviceId`` of the requests this process waits for
SERVICE_ID = "tbpanel"
#: the alarm service's changes (``AlarmService.actions``) → ThingsBoard's message types
ALARM_TYPES = {"ALARM": ALARM, "ACK": ALARM_ACK, "CLEAR": ALARM_CLEAR}


@dataclass(frozen=True)
class Plan:
    """How one tenant's messages enter: its root chain and whether it runs compiled."""

    chain: RuleChain
    nodes: list[Any]  # the chain's node list when planned (an edit replaces it)
    compiled: bool
    #: compiled only: the id of the chain's first node when it is the device profile node
    profile_node_id: str | None = None


def _shape(chain: RuleChain) -> Any:
    """What a chain does, without what does not change behaviour (ids, names, layout)."""
    return (
        chain.first_node_index,
        [(n.type, orjson.dumps(n.impl.to_config(), option=orjson.OPT_SORT_KEYS)) for n in chain.nodes],
        sorted((c.from_index, c.to_index, c.type) for c in chain.connections),
    )


_DEFAULT_SHAPE: list[Any] = []


def is_default_chain(chain: RuleChain) -> bool:
    """True when ``chain`` behaves exactly as the default root chain (and no node is in debug
    mode: debug events need the engine to run it)."""
    if not _DEFAULT_SHAPE:
        _DEFAULT_SHAPE.append(off_loop(lambda: _shape(default_root_chain("default"))))
    if chain.debug_mode or any(n.debug_mode for n in chain.nodes):
        return False
    return bool(_shape(chain) == _DEFAULT_SHAPE[0])


def _plain(vtype: int, value: Any) -> Any:
    """A stored point's value as the message carries it (JSON values as JSON again)."""
    if vtype == ValueType.JSON:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    if vtype == ValueType.BOOL:
        return bool(value)
    return value


def _user_meta(user: User | None) -> dict[str, str]:
    """ThingsBoard's metadata of an entity action: who did it."""
    if user is None or not user.id:
        return {}
    meta = {"userId": str(user.id), "userName": str(user.email or "")}
    if getattr(user, "customer_id", None):
        meta["customerId"] = str(user.customer_id)
    return meta


class Ingress:
    """The one way messages enter the tenants' root chains (see the module docstring)."""

    def __init__(
        self,
        engine: RuleEngine,
        chains: RuleChainStore,
        queue: RuleQueue,
        *,
        store: TelemetryStore | None = None,
        registry: EntityRegistry | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.engine = engine
        self.chains = chains
        self.queue = queue
        self.store = store
        self.registry = registry
        self.executor = executor
        self._plans: dict[str, Plan] = {}
        self._ensuring = threading.Lock()
        self._alarm_rules: dict[str, tuple[float, bool]] = {}  # device id -> (checked at, has rules)
        #: a device with no message for this long is inactive (ThingsBoard's default, 600 s)
        self.inactivity_timeout_ms = INACTIVITY_TIMEOUT_MS
        self._active: dict[str, tuple[str, int]] = {}  # device id -> (tenant id, last activity ms)
        #: device → server RPC requests waiting for a chain's reply: (sessionId, requestId) -> answer
        self._rpc_waiting: dict[tuple[str, str], Future[Any]] = {}
        self._rpc_ids = itertools.count(1)
        self._session = uuid.uuid4().hex  # this process's sessionId prefix
        #: how long :meth:`device_rpc` requests wait for an answer
        self.device_rpc_timeout_ms = DEVICE_RPC_TIMEOUT_MS

    # -- the route ---------------------------------------------------------------------------
    def plan(self, tenant_id: str) -> Plan:
        """The tenant's route; creates its default root chain when it has none."""
        try:
            root = self.engine.root(tenant_id)
        except RuleEngineError:
            with self._ensuring:  # two threads must not both store a default root
                try:
                    root = self.engine.root(tenant_id)
                except RuleEngineError:
                    root = off_loop(self.chains.ensure_root, tenant_id)
        plan = self._plans.get(tenant_id)
        if plan is not None and plan.chain is root and plan.nodes is root.nodes:
            return plan
        compiled = is_default_chain(root)
        first = root.nodes[root.first_node_index] if root.first_node_index is not None else None
        profile = first.id if compiled and first is not None and first.type == PROFILE_NODE else None
        plan = Plan(root, root.nodes, compiled, profile)
        self._plans[tenant_id] = plan
        return plan

    def has_alarm_rules(self, device_id: str) -> bool:
        """Whether the device's profile has alarm rules (``profile_data["alarms"]``); cached."""
        hit = self._alarm_rules.get(device_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < PROFILE_CACHE_S:
            return hit[1]
        rules = False
        if self.registry is not None:
            try:
                device = self.registry.get_device(device_id)
                if device.device_profile_id:
                    profile = self.registry.get_device_profile(device.device_profile_id)
                    rules = bool((profile.profile_data or {}).get("alarms"))
            except Exception:  # a device or profile deleted meanwhile: no rules
                rules = False
        if len(self._alarm_rules) > 100_000:
            self._alarm_rules.clear()
        self._alarm_rules[device_id] = (now, rules)
        return rules

    def _maybe_alarm_rules(self, device_ids: Iterable[str]) -> bool:
        """Cheap (no database): False only when every device is known to have no alarm rules."""
        now = time.monotonic()
        for d in device_ids:
            hit = self._alarm_rules.get(d)
            if hit is None or now - hit[0] >= PROFILE_CACHE_S or hit[1]:
                return True
        return False

    # -- the transports ----------------------------------------------------------------------
    def telemetry(self, tenant_id: str, rows: Sequence[Any] | PointColumns) -> Awaitable[Any]:
        """Device telemetry (validated store points, one or several devices of the tenant).

        Compiled: the store's write starts now and the result resolves once it is durable.
        Queued: a coroutine that puts the messages when awaited (so awaiting the results in
        arrival order keeps each device's order)."""
        plan = self.plan(tenant_id)
        devices = _device_ids(rows)
        if devices:
            self._touch(plan, devices)
        if plan.compiled:
            assert self.store is not None
            saved = self.store.submit_async(rows)
            if plan.profile_node_id is None or not self._maybe_alarm_rules(devices):
                return saved
            return self._then_profile(saved, plan, lambda: self.telemetry_msgs(rows), devices)
        return self._in_pool(self._put, lambda: self.telemetry_msgs(rows))

    def attributes(self, device: Device, points: Sequence[Any]) -> Awaitable[Any]:
        """Client attributes a device posted (parsed points); a coroutine."""
        plan = self.plan(device.tenant_id)
        self._touch(plan, (device.id,))
        if plan.compiled:
            assert self.registry is not None
            saved = self._in_pool(self.registry.save_attributes, device.id, "CLIENT_SCOPE", points)
            if plan.profile_node_id is None or not self._maybe_alarm_rules([device.id]):
                return saved
            return self._then_profile(saved, plan, lambda: [self.attributes_msg(device, points)], [device.id])
        return self._in_pool(self._put, lambda: [self.attributes_msg(device, points)])

    # -- device → server RPC ----------------------------------------------------------------
    def device_rpc(self, device_id: str, method: str, params: Any) -> Any:
        """:attr:`RpcService.device_rpc_handler`: on the default chain :data:`NOT_HANDLED`
        (tbpanel answers as before); else the request enters the root chain as
        ``TO_SERVER_RPC_REQUEST`` and this returns a Future of the answer an "RPC call reply"
        node gives (:meth:`rpc_reply`); :func:`rpc_answer` awaits it with the timeout."""
        from ..rpc.service import NOT_HANDLED

        device = self._device(device_id)
        if device is None or self.plan(device.tenant_id).compiled:
            return NOT_HANDLED
        request_id = str(next(self._rpc_ids))
        session = f"{self._session}-{device_id}"
        answer: Future[Any] = Future()
        self._rpc_waiting[(session, request_id)] = answer
        answer.add_done_callback(lambda _f: self._rpc_waiting.pop((session, request_id), None))
        meta = {"requestId": request_id, "serviceId": SERVICE_ID, "sessionId": session}
        msg = self._device_event(TO_SERVER_RPC_REQUEST, device, {"method": method, "params": params}, meta)

        def put() -> None:
            try:
                self.queue.put([msg])
            except Exception as exc:  # not queued: the device hears why at once
                log.exception("a device RPC request could not enter the rule engine")
                if not answer.done():
                    answer.set_result({"error": f"the RPC request could not enter the rule engine: {exc}"})

        self._off_thread(put)
        return answer

    def rpc_reply(self, session_id: str, request_id: str, data: Any) -> bool:
        """The "RPC call reply" node's answer to a waiting device request; False when none waits
        (it timed out, or another process's session asked)."""
        answer = self._rpc_waiting.pop((session_id, request_id), None)
        if answer is None or answer.done():
            return False
        answer.set_result(data)
        return True

    async def rpc_answer(self, answer: Any, request: Any) -> Any:
        """The answer a transport sends: ``answer`` itself, or what the chain replied to
        :meth:`device_rpc`'s Future within :attr:`device_rpc_timeout_ms`, else an error."""
        if not isinstance(answer, Future):
            return answer
        timeout = self.device_rpc_timeout_ms
        method = str(request.get("method")) if isinstance(request, dict) else ""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(answer), timeout / 1000)
        except TimeoutError:
            return {"error": f"unsupported RPC method {method[:100]!r}: no rule answered it within {timeout} ms"}

    # -- activity ----------------------------------------------------------------------------
    def _touch(self, plan: Plan, device_ids: Iterable[str]) -> None:
        """A message from these devices: a device that was inactive becomes active
        (``ACTIVITY_EVENT``, built and queued off the caller's thread)."""
        now = self._now()
        tenant = plan.chain.tenant_id
        for d in device_ids:
            if self._active.get(d) is None and (not plan.compiled or plan.profile_node_id is not None):
                self._off_thread(self._activity_event, d, True, now)
            self._active[d] = (tenant, now)

    def check_inactive(self, now: int | None = None) -> int:
        """``INACTIVITY_EVENT`` for every device silent for :attr:`inactivity_timeout_ms`
        (the service's timer thread calls this); returns how many went inactive."""
        now = self._now() if now is None else now
        gone = [d for d, (_t, last) in list(self._active.items()) if now - last >= self.inactivity_timeout_ms]
        for d in gone:
            tenant, last = self._active.pop(d, ("", 0))
            if tenant and self.wants_events(tenant):
                self._activity_event(d, False, last)
        return len(gone)

    def _activity_event(self, device_id: str, active: bool, last: int) -> None:
        device = self._device(device_id)
        if device is None:
            return
        data = {"active": active, "lastActivityTime": last, "inactivityTimeout": self.inactivity_timeout_ms}
        kind = ACTIVITY_EVENT if active else INACTIVITY_EVENT
        self.safe_event(device.tenant_id, lambda: self._device_event(kind, device, data, {}))

    def _off_thread(self, fn: Any, *args: Any) -> None:
        if self.executor is not None:
            try:
                self.executor.submit(fn, *args)
            except RuntimeError:  # the platform is closing: no more events
                pass
        else:
            threading.Thread(target=fn, args=args, daemon=True).start()

    async def _then_profile(self, saved: Awaitable[Any], plan: Plan, build: Any, devices: Iterable[str]) -> Any:
        result = await saved
        await self._in_pool(self._profile_step, plan, build, devices)
        return result

    def _profile_step(self, plan: Plan, build: Any, devices: Iterable[str]) -> None:
        if not any([self.has_alarm_rules(d) for d in devices]):  # no rules: build no message
            return
        msgs = [m for m in build() if self.has_alarm_rules(m.originator.id)]
        if msgs and plan.profile_node_id is not None:
            self.queue.put(msgs, only=(plan.chain.id, plan.profile_node_id))

    def _put(self, build: Any) -> int:
        return self.queue.put(build())

    async def _in_pool(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    # -- internal events (blocking: call them off the event loop) ----------------------------
    def event(self, msg: TbMsg) -> None:
        """An internal event of the tenant: queued unless the root chain is the default one
        (there it ends at the Log node), apart from the device profile step."""
        plan = self.plan(msg.tenant_id)
        if not plan.compiled:
            self.queue.put([msg])
        elif plan.profile_node_id is not None and msg.originator.entity_type == "DEVICE":
            if self.has_alarm_rules(msg.originator.id):
                self.queue.put([msg], only=(plan.chain.id, plan.profile_node_id))

    def wants_events(self, tenant_id: str) -> bool:
        """False when the tenant's events would end unseen (the compiled default chain
        without a device profile step): then they are not even built."""
        plan = self.plan(tenant_id)
        return not plan.compiled or plan.profile_node_id is not None

    def safe_event(self, tenant_id: str, build: Any) -> None:
        """:meth:`event` of ``build()`` for signal listeners: a failure is logged, never raised
        into the change that caused it (that change committed already)."""
        try:
            if not self.wants_events(tenant_id):
                return
            msg = build()
            if msg is not None:
                self.event(msg)
        except Exception:
            log.exception("an internal event could not enter the rule engine")

    def attributes_updated(self, device: Device, scope: str, points: Sequence[Any], user: User | None) -> None:
        """``ATTRIBUTES_UPDATED``: a user saved SERVER_SCOPE / SHARED_SCOPE attributes (REST)."""
        data = {key: _plain(vtype, value) for _ts, key, vtype, value in points}
        self.event(self._device_event(ATTRIBUTES_UPDATED, device, data, {"scope": scope, **_user_meta(user)}))

    def attributes_deleted(self, device: Device, scope: str, keys: Sequence[str], user: User | None) -> None:
        """``ATTRIBUTES_DELETED``: ``{"attributes": [keys]}``, as ThingsBoard."""
        meta = {"scope": scope, **_user_meta(user)}
        self.event(self._device_event(ATTRIBUTES_DELETED, device, {"attributes": list(keys)}, meta))

    def on_alarm_action(self, action: str, alarm: Alarm, user: User | None) -> None:
        """AlarmService listener: ``ALARM`` (created or updated), ``ALARM_ACK``, ``ALARM_CLEAR``
        with the alarm as data; changes the rule engine made itself do not re-enter (as in
        ThingsBoard, where an alarm node's alarm leaves by the node's relations)."""
        msg_type = ALARM_TYPES.get(action)
        if msg_type is None or user is None or not user.id:
            return

        def build() -> TbMsg:
            device = self._device(alarm.originator_id)
            meta = {**_user_meta(user), "alarmType": alarm.type, "alarmSeverity": alarm.severity}
            if device is None:
                return TbMsg(
                    type=msg_type,
                    originator=EntityRef("DEVICE", alarm.originator_id),
                    data=alarm.to_json(),
                    metadata=meta,
                    tenant_id=alarm.tenant_id,
                    customer_id=alarm.customer_id,
                )
            return self._device_event(msg_type, device, alarm.to_json(), meta)

        self.safe_event(alarm.tenant_id, build)

    def session_event(self, device: Device, connected: bool) -> None:
        """``CONNECT_EVENT`` / ``DISCONNECT_EVENT`` of a device session (MQTT)."""
        now = self._now()
        data = {"active": connected, "lastConnectTime" if connected else "lastDisconnectTime": now}
        kind = CONNECT_EVENT if connected else DISCONNECT_EVENT
        self.safe_event(device.tenant_id, lambda: self._device_event(kind, device, data, {}))

    def on_anomaly_changes(self, model: Any, changes: Any) -> None:
        """After an anomaly transaction committed: ``ANOMALY_CREATED`` per new anomaly and
        ``ANOMALY_CLEARED`` per anomaly that ended (tbpanel's own message types)."""
        for kind, items in ((ANOMALY_CREATED, changes.created), (ANOMALY_CLEARED, changes.ended)):
            for a in items:
                self.safe_event(model.tenant_id, lambda kind=kind, a=a: self._anomaly_msg(kind, model, a))

    # -- messages ----------------------------------------------------------------------------
    def _now(self) -> int:
        return int(self.engine.services.clock())

    def _device(self, device_id: str) -> Device | None:
        if self.registry is None:
            return None
        try:
            return self.registry.get_device(device_id)
        except Exception:
            return None

    def _device_fields(self, device: Device) -> dict[str, Any]:
        return {
            "tenant_id": device.tenant_id,
            "device_name": device.name or "",
            "device_type": device.type or "default",
            "customer_id": device.customer_id,
        }

    def _device_event(self, msg_type: str, device: Device, data: Any, meta: Mapping[str, str]) -> TbMsg:
        return device_msg(msg_type, device.id, data, metadata=meta, **self._device_fields(device))

    def telemetry_msgs(self, rows: Iterable[Any]) -> list[TbMsg]:
        """Store points → ThingsBoard's telemetry messages: one per device and ``ts``."""
        by_device: dict[str, dict[int, dict[str, Any]]] = {}
        for entity, key, ts, vtype, value in rows:
            by_device.setdefault(entity, {}).setdefault(ts, {})[key] = _plain(vtype, value)
        out: list[TbMsg] = []
        for device_id, by_ts in by_device.items():
            device = self._device(device_id)
            if device is None:
                log.warning("telemetry of unknown device %s not queued", device_id)
                continue
            out += telemetry_msgs(device_id, by_ts, **self._device_fields(device))
        return out

    def attributes_msg(self, device: Device, points: Sequence[Any]) -> TbMsg:
        data = {key: _plain(vtype, value) for _ts, key, vtype, value in points}
        ts = max((p[0] for p in points), default=self._now())
        return device_msg(POST_ATTRIBUTES_REQUEST, device.id, data, ts=ts, **self._device_fields(device))

    def _anomaly_msg(self, kind: str, model: Any, a: Mapping[str, Any]) -> TbMsg | None:
        device = self._device(str(a["item"]))
        if device is None:
            return None
        data = {
            "anomalyId": a.get("id"),
            "modelId": model.id,
            "modelName": model.config.name,
            "score": a.get("score"),
            "scoreIndex": a.get("score_index"),
            "startTs": a.get("start_ts"),
            "endTs": a.get("end_ts"),
            "active": bool(a.get("active")),
        }
        meta = {"modelId": str(model.id), "modelName": str(model.config.name)}
        return self._device_event(kind, device, data, meta)


def _device_ids(rows: Sequence[Any] | PointColumns) -> Sequence[str] | set[str]:
    """The devices a batch of telemetry is from, without a pass over the points when it is one
    device's columns (the HTTP and CoAP parsers' answer) or starts and ends with one device."""
    if isinstance(rows, PointColumns):
        return (rows.entity,) if rows else ()
    if not rows:
        return ()
    first = rows[0][0]
    return (first,) if rows[-1][0] == first else {r[0] for r in rows}
