"""What a build, refresh or reprocess task does to a model's anomalies.

:class:`ModelRuns` holds only what that work touches: the telemetry store (the input, and the
saved scores), the registry (which devices), the repository (the anomaly transaction) and the
``changed`` signal, emitted inside that transaction so the alarm lifecycle commits or rolls back
with it. :class:`~.service.AnomalyService` submits these methods as task work and hands them the
model (and its trained artifact) read when the task starts, so a task runs on the settings of
that moment.

Rules (reference/anomaly-detection.md):
- build: collect → fit → score the training range → replace every anomaly of the model; the
  commit also switches refresh off. A failed or cancelled build changes nothing but status.
- refresh: scores ``[min(last end − one segment, start of the oldest active anomaly), now)``;
  creates new anomalies, extends active ones, closes the ones that ended.
- reprocess: the model's anomalies of ``items`` starting in ``[start, end)`` are replaced by
  freshly computed ones; saved score telemetry in the range is overwritten, never deleted.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..clock import now_ms
from ..events import Signal
from ..jobs import FINAL, Cancelled, Task, TaskContext, TaskRunner
from .changes import AnomalyChanges
from .config import ModelConfig
from .engine import Cancelled as EngineCancelled
from .engine import TrainedModel, assemble, fit, refit
from .model import CANCELLED, FAILED, IN_PROGRESS, QUEUED, READY, AnomalyModel
from .repository import AnomalyRepository
from .saved_scores import records_as_rows, save_scores
from .scoring import AnomalyRecord, ScoredSegments
from .segments import ItemData

if TYPE_CHECKING:
    from ..entities import EntityRegistry
    from ..store import TelemetryStore

log = logging.getLogger("tbpanel.anomaly")

#: Which devices: an explicit list, ``"trained"`` (the model's), ``"all"``/None/``[]`` (the profile's).
Items = Iterable[str] | str | None


class ModelRuns:
    """The work of the ``BUILD``, ``REFRESH`` and ``REPROCESS`` tasks (see the module's rules)."""

    def __init__(
        self,
        store: TelemetryStore,
        registry: EntityRegistry,
        repo: AnomalyRepository,
        changed: Signal[[sqlite3.Connection, AnomalyModel, AnomalyChanges]],
    ) -> None:
        self.store = store
        self.registry = registry
        self.repo = repo
        self.changed = changed

    def build(self, ctx: TaskContext, model: AnomalyModel) -> dict[str, Any]:
        model_id, cfg = model.id, model.config
        self.repo.update_model(model_id, status=IN_PROGRESS, message="building")
        items = devices(self.registry, model, cfg.items or None)
        if not items:
            raise ValueError(f"no devices of type {cfg.device_type!r} to train on")
        ctx.log(f"collecting {len(cfg.fields) or 'all'} field(s) of {len(items)} device(s)")
        data = load(self.store, cfg, items, cfg.train_start, cfg.train_end)
        if not data:
            raise ValueError("the training range holds no numeric data for these devices and fields")
        ctx.progress(0.1, "collected")
        trained = fit(cfg, data, progress=_scaled(ctx, 0.1, 0.7), cancel=ctx.cancelled)
        ctx.log(f"fitted: {len(trained.cluster_sizes)} clusters, segment {trained.segment_ms / 3.6e6:g} h")
        lo = (
            cfg.train_start
            if cfg.train_start is not None
            else min(int(ts[0]) for d in data.values() for ts, _ in d.values())
        )
        hi = (
            cfg.train_end
            if cfg.train_end is not None
            else max(int(ts[-1]) for d in data.values() for ts, _ in d.values()) + 1
        )
        segs = trained.score(data, lo, hi, progress=_scaled(ctx, 0.7, 0.9), cancel=ctx.cancelled)
        records = assemble(segs, cfg)
        ctx.check()
        with self.repo.transaction() as db:
            changes = AnomalyChanges("BUILD", deleted=self.repo.anomalies(model_id, db=db))
            self.repo.delete_anomalies(db, [a["id"] for a in changes.deleted])
            for rec in records:
                changes.created.append(self.repo.insert_anomaly(db, anomaly_row(model_id, rec)))
            refresh = model.refresh.to_dict() | {"enabled": False}
            self.repo.update_model(
                model_id,
                db,
                trained=trained.to_dict(),
                status=READY,
                message="ready",
                built_ms=now_ms(),
                refresh=refresh,
                last_refresh_end_ms=hi,
                last_refresh_run_ms=None,
                refits=0,
            )
            self.changed.emit(db, model, changes)
        ctx.log(f"{len(records)} anomalies in the training range; {len(changes.deleted)} earlier ones removed")
        return {
            "segments": int(len(segs)),
            "anomalies": len(records),
            "deleted": len(changes.deleted),
            "clusters": int(len(trained.cluster_sizes)),
            "items": len(data),
        }

    def build_finished(self, model_id: str, task: Task) -> None:
        """A failed or cancelled build leaves its status and message on the model (if it still exists)."""
        if task.status in (FAILED, CANCELLED) and self.repo.get_model(model_id):
            self.repo.update_model(model_id, status=task.status, message=task.message)

    def refresh(self, ctx: TaskContext, model: AnomalyModel, trained: TrainedModel, until: int) -> dict[str, Any]:
        model_id, cfg = model.id, model.config
        seg = trained.segment_ms
        last_end = model.last_refresh_end_ms if model.last_refresh_end_ms is not None else until - seg
        active = self.repo.anomalies(model_id, active=True)
        start = min([last_end - seg] + [a["start_ts"] for a in active])
        items = devices(self.registry, model, model.refresh.items or None)
        data = load(self.store, cfg, items, start - trained.context_ms, until)  # + earlier cycles
        refits = model.refits
        ctx.progress(0.3, "scoring")
        segs = trained.score(data, start, until, cancel=ctx.cancelled)
        records = assemble(segs, cfg)
        ctx.check()
        if cfg.adaptive and cfg.refit_every_segments:
            # adaptive mode: after scoring with the model known at the run's start, re-fit on
            # everything seen so far when a re-fit period ended; the next run uses it (causal)
            period = trained.step * cfg.refit_every_segments
            if until // period > last_end // period:
                lo = cfg.train_start if cfg.train_start is not None else 0
                trained = refit(trained, load(self.store, cfg, items, lo, until), until_ms=until)
                refits += 1
                ctx.log(f"adaptive re-fit #{refits} on everything up to {until}")
        changes = AnomalyChanges("REFRESH", create_alarms=model.refresh.create_alarms)
        with self.repo.transaction() as db:
            # every active anomaly starts at or after ``start``, so this transaction's read has them
            existing = {
                (a["item"], a["start_ts"]): a
                for a in self.repo.anomalies(
                    model_id, items=list({r.item for r in records} | {a["item"] for a in active}), start=start, db=db
                )
            }
            seen = set()
            for rec in records:
                key = (rec.item, rec.start_ts)
                old = existing.get(key)
                if old is None:
                    if rec.detected_at <= last_end:
                        continue  # a truncated view of an anomaly that was already handled
                    changes.created.append(self.repo.insert_anomaly(db, anomaly_row(model_id, rec)))
                    continue
                seen.add(key)
                row = anomaly_row(model_id, rec)
                fields_ = {k: row[k] for k in _UPDATED_ON_REFRESH}
                if any(old[k] != fields_[k] for k in ("end_ts", "score", "score_index", "active")):
                    self.repo.update_anomaly(db, old["id"], **fields_)
                    new = {**old, **fields_}
                    (changes.ended if old["active"] and not rec.active else changes.extended).append(new)
            for key, old in existing.items():
                if old["active"] and key not in seen:  # no longer anomalous after a re-fit: close it
                    self.repo.update_anomaly(db, old["id"], active=False, updated_ms=now_ms())
                    changes.ended.append({**old, "active": False})
            self.repo.update_model(
                model_id,
                db,
                last_refresh_end_ms=until,
                last_refresh_run_ms=now_ms(),
                refits=refits,
                **({"trained": trained.to_dict()} if refits != model.refits else {}),
            )
            self.changed.emit(db, model, changes)
        if model.refresh.save_telemetry:
            save_scores(self.store, cfg, segs, self.repo.anomalies(model_id, start=start - 30 * 86_400_000))
        counts = changes.counts()
        for note in changes.notes:
            ctx.log(note)
        ctx.log(f"scored {len(segs)} segments of {len(items)} devices from {start} to {until}: {counts}")
        return {"segments": int(len(segs)), **counts, "from": start, "to": until}

    def reprocess(
        self,
        ctx: TaskContext,
        model: AnomalyModel,
        trained: TrainedModel,
        start: int,
        end: int,
        items: Items,
        create_alarms: bool,
        save_telemetry: bool,
    ) -> dict[str, Any]:
        model_id, cfg = model.id, model.config
        chosen = devices(self.registry, model, items)
        data = load(self.store, cfg, chosen, start - trained.segment_ms - trained.context_ms, end)
        total = max(len(chosen), 1)
        parts = []
        for i, item in enumerate(chosen):
            ctx.progress(0.8 * i / total, f"scoring {i + 1}/{total}")
            if item in data:
                parts.append(trained.score({item: data[item]}, start, end, cancel=ctx.cancelled))
        segs = ScoredSegments.concat(parts)
        records = [r for r in assemble(segs, cfg) if start <= r.start_ts < end]
        ctx.check()
        changes = AnomalyChanges("REPROCESS", create_alarms=create_alarms)
        with self.repo.transaction() as db:
            changes.deleted = self.repo.anomalies(model_id, items=chosen, start=start, end=end, db=db)
            self.repo.delete_anomalies(db, [a["id"] for a in changes.deleted])
            for rec in records:
                changes.created.append(self.repo.insert_anomaly(db, anomaly_row(model_id, rec)))
            self.changed.emit(db, model, changes)
        if save_telemetry:
            save_scores(self.store, cfg, segs, records_as_rows(records))
        for note in changes.notes:
            ctx.log(note)
        ctx.log(f"replaced {len(changes.deleted)} anomalies with {len(records)} over {len(chosen)} devices")
        return {
            "segments": int(len(segs)),
            "deleted": len(changes.deleted),
            "created": len(records),
            "items": len(chosen),
        }


def fail_interrupted_builds(repo: AnomalyRepository, runner: TaskRunner) -> None:
    """A model whose build task died with the process (the runner has marked the task
    FAILED) must not say "building" forever: it fails like any build (its previous
    trained artifact, if any, is untouched because a build commits only at its end)."""
    for row in repo.list_models():
        if row["status"] not in (QUEUED, IN_PROGRESS):
            continue
        builds = [t for t in runner.list(model_id=row["id"], limit=50) if t.kind == "BUILD"]
        if not builds or builds[0].status in FINAL:
            log.warning("model %s: its build was interrupted by the last shutdown", row["id"])
            repo.update_model(
                row["id"], status=FAILED, message="interrupted: the server stopped while this model was building"
            )


def devices(registry: EntityRegistry, model: AnomalyModel, items: Items) -> list[str]:
    """Devices: an explicit list, "trained" (the model's), or all of the profile."""
    if items is None or items == "all" or items == []:
        found = registry.all_devices(
            model.tenant_id, type=model.config.device_type or None, sort_property="createdTime", sort_order="DESC"
        )
        return [d.id for d in found]
    if items == "trained":
        return list(model.config.items) or devices(registry, model, None)
    return list(items)


def load(
    store: TelemetryStore, cfg: ModelConfig, items: Iterable[str], start: int | None, end: int | None
) -> dict[str, ItemData]:
    """The numeric arrays of ``cfg``'s fields (all when none) of each device in ``[start, end)``;
    devices without any are left out."""
    lo = 0 if start is None else int(start)
    hi = 253_402_300_800_000 if end is None else int(end)
    out = {}
    for item in items:
        arrays = store.numeric_arrays(item, list(cfg.fields) or None, lo, hi)
        if arrays:
            out[item] = arrays
    return out


#: the columns a refresh rewrites on an anomaly it found again
_UPDATED_ON_REFRESH = ("end_ts", "score", "score_index", "active", "n_segments", "details", "updated_ms", "cluster")


def anomaly_row(model_id: str, rec: AnomalyRecord) -> dict[str, Any]:
    """The repository row of an assembled anomaly (created and updated now)."""
    t = now_ms()
    return {
        "model_id": model_id,
        "item": rec.item,
        "start_ts": int(rec.start_ts),
        "end_ts": int(rec.end_ts),
        "score": float(rec.score),
        "score_index": float(rec.score_index),
        "cluster": int(rec.cluster),
        "detected_at": int(rec.detected_at),
        "active": bool(rec.active),
        "n_segments": int(rec.n_segments),
        "details": rec.segment_scores or {},
        "created_ms": t,
        "updated_ms": t,
    }


def task_work(fn: Callable[[TaskContext], dict[str, Any]]) -> Callable[[TaskContext], dict[str, Any]]:
    """Task work whose engine-level cancellation counts as the task's cancellation."""

    def run(ctx: TaskContext) -> dict[str, Any]:
        try:
            return fn(ctx)
        except EngineCancelled as exc:
            raise Cancelled(str(exc)) from None

    return run


def _scaled(ctx: TaskContext, lo: float, hi: float) -> Callable[[float, str], None]:
    """The task's progress seen by a step that covers ``[lo, hi]`` of it."""

    def progress(frac: float, msg: str = "") -> None:
        ctx.progress(lo + (hi - lo) * frac, msg)

    return progress
