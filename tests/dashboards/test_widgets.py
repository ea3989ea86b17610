"""The widget view models on a real data directory: what each kind reads for a tenant
administrator and for a customer user, what live points change, and the editor's undo and
save through the real DashboardStore (no Panel, no server)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from tbpanel.clock import now_ms
from tbpanel.dashboards.model import (
    WIDGET_KINDS,
    AlarmTable,
    AnomalyChart,
    AttributeSlider,
    AttributeSwitch,
    Dashboard,
    EntitiesTable,
    Gauge,
    LatestCard,
    MapWidget,
    MarkdownCard,
    RpcButton,
    TimeseriesChart,
)
from tbpanel.errors import EntityError
from tbpanel.platform import Platform
from tbpanel.store.values import ValueType
from tbpanel.views.dashboard_widgets import DashboardSession, key_filter, matches, reader_for, render_markdown
from tbpanel.views.dashboards import DashboardEditor, DashboardList

D = int(ValueType.DOUBLE)


@dataclass
class World:
    platform: Platform
    admin: object
    customer_user: object
    devices: dict[str, str]  # name -> id
    now: int


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    p = Platform(tmp_path_factory.mktemp("dash"), compaction_interval_s=0)
    reg = p.registry
    t = reg.create_tenant("T")
    a, b = reg.create_customer(t.id, "Customer A"), reg.create_customer(t.id, "Customer B")
    admin = reg.create_user("admin@t.test", "admin-pass-1", "TENANT_ADMIN", t.id)
    cu = reg.create_user("user@a.test", "user-pass-1", "CUSTOMER_USER", t.id, customer_id=a.id)
    devices = {}
    for name, customer in (("P1", a.id), ("P2", a.id), ("P3", b.id)):
        d = reg.save_device(t.id, name, type="pump")
        reg.assign_device(d.id, customer)
        devices[name] = d.id
    now = now_ms() // 1000 * 1000
    points = []
    for i, did in enumerate(devices.values()):
        for k in range(30):  # one a minute for half an hour
            ts = now - (30 - k) * 60_000
            points += [
                (did, "pressure", ts, D, float(i * 10 + k)),
                (did, "latitude", ts, D, 50.0 + i + k / 100),
                (did, "longitude", ts, D, 8.0 + k / 100),
            ]
    p.store.write_points(points)
    yield World(p, admin, cu, devices, now)
    p.close()


def session(world, user, *widgets, alias="pumps"):
    d = Dashboard(title="t")
    alias_id = d.device_type_alias("pump", "Pumps")
    for w in widgets:
        w.alias_id = alias_id if alias == "pumps" else alias
        d.add_widget(w)
    return DashboardSession(world.platform, user, d)


def test_chart_reads_every_device_and_streams_only_new_points(world):
    chart = TimeseriesChart(keys=["pressure"])
    s = session(world, world.admin, chart)
    r = reader_for(s, chart)
    data = r.load(world.now)
    lines = {(dev, key): len(ts) for dev, key, ts, _ in data.lines()}
    assert lines == {("P1", "pressure"): 30, ("P2", "pressure"): 30, ("P3", "pressure"): 30}
    p1 = world.devices["P1"]
    old = (p1, "pressure", world.now - 5 * 60_000, D, 1.0)  # already drawn: not again
    new = (p1, "pressure", world.now + 500, D, 99.0)
    other_key = (p1, "flow", world.now + 500, D, 1.0)
    changes = r.apply(data, [old, new, other_key])
    assert list(changes) == [("P1", "pressure")]
    assert changes[("P1", "pressure")].y == [99.0]
    assert r.apply(data, [new]) is None  # the same point twice is drawn once
    assert r.live_keys() == {"pressure"}


def test_chart_aggregates_and_shades_the_anomalies_of_covering_models(world):
    platform = world.platform
    chart = TimeseriesChart(keys=["pressure"], use_dashboard_timewindow=False)
    s = session(world, world.admin, chart)
    chart.timewindow = s.dashboard.timewindow.__class__(last_ms=3_600_000, agg="AVG", interval_ms=600_000)
    model = platform.anomaly.create_model(
        world.admin.tenant_id, {"name": f"m-{uuid.uuid4().hex[:6]}", "device_type": "pump", "fields": ["pressure"]}
    )
    t = world.now - 20 * 60_000
    with platform.anomaly.repo.transaction() as db:
        platform.anomaly.repo.insert_anomaly(
            db,
            {
                "id": str(uuid.uuid4()),
                "model_id": model.id,
                "item": world.devices["P2"],
                "start_ts": t,
                "end_ts": t + 120_000,
                "score": 3.0,
                "score_index": 150.0,
                "cluster": 0,
                "detected_at": t,
                "active": 1,
                "n_segments": 1,
                "details": {},
                "suppressed": 0,
                "created_ms": t,
                "updated_ms": t,
            },
        )
    try:
        data = reader_for(s, chart).load(world.now)
        assert all(len(ts) <= 7 for _, _, ts, _ in data.lines())  # ten-minute averages of an hour
        assert data.anomalies == [(t, t + 120_000, "P2")]
        score = AnomalyChart(score_key=model.config.telemetry_key)
        s2 = session(world, world.admin, score)
        assert reader_for(s2, score).chart_keys() == [f"_EAD_{model.config.telemetry_key}"]
    finally:
        platform.anomaly.delete_model(model.id)


def test_a_customer_user_sees_only_its_customers_devices_in_every_kind(world):
    widgets = [cls(keys=["pressure"]) for cls in WIDGET_KINDS.values()]
    s = session(world, world.customer_user, *widgets)
    seen = set()
    for w in widgets:
        r = reader_for(s, w)
        r.load(world.now)
        seen.update(r.device_ids)
    assert seen == {world.devices["P1"], world.devices["P2"]}
    # an alias naming the other customer's device resolves to nothing for this user
    card = LatestCard(keys=["pressure"])
    s2 = session(world, world.customer_user, card, alias="")
    card.alias_id = s2.dashboard.device_alias(world.devices["P3"])
    assert reader_for(s2, card).load(world.now).values == {}


def test_latest_card_gauge_markdown_and_live_values(world):
    card, gauge, md = (
        LatestCard(keys=["pressure"]),
        Gauge(keys=["pressure"]),
        MarkdownCard(text="**${name}**: ${pressure} bar ${nope}"),
    )
    s = session(world, world.admin, card, gauge, md)
    card.alias_id = gauge.alias_id = md.alias_id = s.dashboard.device_alias(world.devices["P1"])
    r = reader_for(s, card)
    data = r.load(world.now)
    assert data.values[world.devices["P1"]]["pressure"] == 29.0
    assert r.apply(data, [(world.devices["P1"], "pressure", world.now + 1, D, 31.5)]) == {world.devices["P1"]}
    assert data.values[world.devices["P1"]]["pressure"] == 31.5
    assert r.apply(data, [(world.devices["P1"], "pressure", world.now - 10**6, D, 0.0)]) is None  # older
    mdr = reader_for(s, md)
    assert mdr.live_keys() == {"pressure", "nope"}
    values = mdr.load(world.now).values[world.devices["P1"]]
    assert render_markdown(md.text, values) == "**P1**: 29.00 bar –"


def test_entities_table_key_filters_and_selection(world):
    table = EntitiesTable(keys=["pressure"], key_filters=["pressure >= 30", "name != P3"])
    follower = LatestCard(keys=["pressure"], follow_selection=True)
    s = session(world, world.admin, table, follower)
    r = reader_for(s, table)
    rows = r.rows(r.load(world.now))
    assert [row["name"] for row in rows] == ["P2"]  # P1 ends at 29, P2 at 39, P3 excluded by name
    s.selected_device = world.devices["P2"]
    assert [d.name for d in s.devices(follower)] == ["P2"]
    s.selected_device = world.devices["P3"]
    assert [d.name for d in s.devices(follower)] == ["P3"]
    with pytest.raises(EntityError):
        key_filter("pressure ~ 3")
    assert not matches(["missing > 1"], {"pressure": 3})


def test_map_routes_and_positions(world):
    m = MapWidget()
    s = session(world, world.admin, m)
    r = reader_for(s, m)
    data = r.load(world.now)
    lon, lat = data.routes[world.devices["P1"]]
    assert len(lon) == len(lat) == 30 and lat[-1] == pytest.approx(50.29)
    p1 = world.devices["P1"]
    assert r.apply(data, [(p1, "latitude", world.now + 7, D, 51.0)]) is None  # waits for its longitude
    assert r.apply(data, [(p1, "longitude", world.now + 7, D, 9.0)]) == {p1}
    assert data.routes[p1][0][-1] == 9.0 and data.routes[p1][1][-1] == 51.0


def test_alarm_table_acks_and_clears_as_the_user(world):
    platform = world.platform
    alarm = platform.alarms.save(
        world.admin, {"originator_id": world.devices["P1"], "type": "High pressure", "severity": "MAJOR"}
    )
    hidden = platform.alarms.save(
        world.admin, {"originator_id": world.devices["P3"], "type": "High pressure", "severity": "MINOR"}
    )
    table = AlarmTable()
    s = session(world, world.customer_user, table)
    r = reader_for(s, table)
    data = r.load(world.now)
    assert [row["id"] for row in data.rows] == [alarm.id]  # not customer B's alarm
    assert r.concerns(alarm) and not r.concerns(hidden)
    r.act("ack", alarm.id)
    r.act("clear", alarm.id)
    assert platform.alarms.get(world.admin, alarm.id).status == "CLEARED_ACK"
    with pytest.raises(EntityError):
        r.act("ack", hidden.id)


def test_switch_and_slider_set_shared_attributes_the_user_may_write(world):
    switch, slider = AttributeSwitch(attribute="enabled"), AttributeSlider(attribute="setpoint")
    s = session(world, world.customer_user, switch, slider)
    r = reader_for(s, switch)
    data = r.load(world.now)
    assert data.device_name == "P1" and data.value is None
    r.set_value(data.device_id, True, world.now)
    assert reader_for(s, switch).load(world.now).value is True
    rs = reader_for(s, slider)
    rs.set_value(data.device_id, 42, world.now)
    attrs = world.platform.registry.get_attributes(data.device_id, "SHARED_SCOPE", keys=["setpoint"])
    assert attrs[0]["value"] == 42.0
    with pytest.raises(EntityError):
        r.set_value(world.devices["P3"], True, world.now)  # another customer's device


def test_rpc_button_targets_the_first_device(world):
    button = RpcButton(method="reboot", params_text='{"now": true}')
    s = session(world, world.admin, button)
    r = reader_for(s, button)
    data = r.load(world.now)
    console = r.console(data.device_id)
    assert (console.device, console.method, console.two_way) == (world.devices["P1"], "reboot", False)


def test_editor_undo_save_reload_identical_and_customer_listing(world):
    platform = world.platform
    d = Dashboard(title=f"Edited {uuid.uuid4().hex[:6]}")
    d.device_type_alias("pump", "Pumps")
    ed = DashboardEditor(platform, world.admin, d)
    chart = ed.add_widget("timeseries_chart", keys=["pressure"])
    card = ed.add_widget("latest_card", keys=["pressure"])
    assert chart.alias_id == next(iter(d.aliases))
    place = d.root_state.layout[card.id]
    assert ed.apply_grid({card.id: (place.row + 3, 0, 6, 5)})
    assert not ed.apply_grid({card.id: (place.row + 3, 0, 6, 5)})  # no change: no undo step
    assert ed.undo() and d.root_state.layout[card.id].row == place.row
    ed.remove_widget(card.id)
    ed.undo()
    assert card.id in d.widgets
    stored = ed.save()
    assert not ed.dirty and d.id == stored["id"]["id"]
    reopened = DashboardEditor.open(platform, world.admin, d.id)
    assert reopened.dashboard.to_json()["configuration"] == d.to_json()["configuration"]
    ed.update_widget(chart.id, title="Pressure")
    ed.save()  # an update of the same dashboard (its version adopted)
    assert DashboardEditor.open(platform, world.admin, d.id).dashboard.widgets[chart.id].title == "Pressure"
    # a customer user lists and opens only what is assigned to its customer
    lister = DashboardList(platform, world.customer_user)
    assert d.id not in {r["id"] for r in lister.rows()}
    with pytest.raises(EntityError):
        DashboardEditor.open(platform, world.customer_user, d.id)
    platform.dashboards.assign(world.admin, world.customer_user.customer_id, d.id)
    assert d.id in {r["id"] for r in lister.rows()}
    viewer = DashboardEditor.open(platform, world.customer_user, d.id)
    assert not viewer.editable
    with pytest.raises(PermissionError):
        viewer.add_widget("gauge")


def test_notebook_builds_displays_and_publishes_what_the_page_opens(world):
    from tbpanel.notebook import dashboards

    nb = dashboards(world.platform, "admin@t.test").create("From a notebook")
    for kind in WIDGET_KINDS:
        nb.add(kind, devices="pump", keys=["pressure"])
    view = nb.panel()  # every widget view drawn in-process (reads run here: no server)
    html = view._repr_mimebundle_()[0]["text/html"] if hasattr(view, "_repr_mimebundle_") else ""
    assert html  # displayable inline
    dashboard_id = nb.publish(customers=("Customer A",))
    assert dashboard_id in {r["id"] for r in dashboards(world.platform, world.customer_user).list()}
    opened = DashboardEditor.open(world.platform, world.customer_user, dashboard_id)
    assert opened.dashboard.to_json()["configuration"] == nb.dashboard.to_json()["configuration"]


def test_map_shows_the_last_position_when_the_window_has_none(world):
    m = MapWidget(use_dashboard_timewindow=False)
    s = session(world, world.admin, m)
    m.timewindow = s.dashboard.timewindow.__class__(realtime=False, start_ms=1, end_ms=2)
    data = reader_for(s, m).load(world.now)
    assert data.routes[world.devices["P2"]] == ([pytest.approx(8.29)], [pytest.approx(51.29)])
