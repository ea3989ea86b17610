"""The Input tab: every setting of the model, grouped, with validation messages next to each field;
the severity thresholds drawn over the training score histogram with an alarm preview that
follows every edit; a rebuild warning before saving changes that need one.

The preview table (``#alarm-preview``) has one row per tier (``data-severity``) with the
anomalies that would get an alarm of that severity and the training segments at or above it.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import panel as pn
import param
from bokeh.models import ColumnDataSource
from bokeh.models.annotations import Span
from bokeh.plotting import figure

from ...alarms import severity_colour
from ...anomaly.config import SEVERITIES
from ...views.workspace.inputs import DELETE_BEHAVIOUR, SECTIONS, InputDraft
from ...views.workspace.model_data import profile_devices
from .session import picker_ms, picker_value

OPEN_SECTIONS = {"Alarms", "Scoring"}


#: param type -> widget, for the knobs without a custom widget (their doc becomes the tooltip)
WIDGETS = (
    (param.Boolean, pn.widgets.Checkbox),
    (param.Selector, pn.widgets.Select),
    (param.Integer, pn.widgets.IntInput),
    (param.Number, pn.widgets.FloatInput),
    (param.String, pn.widgets.TextInput),
)


def _widget_for(obj: param.Parameterized, name: str):
    p = obj.param[name]
    cls = next(w for t, w in WIDGETS if isinstance(p, t))
    kw: dict[str, Any] = {"width": 260} if cls is not pn.widgets.Checkbox else {}
    if p.doc and "description" in cls.param:
        kw["description"] = " ".join(p.doc.split())
    return cls.from_param(p, name=name.replace("_", " ").capitalize(), **kw)


class InputView(pn.viewable.Viewer):
    inputs: param.ClassSelector[InputDraft] = param.ClassSelector(class_=InputDraft)  # type: ignore[assignment]  # required, never None

    def __init__(self, platform, **params):
        super().__init__(**params)
        self.platform = platform
        d = self.inputs.draft
        self._errors: dict[str, pn.pane.HTML] = {}
        self._widgets: dict[str, pn.viewable.Viewable] = {}
        self._rebuild = pn.pane.Alert("", alert_type="warning", visible=False, name="rebuild-note")
        self._message = pn.pane.Markdown("", name="input-message")
        self._save = pn.widgets.Button(name="Save", button_type="primary", width=200, css_classes=["input-save"])
        self._reset = pn.widgets.Button(name="Discard changes", width=160)
        self._save.on_click(lambda _: self._on_save())
        self._reset.on_click(lambda _: self._on_reset())
        self._preview = pn.pane.HTML("", name="alarm-preview", sizing_mode="stretch_width")
        self._spans: dict[str, Span] = {}
        self._hist = self._histogram()
        self._deletion = pn.pane.Markdown("")
        d.param.watch(self._changed, [p for p in d.param if p != "name"] + ["name"])
        self._changed()

    # -- widgets ---------------------------------------------------------------------------------------
    def _field_widget(self, name: str):
        d = self.inputs.draft
        w: pn.widgets.Widget
        opts: list[str] | dict[str, str]
        if name == "name":
            w = pn.widgets.TextInput(name="Name", value=d.name, width=300)
            w.param.watch(lambda e: setattr(d, "name", e.new), "value")
        elif name in ("fields", "features", "items"):
            if name == "items":
                opts = {v: k for k, v in profile_devices(self.platform, self.inputs.model).items()}
            elif name == "fields":
                keys = {
                    k
                    for dev in profile_devices(self.platform, self.inputs.model)
                    for k in self.platform.store.keys(dev)
                    if not k.startswith(("_EAD_", "_EID_"))
                }
                opts = sorted(set(d.fields) | keys)
            else:
                opts = list(d.param.features.default)
            w = pn.widgets.MultiChoice(
                name=name.capitalize() + (" (empty: all)" if name != "features" else ""),
                options=opts,
                value=list(getattr(d, name)),
                width=420,
            )
            w.param.watch(lambda e, n=name: setattr(d, n, list(e.new)), "value")
        elif name in ("train_start", "train_end"):
            w = pn.widgets.DatetimePicker(
                name=f"Training {name.split('_')[1]} (UTC, empty: all data)",
                value=picker_value(getattr(d, name)),
                width=260,
            )
            w.param.watch(lambda e, n=name: setattr(d, n, picker_ms(e.new)), "value")
        elif name == "alarm_on_delete":
            w = pn.widgets.RadioButtonGroup(
                name="On anomaly deletion", options=["clear", "delete"], value=d.alarm_on_delete, button_type="default"
            )
            w.param.watch(lambda e: setattr(d, "alarm_on_delete", e.new), "value")
        else:
            w = _widget_for(d, name)
        return w

    def _row(self, name: str):
        self._widgets[name] = w = self._field_widget(name)
        err = self._errors[name] = pn.pane.HTML(
            "", css_classes=["field-error"], name=f"error-{name}", styles={"color": "#c62828"}, margin=(18, 10, 0, 10)
        )
        return pn.Row(w, err)

    def _section(self, title: str, names: list[str]) -> pn.Card:
        """One card of settings. A collapsed card gets its widgets when first opened: the tab
        then sends the browser a few dozen models instead of some 250, and paints sooner."""

        def body() -> list:
            rows = [self._row(n) for n in names]
            return [*rows, self._deletion] if title == "Alarms" else rows

        if title in OPEN_SECTIONS:
            return pn.Card(*body(), title=title, sizing_mode="stretch_width")
        card = pn.Card(title=title, collapsed=True, sizing_mode="stretch_width")

        def opened(event) -> None:
            if not event.new and not card.objects:
                card.objects = body()
                self._changed()

        card.param.watch(opened, "collapsed")
        return card

    def _thresholds(self):
        d = self.inputs.draft
        rows = []
        for sev in SEVERITIES:
            on = pn.widgets.Checkbox(name="enabled", value=getattr(d, f"{sev}_enabled"), width=80)
            val = pn.widgets.FloatInput(
                name=f"{sev.upper()} threshold",
                value=getattr(d, f"{sev}_threshold"),
                start=0,
                step=1,
                width=160,
                css_classes=[f"threshold-{sev}"],
            )
            on.param.watch(lambda e, s=sev: setattr(d, f"{s}_enabled", e.new), "value")
            val.param.watch(lambda e, s=sev: setattr(d, f"{s}_threshold", e.new), "value")
            self._widgets[f"{sev}_threshold"], self._widgets[f"{sev}_enabled"] = val, on
            err = self._errors[f"{sev}_threshold"] = pn.pane.HTML(
                "", styles={"color": "#c62828"}, css_classes=["field-error"]
            )
            self._errors.setdefault(f"{sev}_enabled", pn.pane.HTML("", styles={"color": "#c62828"}))
            # the message under its field: beside it, the narrow column would cut it off
            err.width = self._errors[f"{sev}_enabled"].width = 420
            rows.append(pn.Column(pn.Row(val, on), err, self._errors[f"{sev}_enabled"], margin=0))
        return pn.Column(*rows)

    def _histogram(self):
        scores = self.inputs.train_scores()
        fig = figure(
            title="Training segment scores and the severity thresholds",
            height=300,
            sizing_mode="stretch_width",
            name="threshold-histogram",
            y_axis_type="log",
            tools="xwheel_zoom,xpan,reset,hover,save",
        )
        if len(scores):
            top = max(float(np.max(scores)), *self.inputs.thresholds().values(), 100.0) * 1.05
            counts, edges = np.histogram(scores, bins=80, range=(0, top))
            keep = counts > 0
            fig.quad(
                source=ColumnDataSource({"left": edges[:-1][keep], "right": edges[1:][keep], "top": counts[keep]}),
                left="left",
                right="right",
                bottom=0.5,
                top="top",
                fill_color="#90a4ae",
                line_color="#78909c",
            )
        for sev in SEVERITIES:
            span = Span(
                location=100,
                dimension="height",
                line_color=severity_colour(sev),
                line_width=2,
                line_dash="dashed",
                name=f"threshold:{sev}",
            )
            fig.add_layout(span)
            self._spans[sev] = span
        fig.xaxis.axis_label = "anomaly score (100 = the model's threshold distance)"
        fig.yaxis.axis_label = "training segments"
        return pn.pane.Bokeh(fig, sizing_mode="stretch_width")

    # -- reacting ---------------------------------------------------------------------------------------
    def _changed(self, *_) -> None:
        inp = self.inputs
        errors = inp.errors()
        for name, pane in self._errors.items():
            msgs = errors.get(name, [])
            pane.object = "".join(f"<div class='error'>⚠ {html.escape(m)}</div>" for m in msgs)
        note = inp.rebuild_note()
        self._rebuild.object, self._rebuild.visible = note, bool(note)
        self._save.name = "Save and rebuild" if note else "Save"
        self._save.disabled = bool(errors)
        th = inp.thresholds()
        for sev, span in self._spans.items():
            span.visible = sev in th
            if sev in th:
                span.location = th[sev]
        self._preview.object = self._preview_html()
        self._deletion.object = DELETE_BEHAVIOUR[inp.draft.alarm_on_delete]

    def _preview_html(self) -> str:
        df = self.inputs.alarm_preview()
        rows = []
        for r in df.itertuples():
            colour = severity_colour(r.severity)
            th = (
                "off"
                if not r.enabled
                else ("" if r.threshold is None or r.threshold != r.threshold else f"≥ {r.threshold:g}")
            )
            seg = (
                ""
                if r.training_segments is None or r.training_segments != r.training_segments
                else f"{int(r.training_segments)}"
            )
            rows.append(
                f"<tr data-severity='{r.severity.lower().replace(' ', '-')}'>"
                f"<td><span style='display:inline-block;width:10px;height:10px;background:{colour}'></span> "
                f"{r.severity}</td><td>{th}</td><td class='count'>{int(r.anomalies)}</td><td>{seg}</td></tr>"
            )
        return (
            "<table id='alarm-preview' style='border-collapse:collapse;min-width:520px'>"
            "<tr><th align=left>Severity</th><th align=left>Threshold</th><th align=left>Anomalies "
            "(alarm of this severity)</th><th align=left>Training segments at or above</th></tr>"
            + "".join(rows)
            + "</table><small>Preview with the values above, before saving: the "
            "highest tier an anomaly's score meets sets its alarm's severity.</small>"
        )

    def _on_save(self) -> None:
        rebuild = bool(self.inputs.rebuild_needed())
        self.inputs.save(rebuild=rebuild)
        self._message.object = self.inputs.message
        self._changed()

    def _on_reset(self) -> None:
        self.inputs.reset()
        d = self.inputs.draft
        for name, w in self._widgets.items():
            if isinstance(w, pn.widgets.Widget) and hasattr(w, "value"):
                v = getattr(d, name)
                w.value = picker_value(v) if name in ("train_start", "train_end") else v
        self._message.object = "Changes discarded."

    def __panel__(self):
        cards = [self._section(title, names) for title, names in SECTIONS.items()]
        self._changed()
        return pn.Column(
            pn.pane.Markdown(
                "Settings of the stored model. Name, saved-score settings and alarm settings change in "
                "place; every other change needs a rebuild, and the tab says so before you save."
            ),
            pn.Row(
                pn.Column(self._hist, self._preview, sizing_mode="stretch_width"),
                pn.Column(
                    pn.pane.Markdown(
                        "**Severity thresholds** (anomaly score; an alarm takes the highest "
                        "tier its anomaly's score meets)"
                    ),
                    self._thresholds(),
                    width=460,
                ),
                sizing_mode="stretch_width",
            ),
            *cards,
            self._rebuild,
            pn.Row(self._save, self._reset),
            self._message,
            sizing_mode="stretch_width",
        )


def inputs_tab(platform, live, user, model) -> InputView:
    return InputView(platform, inputs=InputDraft(platform, model))
