"""The demo's two dashboards: every widget kind, the customer's assigned, built once."""

from __future__ import annotations

from tbpanel.dashboards.model import WIDGET_KINDS, Dashboard
from tbpanel.demo import CUSTOMER_EMAIL, TENANT_EMAIL, ensure_demo, ensure_demo_dashboards, load_fleet
from tbpanel.platform import Platform
from tbpanel.views.dashboard_widgets import DashboardSession
from tbpanel.views.dashboards import DashboardList


def test_fleet_overview_and_customer_a_show_every_kind_once(tmp_path):
    fleet = {**load_fleet(), "history_days": 1}  # a day of history is enough here
    with Platform(tmp_path / "demo", compaction_interval_s=0) as p:
        ensure_demo(p, fleet=fleet, progress=lambda m: None)
        ids = ensure_demo_dashboards(p, progress=lambda m: None)
        assert ensure_demo_dashboards(p, progress=lambda m: None) == ids  # a restart adds none
        admin, customer = p.registry.find_user(TENANT_EMAIL), p.registry.find_user(CUSTOMER_EMAIL)
        titles = {r["title"]: r["id"] for r in DashboardList(p, admin).rows()}
        assert titles == {"Fleet overview": ids[0], fleet["customer"]: ids[1]}
        assert [r["id"] for r in DashboardList(p, customer).rows()] == [ids[1]]
        for dashboard_id in ids:
            d = Dashboard.from_json(p.dashboards.get(admin, dashboard_id))
            assert {w.kind for w in d.widgets.values()} == set(WIDGET_KINDS)
        mine = Dashboard.from_json(p.dashboards.get(customer, ids[1]))
        session = DashboardSession(p, customer, mine)
        own = {s["name"] for s in fleet["devices"] if s.get("customer")}
        for w in mine.widgets.values():
            assert {d.name for d in session.devices(w)} <= own
