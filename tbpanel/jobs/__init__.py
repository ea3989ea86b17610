"""Scheduling and running long work (build, refresh, reprocess) off the event loop."""

from .schedule import UNITS, add_units, next_run, unit_start
from .tasks import CANCELLED, DONE, FAILED, FINAL, IN_PROGRESS, QUEUED, Cancelled, Task, TaskContext, TaskRunner

__all__ = [
    "UNITS",
    "add_units",
    "next_run",
    "unit_start",
    "CANCELLED",
    "DONE",
    "FAILED",
    "FINAL",
    "IN_PROGRESS",
    "QUEUED",
    "Cancelled",
    "Task",
    "TaskContext",
    "TaskRunner",
]
