"""The Tasks tab's view model: start a reprocess, follow and cancel the model's tasks.

Tasks run on the platform's :class:`~tbpanel.jobs.TaskRunner`; this object only submits,
lists and cancels them, so the page never waits for one. :meth:`TaskBoard.signature` changes
whenever anything shown changes, so a view can redraw only then.
"""

from __future__ import annotations

import pandas as pd
import param

from ...clock import DAY_MS, duration_text, now_ms, utc_text
from .model_data import profile_devices

ITEM_CHOICES = {"trained devices": "trained", "all devices of the profile": "all", "selected devices": "specific"}
HISTORY_COLUMNS = ["id", "kind", "status", "progress", "created", "started", "duration", "message"]


class ReprocessRequest(param.Parameterized):
    """What a reprocess should do (reference: range, items, alarms toggle, telemetry toggle)."""

    start = param.Integer(default=None, allow_None=True, doc="Range start (ms, inclusive).")
    end = param.Integer(default=None, allow_None=True, doc="Range end (ms, exclusive).")
    items_mode: param.Selector[str] = param.Selector(default="trained", objects=list(ITEM_CHOICES.values()))
    items = param.List(default=[], item_type=str, doc="Device ids when items_mode is 'specific'.")
    create_alarms = param.Boolean(default=False)
    save_telemetry = param.Boolean(default=False)


class TaskBoard(param.Parameterized):
    """The model's task history and the reprocess form."""

    request: param.ClassSelector[ReprocessRequest] = param.ClassSelector(class_=ReprocessRequest)  # type: ignore[assignment]  # required, never None
    selected = param.String(default="", doc="Task whose log is shown.")
    message = param.String(default="")
    limit = param.Integer(default=50, bounds=(1, None))

    followed = param.String(default="", doc="The reprocess started here, whose progress :attr:`message` follows.")

    def __init__(self, platform, model, **params):
        end = now_ms() // 60_000 * 60_000
        # the toggles start where the model's own refresh switches are (a reprocess of a model
        # that raises alarms should raise them too, unless one unticks the box)
        refresh = model.refresh
        params.setdefault(
            "request",
            ReprocessRequest(
                start=end - 7 * DAY_MS,
                end=end,
                create_alarms=bool(refresh.create_alarms),
                save_telemetry=bool(refresh.save_telemetry),
            ),
        )
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.runner = platform.tasks
        self.devices = profile_devices(platform, model)
        self._followed_status = ""
        self._followed_range = ""

    @property
    def may_save_telemetry(self) -> bool:
        """Saving scores during a reprocess is only offered when refresh saving is on."""
        return bool(self.platform.anomaly.get_model(self.model.id).refresh.save_telemetry)

    def tasks(self):
        return self.runner.list(model_id=self.model.id, limit=self.limit)

    def history(self) -> pd.DataFrame:
        rows = [
            {
                "id": t.id,
                "kind": t.kind,
                "status": t.status,
                "progress": round(100 * (t.progress or 0.0)),
                "created": utc_text(t.created_ms),
                "started": utc_text(t.started_ms),
                "duration": duration_text(t.duration_ms),
                "message": t.message,
            }
            for t in self.tasks()
        ]
        return pd.DataFrame(rows, columns=HISTORY_COLUMNS)

    def signature(self) -> tuple:
        """Changes whenever a shown task changes (status, progress, message, log length)."""
        return tuple((t.id, t.status, round(t.progress or 0.0, 3), t.message, len(t.log_lines)) for t in self.tasks())

    def running(self) -> bool:
        return any(t.status in ("QUEUED", "IN_PROGRESS") for t in self.tasks())

    def log(self, task_id: str | None = None) -> list[str]:
        task = self.runner.get(task_id or self.selected) if (task_id or self.selected) else None
        return list(task.log_lines) if task is not None else []

    def start_reprocess(self):
        """Submit the reprocess; returns its task, or None with :attr:`message` saying why not."""
        r = self.request
        if r.start is None or r.end is None or r.start >= r.end:
            self.message = "Choose a range whose end is after its start."
            return None
        items = r.items_mode if r.items_mode != "specific" else list(r.items)
        if r.items_mode == "specific" and not items:
            self.message = "Select at least one device, or reprocess the trained devices."
            return None
        try:
            task = self.platform.anomaly.reprocess(
                self.model.id,
                r.start,
                r.end,
                items,
                create_alarms=r.create_alarms,
                save_telemetry=r.save_telemetry and self.may_save_telemetry,
            )
        except ValueError as exc:
            self.message = f"Not started: {exc}"
            return None
        self.selected = self.followed = task.id
        self._followed_range = f"{utc_text(r.start)} – {utc_text(r.end)} UTC"
        self._followed_status = task.status
        self.message = f"Reprocess of {self._followed_range} queued."
        self.follow()
        return task

    def follow(self) -> bool:
        """Bring :attr:`message` up to date with the reprocess started here when its status
        changed (running, done with what it did, failed, cancelled); True when it changed.

        Only a change of status rewrites the message, so "Cancel requested." stays until the
        task has really stopped."""
        task = self.runner.get(self.followed) if self.followed else None
        if task is None or task.status == self._followed_status:
            return False
        self._followed_status = task.status
        what = f"Reprocess of {self._followed_range}"
        if task.status == "IN_PROGRESS":
            self.message = f"{what} running."
        elif task.status == "DONE":
            res = task.result or {}
            self.message = (
                f"{what} done: {res.get('deleted', 0)} anomalies replaced by {res.get('created', 0)} "
                f"on {res.get('items', 0)} device{'' if res.get('items') == 1 else 's'}."
            )
        elif task.status == "FAILED":
            self.message = f"{what} failed: {task.message}"
        elif task.status == "CANCELLED":
            self.message = f"{what} cancelled; the earlier anomalies are kept."
        else:
            self.message = f"{what} queued."
        return True

    def cancel(self, task_id: str) -> bool:
        """Ask a task of this model to stop (False: it had already ended or is not this model's)."""
        task = self.runner.get(task_id)
        if task is None or task.model_id != self.model.id:
            self.message = "No such task of this model."
            return False
        ok = self.runner.cancel(task_id)
        self.message = "Cancel requested." if ok else f"The task had already ended ({task.status})."
        return ok
