"""The Result tab: what the model found, at a glance — cards, top anomalies, ranked items and a
per-item activity heatmap. Numbers come from :class:`~tbpanel.views.workspace.result.ResultSummary`;
this view only draws them, and redraws while tasks change the model's anomalies.
"""

from __future__ import annotations

import html

import pandas as pd
import panel as pn
import param
from bokeh.models import FactorRange, HoverTool, LinearColorMapper
from bokeh.models.annotations import ColorBar
from bokeh.plotting import figure

from ...clock import DAY_MS
from ...views.workspace.models_list import fmt_ms
from ...views.workspace.result import ResultSummary
from ..background import Background
from .session import after_first_paint

CARD_CSS = """
.cards {display:flex; gap:14px; flex-wrap:wrap; margin:6px 0 4px}
.card {border:1px solid #d9e2ec; border-radius:8px; padding:10px 16px; min-width:150px; background:#f8fbff}
.card .label {color:#52606d; font-size:13px}
.card .value {font-size:26px; font-weight:600; color:#102a43}
.card .sub {color:#829ab1; font-size:12px}
"""
HEAT = ["#fdd9b5", "#fdd0a2", "#fdae6b", "#fd8d3c", "#f16913", "#d94801", "#8c2d04"]


def cards_html(s: ResultSummary, trained_items: int | None = None) -> str:
    """The five cards; ``data-value`` keeps the exact number for tests and copy-paste."""

    def card(key, label, shown, exact, sub=""):
        return (
            f'<div class="card" id="card-{key}"><div class="label">{label}</div>'
            f'<div class="value" data-value="{html.escape(str(exact))}">{html.escape(shown)}</div>'
            f'<div class="sub">{html.escape(sub)}</div></div>'
        )

    items_sub = f"of {trained_items} devices" if trained_items else ""
    rng = s.score_range
    return (
        f"<style>{CARD_CSS}</style><div class='cards'>"
        + card(
            "anomalies",
            "Anomalies",
            f"{s.anomalies:,}",
            s.anomalies,
            f"{s.active} active" if s.anomalies else "none found",
        )
        + card("items", "Affected items", f"{s.affected_items:,}", s.affected_items, items_sub)
        + card("peak", "Peak score", f"{s.peak_score:,.0f}", s.peak_score, "100 = threshold")
        + card("impact", "Total impact", f"{s.total_impact:,.1f}", s.total_impact, "sum of score indexes")
        + card("range", "Score range", rng, f"{s.score_min}..{s.score_max}", "lowest – highest anomaly")
        + "</div>"
    )


def heatmap(s: ResultSummary):
    """Devices down, UTC days across; colour = the day's total impact, hover tells the counts."""
    act = s.activity
    devices = list(s.ranked["device"])[::-1] if len(s.ranked) else ["(none)"]
    p = figure(
        name="activity-heatmap",
        x_axis_type="datetime",
        y_range=FactorRange(factors=devices),
        height=90 + 34 * len(devices),
        sizing_mode="stretch_width",
        toolbar_location=None,
        title="Anomaly activity per device and day",
        tools="",
    )
    if len(act):
        data = act.assign(x=act["day"] + pd.Timedelta(hours=12), day_text=act["day"].dt.strftime("%Y-%m-%d"))
    else:  # an empty renderer still, so the figure is valid (and looks the same) before anything is found
        data = pd.DataFrame({c: [] for c in ("device", "day", "anomalies", "impact", "x", "day_text")})
    mapper = LinearColorMapper(palette=HEAT, low=0, high=max(float(act["impact"].max()) if len(act) else 1.0, 1e-9))
    r = p.rect(
        x="x",
        y="device",
        width=DAY_MS * 0.95,
        height=0.85,
        source=data.drop(columns=["day"]),
        fill_color={"field": "impact", "transform": mapper},
        line_color="#bbb",
    )
    p.add_tools(
        HoverTool(
            renderers=[r],
            tooltips=[
                ("device", "@device"),
                ("day", "@day_text"),
                ("anomalies", "@anomalies"),
                ("impact", "@impact{0.0}"),
            ],
        )
    )
    if len(act):
        p.add_layout(ColorBar(color_mapper=mapper, title="impact", width=10), "right")
    p.xgrid.grid_line_color = None
    return p


def _table(df: pd.DataFrame, name: str, height: int) -> pn.widgets.Tabulator:
    return pn.widgets.Tabulator(
        df,
        name=name,
        show_index=False,
        disabled=True,
        height=height,
        sizing_mode="stretch_width",
        hidden_columns=["item"],
        pagination=None,
        titles={"score_index": "score index", "peak_score": "peak score", "anomaly_hours": "hours"},
    )


def _placeholder() -> pn.pane.HTML:
    """A grey block where a table will be, while the first read runs."""
    return pn.pane.HTML(
        "<div class='result-loading' style='height:120px;border-radius:6px;background:#eef2f6;color:#829ab1;"
        "padding:10px'>loading…</div>",
        sizing_mode="stretch_width",
    )


def _top_frame(s: ResultSummary) -> pd.DataFrame:
    t = s.top.copy()
    if len(t):
        for c in ("start", "end"):
            t[c] = t[c].dt.strftime("%Y-%m-%d %H:%M")
        t = t.round({"hours": 1, "score": 0, "score_index": 2})
    return t


class ResultView(pn.viewable.Viewer):
    """The Result tab of one model, live while tasks run (listener + slow poll, never blocking)."""

    summary: param.ClassSelector[ResultSummary] = param.ClassSelector(class_=ResultSummary)  # type: ignore[assignment]  # required, never None
    poll_ms = param.Integer(default=5000, bounds=(500, None))

    def __init__(self, platform, model, **params):
        names = {}

        def device_name(item: str) -> str:
            if item not in names:
                try:
                    names[item] = platform.registry.get_device(item).name
                except Exception:  # deleted since: show its id
                    names[item] = item
            return names[item]

        params.setdefault("summary", ResultSummary(platform.anomaly, device_name=device_name, model_id=model.id))
        super().__init__(**params)
        self.platform, self.model = platform, model
        self.header = pn.pane.HTML(self._header_html(model), sizing_mode="stretch_width")
        self._status = pn.pane.HTML("", sizing_mode="stretch_width")
        self._cards = pn.pane.HTML(
            "<div class='result-loading' style='height:84px;border-radius:8px;background:#eef2f6'></div>",
            sizing_mode="stretch_width",
            name="result-cards",
        )
        # the tables and the heatmap are made with the first data (a Tabulator costs ~0.1 s to make
        # and to send): the page is built and pulled sooner, placeholders show until then
        self._top: pn.widgets.Tabulator | None = None
        self._ranked: pn.widgets.Tabulator | None = None
        self._heat: pn.pane.Bokeh | None = None
        self._top_box = pn.Column(_placeholder(), sizing_mode="stretch_width")
        self._ranked_box = pn.Column(_placeholder(), sizing_mode="stretch_width")
        self._heat_box = pn.Column(sizing_mode="stretch_width")
        self._bg = Background(platform.executor)
        self._seen = None
        self.refresh()

    def _header_html(self, model) -> str:
        return (
            f'<h2 id="model-title">{html.escape(model.config.name)} '
            f'<small id="model-status" style="color:#666">{html.escape(model.status)}</small></h2>'
        )

    # -- data ----------------------------------------------------------------------------------
    def _load(self):
        model = self.platform.anomaly.get_model(self.model.id)
        self.summary.refresh()
        devices = 0
        if model is not None:
            devices = (
                len(model.config.items)
                or self.platform.registry.list_devices(
                    model.tenant_id, type=model.config.device_type or None, page_size=1
                )[1]
            )
        return model, devices

    def _apply(self, loaded) -> None:
        model, devices = loaded
        if model is None:
            self._status.object = "<p>This model has been deleted. <a href='/models'>Back to the models</a>.</p>"
            return
        self.model = model
        s = self.summary
        seen = (
            model.status,
            model.message,
            model.built_ms,
            model.last_refresh_run_ms,
            devices,
            s.anomalies,
            s.active,
            s.peak_score,
            s.total_impact,
            s.score_min,
        )
        if seen == self._seen:  # the poll found nothing new: leave the page (and the heatmap) alone
            return
        self._seen = seen
        self.header.object = self._header_html(model)
        built = fmt_ms(model.built_ms)
        note = "" if model.status == "READY" else f" — {html.escape(model.message)}"
        self._status.object = (
            f"<p id='result-status'>Status <b>{html.escape(model.status)}</b>{note} · built {built}"
            f" · last refresh run {fmt_ms(model.last_refresh_run_ms)}</p>"
        )
        self._cards.object = cards_html(s, devices)
        # the cards go to the browser now; the tables and the heatmap (most of the drawing) once the
        # page has been drawn: a first read that ended before the browser pulled the document put them
        # in it, and the cards waited for two Tabulators and the heatmap to be drawn
        after_first_paint(self._draw_tables)

    def _draw_tables(self) -> None:
        s = self.summary
        top, ranked = _top_frame(s), s.ranked.round({"impact": 2, "peak_score": 0, "anomaly_hours": 1})
        if self._top is None or self._ranked is None:
            self._top, self._ranked = _table(top, "top-anomalies", 330), _table(ranked, "ranked-items", 250)
            self._top_box.objects, self._ranked_box.objects = [self._top], [self._ranked]
        else:
            self._top.value, self._ranked.value = top, ranked
        for table in (self._top, self._ranked):  # no empty band under short tables
            table.height = min(40 + 32 * max(len(table.value), 1), 360)
        if self._heat is None:
            self._heat = pn.pane.Bokeh(heatmap(s), sizing_mode="stretch_width")
            self._heat_box.objects = [self._heat]
        else:
            self._heat.object = heatmap(s)

    def refresh(self) -> None:
        self._bg.run("result", self._load, self._apply)

    # -- live ----------------------------------------------------------------------------------
    def __panel__(self):
        anomaly = self.platform.anomaly
        self._bg.follow(
            anomaly.changed,
            lambda db, model, changes: model.id == self.model.id,
            self.refresh,
            self.poll_ms,
            after_commit=anomaly.repo.after_commit,
        )
        return pn.Column(
            self._status,
            self._cards,
            pn.Row(
                pn.Column("### Top anomalies", self._top_box, sizing_mode="stretch_width"),
                pn.Column("### Items ranked by impact", self._ranked_box, sizing_mode="stretch_width"),
                sizing_mode="stretch_width",
            ),
            self._heat_box,
            sizing_mode="stretch_width",
        )


def result_tab(platform, live, user, model) -> ResultView:
    """The Result tab of ``model`` (``page.py`` puts ``view.header`` above the tabs)."""
    return ResultView(platform, model)
