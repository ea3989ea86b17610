"""Experiments: score variants of a model over a range, touching nothing it stored.

Each variant is the model's config with overrides, fitted on the model's training range and
scored over ``[start, end)``; ``"current"`` is the stored trained model. No anomaly, alarm or
telemetry is written, so an experiment can run beside the model's own tasks.
:meth:`~.service.AnomalyService.experiment` and ``submit_experiment`` (the ``EXPERIMENT`` task)
call :func:`run`; :func:`compare` makes the table the Experiments tab and REST show, and
:func:`task_result` the ``EXPERIMENT`` task's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd

from .engine import TrainedModel, assemble, fit
from .model import AnomalyModel
from .runs import Items, devices, load

if TYPE_CHECKING:
    from ..entities import EntityRegistry
    from ..store import TelemetryStore


def run(
    store: TelemetryStore,
    registry: EntityRegistry,
    model: AnomalyModel,
    trained: TrainedModel | None,
    variants: dict[str, dict[str, Any]],
    start: int,
    end: int,
    items: Items = None,
    progress: Callable[[float, str], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """``{variant name: anomalies starting in [start, end)}`` for ``"current"`` (when the model
    is trained) and each variant, over the devices ``items`` (see :data:`.runs.Items`)."""
    chosen = devices(registry, model, items)
    out: dict[str, list[dict[str, Any]]] = {}
    names = (["current"] if trained is not None else []) + list(variants)
    for i, name in enumerate(names):
        if progress:
            progress(i / max(len(names), 1), f"variant {name}")
        if name == "current" and trained is not None:
            cfg, tm = model.config, trained
        else:
            cfg = model.config.copy(**variants[name]).check()
            tm = fit(cfg, load(store, cfg, devices(registry, model, cfg.items or None), cfg.train_start, cfg.train_end))
        data = load(store, cfg, chosen, start - tm.segment_ms, end)
        recs = assemble(tm.score(data, start, end), cfg)
        out[name] = [r.to_dict() for r in recs if start <= r.start_ts < end]
    return out


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


def task_result(results: dict[str, list[dict[str, Any]]], *, include_current: bool, keep: int) -> dict[str, Any]:
    """An ``EXPERIMENT`` task's result: the :func:`compare` rows and each variant's first ``keep``
    anomalies (without ``"current"`` unless ``include_current``)."""
    if not include_current:
        results.pop("current", None)
    return {
        "comparison": compare(results).to_dict(orient="records"),
        "anomalies": {k: v[:keep] for k, v in results.items()},
    }
