"""The refresh scheduler's tick: which models' periodic refresh is due, and starting those runs.

``server.start_scheduler`` calls :meth:`AnomalyService.run_due` every 15 s on the platform's I/O
pool; each due model gets one ``REFRESH`` task on the task runner, up to the tick's time. "Due"
is :func:`tbpanel.jobs.next_run` of the model's refresh settings after its last run (a schedule
that fell behind runs once, not once per missed period). A model whose previous run has not
finished is skipped, so runs of one model never overlap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clock import now_ms
from ..jobs import Task, next_run
from .model import AnomalyModel

if TYPE_CHECKING:
    from .service import AnomalyService


def is_due(model: AnomalyModel, now: int) -> bool:
    """Whether ``model``'s refresh job should run at ``now`` (refresh off: never)."""
    r = model.refresh
    if not r.enabled:
        return False
    return next_run(model.last_refresh_run_ms, now, r.every, r.unit, at_unit_start=r.at_unit_start, tz=r.tz) <= now


def run_due(service: AnomalyService, now: int | None = None) -> list[Task]:
    """Start the refresh run of every model that is due at ``now`` (default: the wall clock)."""
    now = now_ms() if now is None else now
    started = []
    for model in service.list_models():
        if service.is_refreshing(model.id) or not is_due(model, now):
            continue
        started.append(service.refresh_now(model.id, now))
    return started
