"""Long work off the event loop: build, refresh runs, reprocess — with progress, log and cancel.

A :class:`TaskRunner` runs submitted functions on its own worker threads and keeps every
task's record (status, progress, log, duration, result) in SQLite, so the history survives a
restart. A task that was running when the process died is marked FAILED ("interrupted") on
the next start. Work functions commit their results in one transaction at the end, so either
none of a task's results are there or (a kill just after that commit) all of them are; running
the task again is always safe. The crash tests (tests/helpers/crash.py) check both.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import param

from .. import analytics_db
from ..clock import now_ms
from ..events import Signal

log = logging.getLogger("tbpanel.jobs")

QUEUED, IN_PROGRESS, DONE, FAILED, CANCELLED = "QUEUED", "IN_PROGRESS", "DONE", "FAILED", "CANCELLED"
FINAL = (DONE, FAILED, CANCELLED)


class Cancelled(Exception):
    """Raised inside a task's work when someone asked it to stop."""


class Task(param.Parameterized):
    """One run of long work, as people see it in the Tasks tab and the REST API."""

    id = param.String()
    kind = param.String(doc="BUILD, REFRESH or REPROCESS (or any other job kind).")
    model_id = param.String(default=None, allow_None=True)
    tenant_id = param.String(default=None, allow_None=True)
    status: param.Selector[str] = param.Selector(default=QUEUED, objects=[QUEUED, IN_PROGRESS, DONE, FAILED, CANCELLED])
    progress = param.Number(default=0.0, bounds=(0, 1))
    message = param.String(default="")
    created_ms = param.Integer(default=0)
    started_ms = param.Integer(default=None, allow_None=True)
    finished_ms = param.Integer(default=None, allow_None=True)
    log_lines = param.List(default=[])
    params_ = param.Dict(default={}, doc="The task's inputs.")
    result = param.Dict(default={}, doc="Counts and figures the work returned.")

    @property
    def duration_ms(self) -> int | None:
        if self.started_ms is None:
            return None
        return (self.finished_ms or now_ms()) - self.started_ms

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "modelId": self.model_id,
            "tenantId": self.tenant_id,
            "status": self.status,
            "progress": round(self.progress, 4),
            "message": self.message,
            "createdTime": self.created_ms,
            "startTs": self.started_ms,
            "endTs": self.finished_ms,
            "durationMs": self.duration_ms,
            "log": list(self.log_lines),
            "params": self.params_,
            "result": self.result,
        }


class TaskContext:
    """What a work function gets: report progress, write to the log, check for cancellation."""

    def __init__(self, runner: TaskRunner, task: Task, cancel_event: threading.Event):
        self._runner = runner
        self.task = task
        self._cancel = cancel_event

    def progress(self, fraction: float, message: str = "") -> None:
        self.check()
        self._runner._update(
            self.task, progress=max(0.0, min(1.0, float(fraction))), message=message or self.task.message
        )

    def log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.gmtime())
        self._runner._update(self.task, log_lines=[*self.task.log_lines, f"{stamp} {line}"])

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        """Raise :class:`Cancelled` if a stop was requested (call between units of work)."""
        if self._cancel.is_set():
            raise Cancelled("cancelled by request")


class TaskRunner:
    """Worker threads plus a persistent task history (table ``tasks`` of ``analytics.sqlite``)."""

    def __init__(self, db_path: str | Path, workers: int = 1):
        self._path = str(db_path)
        self._lock = threading.RLock()
        # a connection of its own, not the shared analytics Database: task records commit on
        # their own (never inside an anomaly transaction of the same thread) and neither side
        # waits for the other's lock (see analytics_db.connect)
        self._db = analytics_db.connect(self._path)
        interrupted = self._db.execute(
            "UPDATE tasks SET status=?, message=?, finished_ms=? WHERE status IN (?, ?)",
            (FAILED, "interrupted: the server stopped while this task was running", now_ms(), QUEUED, IN_PROGRESS),
        ).rowcount
        if interrupted:
            log.warning("%d task(s) were interrupted by the last shutdown", interrupted)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tbpanel-task")
        self._live: dict[str, tuple[Task, threading.Event, Future]] = {}
        #: ``fn(task)`` after every change of a running task, from the worker thread running it;
        #: a listener's error is logged and never fails the task.
        self.changed: Signal[[Task]] = Signal("tasks.changed")

    # -- submitting and controlling ---------------------------------------------------------
    def submit(
        self,
        kind: str,
        work: Callable[[TaskContext], dict | None],
        *,
        model_id: str | None = None,
        tenant_id: str | None = None,
        params: dict | None = None,
        on_done: Callable[[Task], None] | None = None,
    ) -> Task:
        """Queue ``work(ctx)``; its returned dict becomes the task's result."""
        task = Task(
            id=str(uuid.uuid4()),
            kind=kind,
            model_id=model_id,
            tenant_id=tenant_id,
            created_ms=now_ms(),
            params_=params or {},
            message="queued",
        )
        cancel = threading.Event()
        self._save(task)
        future = self._pool.submit(self._run, task, work, cancel, on_done)
        with self._lock:
            self._live[task.id] = (task, cancel, future)
        return task

    def cancel(self, task_id: str) -> bool:
        """Ask a queued or running task to stop; True if it was still live."""
        with self._lock:
            live = self._live.get(task_id)
        if live is None:
            return False
        live[1].set()
        return True

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it ended (or ``timeout`` s passed); KeyError for an id never submitted here."""
        with self._lock:
            live = self._live.get(task_id)
        if live is not None:
            try:
                live[2].result(timeout=timeout)
            except Exception:  # the task records its own failure
                pass
        task = self.get(task_id)
        if task is None:
            raise KeyError(f"no task {task_id} in this runner's history")
        return task

    # -- reading -------------------------------------------------------------------------
    def get(self, task_id: str) -> Task | None:
        with self._lock:
            live = self._live.get(task_id)
            if live is not None:
                return live[0]
            row = self._db.execute("SELECT * FROM tasks WHERE id=?", (task_id,)).fetchone()
        return self._from_row(row) if row else None

    def list(self, *, model_id: str | None = None, tenant_id: str | None = None, limit: int = 100) -> list[Task]:
        """Newest first."""
        sql = "SELECT * FROM tasks WHERE 1=1"
        args: list[Any] = []
        if model_id is not None:
            sql, args = sql + " AND model_id=?", [*args, model_id]
        if tenant_id is not None:
            sql, args = sql + " AND tenant_id=?", [*args, tenant_id]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY created_ms DESC, rowid DESC LIMIT ?", [*args, limit]).fetchall()
            tasks = [self._from_row(r) for r in rows]
            return [self._live[t.id][0] if t.id in self._live else t for t in tasks]

    def shutdown(self, cancel_running: bool = True) -> None:
        with self._lock:
            live = list(self._live.values())
        if cancel_running:
            for _, cancel, _ in live:
                cancel.set()
        self._pool.shutdown(wait=True)
        with self._lock:
            self._db.close()

    # -- internals -------------------------------------------------------------------------
    def _run(self, task: Task, work, cancel: threading.Event, on_done) -> None:
        ctx = TaskContext(self, task, cancel)
        try:
            if cancel.is_set():
                raise Cancelled("cancelled before it started")
            self._update(task, status=IN_PROGRESS, started_ms=now_ms(), message="running")
            result = work(ctx) or {}
            self._update(task, status=DONE, progress=1.0, finished_ms=now_ms(), message="done", result=result)
        except Cancelled as exc:
            ctx.log(f"cancelled: {exc}")
            self._update(task, status=CANCELLED, finished_ms=now_ms(), message="cancelled; earlier results kept")
        except Exception as exc:  # the task's record carries the failure
            log.exception("task %s (%s) failed", task.id, task.kind)
            ctx.log("".join(traceback.format_exception_only(type(exc), exc)).strip())
            self._update(task, status=FAILED, finished_ms=now_ms(), message=f"failed: {exc}; earlier results kept")
        finally:
            if on_done is not None:  # before the task leaves _live, so wait() sees its effects
                try:
                    on_done(task)
                except Exception:
                    log.exception("on_done of task %s failed", task.id)
            with self._lock:
                self._live.pop(task.id, None)

    def _update(self, task: Task, **changes: Any) -> None:
        task.param.update(**changes)
        self._save(task)
        self.changed.emit(task)

    def _save(self, task: Task) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    task.id,
                    task.kind,
                    task.model_id,
                    task.tenant_id,
                    task.status,
                    task.progress,
                    task.message,
                    task.created_ms,
                    task.started_ms,
                    task.finished_ms,
                    orjson.dumps(task.log_lines).decode(),
                    orjson.dumps(task.params_, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                    orjson.dumps(task.result, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                ),
            )

    @staticmethod
    def _from_row(row) -> Task:
        (
            tid,
            kind,
            model_id,
            tenant_id,
            status,
            progress,
            message,
            created,
            started,
            finished,
            log_json,
            params_json,
            result_json,
        ) = row
        return Task(
            id=tid,
            kind=kind,
            model_id=model_id,
            tenant_id=tenant_id,
            status=status,
            progress=progress or 0.0,
            message=message or "",
            created_ms=created or 0,
            started_ms=started,
            finished_ms=finished,
            log_lines=orjson.loads(log_json or "[]"),
            params_=orjson.loads(params_json or "{}"),
            result=orjson.loads(result_json or "{}"),
        )
