"""The Cluster info tab: centroid curves, per-cluster counts and durations, score histograms and
sample member segments of one cluster (the most typical ones and the least typical one)."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
import param
from bokeh.models.annotations import Span
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from panel.io.state import set_curdoc

from ...views.workspace.clusters import ClusterInfo
from ..background import Background
from .session import after_first_paint, live_session

#: how long after the centroid plots were sent the scoring starts (the browser draws meanwhile)
SCORE_AFTER_MS = 300


def _colour(c: int) -> str:
    return Category10_10[c % 10]


class ClusterView(pn.viewable.Viewer):
    info: param.ClassSelector[ClusterInfo] = param.ClassSelector(class_=ClusterInfo)  # type: ignore[assignment]  # required, never None

    def __init__(self, platform, **params):
        super().__init__(**params)
        self.platform = platform
        self._bg = Background(platform.executor)  # reads off the server loop
        self._body = pn.Column(sizing_mode="stretch_width")
        self._cluster = pn.widgets.Select(name="Sample members of cluster", width=220)
        self._samples = pn.Column(sizing_mode="stretch_width")
        self._table = pn.widgets.Tabulator(
            pd.DataFrame(), show_index=False, disabled=True, name="cluster-table", sizing_mode="stretch_width"
        )
        # what needs the scored training range (histograms, members) comes after the stored model's part
        self._scored = pn.Column(
            pn.Row(
                pn.indicators.LoadingSpinner(value=True, size=24),
                pn.pane.Markdown("Scoring the training range for the score histograms and member segments…"),
            ),
            sizing_mode="stretch_width",
        )
        self._cluster.param.watch(lambda e: self._show_samples(e.new), "value")
        self._started = False

    def _centroids(self) -> pn.GridBox:
        info = self.info
        fields, width, labels = info.positions()
        figs = []
        for f, rows in info.centroid_curves().items():
            by_feature: dict[str, Any] = {"x_range": labels} if info.trained.resolved.comparison == "feature" else {}
            fig = figure(
                title=f"{f}: centroids (normalised)",
                height=260,
                width=420,
                name=f"centroids:{f}",
                **by_feature,
                tools="hover,save",
            )
            x: Any = labels if info.trained.resolved.comparison == "feature" else np.arange(width)
            sizes = info.trained.cluster_sizes
            for c, row in enumerate(rows):
                fig.line(x, row, color=_colour(c), line_width=2, legend_label=f"cluster {c} (n={int(sizes[c])})")
            fig.legend.label_text_font_size = "9pt"
            fig.add_layout(fig.legend[0], "below")  # beside the curves, never over them
            fig.xaxis.axis_label = (
                "feature"
                if info.trained.resolved.comparison == "feature"
                else f"position in segment (of {width}, {info.trained.segment_ms / 60_000:g} min)"
            )
            figs.append(pn.pane.Bokeh(fig))
        return pn.GridBox(*figs, ncols=3)

    def _histograms(self):
        info = self.info
        fig = figure(
            title="Training segment scores per cluster",
            height=280,
            sizing_mode="stretch_width",
            name="cluster-histograms",
            tools="hover,save,xwheel_zoom,reset",
            y_axis_type="log",
        )
        for c in range(info.k):
            edges, counts = info.histogram(c)
            keep = counts > 0
            fig.quad(
                left=edges[:-1][keep],
                right=edges[1:][keep],
                bottom=0.5,
                top=counts[keep],
                color=_colour(c),
                fill_alpha=0.45,
                line_alpha=0.2,
                legend_label=f"cluster {c}",
            )
        fig.add_layout(Span(location=100, dimension="height", line_color="#d32f2f", line_dash="dashed"))
        fig.xaxis.axis_label = "anomaly score (100 = threshold)"
        fig.yaxis.axis_label = "segments"
        fig.legend.click_policy = "hide"
        fig.add_layout(fig.legend[0], "right")
        return pn.pane.Bokeh(fig, sizing_mode="stretch_width")

    def _show_samples(self, cluster) -> None:
        if cluster is None:
            return
        samples = self.info.samples(int(cluster))
        figs = []
        for f in self.info.trained.fields:
            fig = figure(
                title=f"cluster {cluster}: {f}", height=240, width=420, name=f"samples:{f}", tools="hover,save"
            )
            for i, s in enumerate(samples):
                if f in s["values"]:
                    x, y = s["values"][f]
                    fig.line(
                        x,
                        y,
                        color=Category10_10[i % 10],
                        line_width=1.5,
                        legend_label=f"{s['device']} {s['start']} ({s['score']:.0f})",
                    )
            fig.xaxis.axis_label = "minutes into segment"
            fig.legend.label_text_font_size = "8pt"
            if fig.legend:
                fig.add_layout(fig.legend[0], "below")
            figs.append(pn.pane.Bokeh(fig))
        self._samples.objects = [
            pn.pane.Markdown(
                "Raw values of member segments: the most typical (lowest score) "
                "first, the least typical last; legend: device, start (UTC), score."
            ),
            pn.GridBox(*figs, ncols=3),
        ]

    def _show_stored(self, centroids: bool = True) -> None:
        """What the stored model already knows (counts, centroids): at once, no scoring.
        ``centroids=False`` leaves a slot the centroid plots fill later (:meth:`_add_centroids`)."""
        info = self.info
        auto = info.trained.auto_clusters or {}
        how = f" Cluster count chosen automatically ({html.escape(str(auto.get('rule', '')))})." if auto else ""
        self._table.value = info.table()
        self._body.objects = [
            pn.pane.Markdown(
                f"**{info.k} clusters** over {info.trained.n_train_segments} training segments of "
                f"{len(info.trained.trained_items)} device(s).{how}"
            ),
            self._table,
            self._centroids() if centroids else pn.Column(sizing_mode="stretch_width"),
            self._scored,
        ]

    def _add_centroids(self) -> None:
        if self.info.ready and len(self._body.objects) == 4:
            self._body[2] = self._centroids()

    def _show(self, _=None) -> None:
        """Once the training range is scored: anomalous counts, histograms, member segments."""
        info = self.info
        self._cluster.options = {f"cluster {c}": c for c in range(info.k)}
        self._table.value = info.table()
        self._scored.objects = [self._histograms(), self._cluster, self._samples]
        self._show_samples(self._cluster.value if self._cluster.value is not None else 0)

    def _failed(self, exc) -> None:
        self._scored.objects = [pn.pane.Alert(f"Could not read the training data: {exc}", alert_type="danger")]

    def _start(self) -> None:
        if not self.info.ready:
            self._body.objects = [pn.pane.Markdown("The model has not been built yet: no clusters to show.")]
            return
        self._bg.run("clusters", self.info.load, self._show, self._failed)

    def __panel__(self):
        if not self._started:
            self._started = True
            if not live_session():  # a notebook: everything now
                if self.info.ready:
                    self._show_stored()
                self._start()
            else:
                if self.info.ready:
                    self._show_stored(centroids=False)
                self._later(pn.state.curdoc)
        return self._body

    def _later(self, doc) -> None:
        """In a served page the cluster table goes first (what a person came for), the centroid
        plots in the next message, and the scoring of the training range — seconds of CPU that
        slowed the server sending both — starts a moment after they are on their way."""

        def score() -> None:
            with set_curdoc(doc):
                self._start()

        def centroids() -> None:
            self._add_centroids()
            doc.add_timeout_callback(score, SCORE_AFTER_MS)

        after_first_paint(centroids)


def clusters_tab(platform, live, user, model) -> ClusterView:
    return ClusterView(platform, info=ClusterInfo(platform, model))
