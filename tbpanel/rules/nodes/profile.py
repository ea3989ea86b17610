"""The device profile node (ThingsBoard's ``profile.TbDeviceProfileNode``): runs the alarm
rules of each device's profile on its messages and raises, updates and clears alarms.

It never stores telemetry or attributes itself (the save nodes or the platform do), so it is
correct on messages already saved: the first message of a device loads the latest values of
every key its rules use from the store and the registry, then each message merges its
values in (:class:`~tbpanel.rules.alarm_rules.Snapshot`) and re-checks the rules that use a
key it changed. The rules themselves are :mod:`tbpanel.rules.alarm_rules`; this module only
feeds them and carries out their decisions through :class:`~tbpanel.alarms.AlarmService`,
as the tenant's administrator (so the alarms are on ``/alarms``, in the REST API and in
ALARM_DATA subscriptions, and a chain never touches another tenant's device).

Every message leaves by ``Success``; each alarm change also emits an ``ALARM`` message by
``Alarm Created``, ``Alarm Updated``, ``Alarm Severity Updated`` or ``Alarm Cleared``
(metadata ``isNewAlarm`` / ``isExistingAlarm`` / ``isSeverityUpdated`` / ``isClearedAlarm``,
``alarmConditionRepeats`` / ``alarmConditionDuration``). A timer (every minute, as
ThingsBoard) raises DURATION alarms of devices that went quiet while their condition held.

With ``persistAlarmRulesState`` the DURATION and REPEATING progress of each device is kept in
``rules.sqlite`` (:class:`~tbpanel.rules.node_state.RuleNodeStates`) and survives a restart;
``fetchAlarmRulesStateOnStart`` loads every device's state when the node starts (so the timer
covers devices that have not sent anything since), otherwise a device's state is read on its
first message.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import param

from ...entities import NotFound
from ...store import payload as tb_payload
from .. import alarm_rules as ar
from ..message import (
    ACTIVITY_EVENT,
    ALARM,
    ALARM_CLEAR,
    ATTRIBUTES_DELETED,
    ATTRIBUTES_UPDATED,
    ENTITY_DELETED,
    ENTITY_UPDATED,
    INACTIVITY_EVENT,
    POST_ATTRIBUTES_REQUEST,
    POST_TELEMETRY_REQUEST,
    TIMESERIES_UPDATED,
    TbMsg,
)
from .actions import _msg_ts, rule_user
from .base import FAILURE, SUCCESS, Outputs, RuleNode, register

CREATED, UPDATED, SEVERITY_UPDATED, CLEARED = (
    "Alarm Created",
    "Alarm Updated",
    "Alarm Severity Updated",
    "Alarm Cleared",
)
ALARM_DELETE = "ALARM_DELETE"
#: the message types the node reads (the others pass by Success untouched, as in ThingsBoard)
HANDLED = frozenset(
    {POST_TELEMETRY_REQUEST, TIMESERIES_UPDATED, POST_ATTRIBUTES_REQUEST, ATTRIBUTES_UPDATED, ATTRIBUTES_DELETED,
     ACTIVITY_EVENT, INACTIVITY_EVENT, ALARM_CLEAR, ALARM_DELETE, ENTITY_UPDATED, ENTITY_DELETED}
)  # fmt: skip
#: a device's profile and customer are read again after this many seconds (a rule edited on
#: /profiles applies within it): reading both on every message cost more than the rules
RECHECK_S = 1.0
#: how often the timer looks at DURATION rules of quiet devices (ThingsBoard: one minute)
HARVEST_MS = 60_000


@dataclass
class DeviceState:
    """One device: its profile's rules, the snapshot of the values they use, one tracker per alarm."""

    device_id: str
    profile_id: str
    fingerprint: bytes
    definitions: list[ar.AlarmDefinition]
    snapshot: ar.Snapshot
    customer_id: str | None = None
    trackers: dict[str, ar.AlarmTracker] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    checked: float = 0.0  # time.monotonic() of the last look at the device and its profile

    def to_json(self) -> dict[str, Any]:
        """ThingsBoard's PersistedDeviceState."""
        return {"alarmStates": {aid: t.to_json() for aid, t in self.trackers.items()}}


@register
class DeviceProfileNode(RuleNode):
    """Creates and clears alarms from the alarm rules of the originator device's profile."""

    tb_type = "profile.TbDeviceProfileNode"
    category = "ACTION"
    relations = (SUCCESS, CREATED, UPDATED, SEVERITY_UPDATED, CLEARED, FAILURE)
    persist_alarm_rules_state = param.Boolean(
        default=False, doc="Keep DURATION/REPEATING progress per device across restarts (rules.sqlite)."
    )
    fetch_alarm_rules_state_on_start = param.Boolean(
        default=False, doc="Load every device's saved progress when the node starts (else on its first message)."
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._devices: dict[str, DeviceState] = {}
        self._lock = threading.RLock()
        self._started = False
        self._next_harvest: int | None = None

    # -- the engine's hooks ----------------------------------------------------------------
    def start(self, now: int) -> None:
        self._next_harvest = now + HARVEST_MS

    def due(self) -> int | None:
        return self._next_harvest

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        if msg.originator.entity_type != "DEVICE" or msg.type not in HANDLED:
            return [(SUCCESS, msg)]
        if ctx.services.registry is None or ctx.services.owner_tenant("DEVICE", msg.originator.id) is None:
            return [(SUCCESS, msg)]  # no such device (any more): no rules to run, the chain goes on
        with self._lock:
            self._start(ctx)
            device_id = ctx.own_originator(msg)  # another tenant's device: PermissionError, Failure
            if msg.type in (ENTITY_UPDATED, ENTITY_DELETED):
                self._forget(ctx, device_id, deleted=msg.type == ENTITY_DELETED)
                return [(SUCCESS, msg)]
            st = self._device(ctx, device_id)
            if st is None:  # deleted meanwhile: nothing to check
                return [(SUCCESS, msg)]
            st.metadata = dict(msg.metadata)
            out: Outputs = []
            dirty = self._on_message(ctx, st, msg, out)
            if dirty:
                self._persist(ctx, st)
        return [*out, (SUCCESS, msg)]

    def tick(self, ctx: Any, now: int) -> Outputs:
        """Every minute: DURATION rules of devices whose condition has held since their last message."""
        self._next_harvest = now + HARVEST_MS
        out: Outputs = []
        with self._lock:
            self._start(ctx)
            for st in list(self._devices.values()):
                dirty = False
                for tracker in st.trackers.values():
                    action, changed = tracker.process(st.snapshot, None, self._outer(ctx, st), now=now, at=now)
                    dirty |= changed
                    if action is not None:
                        self._act(ctx, st, tracker, action, None, out)
                if dirty:
                    self._persist(ctx, st)
        return out

    # -- messages --------------------------------------------------------------------------
    def _on_message(self, ctx: Any, st: DeviceState, msg: TbMsg, out: Outputs) -> bool:
        kind = msg.type
        scope = msg.metadata.get("scope")
        if kind in (ACTIVITY_EVENT, INACTIVITY_EVENT):
            kind = ATTRIBUTES_UPDATED if scope else POST_TELEMETRY_REQUEST
        if kind in (POST_TELEMETRY_REQUEST, TIMESERIES_UPDATED):
            data = msg.data
            if kind == TIMESERIES_UPDATED and isinstance(data, dict) and "timeseries" in data:
                data = data["timeseries"]
            by_ts: dict[int, list[tuple[str, ar.Value]]] = {}
            for ts, key, vtype, value in tb_payload.parse_telemetry(data, _msg_ts(msg)):
                by_ts.setdefault(ts, []).append((key, (vtype, value)))
            dirty = False
            for ts in sorted(by_ts):  # oldest first, as ThingsBoard
                changed = st.snapshot.merge("TIME_SERIES", ts, by_ts[ts])
                if changed:
                    dirty |= self._check(ctx, st, changed, msg, out)
            return dirty
        if kind in (POST_ATTRIBUTES_REQUEST, ATTRIBUTES_UPDATED):
            points = tb_payload.parse_attributes(msg.data, ctx.now())
            if not points:
                return False
            changed = st.snapshot.merge("ATTRIBUTE", ctx.now(), [(k, (t, v)) for _ts, k, t, v in points])
            return self._check(ctx, st, changed, msg, out) if changed else False
        if kind == ATTRIBUTES_DELETED:
            keys = msg.data.get("attributes") if isinstance(msg.data, dict) else None
            removed = {ar.ConditionKey("ATTRIBUTE", str(k)) for k in keys or []}
            for k in removed:
                st.snapshot.remove(k)
            return self._check(ctx, st, frozenset(removed), msg, out) if removed else False
        if kind in (ALARM_CLEAR, ALARM_DELETE):
            alarm_id = _alarm_id(msg.data)
            dirty = False
            for tracker in st.trackers.values():
                if kind == ALARM_DELETE and tracker.current is not None and tracker.current.id == alarm_id:
                    tracker.current = None
                else:
                    dirty |= tracker.alarm_cleared(alarm_id)
            return dirty
        return False

    def _check(
        self, ctx: Any, st: DeviceState, changed: frozenset[ar.ConditionKey], msg: TbMsg | None, out: Outputs
    ) -> bool:
        dirty = False
        outer = self._outer(ctx, st)
        for tracker in st.trackers.values():
            action, was_changed = tracker.process(st.snapshot, changed, outer, now=ctx.now())
            dirty |= was_changed
            if action is not None:
                self._act(ctx, st, tracker, action, msg, out)
        return dirty

    # -- alarms ----------------------------------------------------------------------------
    def _act(
        self, ctx: Any, st: DeviceState, tracker: ar.AlarmTracker, action: ar.Action, msg: TbMsg | None, out: Outputs
    ) -> None:
        """Carry out one decision through the alarm service. The active alarm is read again
        first: a user may have cleared or deleted it since the tracker last saw it."""
        service = ctx.services.need("alarms")
        user = rule_user(ctx.tenant_id)
        d = tracker.definition
        active = service.repo.active_for(st.device_id, d.alarm_type)
        now = ctx.now()
        flags: dict[str, str]
        if action.kind == "CLEAR":
            tracker.current = None
            if active is None:
                return
            if action.details != active.details:
                service.save(
                    user,
                    {
                        "id": active.id,
                        "originator_id": st.device_id,
                        "type": d.alarm_type,
                        "severity": active.severity,
                        "details": action.details,
                    },
                )
            alarm = service.clear(user, active.id)
            relation, flags = CLEARED, {"isClearedAlarm": "true"}
        elif active is None:
            start = st.snapshot.ts
            if start <= 0 or start > now:
                start = now
            alarm = service.save(
                user,
                {
                    "originator_id": st.device_id,
                    "type": d.alarm_type,
                    "severity": action.severity,
                    "details": action.details,
                    "propagate": d.propagate,
                    "start_ts": start,
                    "end_ts": start,
                },
            )
            relation, flags = CREATED, {"isNewAlarm": "true"}
        else:
            alarm = service.save(
                user,
                {
                    "id": active.id,
                    "originator_id": st.device_id,
                    "type": d.alarm_type,
                    "severity": action.severity,
                    "details": action.details,
                    "end_ts": now,
                },
            )
            if alarm.severity != active.severity:
                relation, flags = SEVERITY_UPDATED, {"isExistingAlarm": "true", "isSeverityUpdated": "true"}
            else:
                relation, flags = UPDATED, {"isExistingAlarm": "true"}
        if action.kind != "CLEAR":
            tracker.current = ar.CurrentAlarm(alarm.id, alarm.severity, dict(alarm.details))
        meta = {**st.metadata, **flags}
        if action.rule.spec.type == "REPEATING":
            meta["alarmConditionRepeats"] = str(action.state.event_count)
        elif action.rule.spec.type == "DURATION":
            meta["alarmConditionDuration"] = str(action.state.duration)
        base = msg if msg is not None else None
        emitted = TbMsg(
            type=ALARM,
            originator=base.originator if base is not None else _device_ref(st.device_id),
            data=alarm.to_json(),
            metadata=meta,
            tenant_id=ctx.tenant_id,
            customer_id=base.customer_id if base is not None else st.customer_id,
            ts=now,
        )
        out.append((relation, emitted))

    # -- device state ----------------------------------------------------------------------
    def _start(self, ctx: Any) -> None:
        """Once, with a context: load every saved device state (fetchAlarmRulesStateOnStart),
        or drop the node's saved states when it does not persist them (as ThingsBoard)."""
        if self._started:
            return
        self._started = True
        states = ctx.services.node_states
        if states is None:
            return
        if not self.persist_alarm_rules_state:
            states.delete(ctx.node_id)
            return
        if self.fetch_alarm_rules_state_on_start:
            for etype, eid, saved in states.all(ctx.node_id):
                if etype == "DEVICE" and eid not in self._devices:
                    try:
                        ctx.own("DEVICE", eid)
                    except PermissionError:
                        continue
                    self._device(ctx, eid, saved)

    def _device(self, ctx: Any, device_id: str, saved: dict[str, Any] | None = None) -> DeviceState | None:
        """The device's state, made on first use and kept in step with its profile."""
        st = self._devices.get(device_id)
        if st is not None and time.monotonic() - st.checked < RECHECK_S:
            return st
        registry = ctx.services.need("registry")
        try:
            device = registry.get_device(device_id)
        except NotFound:
            self._devices.pop(device_id, None)
            return None
        if device.device_profile_id:
            profile = registry.get_device_profile(device.device_profile_id)
        else:
            profile = registry.default_device_profile(device.tenant_id)
        alarms = (profile.profile_data or {}).get("alarms")
        fingerprint = orjson.dumps(alarms)
        if st is not None and st.profile_id == profile.id and st.fingerprint == fingerprint:
            st.customer_id, st.checked = device.customer_id, time.monotonic()
            return st
        definitions = ar.parse_alarms(profile.profile_data, f"device profile {profile.name!r} profileData")
        if st is None or st.profile_id != profile.id:
            if saved is None and self.persist_alarm_rules_state and ctx.services.node_states is not None:
                saved = ctx.services.node_states.get(ctx.node_id, device_id)
            persisted = (saved or {}).get("alarmStates") or {}
            st = DeviceState(device_id, profile.id, fingerprint, definitions, ar.Snapshot(ar.entity_keys(definitions)))
            st.customer_id = device.customer_id
            st.trackers = {d.id: ar.AlarmTracker(d, persisted.get(d.id)) for d in definitions}
            self._fetch(ctx, st, device, st.snapshot.keys)
            self._devices[device_id] = st
        else:  # the profile's rules changed: keep the states of alarms still there
            old_keys = st.snapshot.keys
            st.fingerprint, st.definitions = fingerprint, definitions
            snapshot = ar.Snapshot(ar.entity_keys(definitions))
            snapshot.values = {k: v for k, v in st.snapshot.values.items() if k in snapshot.keys}
            snapshot.ts = st.snapshot.ts
            st.snapshot = snapshot
            trackers = {}
            for d in definitions:
                t = st.trackers.get(d.id)
                if t is None:
                    t = ar.AlarmTracker(d)
                else:
                    t.update(d)
                trackers[d.id] = t
            st.trackers = trackers
            self._fetch(ctx, st, device, snapshot.keys - old_keys)
        st.checked = time.monotonic()
        for tracker in st.trackers.values():
            if not tracker.fetched:  # the alarm the device already has (ThingsBoard's initCurrentAlarm)
                active = ctx.services.need("alarms").repo.active_for(device_id, tracker.definition.alarm_type)
                if active is not None:
                    tracker.current = ar.CurrentAlarm(active.id, active.severity, dict(active.details))
                tracker.fetched = True
        return st

    def _fetch(self, ctx: Any, st: DeviceState, device: Any, keys: frozenset[ar.ConditionKey]) -> None:
        """Latest values of ``keys``: time series from the store, attributes of every scope
        (server over shared over client, as ThingsBoard), the device's fields."""
        series = [k.key for k in keys if k.type == "TIME_SERIES"]
        attrs = [k.key for k in keys if k.type == "ATTRIBUTE"]
        snap = st.snapshot
        if series:
            latest = ctx.services.need("store").latest(st.device_id, series)
            for key, (ts, vtype, value) in latest.items():
                snap.put(ar.ConditionKey("TIME_SERIES", key), (vtype, value), ts)
        if attrs:
            registry = ctx.services.need("registry")
            for scope in ("CLIENT_SCOPE", "SHARED_SCOPE", "SERVER_SCOPE"):
                for a in registry.get_attributes(st.device_id, scope, attrs):
                    snap.put(ar.ConditionKey("ATTRIBUTE", a["key"]), ar.plain_value(a["value"]), a["lastUpdateTs"])
        fields = {"name": device.name, "type": device.type, "createdTime": device.created_time, "label": device.label}
        for k in keys:
            if k.type == "ENTITY_FIELD" and fields.get(k.key) is not None:
                snap.put(k, ar.plain_value(fields[k.key]), device.created_time)

    def _outer(self, ctx: Any, st: DeviceState) -> ar.Outer:
        """The customer's and the tenant's server attributes (dynamic thresholds)."""
        registry = ctx.services.need("registry")

        def outer(source: str, key: str) -> ar.Value | None:
            owner = st.customer_id if source == "CURRENT_CUSTOMER" else ctx.tenant_id
            if not owner:
                return None
            got = registry.get_attributes(owner, "SERVER_SCOPE", [key])
            return ar.plain_value(got[0]["value"]) if got else None

        return outer

    def _persist(self, ctx: Any, st: DeviceState) -> None:
        states = ctx.services.node_states
        if self.persist_alarm_rules_state and states is not None:
            states.save(ctx.node_id, "DEVICE", st.device_id, st.to_json())

    def _forget(self, ctx: Any, device_id: str, *, deleted: bool) -> None:
        self._devices.pop(device_id, None)
        states = ctx.services.node_states
        if deleted and states is not None:
            states.delete(ctx.node_id, device_id)


def _alarm_id(data: Any) -> str | None:
    if not isinstance(data, dict):
        return None
    aid = data.get("id")
    if isinstance(aid, dict):
        aid = aid.get("id")
    return aid if isinstance(aid, str) else None


def _device_ref(device_id: str) -> Any:
    from ..message import EntityRef

    return EntityRef("DEVICE", device_id)
