"""The dashboard param model and ThingsBoard's dashboard JSON, both ways (no storage, no Panel)."""

from __future__ import annotations

import json

import pytest

from tbpanel.dashboards.model import (
    GRID_COLUMNS,
    WIDGET_KINDS,
    Dashboard,
    TimeseriesChart,
    TimeWindow,
    WidgetModel,
)


def full_dashboard() -> Dashboard:
    d = Dashboard(title="Fleet overview", description="every kind")
    pumps = d.device_type_alias("pump", "Pumps")
    for kind, cls in WIDGET_KINDS.items():
        d.add_widget(cls(title=kind, alias_id=pumps, keys=["pressure"], units={"pressure": "bar"}))
    return d


def test_every_kind_round_trips_through_thingsboard_json():
    d = full_dashboard()
    d.timewindow.param.update(realtime=False, start_ms=1_000, end_ms=2_000, agg="AVG", timezone="Europe/Berlin")
    chart = next(w for w in d.widgets.values() if isinstance(w, TimeseriesChart))
    chart.param.update(chart="bar", right_axis_keys=["flow"], use_dashboard_timewindow=False)
    chart.timewindow = TimeWindow(last_ms=300_000, agg="MAX")
    body = json.loads(json.dumps(d.to_json()))  # JSON-clean
    again = Dashboard.from_json(body)
    assert again.to_json() == body
    assert {w["typeFullFqn"] for w in body["configuration"]["widgets"].values()} == {
        f"tbpanel.{k}" for k in WIDGET_KINDS
    }
    w = body["configuration"]["widgets"][chart.id]
    assert w["type"] == "timeseries" and w["config"]["settings"]["chart"] == "bar"
    assert w["config"]["datasources"][0]["dataKeys"][0] == {
        "name": "pressure",
        "type": "timeseries",
        "label": "pressure",
        "units": "bar",
    }
    assert w["config"]["timewindow"]["realtime"]["timewindowMs"] == 300_000
    tw = body["configuration"]["timewindow"]
    assert tw["selectedTab"] == 1 and tw["history"]["fixedTimewindow"] == {"startTimeMs": 1_000, "endTimeMs": 2_000}
    assert tw["aggregation"]["type"] == "AVG" and tw["timezone"] == "Europe/Berlin"
    assert again.widgets[chart.id].window(again.timewindow).agg == "MAX"


def test_what_the_model_does_not_know_is_kept():
    body = full_dashboard().to_json()
    body.update(id={"entityType": "DASHBOARD", "id": "d-1"}, createdTime=5, version=3, assignedCustomers=[])
    body["configuration"]["filters"] = {"f": 1}  # a ThingsBoard field tbpanel does not read
    wid = next(iter(body["configuration"]["widgets"]))
    body["configuration"]["widgets"][wid]["config"]["backgroundColor"] = "#fff"
    again = Dashboard.from_json(body)
    assert again.id == "d-1"
    assert again.to_json() == body


def test_unknown_widget_kind_is_refused():
    with pytest.raises(ValueError, match="unknown widget kind"):
        WidgetModel.from_json({"id": "x", "typeFullFqn": "system.cards.html", "config": {}})


def test_widgets_are_placed_without_overlap_and_removed_from_every_state():
    d = Dashboard(title="t")
    ws = [d.add_widget(WIDGET_KINDS["latest_card"]()) for _ in range(8)]  # 4 cells wide: 6 per row
    places = [d.root_state.layout[w.id] for w in ws]
    assert all(not a.overlaps(b) for i, a in enumerate(places) for b in places[i + 1 :])
    assert [p.row for p in places] == [0] * 6 + [4, 4]
    assert all(p.col + p.size_x <= GRID_COLUMNS for p in places)
    d.move_widget(ws[0].id, 10, 30, 30, 2)  # clamped into the grid
    p = d.root_state.layout[ws[0].id]
    assert (p.row, p.col, p.size_x, p.size_y) == (10, 0, 24, 2)
    page2 = d.add_state("Details")
    d.add_widget(ws[1], page2.id)  # the same widget on two states
    d.remove_widget(ws[1].id)
    assert ws[1].id not in d.widgets and all(ws[1].id not in s.layout for s in d.states.values())


def test_states_keep_one_root_and_their_widgets():
    d = Dashboard(title="t")
    second = d.add_state("Second")
    w = d.add_widget(TimeseriesChart(), second.id)
    assert d.root_state.id == "default" and [x for x, _ in d.widgets_of(second.id)] == [w]
    d.remove_state("default")
    assert d.root_state.id == second.id and d.root_state.root
    with pytest.raises(ValueError):
        d.remove_state(second.id)
    body = d.to_json()
    assert [s["root"] for s in body["configuration"]["states"].values()] == [True]


def test_time_window_ranges():
    assert TimeWindow(last_ms=60_000).range(1_000_000) == (940_000, 1_000_001)
    assert TimeWindow(realtime=False, start_ms=1, end_ms=9).range(5) == (1, 9)
    with pytest.raises(ValueError):
        TimeWindow(realtime=False).range(5)


def test_settings_are_the_kinds_own_parameters():
    assert TimeseriesChart.settings_names() == ["chart", "right_axis_keys", "show_anomalies"]
    assert "title" in TimeseriesChart.common_names() and "chart" not in TimeseriesChart.common_names()
    for cls in WIDGET_KINDS.values():
        assert not set(cls.settings_names()) & set(WidgetModel.param)
