"""``/models``: the tenant's anomaly models (status, live progress, counts, last run, the
monitoring / saving / alarm switches, open / duplicate / build / delete) and the creation wizard.

Anomaly models span a whole device profile, so they are a tenant administrator's tool (as in
``/api/tbpanel``): customer users get a plain refusal, no data. The list refreshes while tasks
run: the anomaly service's listener and a slow poll schedule reads on the I/O pool, and the
rows update in place on the session's document.
"""

from __future__ import annotations

import html

import panel as pn
import param

from ...views.workspace.models_list import ModelRow, ModelsList
from ...views.workspace.wizard import ModelWizard
from ..background import Background
from ..layout import tenant_admin_template
from .wizard import WizardView

STATUS_COLOURS = {
    "READY": "#2e7d32",
    "IN_PROGRESS": "#0b6bcb",
    "QUEUED": "#0b6bcb",
    "FAILED": "#c62828",
    "CANCELLED": "#8d6e63",
    "NEW": "#757575",
}
TOGGLE_LABELS = {"monitoring": "Monitoring (refresh)", "saving": "Save scores", "alarms": "Create alarms"}


class ModelRowView(pn.viewable.Viewer):
    """One model: what it is and found, its switches and its buttons; ``draw`` updates in place."""

    row: param.ClassSelector[ModelRow] = param.ClassSelector(class_=ModelRow)  # type: ignore[assignment]  # required, never None

    def __init__(self, page: ModelsPage, **params):
        super().__init__(**params)
        self.page = page
        self._head = pn.pane.HTML("", sizing_mode="stretch_width", min_width=420)
        self._progress = pn.indicators.Progress(value=0, max=100, width=160, visible=False, margin=(14, 10))
        self._toggles = {
            t: pn.widgets.Checkbox(name=label, width=170, margin=(14, 6), css_classes=[f"toggle-{t}"])
            for t, label in TOGGLE_LABELS.items()
        }
        self._syncing = False
        for t, box in self._toggles.items():
            box.param.watch(lambda e, t=t: self._toggled(t, e.new), "value")
        self._duplicate = pn.widgets.Button(name="Duplicate", width=95, margin=(8, 4))
        self._build = pn.widgets.Button(name="Build", button_type="primary", width=70, margin=(8, 4))
        self._delete = pn.widgets.Button(name="Delete", button_type="danger", width=75, margin=(8, 4))
        self._duplicate.on_click(lambda e: page.duplicate(self.row))
        self._build.on_click(lambda e: page.build(self.row))
        self._delete.on_click(lambda e: page.ask_delete(self.row))
        self._layout = pn.Row(
            self._head,
            self._progress,
            *self._toggles.values(),
            self._duplicate,
            self._build,
            self._delete,
            sizing_mode="stretch_width",
            css_classes=["model-row"],
            styles={"border-bottom": "1px solid #e4e7eb"},
        )
        self.draw(self.row)

    def draw(self, row: ModelRow) -> None:
        self.row = row
        colour = STATUS_COLOURS.get(row.status, "#555")
        found = (
            f"{row.anomalies} anomal{'y' if row.anomalies == 1 else 'ies'} ({row.active} active) "
            f"on {row.items} item{'s' if row.items != 1 else ''}"
        )
        running = f" · {row.task_kind.lower()} {row.progress * 100:.0f} %" if row.progress is not None else ""
        self._head.object = (
            f"<div class='model-head' data-model-id='{row.id}' data-anomalies='{row.anomalies}'>"
            f"<a class='model-open' href='/model?id={row.id}' style='font-size:16px;font-weight:600'>"
            f"{html.escape(row.title)}</a> "
            f"<span class='model-status' data-status='{row.status}' style='color:white;background:{colour};"
            f"border-radius:9px;padding:1px 8px;font-size:12px'>{row.status}</span>{running}<br>"
            f"<span style='color:#52606d;font-size:13px'>profile {html.escape(row.device_type or 'any')} · "
            f"<span class='model-found'>{found}</span> · last run {row.last_run}</span>"
            + (
                f"<br><span style='color:#c62828;font-size:12px'>{html.escape(row.message)}</span>"
                if row.status in ("FAILED", "CANCELLED")
                else ""
            )
            + "</div>"
        )
        self._progress.visible = row.progress is not None
        self._progress.value = int(round((row.progress or 0) * 100))
        self._syncing = True
        try:
            for t, box in self._toggles.items():
                box.value = getattr(row, t)
                box.disabled = not row.built and t == "monitoring"
        finally:
            self._syncing = False
        busy = row.progress is not None
        self._build.visible = not busy and row.status in ("NEW", "FAILED", "CANCELLED")
        self._delete.disabled = busy

    def _toggled(self, toggle: str, value: bool) -> None:
        if not self._syncing:
            self.page.toggle(self.row, toggle, value)

    def __panel__(self):
        return self._layout


class ModelsPage(pn.viewable.Viewer):
    """The list, the delete confirmation and (after "New model") the wizard."""

    models: param.ClassSelector[ModelsList] = param.ClassSelector(class_=ModelsList)  # type: ignore[assignment]  # required, never None
    poll_ms = param.Integer(default=3000, bounds=(500, None))

    def __init__(self, platform, user, **params):
        params.setdefault("models", ModelsList(platform, tenant_id=user.tenant_id))
        super().__init__(**params)
        self.platform, self.user = platform, user
        self._bg = Background(platform.executor)
        self._rows: dict[str, ModelRowView] = {}
        self._shown: list[str] | None = None
        self._list = pn.Column(sizing_mode="stretch_width", name="models-list")
        self._empty = pn.pane.Markdown("No anomaly models yet: start with **New model**.", visible=False)
        self._message = pn.pane.Alert("", alert_type="info", visible=False, name="models-message")
        self._confirm_text = pn.pane.Markdown("", name="delete-warning", sizing_mode="stretch_width")
        self._confirm_yes = pn.widgets.Button(name="Delete model", button_type="danger", width=140)
        self._confirm_no = pn.widgets.Button(name="Keep it", width=100)
        self._confirm = pn.Column(
            self._confirm_text,
            pn.Row(self._confirm_yes, self._confirm_no),
            visible=False,
            sizing_mode="stretch_width",
            css_classes=["delete-confirm"],
            styles={
                "background": "#fff4f4",
                "border": "1px solid #f5c2c2",
                "border-radius": "6px",
                "padding": "4px 10px",
            },
        )
        self._confirm_yes.on_click(lambda e: self._delete_confirmed())
        self._confirm_no.on_click(lambda e: self._hide_confirm())
        self._pending_delete = None
        self._new = pn.widgets.Button(name="New model", button_type="primary", width=130)
        self._new.on_click(lambda e: self.open_wizard())
        self._list_view = pn.Column(
            pn.Row(
                pn.pane.Markdown("## Anomaly models", margin=(0, 10)),
                pn.HSpacer(),
                self._new,
                sizing_mode="stretch_width",
            ),
            self._message,
            self._confirm,
            self._empty,
            self._list,
            sizing_mode="stretch_width",
        )
        self._wizard_view = pn.Column(sizing_mode="stretch_width")
        self._main = pn.Column(self._list_view, sizing_mode="stretch_width")
        self.refresh()

    # -- list ------------------------------------------------------------------------------------
    def refresh(self) -> None:
        self._bg.run("list", self.models.load, self._show_rows)

    def _show_rows(self, rows: list[ModelRow]) -> None:
        self.models.rows = rows
        views = []
        for row in rows:
            view = self._rows.get(row.id)
            if view is None:
                view = self._rows[row.id] = ModelRowView(self, row=row)
            elif view.row.signature() != row.signature():
                view.draw(row)
            views.append(view)
        ids = [r.id for r in rows]
        for gone in set(self._rows) - set(ids):
            del self._rows[gone]
        if ids != self._shown:
            self._shown = ids
            self._list[:] = views
        self._empty.visible = not rows

    def say(self, text: str, kind: str = "info") -> None:
        self._message.param.update(object=text, alert_type=kind, visible=bool(text))

    # -- actions (run on the I/O pool; the list refreshes after each) ------------------------------
    def _act(self, what, done_text, row: ModelRow | None = None, revert=None) -> None:
        def failed(exc: Exception) -> None:
            self.say(f"{row.title if row else ''}: {exc}", "danger")
            if revert is not None:
                revert()
            self.refresh()

        def ok(result) -> None:
            self.say(done_text(result) if callable(done_text) else done_text, "success")
            self.refresh()

        self._bg.run(f"act-{row.id if row else ''}", what, ok, failed)

    def toggle(self, row: ModelRow, toggle: str, value: bool) -> None:
        view = self._rows.get(row.id)
        label = TOGGLE_LABELS[toggle].split(" (")[0].lower()

        def revert() -> None:
            if view is not None:
                view.draw(view.row)

        self._act(
            lambda: self.models.toggle(row.id, toggle, value),
            f"{row.title}: {label} switched {'on' if value else 'off'}.",
            row,
            revert,
        )

    def duplicate(self, row: ModelRow) -> None:
        self._act(
            lambda: self.models.duplicate(row.id),
            lambda r: (
                f"Duplicated {row.title} as {r[0].config.name}; it is building now (same settings, "
                f"its own anomalies; monitoring off)."
            ),
            row,
        )

    def build(self, row: ModelRow) -> None:
        self._act(lambda: self.models.build(row.id), f"{row.title}: build started.", row)

    def ask_delete(self, row: ModelRow) -> None:
        def show(text: str) -> None:
            self._pending_delete = row
            self._confirm_text.object = text
            self._confirm.visible = True

        self._bg.run(
            "delete-warning", lambda: self.models.delete_warning(row.id), show, lambda exc: self.say(str(exc), "danger")
        )

    def _hide_confirm(self) -> None:
        self._pending_delete = None
        self._confirm.visible = False

    def _delete_confirmed(self) -> None:
        row = self._pending_delete
        self._hide_confirm()
        if row is not None:
            self._act(lambda: self.models.delete(row.id), f"Deleted {row.title}.", row)

    # -- wizard ----------------------------------------------------------------------------------
    def open_wizard(self) -> None:
        wizard = ModelWizard(self.platform, tenant_id=self.user.tenant_id)
        self._wizard_view[:] = [WizardView(self.platform, wizard=wizard, on_cancel=self.close_wizard)]
        self._main[:] = [self._wizard_view]

    def close_wizard(self) -> None:
        self._main[:] = [self._list_view]
        self.refresh()

    # -- live ------------------------------------------------------------------------------------
    def _tick(self) -> None:
        if self._main[0] is self._list_view:  # not while the wizard is open
            self.refresh()

    def __panel__(self):
        anomaly = self.platform.anomaly
        self._bg.follow(
            anomaly.changed,
            lambda db, model, changes: model.tenant_id == self.user.tenant_id,
            self.refresh,
            self.poll_ms,
            self._tick,
            after_commit=anomaly.repo.after_commit,
        )
        return self._main


def models_page(platform, live):
    """The models list for tenant administrators (``?new=1`` opens the wizard at once)."""
    template, user = tenant_admin_template(
        platform,
        "/models",
        "Anomaly models are for **tenant administrators only**: they span every device of a profile. "
        "Your devices' anomalies reach you as alarms on the [Alarms](/alarms) page.",
        "models-refused",
    )
    if user is None:
        return template
    page = ModelsPage(platform, user)
    args = pn.state.session_args or {}
    if args.get("new", [b""])[0] in (b"1", "1"):
        page.open_wizard()
    template.main.append(page)
    return template
