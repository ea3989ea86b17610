"""The alarm page's view object in-process (no browser): filters, who sees what, actions and
the storm warning. The browser test (test_alarm_page.py) covers live updates."""

from __future__ import annotations

import pytest

from tbpanel.platform import Platform
from tbpanel.ui.alarms import AlarmsView


@pytest.fixture
def env(tmp_path):
    p = Platform(tmp_path / "data", compaction_interval_s=0)
    tenant = p.registry.create_tenant("T")
    customer = p.registry.save_customer(tenant.id, {"title": "C"})
    mine = p.registry.save_device(tenant.id, "mine", type="pump")
    p.registry.assign_device(mine.id, customer.id)
    other = p.registry.save_device(tenant.id, "other", type="pump")
    admin = p.registry.create_user("admin@t.test", "password-123", "TENANT_ADMIN", tenant.id)
    user = p.registry.create_user("user@c.test", "password-123", "CUSTOMER_USER", tenant.id, customer.id)
    yield p, admin, user, mine, other
    p.close()


def test_filters_visibility_and_actions(env):
    p, admin, user, mine, other = env
    p.alarms.save(admin, {"type": "Heat", "originator_id": mine.id, "severity": "MAJOR"})
    p.alarms.save(admin, {"type": "Cold", "originator_id": other.id, "severity": "WARNING"})
    view = AlarmsView(p, admin)
    assert sorted(view._table.value["device"]) == ["mine", "other"]
    view.filters.severities = ["MAJOR"]
    assert list(view._table.value["type"]) == ["Heat"]
    view.filters.severities = []
    view.filters.types = ["Cold"]
    assert list(view._table.value["device"]) == ["other"]
    view.filters.types = []
    view.filters.device = mine.id
    assert list(view._table.value["device"]) == ["mine"]

    customer = AlarmsView(p, user)
    assert list(customer._table.value["device"]) == ["mine"]
    assert list(customer._devices) == ["mine"]
    heat = customer._table.value.iloc[0]["id"]
    customer.act("ack", heat)
    assert customer._table.value.iloc[0]["status"] == "ACTIVE_ACK"
    cold = [a for a in p.alarms.repo.all() if a.type == "Cold"][0]
    customer.act("clear", cold.id)  # not its device: refused, said on the page
    assert "permission" in customer._message.object and not p.alarms.repo.get(cold.id).cleared
    customer.act("delete", heat)
    assert customer._table.value.empty


def test_storm_warning_shown_to_its_tenant_only(env):
    p, admin, user, mine, other = env
    view = AlarmsView(p, admin)
    assert not view._storm.visible
    p.alarms.last_storm = {
        "modelId": "m",
        "modelName": "pumps",
        "source": "REFRESH",
        "raised": 42,
        "limit": 20,
        "at": 0,
        "tenantId": admin.tenant_id,
    }
    view.refresh()
    assert view._storm.visible and "42 alarms" in view._storm.object and "pumps" in view._storm.object
    p.alarms.last_storm = dict(p.alarms.last_storm, tenantId="someone-else")
    assert not AlarmsView(p, admin)._storm.visible
