"""The Experiments tab: define variants of the model, score them over a range, see their anomalies
overlaid on one timeline (``experiment-plot``, one lane per variant) and their counts and scores
side by side; promote one. Running never changes the stored model (it is an EXPERIMENT task)."""

from __future__ import annotations

import html

import panel as pn
import param
from bokeh.models import ColumnDataSource, FactorRange, HoverTool
from bokeh.palettes import Category10_10

from ...views.workspace.experiments import CURRENT, SEGMENTS, ExperimentBench, Variant
from .session import live_session, range_pickers, time_figure


def _choice(label: str, options: dict[str, str], variant: Variant, knob: str, cast, width: int):
    """A select whose first option, "as the model", leaves the knob to the model (None)."""
    current = getattr(variant, knob)
    w = pn.widgets.Select(
        name=label, options={"as the model": "", **options}, value="" if current is None else str(current), width=width
    )
    w.param.watch(lambda e: setattr(variant, knob, cast(e.new) if e.new != "" else None), "value")
    return w


class ExperimentsView(pn.viewable.Viewer):
    bench: param.ClassSelector[ExperimentBench] = param.ClassSelector(class_=ExperimentBench)  # type: ignore[assignment]  # required, never None
    period_ms = param.Integer(default=700, bounds=(100, None))

    def __init__(self, platform, **params):
        super().__init__(**params)
        self.platform = platform
        b = self.bench
        self._variants = pn.Column(sizing_mode="stretch_width")
        self._add = pn.widgets.Button(name="+ variant", width=110, css_classes=["add-variant"])
        self._add.on_click(lambda _: self._add_variant())
        self._current = pn.widgets.Checkbox.from_param(b.param.include_current, name="Compare with the stored model")
        merges = {"no (as the model)": 0, "1 segment": 1, "2 segments": 2, "4 segments (the ensemble's rule)": 4}
        if b.merge_segments not in merges.values():
            merges[f"{b.merge_segments} segments"] = b.merge_segments
        self._merge = pn.widgets.Select(
            name="Merge a variant's anomalies closer than",
            options=merges,
            value=b.merge_segments,
            width=260,
            css_classes=["merge-segments"],
        )
        self._merge.param.watch(lambda e: setattr(b, "merge_segments", int(e.new)), "value")
        self._start, self._end = range_pickers(b)
        self._run = pn.widgets.Button(
            name="Run experiment", button_type="primary", width=180, css_classes=["run-experiment"]
        )
        self._run.on_click(lambda _: self._on_run())
        self._progress = pn.indicators.Progress(value=0, max=100, width=300, visible=False, name="experiment-progress")
        self._message = pn.pane.Markdown("", name="experiment-message")
        self._source = ColumnDataSource(
            {"variant": [], "left": [], "right": [], "device": [], "score": [], "color": [], "alpha": []},
            name="experiment:anomalies",
        )
        self._figure = time_figure("experiment-plot", height=240, y_range=FactorRange())
        self._figure.hbar(
            y="variant",
            left="left",
            right="right",
            height=0.6,
            source=self._source,
            fill_color="color",
            fill_alpha="alpha",
            line_color="color",
        )
        self._figure.add_tools(
            HoverTool(
                tooltips=[
                    ("variant", "@variant"),
                    ("device", "@device"),
                    ("score", "@score{0.0}"),
                    ("start", "@left{%F %H:%M}"),
                ],
                formatters={"@left": "datetime"},
            )
        )
        self._table = pn.widgets.Tabulator(
            b.comparison(),
            show_index=False,
            disabled=True,
            name="experiment-table",
            sizing_mode="stretch_width",
            height=180,
        )
        self._promote_pick = pn.widgets.Select(name="Variant", options=[], width=200)
        self._promote = pn.widgets.Button(name="Promote to the stored model", width=240, css_classes=["promote"])
        self._promote.on_click(lambda _: self._on_promote())
        self._callback = None
        self._draw_variants()

    # -- variants ----------------------------------------------------------------------------------------
    def _variant_row(self, v: Variant):
        label = pn.widgets.TextInput.from_param(v.param.label, name="Name", width=160)
        pct = pn.widgets.FloatInput(
            name="Threshold % (sensitivity)",
            value=v.threshold_percent,
            start=0.01,
            end=100,
            step=0.5,
            width=170,
            placeholder="as the model",
        )
        pct.param.watch(lambda e: setattr(v, "threshold_percent", e.new), "value")
        seg = _choice("Segment", {**{k: str(ms) for k, ms in SEGMENTS.items()}}, v, "segment_ms", int, 130)
        win = _choice("Window", {"fixed": "fixed", "sliding": "sliding"}, v, "window", str, 120)
        alg = _choice(
            "Algorithm", {"K-Means": "kmeans", "DBSCAN": "dbscan", "Gaussian mixture": "gmm"}, v, "algorithm", str, 150
        )
        remove = pn.widgets.Button(name="✕", width=40, align="end")
        remove.on_click(lambda _: self._remove_variant(v))
        return pn.Row(label, pct, seg, win, alg, remove, css_classes=["variant-row"])

    def _draw_variants(self) -> None:
        self._variants.objects = [self._variant_row(v) for v in self.bench.variants]

    def _add_variant(self) -> None:
        b = self.bench
        b.variants = [*b.variants, Variant(label=f"variant {len(b.variants) + 1}")]
        self._draw_variants()

    def _remove_variant(self, v: Variant) -> None:
        self.bench.variants = [x for x in self.bench.variants if x is not v]
        self._draw_variants()

    # -- running -------------------------------------------------------------------------------------------
    def _on_run(self) -> None:
        task = self.bench.run()
        self._message.object = html.escape(self.bench.message)
        if task is None:
            return
        self._progress.visible, self._progress.value = True, 0
        self._run.disabled = True
        if self._callback is None and live_session():
            self._callback = pn.state.add_periodic_callback(self._poll, period=self.period_ms)
        elif not live_session():
            self.platform.tasks.wait(task.id)
            self._poll()

    def _poll(self) -> None:
        task = self.bench.task()
        if task is None:
            return
        self._progress.value = int(100 * (task.progress or 0))
        if task.status in ("QUEUED", "IN_PROGRESS"):
            return
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        self._run.disabled = False
        self._progress.visible = False
        if task.status != "DONE":
            self._message.object = f"Experiment {task.status.lower()}: {html.escape(task.message)}"
            return
        self._message.object = "Done: nothing of the stored model was changed."
        self._show()

    def _show(self) -> None:
        b = self.bench
        comp = b.comparison()
        self._table.value = comp
        names = list(comp["variant"]) if len(comp) else []
        df = b.anomalies()
        colours = {n: Category10_10[i % 10] for i, n in enumerate(names)}
        top = float(df["score"].max()) if len(df) else 100.0
        self._figure.y_range.factors = names[::-1]
        self._source.data = {
            "variant": list(df["variant"]),
            "left": df["start_ts"].astype(float).tolist(),
            "right": df["end_ts"].astype(float).tolist(),
            "device": list(df["device"]),
            "score": df["score"].tolist(),
            "color": [colours[v] for v in df["variant"]],
            "alpha": [0.35 + 0.6 * min(s / top, 1.0) for s in df["score"]],
        }
        if b.start is not None and b.end is not None:
            self._figure.x_range.update(start=float(b.start), end=float(b.end))
        self._promote_pick.options = [n for n in names if n != CURRENT]

    def _on_promote(self) -> None:
        if not self._promote_pick.value:
            self._message.object = "Run an experiment and pick a variant first."
            return
        self.bench.promote(self._promote_pick.value)
        self._message.object = html.escape(self.bench.message)

    def __panel__(self):
        return pn.Column(
            pn.pane.Markdown(
                "Variants are the model's settings with a few changed; each is fitted on the model's "
                "training range and scored over the range below. Nothing is stored until you promote one."
            ),
            self._variants,
            pn.Row(self._add, self._current, self._merge),
            pn.Row(self._start, self._end),
            pn.Row(self._run, self._progress, self._message),
            pn.pane.Markdown("**Anomalies of each variant** (darker = higher score)"),
            pn.pane.Bokeh(self._figure, sizing_mode="stretch_width"),
            pn.pane.Markdown("**Side by side**"),
            self._table,
            pn.Row(self._promote_pick, self._promote),
            sizing_mode="stretch_width",
        )


def experiments_tab(platform, live, user, model) -> ExperimentsView:
    return ExperimentsView(platform, bench=ExperimentBench(platform, model))
