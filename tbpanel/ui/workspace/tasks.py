"""The Tasks tab: start a reprocess (range, devices, alarm and telemetry toggles) and follow
every task of the model: status, progress, duration, log, cancel.

A one-second periodic callback per session compares :meth:`TaskBoard.signature` and redraws
only when a task changed, so running tasks update live and an idle page costs one small query.
"""

from __future__ import annotations

import html

import panel as pn
import param

from ...views.workspace.tasks import ITEM_CHOICES, TaskBoard
from .session import live_session, range_pickers

CANCEL = '<span class="task-cancel" style="cursor:pointer;font-weight:600;color:#c62828">cancel</span>'
LIVE = ("QUEUED", "IN_PROGRESS")


class TasksView(pn.viewable.Viewer):
    board: param.ClassSelector[TaskBoard] = param.ClassSelector(class_=TaskBoard)  # type: ignore[assignment]  # required, never None
    period_ms = param.Integer(default=1000, bounds=(100, None))

    def __init__(self, platform, **params):
        super().__init__(**params)
        self.platform = platform
        b, req = self.board, self.board.request
        self._start, self._end = range_pickers(req)
        self._mode = pn.widgets.RadioButtonGroup(name="Devices", options=ITEM_CHOICES, value=req.items_mode)
        self._mode.param.watch(lambda e: setattr(req, "items_mode", e.new), "value")
        self._items = pn.widgets.MultiChoice(
            name="Selected devices",
            options={v: k for k, v in b.devices.items()},
            width=420,
            visible=req.items_mode == "specific",
        )
        self._items.param.watch(lambda e: setattr(req, "items", list(e.new)), "value")
        req.param.watch(lambda e: setattr(self._items, "visible", e.new == "specific"), "items_mode")
        self._alarms = pn.widgets.Checkbox.from_param(
            req.param.create_alarms, name="Create alarms", css_classes=["reprocess-alarms"]
        )
        self._tm = pn.widgets.Checkbox.from_param(
            req.param.save_telemetry, name="Save scores as telemetry", css_classes=["reprocess-telemetry"]
        )
        self._run = pn.widgets.Button(
            name="Run reprocess", button_type="primary", width=180, css_classes=["run-reprocess"]
        )
        self._run.on_click(lambda _: self._on_run())
        self._message = pn.pane.Markdown("", name="tasks-message", css_classes=["tasks-message"])
        self._table = pn.widgets.Tabulator(
            self._frame(),
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            height=320,
            hidden_columns=["id"],
            pagination=None,
            name="task-table",
            formatters={"progress": {"type": "progress", "max": 100, "legend": True}, "cancel": {"type": "html"}},
            titles={"cancel": ""},
            layout="fit_data_stretch",
            widths={
                "kind": 110,
                "status": 120,
                "progress": 110,
                "created": 150,
                "started": 150,
                "duration": 90,
                "message": 380,
            },
            selectable=False,
        )
        self._table.on_click(self._on_click)
        self._log = pn.pane.HTML("", name="task-log", sizing_mode="stretch_width")
        self._sig = b.signature()
        self._callback = None
        self._offer_telemetry()
        self._show_log()

    def _frame(self):
        """The history with a cancel link on the tasks that are still queued or running."""
        df = self.board.history()
        df["cancel"] = [CANCEL if s in LIVE else "" for s in df["status"]]
        return df

    def _offer_telemetry(self) -> None:
        ok = self.board.may_save_telemetry
        self._tm.disabled = not ok
        if not ok:
            self.board.request.save_telemetry = False
        self._tm.name = "Save scores as telemetry" + ("" if ok else " (switch saving on in Jobs first)")

    def _on_run(self) -> None:
        self._offer_telemetry()
        self.board.start_reprocess()
        self._message.object = html.escape(self.board.message)
        self.refresh(force=True)

    def _on_click(self, event) -> None:
        task_id = self._table.value.iloc[event.row]["id"]
        if event.column == "cancel" and self._table.value.iloc[event.row]["status"] in LIVE:
            self.board.cancel(task_id)
            self._message.object = html.escape(self.board.message)
        self.board.selected = task_id
        self.refresh(force=True)

    def _show_log(self) -> None:
        b = self.board
        task = self.platform.tasks.get(b.selected) if b.selected else None
        if task is None:
            self._log.object = "<small>Click a task to see its log.</small>"
            return
        lines = "\n".join(html.escape(x) for x in task.log_lines) or "(no log lines yet)"
        self._log.object = (
            f"<div id='task-log-of' data-task='{task.id}' data-status='{task.status}'>"
            f"<b>{task.kind}</b> {task.status} — {html.escape(task.message)}</div>"
            f"<pre style='max-height:220px;overflow:auto;background:#f6f8fa;padding:6px'>{lines}</pre>"
        )

    def refresh(self, force: bool = False) -> None:
        sig = self.board.signature()
        if force or sig != self._sig:
            self._sig = sig
            if self.board.follow():  # the status line follows the reprocess started here
                self._message.object = html.escape(self.board.message)
            self._table.value = self._frame()
            self._show_log()

    def __panel__(self):
        if self._callback is None and live_session():
            self._callback = pn.state.add_periodic_callback(self.refresh, period=self.period_ms)
        return pn.Column(
            pn.pane.Markdown(
                "**Reprocess**: the model's anomalies of these devices starting in the range are "
                "replaced by freshly computed ones; alarms of removed anomalies are cleared or deleted "
                "as set in Input. A cancelled or failed task keeps the earlier anomalies."
            ),
            pn.Row(self._start, self._end),
            self._mode,
            self._items,
            pn.Row(self._alarms, self._tm),
            pn.Row(self._run, self._message),
            pn.pane.Markdown("**Tasks of this model** (newest first; click one for its log)"),
            self._table,
            self._log,
            sizing_mode="stretch_width",
        )


def tasks_tab(platform, live, user, model) -> TasksView:
    return TasksView(platform, board=TaskBoard(platform, model))
