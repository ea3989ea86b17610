"""The Jobs tab: the refresh schedule, its devices, the saving and alarm toggles, and the storage
frequency with the reference's advice shown next to it; the latest refresh runs below."""

from __future__ import annotations

import html

import pandas as pd
import panel as pn
import param

from ...clock import duration_text, utc_text
from ...views.workspace.jobs import FREQUENCIES, JobsDraft


class JobsView(pn.viewable.Viewer):
    jobs: param.ClassSelector[JobsDraft] = param.ClassSelector(class_=JobsDraft)  # type: ignore[assignment]  # required, never None

    def __init__(self, platform, **params):
        super().__init__(**params)
        self.platform = platform
        j, r = self.jobs, self.jobs.refresh
        self._enabled = pn.widgets.Switch.from_param(
            r.param.enabled, name="Refresh (the periodic job)", css_classes=["refresh-enabled"]
        )
        self._every = pn.widgets.IntInput.from_param(r.param.every, name="Every", width=100)
        self._unit = pn.widgets.Select.from_param(r.param.unit, name="Unit", width=120)
        self._at_start = pn.widgets.Checkbox.from_param(r.param.at_unit_start, name="at the start of the unit")
        self._items = pn.widgets.MultiChoice(
            name="Devices (empty: all of the profile, including untrained ones)",
            options={v: k for k, v in j.devices.items()},
            value=list(r.items),
            width=480,
        )
        self._items.param.watch(lambda e: setattr(r, "items", list(e.new)), "value")
        self._save_tm = pn.widgets.Checkbox.from_param(r.param.save_telemetry, name="Enable Saving Anomaly Data")
        self._alarms = pn.widgets.Checkbox.from_param(r.param.create_alarms, name="Enable Anomaly Alarms Creation")
        labels = {**FREQUENCIES}
        if j.storage_frequency_ms not in labels.values():
            labels[duration_text(j.storage_frequency_ms)] = j.storage_frequency_ms
        self._freq = pn.widgets.Select(
            name="Storage frequency", options=labels, value=j.storage_frequency_ms, width=160
        )
        self._freq.param.watch(lambda e: setattr(j, "storage_frequency_ms", int(e.new)), "value")
        self._advice = pn.pane.Alert("", alert_type="warning", visible=False, name="storage-advice")
        self._advice_ok = pn.pane.Markdown("", name="storage-ok")
        self._schedule = pn.pane.Markdown("", name="schedule-text")
        self._message = pn.pane.Markdown("", name="jobs-message")
        self._save = pn.widgets.Button(name="Save", button_type="primary", width=160, css_classes=["jobs-save"])
        self._save.on_click(lambda _: self._on_save())
        self._runs = pn.widgets.Tabulator(
            self._runs_frame(),
            show_index=False,
            disabled=True,
            height=200,
            sizing_mode="stretch_width",
            name="refresh-runs",
        )
        r.param.watch(lambda *_: self._update(), list(r.param))
        j.param.watch(lambda *_: self._update(), ["storage_frequency_ms"])
        self._update()

    def _runs_frame(self) -> pd.DataFrame:
        runs = [t for t in self.platform.tasks.list(model_id=self.jobs.model.id, limit=200) if t.kind == "REFRESH"][:10]
        return pd.DataFrame(
            [
                {
                    "started": utc_text(t.started_ms),
                    "status": t.status,
                    "duration": duration_text(t.duration_ms),
                    "created": t.result.get("created", ""),
                    "extended": t.result.get("extended", ""),
                    "ended": t.result.get("ended", ""),
                    "message": t.message,
                }
                for t in runs
            ],
            columns=["started", "status", "duration", "created", "extended", "ended", "message"],
        )

    def _update(self) -> None:
        j = self.jobs
        advice = j.advice()
        self._advice.object = "\n".join(f"- {html.escape(a)}" for a in advice)
        self._advice.visible = bool(advice)
        bound = j.segment_bound_ms()
        self._advice_ok.object = (
            "Advice: at least 1 hour and below the model's "
            f"{'segment' if j.trained is not None and j.trained.resolved.window == 'fixed' else 'sliding step'}"
            f" ({duration_text(bound)}). One `_EAD_{html.escape(j.model.config.telemetry_key)}` "
            f"(score) and one `_EID_…` (score index) point per bucket and device."
            if bound
            else "Build the model to get storage advice."
        )
        self._schedule.object = j.schedule_text()
        changed = j.changes() or int(j.storage_frequency_ms) != int(j.model.config.storage_frequency_ms)
        self._save.disabled = not changed

    def _on_save(self) -> None:
        self.jobs.save()
        self._message.object = self.jobs.message
        self._runs.value = self._runs_frame()
        self._update()

    def __panel__(self):
        return pn.Column(
            self._enabled,
            pn.Row(self._every, self._unit, self._at_start),
            self._items,
            self._schedule,
            pn.pane.Markdown("**Saving and alarms**"),
            self._save_tm,
            pn.Row(
                self._freq,
                pn.Column(self._advice_ok, self._advice, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            self._alarms,
            pn.Row(self._save, self._message),
            pn.pane.Markdown("**Latest refresh runs**"),
            self._runs,
            sizing_mode="stretch_width",
        )


def jobs_tab(platform, live, user, model) -> JobsView:
    return JobsView(platform, jobs=JobsDraft(platform, model))
