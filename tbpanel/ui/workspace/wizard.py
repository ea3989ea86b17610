"""The model creation wizard (``/models`` → "New model"), drawing a
:class:`~tbpanel.views.workspace.wizard.ModelWizard`: intent → data → readiness → sensitivity and
granularity → review & build with a live progress bar → the model's Result tab.

Reads of the store (readiness) and the build run off the server loop; the build's progress is
polled from the task runner's in-memory record by a per-session periodic callback.
"""

from __future__ import annotations

import html
import re

import panel as pn
import param

from ...anomaly.config import FEATURES, ModelConfig
from ...clock import duration_text, from_datetime, naive_utc
from ...views.workspace.models_list import fmt_ms
from ...views.workspace.settings import device_options, duration_options, help_text, setting
from ...views.workspace.wizard import INTENT_TEXT, RANGES, SENSITIVITY_TEXT, STEPS, ModelWizard
from ..background import Background
from .session import picker_ms, picker_value

VERDICT_COLOURS = {"Poor": "#d32f2f", "Fair": "#f57c00", "Good": "#1e88e5", "Excellent": "#2e7d32"}
#: the ModelConfig knobs the Advanced form leaves out (the review step shows the name)
NOT_ADVANCED = {"name"}
#: the Advanced form's sections, each starting at this knob (ModelConfig's own order)
SECTIONS = {
    "device_type": "Data",
    "segment_ms": "Segmentation",
    "comparison": "Comparison",
    "algorithm": "Algorithm",
    "threshold_percent": "Scoring",
    "telemetry_key": "Outputs and alarms",
    "adaptive": "Adaptive re-fits",
}


def _msg_html(msgs: list[str]) -> str:
    return "".join(
        f'<div class="field-error" style="color:#c62828;font-size:13px">⚠ {html.escape(m)}</div>' for m in msgs
    )


class AdvancedForm(pn.viewable.Viewer):
    """Every ModelConfig knob with its problems next to it (assignment errors from ``param``'s
    own bounds, cross-field ones from :meth:`ModelConfig.validate_by_field`). Labels, units,
    help and the kind of input come from :data:`~tbpanel.views.workspace.settings.SETTINGS`."""

    config: param.ClassSelector[ModelConfig] = param.ClassSelector(class_=ModelConfig)  # type: ignore[assignment]  # required, never None
    devices = param.Dict(default={}, doc="name -> id of the profile's devices, for the device picker.")

    def __init__(self, **params):
        super().__init__(**params)
        self._errors: dict[str, str] = {}
        self._widgets: dict[str, pn.widgets.Widget] = {}
        self._msgs: dict[str, pn.pane.HTML] = {}
        self._sections: list[tuple[str, list]] = []
        for field, p in ModelConfig.param.objects("existing").items():
            if field in NOT_ADVANCED:
                continue
            if field in SECTIONS or not self._sections:
                self._sections.append((SECTIONS.get(field, ""), []))
            w = self._widget(field, p)
            self._widgets[field] = w
            self._msgs[field] = pn.pane.HTML("", name=f"msg-{field}", margin=(0, 10), width=270)
            w.param.watch(lambda e, f=field: self._edited(f, e.new), "value")
            self._sections[-1][1].append(
                pn.Column(w, self._msgs[field], css_classes=["advanced-field"], name=field, width=290)
            )
        self.on_change = None
        self.fill()

    @staticmethod
    def _widget(field: str, p) -> pn.widgets.Widget:
        row = setting(field)
        label, desc = row.title, help_text(field) or None
        kw = dict(name=label, description=desc, width=250)
        if row.kind == "date":
            return pn.widgets.DatetimePicker(allow_input=True, **kw)
        if row.kind == "devices":
            return pn.widgets.MultiChoice(options={}, placeholder="every device of the profile", **kw)
        if row.kind == "features":
            return pn.widgets.MultiChoice(options=list(FEATURES), **kw)
        if row.kind == "duration":
            return pn.widgets.Select(options=duration_options(field, p.default), **kw)
        if isinstance(p, param.Selector):
            return pn.widgets.Select(options=list(p.objects), **kw)
        if isinstance(p, param.Boolean):
            return pn.widgets.Checkbox(name=label, width=250, margin=(28, 10, 5, 10))
        if isinstance(p, param.Integer):
            return pn.widgets.IntInput(**kw)
        if isinstance(p, param.Number):
            return pn.widgets.FloatInput(**kw)
        if isinstance(p, param.List):
            kw["name"] = label + " (comma separated)"
        return pn.widgets.TextInput(**kw)

    def _shown(self, field: str, value):
        """A config value as its widget holds it (options widened so the value is one of them)."""
        kind = setting(field).kind
        w = self._widgets[field]
        if kind == "date":
            return picker_value(value)
        if kind == "devices":
            w.param.update(options=device_options(self.devices, list(value)))
            return list(value)
        if kind == "features":
            w.param.update(options=list(dict.fromkeys([*FEATURES, *value])))
            return list(value)
        if kind == "duration":
            w.param.update(options=duration_options(field, value))
            return value
        return ", ".join(value) if isinstance(value, list) else value

    def fill(self) -> None:
        """Put the config's values into the widgets (after the wizard made a new draft)."""
        self._errors = {}
        for field, w in self._widgets.items():
            w.param.update(value=self._shown(field, getattr(self.config, field)))
        self.revalidate()

    def _edited(self, field: str, value) -> None:
        p = ModelConfig.param[field]
        try:
            kind = setting(field).kind
            if kind == "date":
                value = picker_ms(value)
            elif isinstance(p, param.List) and isinstance(value, str):
                value = [x.strip() for x in (value or "").split(",") if x.strip()]
            elif isinstance(p, param.List):
                value = list(value or [])
            if value is None and not p.allow_None:
                raise ValueError("A value is required.")
            if getattr(self.config, field) != value:
                setattr(self.config, field, value)
            self._errors.pop(field, None)
        except Exception as exc:
            msg = str(exc).split("\n")[0]
            self._errors[field] = re.sub(r"^\w+ parameter '[\w.]+' ", "", msg).capitalize()
        self.revalidate()
        if self.on_change is not None:
            self.on_change()

    def problems(self) -> dict[str, list[str]]:
        out = self.config.validate_by_field()
        for field, msg in self._errors.items():
            out.setdefault(field, []).insert(0, f"Not accepted: {msg}")
        return out

    def revalidate(self) -> None:
        problems = self.problems()
        for field, pane in self._msgs.items():
            pane.object = _msg_html(problems.get(field, []))

    def __panel__(self):
        parts = []
        for title, cells in self._sections:
            parts += [
                pn.pane.Markdown(f"#### {title}", margin=(10, 10, 0, 10)),
                pn.FlexBox(*cells, sizing_mode="stretch_width"),
            ]
        return pn.Column(
            pn.pane.Markdown(
                "Settings set to *auto* (or left empty) are worked out from the data when the model is "
                "built. The ? next to a setting says what it does."
            ),
            *parts,
            sizing_mode="stretch_width",
        )


class WizardView(pn.viewable.Viewer):
    """One step at a time, Back / Next, problems in an alert above the buttons."""

    wizard: param.ClassSelector[ModelWizard] = param.ClassSelector(class_=ModelWizard)  # type: ignore[assignment]  # required, never None

    def __init__(self, platform, on_cancel=None, **params):
        super().__init__(**params)
        self.platform = platform
        self.on_cancel = on_cancel
        w = self.wizard
        self._bg = Background(platform.executor)
        self._steps = pn.pane.HTML("")
        self._alert = pn.pane.Alert("", alert_type="danger", visible=False, name="wizard-problems")
        self._back = pn.widgets.Button(name="‹ Back", width=110)
        self._next = pn.widgets.Button(name="Next ›", button_type="primary", width=140)
        self._cancel = pn.widgets.Button(name="Cancel", button_type="light", width=100)
        self._back.on_click(lambda e: self._go(back=True))
        self._next.on_click(lambda e: self._go())
        self._cancel.on_click(lambda e: self.on_cancel and self.on_cancel())
        self._body = pn.Column(sizing_mode="stretch_width", min_height=320)

        # step 0: intent
        labels = {f"{t} — {d}": k for k, (t, d) in INTENT_TEXT.items()}
        self._intent = pn.widgets.RadioBoxGroup(name="Intent", options=labels, value=w.intent, inline=False)
        self._intent.link(w, value="intent")
        # step 1: data
        self._profile = pn.widgets.Select.from_param(w.param.device_type, name="Device profile", width=260)
        self._devices = pn.widgets.MultiChoice(
            name="Devices (none chosen = every device of the profile)",
            options=dict(w.devices),
            placeholder="every device of the profile",
            width=520,
        )
        self._keys = pn.widgets.MultiChoice(
            name="Telemetry keys", options=list(w.keys_available), value=list(w.fields), width=520
        )
        self._range = pn.widgets.RadioButtonGroup(name="Date range", options=list(RANGES), value=w.range_preset)
        self._start = pn.widgets.DatetimePicker(
            name="From (UTC)", value=naive_utc(w.start_ms), width=200, allow_input=True
        )
        self._end = pn.widgets.DatetimePicker(name="To (UTC)", value=naive_utc(w.end_ms), width=200, allow_input=True)
        self._devices.link(w, value="items")
        self._keys.link(w, value="fields")
        self._range.param.watch(self._range_changed, "value")
        for picker in (self._start, self._end):
            picker.param.watch(self._custom_changed, "value")
        w.param.watch(self._profile_loaded, ["devices", "keys_available"])
        # step 2: readiness
        self._readiness = pn.pane.HTML("", sizing_mode="stretch_width", name="readiness")
        # step 3: tuning
        self._sensitivity = pn.widgets.RadioBoxGroup(
            name="Sensitivity", options={v: k for k, v in SENSITIVITY_TEXT.items()}, value=w.sensitivity
        )
        self._sensitivity.link(w, value="sensitivity")
        self._granularity = pn.widgets.RadioBoxGroup(name="Granularity", options={}, inline=False)
        self._granularity.param.watch(lambda e: setattr(w, "segment_ms", int(e.new)) if e.new else None, "value")
        self._name = pn.widgets.TextInput(name="Model name", value=w.model_name, width=360)
        self._name.link(w, value="model_name")
        # step 4: review & build
        self._summary = pn.pane.HTML("", sizing_mode="stretch_width", name="review-summary")
        self._review_name = pn.widgets.TextInput(name="Model name", width=360)
        self._review_name_msg = pn.pane.HTML("", margin=(22, 5, 0, 5))
        self._review_name.param.watch(self._rename, "value")
        self._advanced: AdvancedForm | None = None
        self._advanced_card = pn.Card(
            title="Advanced: every setting", collapsed=True, sizing_mode="stretch_width", name="advanced"
        )
        self._advanced_card.param.watch(lambda e: self._open_advanced() if not e.new else None, "collapsed")
        self._build = pn.widgets.Button(name="Build model", button_type="success", width=160)
        self._build.on_click(lambda e: self._start_build())
        # the build's progress sits next to its button, so it is on screen when the button is
        self._progress = pn.indicators.Progress(
            name="build-progress",
            value=0,
            max=100,
            visible=False,
            width=420,
            height=26,
            margin=(10, 10),
            bar_color="success",
            css_classes=["build-progress"],
        )
        self._build_status = pn.pane.HTML("", name="build-status", sizing_mode="stretch_width")
        self._task = None
        self._model = None
        self._finished = False
        w.param.watch(lambda e: self._render(), "step")
        self._render()

    # -- navigation ------------------------------------------------------------------------------
    def _go(self, back: bool = False) -> None:
        w = self.wizard
        if back:
            w.back()
            self._show_problems([])
            return
        if w.step == len(STEPS) - 1:
            return
        if w.step == 3 and self._bg.doc is not None:
            # the review takes a moment to compute and draw: the Next button says so, and the
            # header moves on only together with the review itself
            self._next.loading = self._next.disabled = True
            self._next.name = "Preparing the review …"
            self._bg.doc.add_next_tick_callback(self._advance)
            return
        self._advance()

    def _advance(self) -> None:
        self._next.param.update(loading=False, disabled=False, name="Next ›")
        self._show_problems(self.wizard.next())  # a new step redraws (and may disable Next again)

    def _show_problems(self, problems: list[str]) -> None:
        self._alert.object = "\n".join(f"- {p}" for p in problems)
        self._alert.visible = bool(problems)

    def _render(self) -> None:
        w = self.wizard
        # a new pane every step: the browser draws the header with the step's body, never before it
        self._steps = pn.pane.HTML("", sizing_mode="stretch_width", name="wizard-steps")
        self._steps.object = (
            "<div id='wizard-step-bar' style='font-size:15px;margin:4px 0 10px'>"
            + " › ".join(
                (
                    f"<b data-current='1' style='color:#0b6bcb'>{i + 1}. {s}</b>"
                    if i == w.step
                    else f"<span style='color:{'#333' if i < w.step else '#999'}'>{i + 1}. {s}</span>"
                )
                for i, s in enumerate(STEPS)
            )
            + "</div>"
        )
        self._back.disabled = w.step == 0 or self._task is not None
        self._next.visible = w.step < len(STEPS) - 1
        self._next.disabled = False
        self._body[:] = [self._steps, *getattr(self, f"_step{w.step}")()]

    def _step0(self):
        return [
            pn.pane.Markdown(
                "### What is this model for?\nThe choice sets sensible segment lengths, "
                "windows and comparison; every setting stays editable under *Advanced* at "
                "the end."
            ),
            self._intent,
        ]

    def _step1(self):
        w = self.wizard
        custom = w.range_preset == "custom"
        self._start.visible = self._end.visible = custom
        return [
            pn.pane.Markdown("### Which data?"),
            self._profile,
            self._devices,
            self._keys,
            pn.pane.Markdown("**Training range**", margin=(10, 10, 0, 10)),
            self._range,
            pn.Row(self._start, self._end),
        ]

    def _step2(self):
        w = self.wizard
        self._next.disabled = True
        self._readiness.object = "<p id='readiness-checking'>Checking the data in the store …</p>"
        self._bg.run("readiness", w.check_readiness, self._readiness_done, lambda exc: self._readiness_failed(exc))
        return [pn.pane.Markdown("### Is the data ready?"), self._readiness]

    def _step3(self):
        w = self.wizard
        options = w.granularities()
        self._granularity.options = options
        self._granularity.value = w.segment_ms if w.segment_ms in options.values() else w.recommended_segment()
        self._name.value = w.model_name
        return [
            pn.pane.Markdown("### Sensitivity"),
            self._sensitivity,
            pn.pane.Markdown(
                f"### Granularity\nThe data arrives every **{duration_text(w.data_step_ms, exact=True)}**; "
                "a segment is the stretch of time compared with normal behaviour: shorter ones "
                "catch short spikes, longer ones slow changes."
            ),
            self._granularity,
            self._name,
        ]

    def _step4(self):
        w = self.wizard
        if self._advanced is None:  # drawn when first opened: some 50 fields cost seconds to draw
            self._advanced_card[:] = [pn.pane.Markdown("Every setting of the model, with its help text.")]
        else:
            self._advanced.param.update(config=w.config, devices=dict(w.devices))
            self._advanced.fill()
        self._review_name.value = w.config.name
        self._review_changed()
        return [
            pn.pane.Markdown("### Review and build"),
            self._summary,
            pn.Row(self._review_name, self._review_name_msg),
            self._advanced_card,
            pn.Row(self._build, self._progress),
            self._build_status,
        ]

    def _open_advanced(self) -> None:
        w = self.wizard
        if self._advanced is not None or w.config is None:
            return
        self._advanced = AdvancedForm(config=w.config, devices=dict(w.devices))
        self._advanced.on_change = self._review_changed
        self._advanced_card[:] = [self._advanced]

    # -- data step events ------------------------------------------------------------------------
    def _profile_loaded(self, *_):
        w = self.wizard
        self._devices.options = dict(w.devices)
        self._devices.value = list(w.items)
        self._keys.options = list(w.keys_available)
        self._keys.value = list(w.fields)
        if w.model_name and not self._name.value:
            self._name.value = w.model_name

    def _range_changed(self, event) -> None:
        w = self.wizard
        if event.new == "custom":
            w.set_range("custom", from_datetime(self._start.value), from_datetime(self._end.value))
        else:
            w.set_range(event.new)
            self._start.value, self._end.value = naive_utc(w.start_ms), naive_utc(w.end_ms)
        if w.step == 1:
            self._render()

    def _custom_changed(self, event) -> None:
        w = self.wizard
        if w.range_preset == "custom" and self._start.value and self._end.value:
            w.set_range("custom", from_datetime(self._start.value), from_datetime(self._end.value))

    # -- readiness -------------------------------------------------------------------------------
    def _readiness_done(self, r) -> None:
        if self.wizard.step != 2:
            return
        colour = VERDICT_COLOURS[r.verdict]
        rows = [
            ("Devices with data", f"{r.entities} of {r.entities_asked}"),
            ("Keys", ", ".join(r.keys) or "none"),
            ("Points (approximate)", f"{r.points:,}"),
            ("Sampling step", duration_text(r.step_ms, exact=True) if r.step_ms else "unknown"),
            ("Range with data", f"{fmt_ms(r.first_ts)} → {fmt_ms(r.last_ts)}" if r.first_ts else "none"),
            ("Coverage", f"{r.coverage * 100:.0f} %"),
        ]
        table = "".join(
            f"<tr><th style='text-align:left;padding-right:18px'>{k}</th><td data-fact='{k}'>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        why = "".join(f"<li>{html.escape(x)}</li>" for x in r.reasons)
        self._readiness.object = (
            f"<div id='readiness-result'><p>Verdict: <span id='readiness-verdict' data-verdict='{r.verdict}' "
            f"style='background:{colour};color:white;padding:3px 10px;border-radius:10px;font-weight:600'>"
            f"{r.verdict}</span></p><table>{table}</table><p><b>Why</b></p><ul id='readiness-why'>{why}</ul></div>"
        )
        self._next.disabled = r.points == 0

    def _readiness_failed(self, exc: Exception) -> None:
        self._readiness.object = f"<p style='color:#c62828'>Could not read the data: {html.escape(str(exc))}</p>"

    # -- review ----------------------------------------------------------------------------------
    def _rename(self, event) -> None:
        cfg = self.wizard.config
        if cfg is not None and event.new != cfg.name:
            cfg = cfg.copy(name=event.new)  # param keeps ``name`` constant after construction
            self.wizard.config = cfg
            if self._advanced is not None:
                self._advanced.config = cfg
            self._review_changed()

    def _review_changed(self) -> None:
        w = self.wizard
        cfg = w.config
        if cfg is None:  # no draft yet: nothing to review
            return
        problems = self._advanced.problems() if self._advanced is not None else cfg.validate_by_field()
        name_problems = [p.split(": ", 1)[1] for p in w.problems(4) if p.startswith("name: ")]
        self._review_name_msg.object = _msg_html(list(dict.fromkeys(name_problems)))
        devices = (
            ", ".join(n for n, i in w.devices.items() if i in cfg.items)
            if cfg.items
            else f"all {len(w.devices)} devices of the profile"
        )
        rows = [
            ("Intent", INTENT_TEXT[w.intent][0]),
            ("Device profile", cfg.device_type),
            ("Devices", devices),
            ("Keys", ", ".join(cfg.fields)),
            ("Training range", f"{fmt_ms(cfg.train_start)} → {fmt_ms(cfg.train_end)}"),
            (
                "Segments",
                f"{duration_text(cfg.segment_ms, exact=True)}, {cfg.window}"
                + (f" (step {cfg.sliding_step_percent:g} %)" if cfg.window == "sliding" else ""),
            ),
            ("Comparison", f"{cfg.comparison}-based, {cfg.algorithm}, {cfg.distance} distance"),
            ("Sensitivity", f"{w.sensitivity}: {cfg.threshold_percent:g} % of training segments count as anomalous"),
            ("Adaptive re-fits", "on" if cfg.adaptive else "off"),
            (
                "Saved scores",
                f"_EAD_{cfg.telemetry_key} / _EID_{cfg.telemetry_key} every "
                f"{duration_text(cfg.storage_frequency_ms, exact=True)} (when switched on)",
            ),
        ]
        table = "".join(
            f"<tr><th style='text-align:left;padding-right:18px'>{k}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in rows
        )
        n_bad = sum(len(v) for v in problems.values())
        warn = (
            f"<p style='color:#c62828' id='review-invalid'>{n_bad} setting problem{'s' if n_bad != 1 else ''}: "
            f"see <i>Advanced</i>.</p>"
            if n_bad
            else ""
        )
        self._summary.object = f"<table id='review-table'>{table}</table>{warn}"
        self._build.disabled = bool(n_bad or name_problems) or self._task is not None
        if n_bad:
            self._advanced_card.collapsed = False

    # -- build -----------------------------------------------------------------------------------
    def _start_build(self) -> None:
        if self._task is not None:
            return
        self._build.disabled = True
        self._back.disabled = True
        self._progress.param.update(visible=True, value=-1, active=True, bar_color="success")  # indeterminate
        self._build_status.object = "<p id='build-state' data-status='STARTING'>Starting the build …</p>"
        self._bg.run("build", self.wizard.build, self._build_started, self._build_failed)

    def _build_started(self, started) -> None:
        self._model, self._task = started
        task_id = self._task.id
        # every progress report of the task redraws the bar (plus a slow poll, should one be missed)
        self._bg.follow(self.platform.tasks.changed, lambda task: task.id == task_id, self._poll_task, poll_ms=1000)
        self._poll_task()

    def _build_failed(self, exc: Exception) -> None:
        self._build.disabled = False
        self._back.disabled = False
        self._progress.visible = False
        self._build_status.object = f"<p style='color:#c62828'>Could not start the build: {html.escape(str(exc))}</p>"

    def _poll_task(self) -> None:
        """Show the build task's state; when it is done, open the model."""
        if self._finished or self._task is None:
            return
        task = self.platform.tasks.get(self._task.id)
        if task is None:
            return
        pct = int(round((task.progress or 0) * 100))
        self._progress.param.update(value=pct, active=False)
        self._build_status.object = (
            f"<p id='build-state' data-status='{task.status}' data-progress='{pct}'>"
            f"{'Queued' if task.status == 'QUEUED' else 'Building'}: {pct} % — {html.escape(task.message)}</p>"
        )
        if task.status not in ("DONE", "FAILED", "CANCELLED"):
            return
        self._finished = True
        url = f"/model?id={self._model.id}"
        if task.status == "DONE":
            n = task.result.get("anomalies", 0)
            self._build_status.object = (
                f"<p id='build-state' data-status='DONE' data-progress='100'>Built: {n} "
                f"anomal{'y' if n == 1 else 'ies'} found. Opening <a href='{url}'>the result</a> …</p>"
            )
            loc = pn.state.location
            if loc is not None:
                loc.param.update(pathname="/model", search=f"?id={self._model.id}")
                loc.reload = True
        else:
            self._progress.bar_color = "danger"
            self._build_status.object = (
                f"<p id='build-state' data-status='{task.status}' style='color:#c62828'>The build "
                f"{task.status.lower()}: {html.escape(task.message)}. The model is kept with its settings: "
                f"<a href='{url}'>open it</a>, or build it again from <a href='/models'>the models list</a>.</p>"
            )

    def __panel__(self):
        return pn.Column(
            pn.pane.Markdown("## New anomaly model"),
            self._body,
            self._alert,
            pn.Row(self._back, self._next, self._cancel),
            sizing_mode="stretch_width",
            name="wizard",
        )
