"""An anomaly model as people see it: its stored settings and status, with notebook conveniences.

:class:`AnomalyModel` is the *record* of a model (name, config, status, refresh job), what the
REST API serialises and the pages list; the fitted artifact it scores with is
:class:`~.engine.TrainedModel`. Its methods (``build``, ``reprocess``, ``anomalies``) delegate
to the :class:`~.service.AnomalyService` that made it and block with a progress bar, for
notebooks; the API and pages call the service directly.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

import pandas as pd
import param

from ..jobs import FINAL, Task, TaskRunner
from .config import ModelConfig
from .engine import TrainedModel

if TYPE_CHECKING:
    from .service import AnomalyService

#: A model's build status (``NEW``: never built).
QUEUED, IN_PROGRESS, READY, FAILED, CANCELLED, NEW = "QUEUED", "IN_PROGRESS", "READY", "FAILED", "CANCELLED", "NEW"


class RefreshSettings(param.Parameterized):
    """The periodic refresh job of one model ("Jobs" tab)."""

    enabled = param.Boolean(default=False)
    every = param.Integer(default=1, bounds=(1, None))
    unit: param.Selector[str] = param.Selector(default="HOUR", objects=["HOUR", "DAY", "WEEK", "MONTH"])
    at_unit_start = param.Boolean(default=False)
    tz = param.String(default="UTC")
    items = param.List(default=[], item_type=str, doc="Devices to refresh; empty: every device of the profile.")
    save_telemetry = param.Boolean(default=False, doc="Enable Saving Anomaly Data (_EAD_/_EID_ series).")
    create_alarms = param.Boolean(default=False, doc="Enable Anomaly Alarms Creation.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]  # param leaves it untyped

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param if k != "name"}


class AnomalyModel(param.Parameterized):
    """One model as people see it; methods delegate to the service for notebook use."""

    id = param.String()
    tenant_id = param.String()
    # ``config`` and ``refresh`` are always given (``from_row``); param types a ClassSelector
    # without a default as Optional, so their types are spelled out
    config: param.ClassSelector[ModelConfig] = param.ClassSelector(class_=ModelConfig)  # type: ignore[assignment]
    status = param.String(default=NEW)
    message = param.String(default="")
    created_ms = param.Integer(default=0)
    built_ms = param.Integer(default=None, allow_None=True)
    refresh: param.ClassSelector[RefreshSettings] = param.ClassSelector(class_=RefreshSettings)  # type: ignore[assignment]
    last_refresh_end_ms = param.Integer(default=None, allow_None=True)
    last_refresh_run_ms = param.Integer(default=None, allow_None=True)
    refits = param.Integer(default=0)

    def __init__(self, service: AnomalyService | None = None, **params: Any) -> None:
        super().__init__(**params)  # type: ignore[no-untyped-call]  # param leaves it untyped
        self._service = service

    @classmethod
    def from_row(cls, service: AnomalyService | None, row: dict[str, Any]) -> AnomalyModel:
        """The model of a ``models`` row (:class:`~.repository.AnomalyRepository`)."""
        return cls(
            service,
            id=row["id"],
            tenant_id=row["tenant_id"],
            config=ModelConfig.from_json(row["config"]),
            status=row["status"],
            message=row["message"] or "",
            created_ms=row["created_ms"],
            built_ms=row["built_ms"],
            refresh=RefreshSettings(**(row["refresh"] or {})),
            last_refresh_end_ms=row["last_refresh_end_ms"],
            last_refresh_run_ms=row["last_refresh_run_ms"],
            refits=row["refits"] or 0,
        )

    # -- notebook conveniences (blocking, with a progress bar) -----------------------------------
    def build(self, wait: bool = True, progress: bool = True) -> AnomalyModel:
        task = self._require_service().build(self.id)
        return self._finish(task, wait, progress)

    def reprocess(
        self,
        start: Any,
        end: Any,
        items: Any = None,
        *,
        create_alarms: bool = False,
        save_telemetry: bool = False,
        wait: bool = True,
        progress: bool = True,
    ) -> AnomalyModel:
        task = self._require_service().reprocess(
            self.id, start, end, items, create_alarms=create_alarms, save_telemetry=save_telemetry
        )
        return self._finish(task, wait, progress)

    def anomalies(self, **filters: Any) -> pd.DataFrame:
        return self._require_service().anomalies_frame(self.id, **filters)

    def trained(self) -> TrainedModel | None:
        return self._require_service().trained(self.id)

    def _require_service(self) -> AnomalyService:
        if self._service is None:
            raise RuntimeError("this AnomalyModel is not attached to an AnomalyService")
        return self._service

    def _finish(self, task: Task, wait: bool, progress: bool) -> AnomalyModel:
        service = self._require_service()
        if wait:
            done = wait_with_progress(service.runner, task, show=progress)
            if done.status == "FAILED":
                raise RuntimeError(done.message)
        fresh = service._require(self.id)
        self.param.update(
            **{
                k: getattr(fresh, k)
                for k in ("status", "message", "built_ms", "config", "refresh", "last_refresh_end_ms", "refits")
            }
        )
        return self

    def to_json(self, counts: dict[str, Any] | None = None) -> dict[str, Any]:
        out = {
            "id": self.id,
            "tenantId": self.tenant_id,
            "name": self.config.name,
            "status": self.status,
            "message": self.message,
            "createdTime": self.created_ms,
            "builtTime": self.built_ms,
            "config": self.config.to_dict(),
            "refresh": self.refresh.to_dict(),
            "lastRefreshEndTs": self.last_refresh_end_ms,
            "lastRefreshRunTs": self.last_refresh_run_ms,
            "refits": self.refits,
        }
        if counts is not None:
            out["counts"] = counts
        return out

    def __str__(self) -> str:
        return self.__repr__()

    def __repr__(self) -> str:
        return (
            f"<AnomalyModel {self.config.name!r} {self.status} type={self.config.device_type!r} "
            f"fields={list(self.config.fields)} id={self.id}>"
        )

    def summary(self) -> dict[str, Any]:
        """Settings that matter, status and an anomaly summary: what a notebook repr shows."""
        c, r = self.config, self.refresh
        out: dict[str, Any] = {
            "name": c.name,
            "status": self.status,
            "message": self.message,
            "device_type": c.device_type,
            "fields": list(c.fields),
            "window": c.window,
            "segment": f"{c.segment_ms / 60_000:g} min" if c.segment_ms else f"{c.segment_points} points",
            "comparison": c.comparison,
            "algorithm": c.algorithm,
            "distance": c.distance,
            "threshold_percent": c.threshold_percent,
            "adaptive": c.adaptive,
            "refresh": (f"every {r.every} {r.unit}" if r.enabled else "off"),
        }
        if self._service is not None:
            df = self.anomalies()
            out.update(
                anomalies=len(df),
                items_affected=int(df["item"].nunique()) if len(df) else 0,
                peak_score=float(df["score"].max()) if len(df) else 0.0,
                active=int(df["active"].sum()) if len(df) else 0,
            )
        return out

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th>"
            f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
            for k, v in self.summary().items()
            if v not in ("", None)
        )
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
        if current is None:  # pragma: no cover - a submitted task is always recorded
            raise KeyError(f"task {task.id} is not known to this runner")
        pct = int(round((current.progress or 0) * 100))
        if bar is not None and pct > last:
            bar.update(pct - last)
            bar.set_postfix_str(current.message[:40])
            last = pct
        if current.status in FINAL:
            break
        time.sleep(0.1)
    if bar is not None:
        bar.close()
    return current
