"""The dashboard pages in a real browser (Playwright + Debian chromium) against the session's
real server: a tenant administrator builds a dashboard of every widget kind, drags and resizes,
saves, reloads and finds it identical, sees a live point arrive and sets a shared attribute the
device then reads over its own API; a customer user opens only its customer's dashboard and
sees none of another customer's devices on it.

Plot data is read from the browser's Bokeh document: a chart line is the ``ColumnDataSource``
named ``line:<widget id>:<device name>:<key>``.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tbpanel.dashboards.model import WIDGET_KINDS, Dashboard, EntitiesTable, TimeseriesChart
from tbpanel.dashboards.store import DashboardStore
from tbpanel.entities import EntityRegistry
from tests.helpers import ADMIN, CUSTOMER_USER, WAIT_MS, shot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_server_errors")]

GRID_JS = """() => {
  const out = {};
  const walk = (root) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.classList && el.classList.contains('grid-stack-item')) {
        const frame = el.querySelector('.dash-widget') || null;
        out[el.getAttribute('data-id')] = [+el.getAttribute('gs-x'), +el.getAttribute('gs-y'),
                                            +el.getAttribute('gs-w'), +el.getAttribute('gs-h')];
      }
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  walk(document);
  return Object.values(out).sort();
}"""

LINE_JS = """(name) => { for (const d of Bokeh.documents) for (const m of d.all_models)
  if (m.name === name && m.data) return Array.from(m.data.y); return null; }"""


def now_ms() -> int:
    return int(time.time() * 1000)


def post(world, token: str, payload) -> None:
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", json=payload, timeout=30)
    assert r.status_code == 200, r.text


COUNT_JS = """() => { let c = 0; const walk = (r) => { for (const el of r.querySelectorAll('*')) {
    if (el.classList && el.classList.contains('dash-widget')) c++; if (el.shadowRoot) walk(el.shadowRoot); } };
  walk(document); return c; }"""


def wait_widgets(page, n: int) -> None:
    """Until the page draws ``n`` widgets."""
    try:
        page.wait_for_function(f"() => ({COUNT_JS})() === {n}", timeout=WAIT_MS)
    except Exception:
        shot(page, "dashboard-failed")
        raise AssertionError(f"{page.evaluate(COUNT_JS)} widgets drawn, not {n}") from None


def wait_grid_change(page, old: list) -> list:
    """The grid's places once they differ from ``old`` (gridstack animates a drop)."""
    deadline = time.time() + WAIT_MS / 1000
    while time.time() < deadline:
        now = page.evaluate(GRID_JS)
        if now != old:
            return now
        page.wait_for_timeout(100)
    raise AssertionError("the grid did not change")


def add_widget(page, kind: str, count: int) -> None:
    page.locator(".add-kind select").select_option(kind)
    page.locator(".add-widget button").click()
    wait_widgets(page, count)
    page.locator(".settings-drawer").wait_for(state="visible", timeout=WAIT_MS)


def configure(page, alias: str | None = None, keys: str | None = None) -> None:
    if alias is not None:
        page.locator(".alias-select select").select_option(label=alias)
    if keys is not None:
        box = page.locator(".set-keys input")
        box.fill(keys)
        box.press("Enter")
    page.locator(".apply-settings button").click()


def test_admin_builds_every_kind_drags_saves_reloads_and_sees_live(world, open_page):
    name = f"dash-dev-{uuid.uuid4().hex[:6]}"
    did, token = world.new_device(name, type="dashsensor")
    t = now_ms()
    post(world, token, [{"ts": t - (10 - i) * 30_000, "values": {"temperature": 20 + i}} for i in range(10)])
    page = open_page(ADMIN, "/dashboards")
    title = f"Built in the browser {uuid.uuid4().hex[:4]}"
    page.locator(".new-title input").fill(title)
    page.locator(".create-dashboard button").click()
    page.locator(".new-dashboard").click()
    page.wait_for_url("**/dashboard?id=*", timeout=WAIT_MS)
    page.locator(".edit-toggle button").click()
    page.locator(".edit-bar").wait_for(state="visible", timeout=WAIT_MS)

    for i, kind in enumerate(WIDGET_KINDS, start=1):
        add_widget(page, kind, i)
        if kind == "timeseries_chart":
            configure(page, alias=f"Device: {name}", keys='["temperature"]')
        elif kind == "latest_card":
            configure(page, keys='["temperature"]')
    wait_widgets(page, len(WIDGET_KINDS))
    page.locator(".close-settings button").click()
    page.locator(".kind-latest_card .value", has_text="29").wait_for(timeout=WAIT_MS)

    # drag the card to the right, then make it wider and taller
    before = page.evaluate(GRID_JS)
    card = page.locator(".kind-latest_card .widget-title")
    card.scroll_into_view_if_needed()
    box = card.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + 400, box["y"] + 200, steps=12)
    page.mouse.up()
    wait_grid_change(page, before)
    page.wait_for_timeout(1000)  # gridstack settles the others around the drop
    page.locator(".kind-latest_card").scroll_into_view_if_needed()
    frame = page.locator(".kind-latest_card").bounding_box()
    page.mouse.move(frame["x"] + frame["width"] / 2, frame["y"] + frame["height"] / 2)  # shows the handle
    corner = (frame["x"] + frame["width"] - 8, frame["y"] + frame["height"] - 8)  # gridstack's resize handle
    page.mouse.move(*corner)
    page.mouse.down()
    page.mouse.move(corner[0] + 160, corner[1] + 120, steps=12)
    page.mouse.up()
    deadline = time.time() + WAIT_MS / 1000
    while page.locator(".kind-latest_card").bounding_box()["width"] < frame["width"] + 40:
        assert time.time() < deadline, "the card did not get wider"
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)
    after = page.evaluate(GRID_JS)
    assert after != before
    page.locator(".save button").click()
    page.locator(".dashboard-message", has_text="saved").wait_for(timeout=WAIT_MS)
    shot(page, "dashboard-edit")

    page.reload()
    wait_widgets(page, len(WIDGET_KINDS))
    page.wait_for_function(f"() => ({GRID_JS})().length === {len(WIDGET_KINDS)}", timeout=WAIT_MS)
    assert page.evaluate(GRID_JS) == after  # the same places after a reload
    for kind in WIDGET_KINDS:
        page.locator(f".kind-{kind}").first.wait_for(timeout=WAIT_MS)

    # a live point reaches the chart and the card without a reload
    page.locator(".kind-latest_card .value", has_text="29").wait_for(timeout=WAIT_MS)
    page.evaluate("() => { window.__same = true; }")
    chart_id = page.locator(".kind-timeseries_chart").get_attribute("class").split("w-", 1)[1].split()[0]
    line = f"line:{chart_id}:{name}:temperature"
    page.wait_for_function(
        f"() => {{ const y = ({LINE_JS})({line!r}); return y && y.length === 10; }}", timeout=WAIT_MS
    )
    post(world, token, {"ts": now_ms(), "values": {"temperature": 77.5}})
    page.wait_for_function(
        f"() => {{ const y = ({LINE_JS})({line!r}); return y && y[y.length - 1] === 77.5; }}", timeout=WAIT_MS
    )
    page.locator(".kind-latest_card .value", has_text="77.5").wait_for(timeout=WAIT_MS)
    assert page.evaluate("() => window.__same === true")

    # the switch sets a shared attribute; the device reads it over its own API
    page.locator(".attribute-switch").first.click()
    deadline = time.time() + WAIT_MS / 1000
    shared = {}
    while time.time() < deadline:
        r = requests.get(f"{world.url}/api/v1/{token}/attributes?sharedKeys=enabled", timeout=30)
        shared = r.json().get("shared", {})
        if shared.get("enabled") is True:
            break
        time.sleep(0.2)
    assert shared == {"enabled": True}
    shot(page, "dashboard-view")


def test_customer_user_opens_only_its_customers_dashboard(world, open_page):
    reg = EntityRegistry(world.server.data)
    try:
        store = DashboardStore(reg)
        admin = reg.find_user(ADMIN[0])
        mine = Dashboard(title=f"For A1 {uuid.uuid4().hex[:4]}")
        every = mine.add_alias("Devices", {"type": "entityType", "entityType": "DEVICE"})
        mine.add_widget(EntitiesTable(title="All devices", alias_id=every, keys=["t"]))
        mine.add_widget(TimeseriesChart(title="Chart", alias_id=every, keys=["t"]))
        mine_id = store.save(admin, mine.to_json())["id"]["id"]
        store.assign(admin, world.customer_ids["Customer A1"], mine_id)
        other_id = store.save(admin, Dashboard(title=f"Not for A1 {uuid.uuid4().hex[:4]}").to_json())["id"]["id"]
    finally:
        reg.close()
    page = open_page(CUSTOMER_USER, "/dashboards")
    page.locator(f".dashboard-list tr[data-id='{mine_id}']").wait_for(timeout=WAIT_MS)
    assert page.locator(f".dashboard-list tr[data-id='{other_id}']").count() == 0
    page.goto(f"{world.url}/dashboard?id={mine_id}")
    page.locator(".entities-table", has_text="dev-a1").wait_for(timeout=WAIT_MS)
    page.wait_for_timeout(500)
    text = page.locator("body").inner_text()
    legend = page.evaluate("""() => { const out = []; for (const d of Bokeh.documents) for (const m of d.all_models)
        if (m.name && m.name.startsWith('line:')) out.push(m.name); return out.join(' '); }""")
    for foreign in ("dev-a2", "dev-tenant", "dev-b"):
        assert foreign not in text and foreign not in legend
    assert page.locator(".edit-toggle").count() == 0  # viewers only
    shot(page, "dashboard-customer")
    page.goto(f"{world.url}/dashboard?id={other_id}")
    page.locator(".no-dashboard").wait_for(timeout=WAIT_MS)
