"""The Review tab: a device's raw telemetry with the anomaly score on a second axis, the
model's anomalies shaded, and a sortable anomaly table; clicking a row zooms onto it, on the
field that drove it.

The figure (``review-plot``) draws ``review:raw`` (the field; its ``tags`` say which device id
and key), ``review:score`` (segment scores, right axis, 100 = the model's threshold) and
``review:anomalies`` (shaded windows).
"""

from __future__ import annotations

import html

import panel as pn
import param
from bokeh.models import ColumnDataSource, DataRange1d, HoverTool, LinearAxis, Range1d
from bokeh.models.annotations import Span

from ...alarms import severity_colour
from ...views.workspace.review import ReviewModel
from ..background import Background
from .session import live_session, time_figure

TABLE_COLUMNS = ["id", "device", "start", "end", "duration", "score", "score_index", "severity", "active"]


class ReviewView(pn.viewable.Viewer):
    """Device and field pickers, the chart and the anomaly table."""

    review: param.ClassSelector[ReviewModel] = param.ClassSelector(class_=ReviewModel)  # type: ignore[assignment]  # required, never None
    follow_ms = param.Integer(default=3000, bounds=(200, None), doc="How often ended tasks are looked for.")

    def __init__(self, platform, **params):
        super().__init__(**params)
        self.platform = platform
        self._bg = Background(platform.executor)  # reads off the server loop
        r = self.review
        self._item = pn.widgets.Select(
            name="Device",
            options={v: k for k, v in r.devices.items()},
            value=r.item,
            width=220,
            css_classes=["review-device"],
        )
        self._field = pn.widgets.Select.from_param(r.param.field, name="Field", width=180, css_classes=["review-field"])
        self._all = pn.widgets.Button(name="Whole range", width=120)
        self._caption = pn.pane.HTML("", name="review-caption")
        self._raw = ColumnDataSource({"x": [], "y": []}, name="review:raw")
        self._score = ColumnDataSource({"x": [], "score": []}, name="review:score")
        self._strips = ColumnDataSource({"x0": [], "x1": [], "color": [], "label": []}, name="review:anomalies")
        self._figure = self._make_figure()
        self._table = pn.widgets.Tabulator(
            r.anomaly_table()[TABLE_COLUMNS],
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            height=280,
            hidden_columns=["id"],
            pagination=None,
            name="review-table",
            selectable=1,
            header_filters=False,
        )
        self._table.on_click(self._on_click)
        self._item.param.watch(lambda e: setattr(r, "item", e.new), "value")
        r.param.watch(self._on_choice, ["item", "field"])
        self._all.on_click(lambda _: self._show_all())
        self._loaded = False
        self._version = r.version()

    def _make_figure(self):
        f = time_figure("review-plot", height=360, x_range=Range1d(0, 1))
        f.yaxis.axis_label = "value"
        f.extra_y_ranges = {"score": Range1d(0, 200)}
        f.add_layout(LinearAxis(y_range_name="score", axis_label="anomaly score"), "right")
        f.vstrip(x0="x0", x1="x1", source=self._strips, fill_color="color", fill_alpha=0.22, line_alpha=0)
        raw = f.line("x", "y", source=self._raw, color="#0b6bcb", line_width=1.2, legend_label="value")
        f.y_range = DataRange1d(renderers=[raw], range_padding=0.15)  # the value axis fits the values only
        f.step(
            "x",
            "score",
            source=self._score,
            y_range_name="score",
            color="#d32f2f",
            line_width=1.2,
            mode="before",
            legend_label="score",
        )
        f.add_layout(
            Span(
                location=100,
                dimension="width",
                y_range_name="score",
                line_color="#d32f2f",
                line_dash="dashed",
                line_alpha=0.6,
            )
        )
        f.add_tools(
            HoverTool(tooltips=[("time", "@x{%F %H:%M}"), ("value", "@y")], formatters={"@x": "datetime"}, mode="vline")
        )
        # the legend above the plot, never over the data (as on /telemetry); a click hides a line
        legend = f.legend[0]
        f.center = [r for r in f.center if r is not legend]
        legend.orientation = "horizontal"
        legend.click_policy = "hide"
        f.add_layout(legend, "above")
        return f

    # -- loading -----------------------------------------------------------------------------------
    def _load(self):
        r = self.review
        ts, y = r.series()
        return ts, y, r.scores(), r.span()

    def _show(self, loaded) -> None:
        ts, y, scores, (lo, hi) = loaded
        r = self.review
        self._raw.tags = [str(r.item), str(r.field)]  # which series is drawn: (device id, key)
        self._raw.data = {"x": ts.astype(float), "y": y}
        self._score.data = {"x": scores["end_ts"].to_numpy(dtype=float), "score": scores["score"].to_numpy(dtype=float)}
        top = float(scores["score"].max()) if len(scores) else 100.0
        self._figure.extra_y_ranges["score"].end = max(top, 100.0) * 1.15
        mine = r.anomalies_of_item()
        self._strips.data = {
            "x0": mine["start_ts"].to_numpy(dtype=float),
            "x1": mine["end_ts"].to_numpy(dtype=float),
            "color": [severity_colour(s, "#d32f2f") for s in mine["severity"]],
            "label": list(mine["id"]),
        }
        a, b = r.window if r.window is not None else (lo, hi)
        self._figure.x_range.update(start=float(a), end=float(b))
        name = html.escape(r.devices.get(r.item, r.item or ""))
        text = f"<b>{name}</b> · {html.escape(str(r.field))} · {len(mine)} anomal{'y' if len(mine) == 1 else 'ies'}"
        if r.selected:
            hit = r.anomaly_table()[r.anomaly_table()["id"] == r.selected]
            if len(hit):
                row = hit.iloc[0].to_dict()
                drivers = r.drivers(r.selected)
                driven = ", ".join(f"{html.escape(f)} {share:.0%}" for f, share in drivers.items() if share >= 0.1)
                text += (
                    f" · zoomed to <span id='review-focus' data-start='{row['start_ts']}' "
                    f"data-end='{row['end_ts']}' data-field='{html.escape(str(r.field))}'>"
                    f"{row['start']} – {row['end']} UTC, score {row['score']:g} ({row['severity']})"
                    + (f", driven by {driven}" if driven else "")
                    + "</span>"
                )
        self._caption.object = text

    def reload(self) -> None:
        self._bg.run(
            "series",
            self._load,
            self._show,
            lambda exc: setattr(self._caption, "object", f"Could not read the data: {html.escape(str(exc))}"),
        )

    def follow(self) -> None:
        """Periodic: when a build, refresh run or reprocess of the model ended, show its anomalies."""
        version = self.review.version()
        if version == self._version:
            return
        self._version = version
        self.review.reload()
        self._table.value = self.review.anomaly_table()[TABLE_COLUMNS]
        self.reload()

    def _on_choice(self, *_):
        if self._item.value != self.review.item:
            self._item.value = self.review.item
        self.reload()

    def _on_click(self, event) -> None:
        anomaly_id = self._table.value.iloc[event.row]["id"]
        self.focus(anomaly_id)

    def focus(self, anomaly_id: str) -> None:
        """Zoom onto one anomaly: its device's series and the field that drove it, at full
        resolution around it."""
        r = self.review
        with param.parameterized.discard_events(r):
            r.focus(anomaly_id)
        self._item.value = r.item
        self._field.value = r.field  # the pickers were not told (events discarded: one reload)
        self.reload()

    def _show_all(self) -> None:
        self.review.param.update(window=None, selected="")
        self.reload()

    def __panel__(self):
        if not self._loaded:
            self._loaded = True
            if live_session():
                pn.state.onload(self.reload)
                pn.state.add_periodic_callback(self.follow, period=self.follow_ms)
            else:
                self.reload()
        return pn.Column(
            pn.Row(self._item, self._field, self._all),
            self._caption,
            pn.pane.Bokeh(self._figure, sizing_mode="stretch_width"),
            pn.pane.Markdown(
                "Anomalies of the model (click a row to zoom onto it; click a header to sort). "
                "Shading: the anomaly windows of the device shown, by severity; the dashed line is "
                "score 100, the model's threshold."
            ),
            self._table,
            sizing_mode="stretch_width",
        )


def review_tab(platform, live, user, model) -> ReviewView:
    return ReviewView(platform, review=ReviewModel(platform, model))
