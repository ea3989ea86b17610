"""Anomaly models as a service: create, build, refresh, reprocess, experiments.

The engine (:mod:`.engine`) is pure numpy; this module feeds it from the telemetry store,
keeps its results in :class:`~.repository.AnomalyRepository`, runs long work through the
:class:`~tbpanel.jobs.TaskRunner`, and emits every anomaly change on :attr:`AnomalyService.changed`
*inside* the transaction that makes the change (the alarm service uses that to stay atomic
with the anomalies that cause its alarms). The model record with its notebook methods is
:mod:`.model`, the ``_EAD_``/``_EID_`` telemetry :mod:`.saved_scores`, the refresh schedule
:mod:`.scheduler`.

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
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..clock import now_ms
from ..events import Signal
from ..jobs import FINAL, Cancelled, Task, TaskContext, TaskRunner
from ..store.telemetry import to_ms
from . import scheduler
from .config import ModelConfig
from .engine import Cancelled as EngineCancelled
from .engine import TrainedModel, assemble, fit, refit
from .model import CANCELLED, FAILED, IN_PROGRESS, NEW, QUEUED, READY, AnomalyModel, RefreshSettings, wait_with_progress
from .repository import AnomalyRepository
from .saved_scores import records_as_rows, save_scores
from .scoring import AnomalyRecord, ScoredSegments
from .segments import ItemData

if TYPE_CHECKING:
    from ..entities import EntityRegistry
    from ..store import TelemetryStore

__all__ = [
    "AnomalyService",
    "AnomalyChanges",
    "RebuildRequired",
    "AnomalyModel",
    "RefreshSettings",
    "wait_with_progress",
    "records_as_rows",
    "QUEUED",
    "IN_PROGRESS",
    "READY",
    "FAILED",
    "CANCELLED",
    "NEW",
]

log = logging.getLogger("tbpanel.anomaly")

#: Which devices: an explicit list, ``"trained"`` (the model's), ``"all"``/None/``[]`` (the profile's).
Items = Iterable[str] | str | None


class RebuildRequired(ValueError):
    """Changing these knobs needs a rebuild; say ``rebuild=True`` to do it."""


@dataclass
class AnomalyChanges:
    """What one transaction did to a model's anomalies (given to listeners inside it)."""

    source: str  # BUILD | REFRESH | REPROCESS | DELETE
    create_alarms: bool = False
    created: list[dict[str, Any]] = field(default_factory=list)
    extended: list[dict[str, Any]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    deleted: list[dict[str, Any]] = field(default_factory=list)
    #: what listeners want in the task log (the alarm service's storm warning)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("created", "extended", "ended", "deleted")}


class AnomalyService:
    """Everything tbpanel does with anomaly models, for the API, the pages and notebooks."""

    def __init__(
        self, store: TelemetryStore, registry: EntityRegistry, repo: AnomalyRepository, runner: TaskRunner
    ) -> None:
        self.store = store
        self.registry = registry
        self.repo = repo
        self.runner = runner
        #: ``fn(db, model, changes)`` inside the transaction that changed ``model``'s anomalies,
        #: with its connection ``db``: a listener writes through ``db`` to commit with them, and
        #: its exception rolls the whole change back. To act only once it committed, a listener
        #: schedules that with ``repo.after_commit``.
        self.changed: Signal[[sqlite3.Connection, AnomalyModel, AnomalyChanges]] = Signal(
            "anomaly.changed", propagate=True
        )
        self._running_refresh: dict[str, str] = {}
        self._fail_interrupted_builds()

    def _fail_interrupted_builds(self) -> None:
        """A model whose build task died with the process (the runner has marked the task
        FAILED) must not say "building" forever: it fails like any build (its previous
        trained artifact, if any, is untouched because a build commits only at its end)."""
        for row in self.repo.list_models():
            if row["status"] not in (QUEUED, IN_PROGRESS):
                continue
            builds = [t for t in self.runner.list(model_id=row["id"], limit=50) if t.kind == "BUILD"]
            if not builds or builds[0].status in FINAL:
                log.warning("model %s: its build was interrupted by the last shutdown", row["id"])
                self.repo.update_model(
                    row["id"], status=FAILED, message="interrupted: the server stopped while this model was building"
                )

    # -- models ----------------------------------------------------------------------------------
    def create_model(
        self, tenant_id: str, config: ModelConfig | dict[str, Any], *, refresh: dict[str, Any] | None = None
    ) -> AnomalyModel:
        config = config if isinstance(config, ModelConfig) else ModelConfig(**config)  # type: ignore[no-untyped-call]
        config.check()
        model_id = str(uuid.uuid4())
        settings = RefreshSettings(**(refresh or {}))
        self.repo.insert_model(
            {
                "id": model_id,
                "tenant_id": tenant_id,
                "name": config.name,
                "config": config.to_json(),
                "status": NEW,
                "message": "not built yet",
                "created_ms": now_ms(),
                "refresh": settings.to_dict(),
            }
        )
        return self._require(model_id)

    def get_model(self, model_id: str) -> AnomalyModel | None:
        row = self.repo.get_model(model_id)
        return AnomalyModel.from_row(self, row) if row else None

    def list_models(self, tenant_id: str | None = None) -> list[AnomalyModel]:
        return [AnomalyModel.from_row(self, r) for r in self.repo.list_models(tenant_id)]

    def trained(self, model_id: str) -> TrainedModel | None:
        row = self.repo.get_model(model_id, with_trained=True)
        return TrainedModel.from_dict(row["trained"]) if row and row.get("trained") else None

    def update_model(
        self, model_id: str, changes: dict[str, Any], *, rebuild: bool = False
    ) -> tuple[AnomalyModel, Task | None]:
        """Change settings. Knobs other than name/telemetry key/frequency/alarm settings need
        ``rebuild=True`` (the rebuild then runs as a task); otherwise :class:`RebuildRequired`."""
        model = self._require(model_id)
        merged = model.config.copy(**changes)
        merged.check()
        needs = ModelConfig.needs_rebuild(model.config, merged)
        if needs and not rebuild and model.status != NEW:
            raise RebuildRequired("changing " + ", ".join(needs) + " requires a rebuild (rebuild=true)")
        self.repo.update_model(model_id, config=merged.to_json(), name=merged.name)
        task = self.build(model_id) if needs and rebuild else None
        return self._require(model_id), task

    def set_refresh(self, model_id: str, settings: dict[str, Any]) -> AnomalyModel:
        model = self._require(model_id)
        merged = RefreshSettings(**{**model.refresh.to_dict(), **settings})
        if merged.enabled and not self.repo.has_trained(model_id):
            raise ValueError("build the model before switching refresh on")
        self.repo.update_model(model_id, refresh=merged.to_dict())
        return self._require(model_id)

    def delete_model(self, model_id: str) -> None:
        """Deletes the model and its anomalies (listeners clear/delete their alarms); saved
        score telemetry stays, as the contract says."""
        model = self._require(model_id)
        with self.repo.transaction() as db:
            changes = AnomalyChanges("DELETE", deleted=self.repo.anomalies(model_id, db=db))
            self.changed.emit(db, model, changes)
            self.repo.delete_model(model_id, db)

    # -- tasks -------------------------------------------------------------------------------------
    def build(self, model_id: str) -> Task:
        model = self._require(model_id)
        self.repo.update_model(model_id, status=QUEUED, message="build queued")
        return self.runner.submit(
            "BUILD",
            _work(lambda ctx: self._build(ctx, model_id)),
            model_id=model_id,
            tenant_id=model.tenant_id,
            on_done=lambda t: self._after_build(model_id, t),
        )

    def refresh_now(self, model_id: str, until_ms: int | None = None) -> Task:
        """One refresh run up to ``until_ms`` (default: now)."""
        model = self._require(model_id)
        if not self.repo.has_trained(model_id):
            raise ValueError("the model has not been built yet")
        until = now_ms() if until_ms is None else int(until_ms)

        def finished(task: Task) -> None:
            self._running_refresh.pop(model_id, None)

        task = self.runner.submit(
            "REFRESH",
            _work(lambda ctx: self._refresh(ctx, model_id, until)),
            model_id=model_id,
            tenant_id=model.tenant_id,
            params={"until": until},
            on_done=finished,
        )
        self._running_refresh[model_id] = task.id
        return task

    def is_refreshing(self, model_id: str) -> bool:
        """Whether a refresh run of the model started here has not finished yet."""
        return model_id in self._running_refresh

    def reprocess(
        self,
        model_id: str,
        start: Any,
        end: Any,
        items: Items = None,
        *,
        create_alarms: bool = False,
        save_telemetry: bool = False,
    ) -> Task:
        model = self._require(model_id)
        if not self.repo.has_trained(model_id):
            raise ValueError("the model has not been built yet")
        start, end = _ms(start), _ms(end)
        if start >= end:
            raise ValueError(f"reprocess start ({start}) must be before its end ({end})")
        if save_telemetry and not model.refresh.save_telemetry:
            raise ValueError("saving telemetry during reprocess is only offered when refresh saving is on")
        params = {
            "start": start,
            "end": end,
            "items": items,
            "createAlarms": create_alarms,
            "saveTelemetry": save_telemetry,
        }
        return self.runner.submit(
            "REPROCESS",
            _work(lambda ctx: self._reprocess(ctx, model_id, start, end, items, create_alarms, save_telemetry)),
            model_id=model_id,
            tenant_id=model.tenant_id,
            params=params,
        )

    def run_due(self, now: int | None = None) -> list[Task]:
        """The scheduler's tick: start the refresh run of every model that is due
        (:func:`.scheduler.run_due`)."""
        return scheduler.run_due(self, now)

    # -- reading -----------------------------------------------------------------------------------
    def anomalies(self, model_id: str, **filters: Any) -> list[dict[str, Any]]:
        return self.repo.anomalies(model_id, **filters)

    def anomalies_frame(self, model_id: str, **filters: Any) -> pd.DataFrame:
        rows = self.anomalies(model_id, **filters)
        columns = [
            "id",
            "item",
            "start",
            "end",
            "score",
            "score_index",
            "cluster",
            "detected_at",
            "active",
            "n_segments",
            "suppressed",
        ]
        if not rows:
            return pd.DataFrame(columns=columns)
        df = pd.DataFrame(rows)
        for col, src in (("start", "start_ts"), ("end", "end_ts"), ("detected_at", "detected_at")):
            df[col] = pd.to_datetime(df[src], unit="ms", utc=True)
        return df[columns].sort_values("score_index", ascending=False, ignore_index=True)

    # -- experiments ---------------------------------------------------------------------------------
    def experiment(
        self,
        model_id: str,
        variants: dict[str, dict[str, Any]],
        start: Any,
        end: Any,
        items: Items = None,
        progress: Callable[[float, str], None] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """Score variants of a model over a range without touching its anomalies, alarms or
        telemetry: each variant is the model's config with overrides, fitted on the model's
        training range. Returns ``{variant name: anomalies}`` (``"current"`` is the stored model)."""
        model = self._require(model_id)
        start, end = _ms(start), _ms(end)
        devices = self._items(model, items)
        out: dict[str, list[dict[str, Any]]] = {}
        trained = self.trained(model_id)
        names = (["current"] if trained is not None else []) + list(variants)
        for i, name in enumerate(names):
            if progress:
                progress(i / max(len(names), 1), f"variant {name}")
            if name == "current" and trained is not None:
                cfg, tm = model.config, trained
            else:
                cfg = model.config.copy(**variants[name]).check()
                tm = fit(cfg, self._load(cfg, self._items(model, cfg.items or None), cfg.train_start, cfg.train_end))
            data = self._load(cfg, devices, start - tm.segment_ms, end)
            recs = assemble(tm.score(data, start, end), cfg)
            out[name] = [r.to_dict() for r in recs if start <= r.start_ts < end]
        return out

    def submit_experiment(
        self,
        model_id: str,
        variants: dict[str, dict[str, Any]],
        start: Any,
        end: Any,
        items: Items = None,
        *,
        include_current: bool = True,
        keep: int = 1000,
    ) -> Task:
        """:meth:`experiment` as an ``EXPERIMENT`` task (so it shows, and can be cancelled, among the
        model's tasks); its result is ``{"comparison": rows of compare, "anomalies": {variant: the
        first ``keep`` anomalies}}``. REST and the Experiments tab both start experiments here."""
        model = self._require(model_id)
        start, end = _ms(start), _ms(end)

        def work(ctx: TaskContext) -> dict[str, Any]:
            results = self.experiment(model_id, variants, start, end, items, progress=ctx.progress)
            if not include_current:
                results.pop("current", None)
            return {
                "comparison": self.compare(results).to_dict(orient="records"),
                "anomalies": {k: v[:keep] for k, v in results.items()},
            }

        return self.runner.submit(
            "EXPERIMENT",
            work,
            model_id=model_id,
            tenant_id=model.tenant_id,
            params={"variants": variants, "start": start, "end": end},
        )

    @staticmethod
    def compare(results: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
        """One row per variant: anomalies, affected items, peak score, total score index."""
        rows = []
        for name, recs in results.items():
            rows.append(
                {
                    "variant": name,
                    "anomalies": len(recs),
                    "items": len({r["item"] for r in recs}),
                    "peak_score": max((r["score"] for r in recs), default=0.0),
                    "total_score_index": sum(r["score_index"] for r in recs),
                    "anomaly_hours": sum(r["end_ts"] - r["start_ts"] for r in recs) / 3_600_000,
                }
            )
        return pd.DataFrame(rows)

    # -- the work ------------------------------------------------------------------------------------
    def _build(self, ctx: TaskContext, model_id: str) -> dict[str, Any]:
        model = self._require(model_id)
        cfg = model.config
        self.repo.update_model(model_id, status=IN_PROGRESS, message="building")
        items = self._items(model, cfg.items or None)
        if not items:
            raise ValueError(f"no devices of type {cfg.device_type!r} to train on")
        ctx.log(f"collecting {len(cfg.fields) or 'all'} field(s) of {len(items)} device(s)")
        data = self._load(cfg, items, cfg.train_start, cfg.train_end)
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
                changes.created.append(self.repo.insert_anomaly(db, self._row(model_id, rec)))
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

    def _after_build(self, model_id: str, task: Task) -> None:
        if task.status in (FAILED, CANCELLED) and self.repo.get_model(model_id):
            self.repo.update_model(model_id, status=task.status, message=task.message)

    def _refresh(self, ctx: TaskContext, model_id: str, until: int) -> dict[str, Any]:
        model = self._require(model_id)
        cfg, trained = model.config, self._require_trained(model_id)
        seg = trained.segment_ms
        last_end = model.last_refresh_end_ms if model.last_refresh_end_ms is not None else until - seg
        active = self.repo.anomalies(model_id, active=True)
        start = min([last_end - seg] + [a["start_ts"] for a in active])
        items = self._items(model, model.refresh.items or None)
        data = self._load(cfg, items, start, until)
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
                trained = refit(trained, self._load(cfg, items, lo, until), until_ms=until)
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
                    changes.created.append(self.repo.insert_anomaly(db, self._row(model_id, rec)))
                    continue
                seen.add(key)
                row = self._row(model_id, rec)
                fields_ = {
                    k: row[k]
                    for k in (
                        "end_ts",
                        "score",
                        "score_index",
                        "active",
                        "n_segments",
                        "details",
                        "updated_ms",
                        "cluster",
                    )
                }
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

    def _reprocess(
        self,
        ctx: TaskContext,
        model_id: str,
        start: int,
        end: int,
        items: Items,
        create_alarms: bool,
        save_telemetry: bool,
    ) -> dict[str, Any]:
        model = self._require(model_id)
        cfg, trained = model.config, self._require_trained(model_id)
        devices = self._items(model, items)
        data = self._load(cfg, devices, start - trained.segment_ms, end)
        total = max(len(devices), 1)
        parts = []
        for i, item in enumerate(devices):
            ctx.progress(0.8 * i / total, f"scoring {i + 1}/{total}")
            if item in data:
                parts.append(trained.score({item: data[item]}, start, end, cancel=ctx.cancelled))
        segs = ScoredSegments.concat(parts)
        records = [r for r in assemble(segs, cfg) if start <= r.start_ts < end]
        ctx.check()
        changes = AnomalyChanges("REPROCESS", create_alarms=create_alarms)
        with self.repo.transaction() as db:
            changes.deleted = self.repo.anomalies(model_id, items=devices, start=start, end=end, db=db)
            self.repo.delete_anomalies(db, [a["id"] for a in changes.deleted])
            for rec in records:
                changes.created.append(self.repo.insert_anomaly(db, self._row(model_id, rec)))
            self.changed.emit(db, model, changes)
        if save_telemetry:
            save_scores(self.store, cfg, segs, records_as_rows(records))
        for note in changes.notes:
            ctx.log(note)
        ctx.log(f"replaced {len(changes.deleted)} anomalies with {len(records)} over {len(devices)} devices")
        return {
            "segments": int(len(segs)),
            "deleted": len(changes.deleted),
            "created": len(records),
            "items": len(devices),
        }

    # -- helpers ---------------------------------------------------------------------------------------
    def _require(self, model_id: str) -> AnomalyModel:
        model = self.get_model(model_id)
        if model is None:
            from ..entities import NotFound

            raise NotFound(f"Anomaly model {model_id} is not found")
        return model

    def _require_trained(self, model_id: str) -> TrainedModel:
        trained = self.trained(model_id)
        if trained is None:  # refresh_now and reprocess refuse unbuilt models before submitting
            raise ValueError("the model has not been built yet")
        return trained

    def _items(self, model: AnomalyModel, items: Items) -> list[str]:
        """Devices: an explicit list, "trained" (the model's), or all of the profile."""
        if items is None or items == "all" or items == []:
            devices = self.registry.all_devices(
                model.tenant_id, type=model.config.device_type or None, sort_property="createdTime", sort_order="DESC"
            )
            return [d.id for d in devices]
        if items == "trained":
            return list(model.config.items) or self._items(model, None)
        return list(items)

    def _load(self, cfg: ModelConfig, items: Iterable[str], start: int | None, end: int | None) -> dict[str, ItemData]:
        lo = 0 if start is None else int(start)
        hi = 253_402_300_800_000 if end is None else int(end)
        out = {}
        for item in items:
            arrays = self.store.numeric_arrays(item, list(cfg.fields) or None, lo, hi)
            if arrays:
                out[item] = arrays
        return out

    def _row(self, model_id: str, rec: AnomalyRecord) -> dict[str, Any]:
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


def _work(fn: Callable[[TaskContext], dict[str, Any]]) -> Callable[[TaskContext], dict[str, Any]]:
    """Task work whose engine-level cancellation counts as the task's cancellation."""

    def run(ctx: TaskContext) -> dict[str, Any]:
        try:
            return fn(ctx)
        except EngineCancelled as exc:
            raise Cancelled(str(exc)) from None

    return run


def _scaled(ctx: TaskContext, lo: float, hi: float) -> Callable[[float, str], None]:
    def progress(frac: float, msg: str = "") -> None:
        ctx.progress(lo + (hi - lo) * frac, msg)

    return progress


def _ms(x: Any) -> int:
    """Epoch ms from ms, a datetime or an ISO string (the store's rule, naive = UTC)."""
    return to_ms(x, "time")
