"""Drives anomaly transactions by hand through the anomaly service's listener path, and the
alarm invariants every alarm test checks."""

from __future__ import annotations

from tbpanel.anomaly.config import ModelConfig
from tbpanel.anomaly.service import AnomalyChanges
from tbpanel.platform import Platform

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_767_225_600_000
THRESHOLDS = dict(warning_threshold=100.0, minor_threshold=150.0, major_threshold=200.0, critical_threshold=300.0)


class Harness:
    """Drives anomaly transactions by hand through AnomalyService's listener path."""

    def __init__(self, platform: Platform, tenant_id: str):
        self.p = platform
        self.tenant_id = tenant_id
        self.repo = platform.anomaly.repo

    def model(self, **cfg):
        return self.p.anomaly.create_model(self.tenant_id, ModelConfig(name="m", **{**THRESHOLDS, **cfg}))

    def run(self, model, source="REFRESH", create_alarms=True, new=(), grow=(), end=(), delete=()):
        """new: anomaly rows to insert; grow/end: (anomaly, {changes}); delete: anomalies."""
        model = self.p.anomaly.get_model(model.id)
        ch = AnomalyChanges(source, create_alarms=create_alarms)
        with self.repo.transaction() as db:
            ch.deleted = list(delete)
            self.repo.delete_anomalies(db, [a["id"] for a in delete])
            for a, fields in grow:
                self.repo.update_anomaly(db, a["id"], **fields)
                ch.extended.append({**a, **fields})
            for a, fields in end:
                fields = {**fields, "active": False}
                self.repo.update_anomaly(db, a["id"], **fields)
                ch.ended.append({**a, **fields})
            for row in new:
                ch.created.append(self.repo.insert_anomaly(db, row))
            self.p.anomaly.changed.emit(db, model, ch)
        return ch

    def anomaly(self, model, item, start, score, end=None, active=True) -> dict:
        return {
            "model_id": model.id,
            "item": item,
            "start_ts": start,
            "end_ts": end or start + HOUR,
            "score": float(score),
            "score_index": float(score) / 100,
            "cluster": 0,
            "detected_at": (end or start + HOUR),
            "active": active,
            "n_segments": 1,
            "details": {},
            "created_ms": 0,
            "updated_ms": 0,
        }

    def alarms(self):
        return self.p.alarms.repo.all()

    def stored(self, model):
        return {a["id"]: a for a in self.repo.anomalies(model.id)}


def check_invariants(h: Harness) -> None:
    alarms = h.alarms()
    active = [(a.originator_id, a.type) for a in alarms if not a.cleared]
    assert len(active) == len(set(active)), "two active alarms for one (device, type)"
    anomalies = {}
    for m in h.p.anomaly.list_models():
        anomalies.update(h.stored(m))
    linked = [a.anomaly_id for a in alarms if a.anomaly_id]
    assert len(linked) == len(set(linked)), "one anomaly, one alarm"
    for a in alarms:
        if a.anomaly_id is None:
            continue
        if a.anomaly_id not in anomalies:
            assert a.cleared and a.details.get("anomalyDeleted"), f"orphan alarm {a}"
            continue
        an = anomalies[a.anomaly_id]
        assert not an["suppressed"]
        if not an["active"]:
            assert a.cleared, "an ended anomaly's alarm is cleared"
    for an in anomalies.values():
        if an["suppressed"]:
            assert an["id"] not in linked
