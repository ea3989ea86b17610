"""Alarms from anomalies: the rules of reference/anomaly-detection.md, "Alarms from anomalies".

:func:`apply` runs as a listener of :attr:`~tbpanel.anomaly.service.AnomalyService.changed`, inside
the transaction that changes the anomalies, and writes only through that transaction's connection:
an anomaly change and the alarm transition it causes commit (or roll back) together.

Order matters: deletions first (a reprocess that re-detects an anomaly must clear the old
alarm before the new anomaly asks whether an alarm of its type is active), then endings,
then growth, then new anomalies in data-time order.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..anomaly.scoring import severity_for
from ..clock import now_ms
from .model import Alarm, higher
from .repository import AlarmRepository

if TYPE_CHECKING:
    from ..anomaly.service import AnomalyChanges, AnomalyModel


@dataclass
class Outcome:
    """What one anomaly transaction did to alarms (for live pushes and the storm warning)."""

    changed: list[Alarm] = field(default_factory=list)
    deleted: list[Alarm] = field(default_factory=list)
    raised: int = 0
    suppressed: list[str] = field(default_factory=list)  # anomaly ids


def _details(model: AnomalyModel, anomaly: dict[str, Any]) -> dict[str, Any]:
    return {
        "modelId": model.id,
        "modelName": model.config.name,
        "anomalyId": anomaly["id"],
        "score": round(float(anomaly["score"]), 4),
        "scoreIndex": round(float(anomaly["score_index"]), 4),
        "startTs": int(anomaly["start_ts"]),
        "endTs": int(anomaly["end_ts"]),
    }


def apply(
    repo: AlarmRepository,
    db: sqlite3.Connection,
    model: AnomalyModel,
    changes: AnomalyChanges,
    thresholds: dict[str, float],
    device_info: dict[str, tuple[str, str | None]],
) -> Outcome:
    """Apply ``changes`` (an AnomalyChanges) to the alarms of ``model``.

    ``thresholds``: enabled tiers ``{"warning": 100.0, …}``; ``device_info``: device id →
    (name, customer id) for alarms it may create.
    """
    out = Outcome()
    linked = repo.for_anomalies([a["id"] for a in (*changes.deleted, *changes.ended, *changes.extended)], db)
    t = now_ms()

    # 1. anomaly deleted (reprocess, rebuild, model deletion): clear or delete, by the model's setting
    for a in changes.deleted:
        alarm = linked.get(a["id"])
        if alarm is None:
            continue
        if model.config.alarm_on_delete == "delete":
            repo.delete(db, alarm.id)
            out.deleted.append(alarm)
            continue
        alarm.details = {**alarm.details, "anomalyDeleted": True, "deletedBy": changes.source}
        if not alarm.cleared:
            alarm.cleared, alarm.clear_ts = True, t
        out.changed.append(repo.save(db, alarm))

    # 2. anomaly ended: cleared at the data time its end was detected
    for a in changes.ended:
        alarm = linked.get(a["id"])
        if alarm is None:
            continue
        alarm.details = _details(model, a)
        alarm.end_ts = int(a["end_ts"])
        if not alarm.cleared:
            alarm.cleared, alarm.clear_ts = True, int(a["end_ts"])
        out.changed.append(repo.save(db, alarm))

    # 3. anomaly grew: severity raised, never lowered; an anomaly that had no alarm because it
    #    was below every threshold may now reach one
    candidates = list(changes.created)
    for a in changes.extended:
        alarm = linked.get(a["id"])
        if alarm is None:
            if a["active"] and not a.get("suppressed"):
                candidates.append(a)
            continue
        alarm.details = _details(model, a)
        alarm.end_ts = int(a["end_ts"])
        if not alarm.cleared:
            alarm.severity = higher(alarm.severity, _severity(a, thresholds)) or alarm.severity
        out.changed.append(repo.save(db, alarm))

    # 4. new alarms, only when the run's toggle is on; at most one active per (device, type)
    if not changes.create_alarms or not thresholds:
        return out
    for a in sorted(candidates, key=lambda x: (x["start_ts"], x["item"])):
        severity = _severity(a, thresholds)
        if severity is None:
            continue
        blocking = repo.active_for(a["item"], model.config.alarm_type, db)
        if blocking is not None and (a["active"] or a["end_ts"] > blocking.start_ts):
            db.execute("UPDATE anomalies SET suppressed=1 WHERE id=?", (a["id"],))
            out.suppressed.append(a["id"])
            continue
        name, customer = device_info.get(a["item"], ("", None))
        alarm = Alarm(
            id="",
            created_time=t,
            tenant_id=model.tenant_id,
            customer_id=customer,
            type=model.config.alarm_type,
            originator_id=a["item"],
            originator_name=name,
            severity=severity,
            start_ts=int(a["start_ts"]),
            end_ts=int(a["end_ts"]),
            details=_details(model, a),
            anomaly_id=a["id"],
            model_id=model.id,
        )
        if not a["active"]:  # an anomaly that is already over (reprocess of history)
            alarm.cleared, alarm.clear_ts = True, int(a["end_ts"])
        out.changed.append(repo.insert(db, alarm))
        out.raised += 1
    return out


def _severity(anomaly: dict[str, Any], thresholds: dict[str, float]) -> str | None:
    sev = severity_for(float(anomaly["score"]), thresholds)
    return sev.upper() if sev else None
