"""Anomaly models as a service: the one face the API, the pages and notebooks use.

The engine (:mod:`.engine`) is pure numpy; this service feeds it from the telemetry store,
keeps its results in :class:`~.repository.AnomalyRepository`, runs long work through the
:class:`~tbpanel.jobs.TaskRunner`, and emits every anomaly change on :attr:`AnomalyService.changed`
*inside* the transaction that makes the change (the alarm service uses that to stay atomic
with the anomalies that cause its alarms). Here: model CRUD, submitting tasks, reading
anomalies. What each task does (build, refresh, reprocess, with their rules) is :mod:`.runs`,
experiments :mod:`.experiments`, the change record :mod:`.changes`, the model record with its
notebook methods :mod:`.model`, the ``_EAD_``/``_EID_`` telemetry :mod:`.saved_scores`, the
refresh schedule :mod:`.scheduler`.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..clock import now_ms
from ..events import Signal
from ..jobs import Task, TaskContext, TaskRunner
from ..store.telemetry import to_ms
from . import experiments, scheduler
from .changes import AnomalyChanges
from .config import ModelConfig
from .engine import TrainedModel
from .model import CANCELLED, FAILED, IN_PROGRESS, NEW, QUEUED, READY, AnomalyModel, RefreshSettings, wait_with_progress
from .repository import AnomalyRepository
from .runs import Items, ModelRuns, fail_interrupted_builds, task_work
from .saved_scores import records_as_rows

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


#: the columns of :meth:`AnomalyService.anomalies_frame`, in order
_FRAME_COLUMNS = "id item start end score score_index cluster detected_at active n_segments suppressed".split()


class RebuildRequired(ValueError):
    """Changing these knobs needs a rebuild; say ``rebuild=True`` to do it."""


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
        self._runs = ModelRuns(store, registry, repo, self.changed)
        self._running_refresh: dict[str, str] = {}
        fail_interrupted_builds(repo, runner)

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
            task_work(lambda ctx: self._runs.build(ctx, self._require(model_id))),
            model_id=model_id,
            tenant_id=model.tenant_id,
            on_done=lambda t: self._runs.build_finished(model_id, t),
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
            task_work(lambda ctx: self._runs.refresh(ctx, *self._current(model_id), until)),
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
            task_work(
                lambda ctx: self._runs.reprocess(
                    ctx, *self._current(model_id), start, end, items, create_alarms, save_telemetry
                )
            ),
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
        if not rows:
            return pd.DataFrame(columns=_FRAME_COLUMNS)
        df = pd.DataFrame(rows)
        for col, src in (("start", "start_ts"), ("end", "end_ts"), ("detected_at", "detected_at")):
            df[col] = pd.to_datetime(df[src], unit="ms", utc=True)
        return df[_FRAME_COLUMNS].sort_values("score_index", ascending=False, ignore_index=True)

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
        return experiments.run(
            self.store, self.registry, model, self.trained(model_id), variants, start, end, items, progress
        )

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
            return experiments.task_result(results, include_current=include_current, keep=keep)

        return self.runner.submit(
            "EXPERIMENT",
            work,
            model_id=model_id,
            tenant_id=model.tenant_id,
            params={"variants": variants, "start": start, "end": end},
        )

    #: One row per variant: anomalies, affected items, peak score, total score index.
    compare = staticmethod(experiments.compare)

    # -- helpers ---------------------------------------------------------------------------------------
    def _require(self, model_id: str) -> AnomalyModel:
        model = self.get_model(model_id)
        if model is None:
            from ..entities import NotFound

            raise NotFound(f"Anomaly model {model_id} is not found")
        return model

    def _current(self, model_id: str) -> tuple[AnomalyModel, TrainedModel]:
        """The model and its trained artifact as a task finds them when it starts."""
        model = self._require(model_id)
        trained = self.trained(model_id)
        if trained is None:  # refresh_now and reprocess refuse unbuilt models before submitting
            raise ValueError("the model has not been built yet")
        return model, trained


def _ms(x: Any) -> int:
    """Epoch ms from ms, a datetime or an ISO string (the store's rule, naive = UTC)."""
    return to_ms(x, "time")
