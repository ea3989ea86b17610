"""Alarms as a service: ThingsBoard's operations (save, ack, clear, delete, queries) with its
authorisation, the anomaly listener, live change notifications (:attr:`AlarmService.changed`)
and the storm warning.

Authorisation lives here rather than in the handlers so that pages and the REST API enforce
the same rule: a tenant administrator acts on the tenant's alarms, a customer user only on the
alarms of devices currently assigned to its customer.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import param

from ..anomaly.scoring import effective_thresholds
from ..clock import now_ms
from ..entities import NotFound, PermissionDenied
from ..errors import InvalidInput
from ..events import Signal
from . import lifecycle
from .model import SEVERITIES, Alarm, higher
from .query import AlarmQuery
from .repository import AlarmRepository

if TYPE_CHECKING:
    from ..anomaly.service import AnomalyChanges, AnomalyModel, AnomalyService
    from ..entities import EntityRegistry, User

log = logging.getLogger("tbpanel.alarms")

DENIED = "You don't have permission to perform this operation!"


class AlarmService(param.Parameterized):
    """Everything tbpanel does with alarms."""

    storm_limit = param.Integer(
        default=20, bounds=(1, None), doc="A run raising more alarms than this is flagged as an alarm storm."
    )
    last_storm = param.Dict(
        default=None, allow_None=True, doc="The latest storm warning: modelId, modelName, source, raised, limit, at."
    )

    def __init__(
        self, repo: AlarmRepository, registry: EntityRegistry, anomaly: AnomalyService | None = None, **params: Any
    ) -> None:
        super().__init__(**params)
        self.repo = repo
        self.registry = registry
        self.anomaly = anomaly
        #: ``fn(kind, alarm)`` with kind ``"UPDATED"`` or ``"DELETED"``, once per changed alarm,
        #: only after the change committed (from the committing thread; a listener's error is
        #: logged and the others still hear).
        self.changed: Signal[[str, Alarm]] = Signal("alarms.changed")
        #: ``fn(action, alarm, user)`` after a user's change committed: ``"ALARM"`` (saved:
        #: created or updated), ``"ACK"``, ``"CLEAR"`` — what enters the tenant's rule chain
        #: as ThingsBoard's ALARM / ALARM_ACK / ALARM_CLEAR (tbpanel/rules/ingress.py)
        self.actions: Signal[[str, Alarm, User]] = Signal("alarms.actions")
        if anomaly is not None:
            anomaly.changed.connect(self.on_anomaly_changes)

    # -- the anomaly-driven lifecycle ----------------------------------------------------------
    def on_anomaly_changes(self, db: sqlite3.Connection, model: AnomalyModel, changes: AnomalyChanges) -> None:
        """AnomalyService listener: runs inside the anomaly transaction (see :mod:`.lifecycle`)."""
        thresholds: dict[str, float] = {}
        if changes.create_alarms or changes.extended:
            trained = self.anomaly.trained(model.id) if self.anomaly is not None else None
            # an unbuilt model has no build defaults: the config's values (100 where unset)
            thresholds = (
                trained.thresholds(model.config) if trained is not None else effective_thresholds({}, model.config)
            )
        devices = {a["item"] for a in (*changes.created, *changes.extended)}
        info: dict[str, tuple[str, str | None]] = {}
        for did in devices:
            try:
                d = self.registry.get_device(did)
                info[did] = (d.name or "", d.customer_id)
            except Exception:  # a device deleted since: the alarm still names its id
                info[did] = ("", None)
        out = lifecycle.apply(self.repo, db, model, changes, thresholds, info)
        if out.raised > self.storm_limit:
            self.last_storm = {
                "modelId": model.id,
                "modelName": model.config.name,
                "source": changes.source,
                "raised": out.raised,
                "limit": self.storm_limit,
                "at": now_ms(),
                "tenantId": model.tenant_id,
            }
            note = (
                f"ALARM STORM: this {changes.source.lower()} raised {out.raised} alarms "
                f"(more than {self.storm_limit}); check the model's thresholds"
            )
            changes.notes.append(note)
            log.warning("model %r: %s", model.config.name, note)
        events = [("UPDATED", a) for a in out.changed] + [("DELETED", a) for a in out.deleted]
        if events:
            self.repo.db.after_commit(lambda: self._publish(events))

    # -- ThingsBoard operations ----------------------------------------------------------------
    def get(self, user: User, alarm_id: str) -> Alarm:
        """The alarm if ``user`` may see it; NotFound / PermissionDenied otherwise."""
        alarm = self.repo.get(alarm_id)
        if alarm is None:
            raise NotFound(f"Alarm with id [{alarm_id}] is not found")
        self._check(user, alarm)
        return alarm

    def save(self, user: User, data: dict[str, Any]) -> Alarm:
        """``POST /api/alarm``: update by id, else update the active alarm of the same
        originator and type, else create."""
        originator = data["originator_id"]
        device = self.registry.check_device(user, originator)
        events: list[tuple[str, Alarm]] = []
        with self.repo.transaction() as db:
            alarm = None
            if data.get("id"):
                alarm = self.repo.get(data["id"], db)
                if alarm is None:
                    raise NotFound(f"Alarm with id [{data['id']}] is not found")
                self._check(user, alarm)
                if alarm.originator_id != device.id or alarm.type != data["type"]:
                    raise InvalidInput("an alarm's originator and type cannot be changed")
            else:
                alarm = self.repo.active_for(device.id, data["type"], db)
            t = now_ms()
            if alarm is None:
                alarm = Alarm(
                    id="",
                    created_time=t,
                    tenant_id=device.tenant_id,
                    customer_id=device.customer_id,
                    type=data["type"],
                    originator_id=device.id,
                    originator_name=device.name,
                    severity=data["severity"],
                    start_ts=data.get("start_ts") or t,
                    end_ts=data.get("end_ts") or data.get("start_ts") or t,
                    details=data.get("details") or {},
                    propagate=bool(data.get("propagate")),
                )
                if data.get("acknowledged"):
                    alarm.acknowledged, alarm.ack_ts = True, t
                if data.get("cleared"):
                    alarm.cleared, alarm.clear_ts = True, t
                self.repo.insert(db, alarm)
            else:
                alarm.severity = data["severity"]
                alarm.end_ts = data.get("end_ts") or t
                if data.get("details") is not None:
                    alarm.details = data["details"]
                if "propagate" in data:
                    alarm.propagate = bool(data["propagate"])
                if data.get("acknowledged") and not alarm.acknowledged:
                    alarm.acknowledged, alarm.ack_ts = True, t
                if data.get("cleared") and not alarm.cleared:
                    alarm.cleared, alarm.clear_ts = True, t
                self.repo.save(db, alarm)
            events.append(("UPDATED", alarm))
            self.repo.db.after_commit(lambda: self._publish(events))
            self.repo.db.after_commit(lambda: self.actions.emit("ALARM", alarm, user))
        return alarm

    def ack(self, user: User, alarm_id: str) -> Alarm:
        return self._change(user, alarm_id, "ack")

    def clear(self, user: User, alarm_id: str) -> Alarm:
        return self._change(user, alarm_id, "clear")

    def delete(self, user: User, alarm_id: str) -> None:
        with self.repo.transaction() as db:
            alarm = self.repo.get(alarm_id, db)
            if alarm is None:
                raise NotFound(f"Alarm with id [{alarm_id}] is not found")
            self._check(user, alarm)
            self.repo.delete(db, alarm.id)
            self.repo.db.after_commit(lambda: self._publish([("DELETED", alarm)]))

    def query(self, user: User, q: AlarmQuery) -> tuple[list[Alarm], int]:
        """A page of what ``user`` may see; ``q.originators`` narrows, never widens."""
        if q.tenant_id != user.tenant_id:
            raise PermissionDenied(DENIED)
        allowed = self.visible_devices(user)
        if allowed is not None:
            q.originators = [d for d in (q.originators if q.originators is not None else allowed) if d in allowed]
        return self.repo.query(q)

    def highest_severity(
        self, user: User, device_id: str, search_status: str = "ANY", statuses: list[str] | None = None
    ) -> str | None:
        device = self.registry.check_device(user, device_id)
        return self.repo.highest_severity(device.tenant_id, device.id, search_status, statuses)

    def types(self, user: User) -> list[str]:
        """``GET /api/alarm/types``: a customer user learns only its own devices' alarm types."""
        return self.repo.types(user.tenant_id, self.visible_devices(user))

    def visible_devices(self, user: User) -> set[str] | None:
        """Device ids a customer user may see (None: a tenant administrator sees all)."""
        if user.authority == "TENANT_ADMIN":
            return None
        if not user.customer_id:
            return set()
        devices = self.registry.all_devices(user.tenant_id, customer_id=user.customer_id)
        return {d.id for d in devices}

    def may_see(self, user: User, alarm: Alarm) -> bool:
        try:
            self._check(user, alarm)
            return True
        except (NotFound, PermissionDenied):
            return False

    # -- helpers -------------------------------------------------------------------------------
    def _change(self, user: User, alarm_id: str, what: str) -> Alarm:
        with self.repo.transaction() as db:
            alarm = self.repo.get(alarm_id, db)
            if alarm is None:
                raise NotFound(f"Alarm with id [{alarm_id}] is not found")
            self._check(user, alarm)
            t = now_ms()
            action = None
            if what == "ack" and not alarm.acknowledged:
                alarm.acknowledged, alarm.ack_ts, action = True, t, "ACK"
            elif what == "clear" and not alarm.cleared:
                alarm.cleared, alarm.clear_ts, action = True, t, "CLEAR"
            self.repo.save(db, alarm)
            self.repo.db.after_commit(lambda: self._publish([("UPDATED", alarm)]))
            if action is not None:
                self.repo.db.after_commit(lambda: self.actions.emit(action, alarm, user))
        return alarm

    def _check(self, user: User, alarm: Alarm) -> None:
        if alarm.tenant_id != user.tenant_id:
            raise PermissionDenied(DENIED)
        if user.authority != "TENANT_ADMIN":
            allowed = self.visible_devices(user)
            if allowed is not None and alarm.originator_id not in allowed:
                raise PermissionDenied(DENIED)

    def _publish(self, events: list[tuple[str, Alarm]]) -> None:
        for kind, alarm in events:
            self.changed.emit(kind, alarm)


def parse_severity(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in SEVERITIES:
        raise InvalidInput(f"severity must be one of {', '.join(SEVERITIES)}, got {value!r}")
    return value.upper()


__all__ = ["AlarmService", "AlarmQuery", "Alarm", "parse_severity", "higher"]
