"""The landing page's view model in-process: trends, active alarms and model counts, and who
sees what (a customer user: only its devices and their alarms, no models)."""

from __future__ import annotations

import numpy as np
import pytest

from tbpanel.anomaly.config import ModelConfig
from tbpanel.clock import now_ms
from tbpanel.platform import Platform
from tbpanel.store.values import ValueType
from tbpanel.ui.fleet import FleetView, alarms_html, sparkline_svg
from tbpanel.views.fleet import Fleet

MIN = 60_000


@pytest.fixture
def env(tmp_path):
    p = Platform(tmp_path / "data", compaction_interval_s=0)
    tenant = p.registry.create_tenant("T")
    customer = p.registry.save_customer(tenant.id, {"title": "C"})
    mine = p.registry.save_device(tenant.id, "mine", type="pump")
    p.registry.assign_device(mine.id, customer.id)
    other = p.registry.save_device(tenant.id, "other", type="pump")
    p.registry.save_device(tenant.id, "silent", type="pump")  # never posted
    admin = p.registry.create_user("admin@t.test", "password-123", "TENANT_ADMIN", tenant.id)
    user = p.registry.create_user("user@c.test", "password-123", "CUSTOMER_USER", tenant.id, customer.id)
    end = now_ms() // MIN * MIN
    double = int(ValueType.DOUBLE)
    for dev, base in ((mine, 10.0), (other, 50.0)):
        points = [(dev.id, "vibration", end - i * MIN, double, base + i % 7) for i in range(0, 20 * 60, 5)]
        points += [(dev.id, "_EAD_anomaly", end, double, 1.0)]  # a saved score is never the trend
        p.store.write_points(points)
    yield p, admin, user, mine, other
    p.close()


def test_trends_cover_the_last_day_of_the_devices_the_user_may_see(env):
    p, admin, user, mine, other = env
    trends = Fleet(p, admin).trends(buckets=24)
    assert set(trends) == {mine.id, other.id}  # the silent device has nothing to draw
    t = trends[mine.id]
    assert t.key == "vibration" and len(t.values) == 24 and t.end_ms - t.start_ms == 86_400_000
    assert np.isnan(t.values[:3]).all()  # 20 h of data in a 24 h window: the first hours are empty
    assert 10 <= np.nanmin(t.values) and np.nanmax(t.values) <= 16
    assert 50 <= np.nanmin(trends[other.id].values)
    assert set(Fleet(p, user).trends()) == {mine.id}
    assert set(Fleet(p, user).trends([mine.id, other.id])) == {mine.id}  # asking never widens


def test_sparkline_is_an_inline_svg_with_gaps(env):
    p, admin, *_ = env
    trend = next(iter(Fleet(p, admin).trends(buckets=24).values()))
    svg = sparkline_svg(trend)
    assert (
        svg.count("<svg") == 1
        and "<polyline" in svg
        and "vibration" in svg
        and "http" not in svg.replace('xmlns="http', "")
    )


def test_active_alarms_and_model_counts_by_role(env):
    p, admin, user, mine, other = env
    p.alarms.save(admin, {"type": "Heat", "originator_id": mine.id, "severity": "MAJOR"})
    p.alarms.save(admin, {"type": "Cold", "originator_id": other.id, "severity": "WARNING"})
    cleared = p.alarms.save(admin, {"type": "Old", "originator_id": mine.id, "severity": "MINOR"})
    p.alarms.clear(admin, cleared.id)
    tenant_id = admin.tenant_id
    p.anomaly.create_model(tenant_id, ModelConfig(name="pumps", device_type="pump", fields=["vibration"]))

    alarms, total = Fleet(p, admin).active_alarms()
    assert total == 2 and {a.type for a in alarms} == {"Heat", "Cold"}
    alarms, total = Fleet(p, user).active_alarms()
    assert total == 1 and [a.originator_name for a in alarms] == ["mine"]
    assert "Heat" in alarms_html(alarms, total) and "Cold" not in alarms_html(alarms, total)

    counts = Fleet(p, admin).model_counts()
    assert [(m.name, m.anomalies, m.active) for m in counts] == [("pumps", 0, 0)]
    assert Fleet(p, user).model_counts() == []  # a customer user sees nothing of the models


def test_the_view_fills_its_placeholders_without_a_server(env):
    p, admin, user, mine, other = env
    view = FleetView(fleet=Fleet(p, user))  # no served document: Background runs inline
    frame = view._table.value
    assert list(frame["device"]) == ["mine"] and "<svg" in frame["trend"].iloc[0]
    assert "Active alarms (0)" in view._alarms.object
    assert view._models is None  # no models card at all
