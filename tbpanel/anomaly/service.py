"""Anomaly models as a service: create, build, refresh, reprocess, experiments, saved scores.

The engine (:mod:`.engine`) is pure numpy; this module feeds it from the telemetry store,
keeps its results in :class:`~.repository.AnomalyRepository`, runs long work through the
:class:`~tbpanel.jobs.TaskRunner`, and hands every anomaly change to registered listeners
*inside* the transaction that makes the change (the alarm service uses that to stay atomic
with the anomalies that cause its alarms).

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
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import param

from ..clock import now_ms
from ..events import Signal
from ..jobs import FINAL, Cancelled, Task, TaskContext, TaskRunner, next_run
from ..store.telemetry import to_ms
from ..store.values import ValueType
from .config import ModelConfig
from .engine import TrainedModel, assemble, fit, refit
from .engine import Cancelled as EngineCancelled
from .repository import AnomalyRepository

log = logging.getLogger("tbpanel.anomaly")

QUEUED, IN_PROGRESS, READY, FAILED, CANCELLED, NEW = "QUEUED", "IN_PROGRESS", "READY", "FAILED", "CANCELLED", "NEW"


class RebuildRequired(ValueError):
    """Changing these knobs needs a rebuild; say ``rebuild=True`` to do it."""


class RefreshSettings(param.Parameterized):
    """The periodic refresh job of one model ("Jobs" tab)."""

    enabled = param.Boolean(default=False)
    every = param.Integer(default=1, bounds=(1, None))
    unit = param.Selector(default="HOUR", objects=["HOUR", "DAY", "WEEK", "MONTH"])
    at_unit_start = param.Boolean(default=False)
    tz = param.String(default="UTC")
    items = param.List(default=[], item_type=str, doc="Devices to refresh; empty: every device of the profile.")
    save_telemetry = param.Boolean(default=False, doc="Enable Saving Anomaly Data (_EAD_/_EID_ series).")
    create_alarms = param.Boolean(default=False, doc="Enable Anomaly Alarms Creation.")

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.param if k != "name"}


class AnomalyModel(param.Parameterized):
    """One model as people see it; methods delegate to the service for notebook use."""

    id = param.String()
    tenant_id = param.String()
    config = param.ClassSelector(class_=ModelConfig)
    status = param.String(default=NEW)
    message = param.String(default="")
    created_ms = param.Integer(default=0)
    built_ms = param.Integer(default=None, allow_None=True)
    refresh = param.ClassSelector(class_=RefreshSettings)
    last_refresh_end_ms = param.Integer(default=None, allow_None=True)
    last_refresh_run_ms = param.Integer(default=None, allow_None=True)
    refits = param.Integer(default=0)

    def __init__(self, service: "AnomalyService | None" = None, **params):
        super().__init__(**params)
        self._service = service

    # -- notebook conveniences (blocking, with a progress bar) -----------------------------------
    def build(self, wait: bool = True, progress: bool = True) -> "AnomalyModel":
        task = self._service.build(self.id)
        return self._finish(task, wait, progress)

    def reprocess(self, start, end, items=None, *, create_alarms: bool = False,
                  save_telemetry: bool = False, wait: bool = True, progress: bool = True) -> "AnomalyModel":
        task = self._service.reprocess(self.id, start, end, items, create_alarms=create_alarms,
                                       save_telemetry=save_telemetry)
        return self._finish(task, wait, progress)

    def anomalies(self, **filters) -> pd.DataFrame:
        return self._service.anomalies_frame(self.id, **filters)

    def trained(self) -> TrainedModel | None:
        return self._service.trained(self.id)

    def _finish(self, task: Task, wait: bool, progress: bool) -> "AnomalyModel":
        if wait:
            done = wait_with_progress(self._service.runner, task, show=progress)
            if done.status == "FAILED":
                raise RuntimeError(done.message)
        fresh = self._service.get_model(self.id)
        self.param.update(**{k: getattr(fresh, k) for k in ("status", "message", "built_ms", "config",
                                                            "refresh", "last_refresh_end_ms", "refits")})
        return self

    def to_json(self, counts: dict | None = None) -> dict:
        out = {"id": self.id, "tenantId": self.tenant_id, "name": self.config.name, "status": self.status,
               "message": self.message, "createdTime": self.created_ms, "builtTime": self.built_ms,
               "config": self.config.to_dict(),
               "refresh": self.refresh.to_dict(), "lastRefreshEndTs": self.last_refresh_end_ms,
               "lastRefreshRunTs": self.last_refresh_run_ms, "refits": self.refits}
        if counts is not None:
            out["counts"] = counts
        return out

    def __str__(self) -> str:
        return self.__repr__()

    def __repr__(self) -> str:
        return (f"<AnomalyModel {self.config.name!r} {self.status} type={self.config.device_type!r} "
                f"fields={list(self.config.fields)} id={self.id}>")

    def summary(self) -> dict:
        """Settings that matter, status and an anomaly summary: what a notebook repr shows."""
        c = self.config
        out = {"name": c.name, "status": self.status, "message": self.message, "device_type": c.device_type,
               "fields": list(c.fields), "window": c.window, "segment": f"{c.segment_ms / 60_000:g} min" if c.segment_ms
               else f"{c.segment_points} points", "comparison": c.comparison, "algorithm": c.algorithm,
               "distance": c.distance, "threshold_percent": c.threshold_percent, "adaptive": c.adaptive,
               "refresh": (f"every {self.refresh.every} {self.refresh.unit}" if self.refresh.enabled else "off")}
        if self._service is not None:
            df = self.anomalies()
            out.update(anomalies=len(df), items_affected=int(df["item"].nunique()) if len(df) else 0,
                       peak_score=float(df["score"].max()) if len(df) else 0.0,
                       active=int(df["active"].sum()) if len(df) else 0)
        return out

    def _repr_html_(self) -> str:
        import html

        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
                       f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
                       for k, v in self.summary().items() if v not in ("", None))
        return f"<b>AnomalyModel</b> <code>{html.escape(self.id)}</code><table>{rows}</table>"


def wait_with_progress(runner: TaskRunner, task: Task, show: bool = True) -> Task:
    """Block until the task ends, drawing a progress bar (tqdm's notebook bar in Jupyter)."""
    bar = None
    if show:
        try:
            from tqdm.auto import tqdm
            bar = tqdm(total=100, desc=task.kind.lower(), unit="%")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            bar = None
    last = 0
    while True:
        current = runner.get(task.id)
        pct = int(round((current.progress or 0) * 100))
        if bar is not None and pct > last:
            bar.update(pct - last)
            bar.set_postfix_str(current.message[:40])
            last = pct
        if current.status in ("DONE", "FAILED", "CANCELLED"):
            break
        time.sleep(0.1)
    if bar is not None:
        bar.close()
    return current


@dataclass
class AnomalyChanges:
    """What one transaction did to a model's anomalies (given to listeners inside it)."""

    source: str                                   # BUILD | REFRESH | REPROCESS | DELETE
    create_alarms: bool = False
    created: list[dict] = field(default_factory=list)
    extended: list[dict] = field(default_factory=list)
    ended: list[dict] = field(default_factory=list)
    deleted: list[dict] = field(default_factory=list)
    #: what listeners want in the task log (the alarm service's storm warning)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict:
        return {k: len(getattr(self, k)) for k in ("created", "extended", "ended", "deleted")}


Listener = Callable[[Any, AnomalyModel, AnomalyChanges], None]


class AnomalyService:
    """Everything tbpanel does with anomaly models, for the API, the pages and notebooks."""

    def __init__(self, store, registry, repo: AnomalyRepository, runner: TaskRunner):
        self.store = store
        self.registry = registry
        self.repo = repo
        self.runner = runner
        self.changed = Signal("anomaly changes", propagate=True)
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
                self.repo.update_model(row["id"], status=FAILED,
                                       message="interrupted: the server stopped while this model was building")

    # -- models ----------------------------------------------------------------------------------
    def create_model(self, tenant_id: str, config: ModelConfig | dict, *,
                     refresh: dict | None = None) -> AnomalyModel:
        config = config if isinstance(config, ModelConfig) else ModelConfig(**config)
        config.check()
        model_id = str(uuid.uuid4())
        settings = RefreshSettings(**(refresh or {}))
        self.repo.insert_model({"id": model_id, "tenant_id": tenant_id, "name": config.name,
                                "config": config.to_json(), "status": NEW, "message": "not built yet",
                                "created_ms": now_ms(), "refresh": settings.to_dict()})
        return self.get_model(model_id)

    def get_model(self, model_id: str) -> AnomalyModel | None:
        row = self.repo.get_model(model_id)
        return self._model(row) if row else None

    def list_models(self, tenant_id: str | None = None) -> list[AnomalyModel]:
        return [self._model(r) for r in self.repo.list_models(tenant_id)]

    def trained(self, model_id: str) -> TrainedModel | None:
        row = self.repo.get_model(model_id, with_trained=True)
        return TrainedModel.from_dict(row["trained"]) if row and row.get("trained") else None

    def update_model(self, model_id: str, changes: dict, *, rebuild: bool = False) -> tuple[AnomalyModel, Task | None]:
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
        return self.get_model(model_id), task

    def set_refresh(self, model_id: str, settings: dict) -> AnomalyModel:
        model = self._require(model_id)
        merged = RefreshSettings(**{**model.refresh.to_dict(), **settings})
        if merged.enabled and not self.repo.has_trained(model_id):
            raise ValueError("build the model before switching refresh on")
        self.repo.update_model(model_id, refresh=merged.to_dict())
        return self.get_model(model_id)

    def delete_model(self, model_id: str) -> None:
        """Deletes the model and its anomalies (listeners clear/delete their alarms); saved
        score telemetry stays, as the contract says."""
        model = self._require(model_id)
        with self.repo.transaction() as db:
            changes = AnomalyChanges("DELETE", deleted=self.repo.anomalies(model_id, db=db))
            self._notify(db, model, changes)
            self.repo.delete_model(model_id, db)

    # -- tasks -------------------------------------------------------------------------------------
    def build(self, model_id: str) -> Task:
        model = self._require(model_id)
        self.repo.update_model(model_id, status=QUEUED, message="build queued")
        return self.runner.submit("BUILD", _work(lambda ctx: self._build(ctx, model_id)), model_id=model_id,
                                  tenant_id=model.tenant_id, on_done=lambda t: self._after_build(model_id, t))

    def refresh_now(self, model_id: str, until_ms: int | None = None) -> Task:
        """One refresh run up to ``until_ms`` (default: now)."""
        model = self._require(model_id)
        if not self.repo.has_trained(model_id):
            raise ValueError("the model has not been built yet")
        until = now_ms() if until_ms is None else int(until_ms)
        task = self.runner.submit("REFRESH", _work(lambda ctx: self._refresh(ctx, model_id, until)),
                                  model_id=model_id, tenant_id=model.tenant_id, params={"until": until},
                                  on_done=lambda t: self._running_refresh.pop(model_id, None))
        self._running_refresh[model_id] = task.id
        return task

    def reprocess(self, model_id: str, start, end, items=None, *, create_alarms: bool = False,
                  save_telemetry: bool = False) -> Task:
        model = self._require(model_id)
        if not self.repo.has_trained(model_id):
            raise ValueError("the model has not been built yet")
        start, end = _ms(start), _ms(end)
        if start >= end:
            raise ValueError(f"reprocess start ({start}) must be before its end ({end})")
        if save_telemetry and not model.refresh.save_telemetry:
            raise ValueError("saving telemetry during reprocess is only offered when refresh saving is on")
        params = {"start": start, "end": end, "items": items, "createAlarms": create_alarms,
                  "saveTelemetry": save_telemetry}
        return self.runner.submit(
            "REPROCESS", _work(lambda ctx: self._reprocess(ctx, model_id, start, end, items, create_alarms,
                                                           save_telemetry)),
            model_id=model_id, tenant_id=model.tenant_id, params=params)

    def run_due(self, now: int | None = None) -> list[Task]:
        """The scheduler's tick: start the refresh run of every model that is due."""
        now = now_ms() if now is None else now
        started = []
        for model in self.list_models():
            r = model.refresh
            if not r.enabled or model.id in self._running_refresh:
                continue
            due = next_run(model.last_refresh_run_ms, now, r.every, r.unit, at_unit_start=r.at_unit_start, tz=r.tz)
            if due <= now:
                started.append(self.refresh_now(model.id, now))
        return started

    # -- reading -----------------------------------------------------------------------------------
    def anomalies(self, model_id: str, **filters) -> list[dict]:
        return self.repo.anomalies(model_id, **filters)

    def anomalies_frame(self, model_id: str, **filters) -> pd.DataFrame:
        rows = self.anomalies(model_id, **filters)
        columns = ["id", "item", "start", "end", "score", "score_index", "cluster", "detected_at", "active",
                   "n_segments", "suppressed"]
        if not rows:
            return pd.DataFrame(columns=columns)
        df = pd.DataFrame(rows)
        for col, src in (("start", "start_ts"), ("end", "end_ts"), ("detected_at", "detected_at")):
            df[col] = pd.to_datetime(df[src], unit="ms", utc=True)
        return df[columns].sort_values("score_index", ascending=False, ignore_index=True)

    # -- experiments ---------------------------------------------------------------------------------
    def experiment(self, model_id: str, variants: dict[str, dict], start, end, items=None,
                   progress: Callable[[float, str], None] | None = None) -> dict[str, list[dict]]:
        """Score variants of a model over a range without touching its anomalies, alarms or
        telemetry: each variant is the model's config with overrides, fitted on the model's
        training range. Returns ``{variant name: anomalies}`` (``"current"`` is the stored model)."""
        model = self._require(model_id)
        start, end = _ms(start), _ms(end)
        items = self._items(model, items)
        out: dict[str, list[dict]] = {}
        trained = self.trained(model_id)
        names = (["current"] if trained is not None else []) + list(variants)
        for i, name in enumerate(names):
            if progress:
                progress(i / max(len(names), 1), f"variant {name}")
            if name == "current":
                cfg, tm = model.config, trained
            else:
                cfg = model.config.copy(**variants[name]).check()
                tm = fit(cfg, self._load(cfg, self._items(model, cfg.items or None), cfg.train_start, cfg.train_end))
            data = self._load(cfg, items, start - tm.segment_ms, end)
            recs = assemble(tm.score(data, start, end), cfg)
            out[name] = [r.to_dict() for r in recs if start <= r.start_ts < end]
        return out

    def submit_experiment(self, model_id: str, variants: dict[str, dict], start, end, items=None, *,
                          include_current: bool = True, keep: int = 1000) -> Task:
        """:meth:`experiment` as an ``EXPERIMENT`` task (so it shows, and can be cancelled, among the
        model's tasks); its result is ``{"comparison": rows of compare, "anomalies": {variant: the
        first ``keep`` anomalies}}``. REST and the Experiments tab both start experiments here."""
        model = self._require(model_id)
        start, end = _ms(start), _ms(end)

        def work(ctx: TaskContext) -> dict:
            results = self.experiment(model_id, variants, start, end, items, progress=ctx.progress)
            if not include_current:
                results.pop("current", None)
            return {"comparison": self.compare(results).to_dict(orient="records"),
                    "anomalies": {k: v[:keep] for k, v in results.items()}}

        return self.runner.submit("EXPERIMENT", work, model_id=model_id, tenant_id=model.tenant_id,
                                  params={"variants": variants, "start": start, "end": end})

    @staticmethod
    def compare(results: dict[str, list[dict]]) -> pd.DataFrame:
        """One row per variant: anomalies, affected items, peak score, total score index."""
        rows = []
        for name, recs in results.items():
            rows.append({"variant": name, "anomalies": len(recs), "items": len({r["item"] for r in recs}),
                         "peak_score": max((r["score"] for r in recs), default=0.0),
                         "total_score_index": sum(r["score_index"] for r in recs),
                         "anomaly_hours": sum(r["end_ts"] - r["start_ts"] for r in recs) / 3_600_000})
        return pd.DataFrame(rows)

    # -- the work ------------------------------------------------------------------------------------
    def _build(self, ctx: TaskContext, model_id: str) -> dict:
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
        lo = cfg.train_start if cfg.train_start is not None else min(int(ts[0]) for d in data.values() for ts, _ in d.values())
        hi = cfg.train_end if cfg.train_end is not None else max(int(ts[-1]) for d in data.values() for ts, _ in d.values()) + 1
        segs = trained.score(data, lo, hi, progress=_scaled(ctx, 0.7, 0.9), cancel=ctx.cancelled)
        records = assemble(segs, cfg)
        ctx.check()
        with self.repo.transaction() as db:
            changes = AnomalyChanges("BUILD", deleted=self.repo.anomalies(model_id, db=db))
            self.repo.delete_anomalies(db, [a["id"] for a in changes.deleted])
            for rec in records:
                changes.created.append(self.repo.insert_anomaly(db, self._row(model_id, rec)))
            refresh = model.refresh.to_dict() | {"enabled": False}
            self.repo.update_model(model_id, db, trained=trained.to_dict(), status=READY, message="ready",
                                   built_ms=now_ms(), refresh=refresh, last_refresh_end_ms=hi,
                                   last_refresh_run_ms=None, refits=0)
            self._notify(db, model, changes)
        ctx.log(f"{len(records)} anomalies in the training range; {len(changes.deleted)} earlier ones removed")
        return {"segments": int(len(segs)), "anomalies": len(records), "deleted": len(changes.deleted),
                "clusters": int(len(trained.cluster_sizes)), "items": len(data)}

    def _after_build(self, model_id: str, task: Task) -> None:
        if task.status in ("FAILED", "CANCELLED") and self.repo.get_model(model_id):
            self.repo.update_model(model_id, status=task.status, message=task.message)

    def _refresh(self, ctx: TaskContext, model_id: str, until: int) -> dict:
        model = self._require(model_id)
        cfg, trained = model.config, self.trained(model_id)
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
            existing = {(a["item"], a["start_ts"]): a for a in
                        self.repo.anomalies(model_id, items=list({r.item for r in records} | {a["item"] for a in active}),
                                            start=start, db=db)}
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
                fields_ = {k: row[k] for k in ("end_ts", "score", "score_index", "active", "n_segments",
                                               "details", "updated_ms", "cluster")}
                if any(old[k] != fields_[k] for k in ("end_ts", "score", "score_index", "active")):
                    self.repo.update_anomaly(db, old["id"], **fields_)
                    new = {**old, **fields_}
                    (changes.ended if old["active"] and not rec.active else changes.extended).append(new)
            for key, old in existing.items():
                if old["active"] and key not in seen:  # no longer anomalous after a re-fit: close it
                    self.repo.update_anomaly(db, old["id"], active=False, updated_ms=now_ms())
                    changes.ended.append({**old, "active": False})
            self.repo.update_model(model_id, db, last_refresh_end_ms=until, last_refresh_run_ms=now_ms(),
                                   refits=refits, **({"trained": trained.to_dict()} if refits != model.refits else {}))
            self._notify(db, model, changes)
        if model.refresh.save_telemetry:
            self._save_scores(cfg, segs, self.repo.anomalies(model_id, start=start - 30 * 86_400_000), start, until)
        counts = changes.counts()
        for note in changes.notes:
            ctx.log(note)
        ctx.log(f"scored {len(segs)} segments of {len(items)} devices from {start} to {until}: {counts}")
        return {"segments": int(len(segs)), **counts, "from": start, "to": until}

    def _reprocess(self, ctx: TaskContext, model_id: str, start: int, end: int, items, create_alarms: bool,
                   save_telemetry: bool) -> dict:
        model = self._require(model_id)
        cfg, trained = model.config, self.trained(model_id)
        items = self._items(model, items)
        data = self._load(cfg, items, start - trained.segment_ms, end)
        total = max(len(items), 1)
        parts = []
        for i, item in enumerate(items):
            ctx.progress(0.8 * i / total, f"scoring {i + 1}/{total}")
            if item in data:
                parts.append(trained.score({item: data[item]}, start, end, cancel=ctx.cancelled))
        from .scoring import ScoredSegments
        segs = ScoredSegments.concat(parts)
        records = [r for r in assemble(segs, cfg) if start <= r.start_ts < end]
        ctx.check()
        changes = AnomalyChanges("REPROCESS", create_alarms=create_alarms)
        with self.repo.transaction() as db:
            changes.deleted = self.repo.anomalies(model_id, items=items, start=start, end=end, db=db)
            self.repo.delete_anomalies(db, [a["id"] for a in changes.deleted])
            for rec in records:
                changes.created.append(self.repo.insert_anomaly(db, self._row(model_id, rec)))
            self._notify(db, model, changes)
        if save_telemetry:
            self._save_scores(cfg, segs, records_as_rows(records), start, end)
        for note in changes.notes:
            ctx.log(note)
        ctx.log(f"replaced {len(changes.deleted)} anomalies with {len(records)} over {len(items)} devices")
        return {"segments": int(len(segs)), "deleted": len(changes.deleted), "created": len(records),
                "items": len(items)}

    # -- saved scores ----------------------------------------------------------------------------------
    def _save_scores(self, cfg: ModelConfig, segs, anomalies: list[dict], start: int, end: int) -> int:
        """``_EAD_<key>`` (max score of segments ending in each bucket) and ``_EID_<key>`` (score
        index of the anomaly active in the bucket, 0 when none), buckets aligned to the epoch."""
        if len(segs) == 0:
            return 0
        freq = int(cfg.storage_frequency_ms)
        ead, eid = f"_EAD_{cfg.telemetry_key}", f"_EID_{cfg.telemetry_key}"
        points = []
        by_item: dict[str, list[dict]] = {}
        for a in anomalies:
            by_item.setdefault(a["item"], []).append(a)
        items = segs.item.astype(str)
        for item in np.unique(items).tolist():
            mask = items == item
            ends, scores = segs.end_ts[mask], segs.score[mask]
            buckets = (ends - 1) // freq * freq  # a segment ending exactly on an edge belongs to the bucket before
            ub, inv = np.unique(buckets, return_inverse=True)
            peak = np.full(len(ub), -np.inf)
            np.maximum.at(peak, inv, scores)
            index = np.zeros(len(ub))
            for a in by_item.get(item, []):
                hit = (ub < a["end_ts"]) & (ub + freq > a["start_ts"])
                index[hit] = np.maximum(index[hit], a["score_index"])
            for b, p, x in zip(ub.tolist(), peak.tolist(), index.tolist()):
                points.append((item, ead, int(b), ValueType.DOUBLE, round(float(p), 4)))
                points.append((item, eid, int(b), ValueType.DOUBLE, round(float(x), 4)))
        return self.store.write_points(points)

    # -- helpers ---------------------------------------------------------------------------------------
    def _require(self, model_id: str) -> AnomalyModel:
        model = self.get_model(model_id)
        if model is None:
            from ..entities import NotFound
            raise NotFound(f"Anomaly model {model_id} is not found")
        return model

    def _model(self, row: dict) -> AnomalyModel:
        return AnomalyModel(self, id=row["id"], tenant_id=row["tenant_id"], config=ModelConfig.from_json(row["config"]),
                            status=row["status"], message=row["message"] or "", created_ms=row["created_ms"],
                            built_ms=row["built_ms"], refresh=RefreshSettings(**(row["refresh"] or {})),
                            last_refresh_end_ms=row["last_refresh_end_ms"],
                            last_refresh_run_ms=row["last_refresh_run_ms"], refits=row["refits"] or 0)

    def _items(self, model: AnomalyModel, items) -> list[str]:
        """Devices: an explicit list, "trained" (the model's), or all of the profile."""
        if items in (None, "all", []):
            devices = self.registry.all_devices(model.tenant_id, type=model.config.device_type or None,
                                                sort_property="createdTime", sort_order="DESC")
            return [d.id for d in devices]
        if items == "trained":
            return list(model.config.items) or self._items(model, None)
        return list(items)

    def _load(self, cfg: ModelConfig, items: Iterable[str], start, end) -> dict[str, dict]:
        lo = 0 if start is None else int(start)
        hi = 253_402_300_800_000 if end is None else int(end)
        out = {}
        for item in items:
            arrays = self.store.numeric_arrays(item, list(cfg.fields) or None, lo, hi)
            if arrays:
                out[item] = arrays
        return out

    def _row(self, model_id: str, rec) -> dict:
        t = now_ms()
        return {"model_id": model_id, "item": rec.item, "start_ts": int(rec.start_ts), "end_ts": int(rec.end_ts),
                "score": float(rec.score), "score_index": float(rec.score_index), "cluster": int(rec.cluster),
                "detected_at": int(rec.detected_at), "active": bool(rec.active), "n_segments": int(rec.n_segments),
                "details": rec.segment_scores or {}, "created_ms": t, "updated_ms": t}

    def _notify(self, db, model: AnomalyModel, changes: AnomalyChanges) -> None:
        self.changed.emit(db, model, changes)


def records_as_rows(records) -> list[dict]:
    return [{"item": r.item, "start_ts": r.start_ts, "end_ts": r.end_ts, "score_index": r.score_index}
            for r in records]


def _work(fn: Callable[[TaskContext], dict]) -> Callable[[TaskContext], dict]:
    """Task work whose engine-level cancellation counts as the task's cancellation."""
    def run(ctx: TaskContext) -> dict:
        try:
            return fn(ctx)
        except EngineCancelled as exc:
            raise Cancelled(str(exc)) from None
    return run


def _scaled(ctx: TaskContext, lo: float, hi: float):
    return lambda frac, msg="": ctx.progress(lo + (hi - lo) * frac, msg)


def _ms(x) -> int:
    """Epoch ms from ms, a datetime or an ISO string (the store's rule, naive = UTC)."""
    return to_ms(x, "time")
