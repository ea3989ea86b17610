"""The live pages in a real browser (Playwright + Debian chromium) against a real server.

Each test saves a screenshot under ``test-artifacts/`` (gitignored). Plot data is read from
the browser's Bokeh document (``Bokeh.documents``): the renderers of the figure named
``telemetry-plot`` draw one ``ColumnDataSource`` per key, named ``series:<key>``.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from tests.helpers import ADMIN, CUSTOMER_USER, WAIT_MS, shot

SERIES_JS = """() => {
  const out = {};
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.name === 'telemetry-plot')
        for (const r of m.renderers) {
          const src = r.data_source;
          if (src && src.name && src.name.startsWith('series:'))
            out[src.name.slice(7)] = {ts: Array.from(src.data.ts), y: Array.from(src.data.y)};
        }
  return out;
}"""

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_server_errors")]


def post(world, token: str, payload) -> None:
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", json=payload, timeout=30)
    assert r.status_code == 200, r.text


def plot_title(page) -> str:
    return page.evaluate("""() => { for (const doc of Bokeh.documents) for (const m of doc.all_models)
        if (m.name === 'telemetry-plot') return m.title.text; return null; }""")


def series(page) -> dict:
    return page.evaluate(SERIES_JS)


def wait_series(page, condition_js: str) -> dict:
    """Wait until ``condition_js`` (a JS expression over ``s``, the series dict) holds."""
    page.wait_for_function(f"() => {{ const s = ({SERIES_JS})(); return {condition_js}; }}", timeout=WAIT_MS)
    return series(page)


def latest_value(page, key: str):
    return page.locator(f"#latest-table tr[data-key='{key}'] td.value")


def now_ms() -> int:
    return int(time.time() * 1000)


def test_new_points_arrive_in_the_plot_and_table_without_reload(world, open_page):
    did, token = world.new_device(f"live-plot-{uuid.uuid4().hex[:6]}", type="thermostat")
    t = now_ms()
    post(
        world,
        token,
        [{"ts": t - (10 - i) * 20_000, "values": {"temperature": 20 + i, "humidity": 40}} for i in range(10)],
    )
    page = open_page(ADMIN, f"/telemetry?device={did}")
    s = wait_series(page, "s.temperature && s.temperature.y.length === 10 && s.humidity")
    assert s["temperature"]["y"] == [float(20 + i) for i in range(10)]
    latest_value(page, "temperature").filter(has_text="29").wait_for(timeout=WAIT_MS)
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloaded

    post(world, token, {"ts": t + 1, "values": {"temperature": 31.75}})
    s = wait_series(page, "s.temperature.y.length === 11")
    assert s["temperature"]["y"][-1] == 31.75 and s["temperature"]["ts"][-1] == t + 1
    assert len(s["humidity"]["y"]) == 10  # only the key that changed grew
    latest_value(page, "temperature").filter(has_text="31.75").wait_for(timeout=WAIT_MS)
    assert page.locator("#latest-table tr[data-key='temperature'] td.age").inner_text().endswith(("s", "min"))
    assert page.evaluate("() => window.__sameDocument === true")
    shot(page, "telemetry-live-admin")


def test_pick_device_and_keys_then_switch_window_and_aggregation(world, open_page):
    name = f"live-pick-{uuid.uuid4().hex[:6]}"
    did, token = world.new_device(name, type="pump")
    t = now_ms()
    # one point a minute for 3 hours: "5 min" shows a few, "1 day" all of them
    post(world, token, [{"ts": t - i * 60_000, "values": {"pressure": i % 7, "flow": 1.5}} for i in range(180)])
    page = open_page(ADMIN, "/telemetry")
    page.locator(".device-search input").fill(name[:12])
    page.locator(".device-select select").select_option(label=f"{name} (pump)")
    s = wait_series(page, "s.pressure && s.flow")
    assert len(s["pressure"]["y"]) == 60  # the default window: 1 hour
    page.locator(".key-buttons button", has_text="flow").click()  # untick flow
    wait_series(page, "s.pressure && !s.flow")
    page.locator(".window-buttons button", has_text="5 min").click()
    s = wait_series(page, "s.pressure && s.pressure.y.length < 10")
    assert 4 <= len(s["pressure"]["y"]) <= 6
    page.locator(".window-buttons button", has_text="1 day").click()
    s = wait_series(page, "s.pressure && s.pressure.y.length === 180")
    page.locator(".agg-select select").select_option("COUNT")
    page.locator(".interval-select select").select_option(label="1 h")
    s = wait_series(page, "s.pressure && s.pressure.y.length <= 4")
    assert sum(s["pressure"]["y"]) == 180  # hourly counts of every point
    post(world, token, {"ts": now_ms(), "values": {"pressure": 99}})
    s = wait_series(page, "s.pressure.y.reduce((a, b) => a + b, 0) === 181")  # open bucket patched
    assert len(s["pressure"]["y"]) <= 5
    page.locator(".window-buttons button", has_text="Fixed").click()  # defaults to the last day
    page.locator(".range-picker").wait_for(state="visible", timeout=WAIT_MS)
    page.wait_for_function(
        "() => { for (const d of Bokeh.documents) for (const m of d.all_models) "
        "if (m.name === 'telemetry-plot') return m.title.text.endsWith('UTC · COUNT per 1 h'); }",
        timeout=WAIT_MS,
    )
    s = series(page)
    assert 180 <= sum(s["pressure"]["y"]) <= 181  # the new point may fall after the range end
    # a fixed range from the URL: the first half hour of the history, raw
    page.goto(
        f"{world.url}/telemetry?device={did}&window=fixed&start={t - 179 * 60_000}&end={t - 149 * 60_000}&agg=NONE"
    )
    s = wait_series(page, "s.pressure && s.flow")
    assert len(s["pressure"]["y"]) == 30 and s["pressure"]["ts"][0] == t - 179 * 60_000
    assert plot_title(page).startswith(f"{name} · ") and plot_title(page).endswith("UTC")
    shot(page, "telemetry-switch-window")


def test_customer_user_sees_only_its_devices_even_by_url(world, open_page):
    mine = world.devices["dev-a1"]["id"]["id"]
    theirs = world.devices["dev-a2"]["id"]["id"]
    post(world, world.token("dev-a2"), {"secret": 42})
    post(world, world.token("dev-a1"), {"temperature": 18.5})
    page = open_page(CUSTOMER_USER, "/telemetry")
    page.locator(".device-select option", has_text="dev-a1").wait_for(state="attached", timeout=WAIT_MS)
    options = page.locator(".device-select option").all_inner_texts()
    assert any(o.startswith("dev-a1") for o in options)
    assert not any(o.startswith(("dev-a2", "dev-tenant", "dev-b")) for o in options)

    page.goto(f"{world.url}/telemetry?device={theirs}")  # edited URL: another customer's device
    page.locator(".status", has_text="permission").wait_for(timeout=WAIT_MS)
    assert series(page) == {} and page.locator("#latest-table").count() == 0
    shot(page, "telemetry-customer-denied")

    page.goto(f"{world.url}/telemetry?device={mine}")
    wait_series(page, "Object.keys(s).length > 0")
    latest_value(page, "temperature").filter(has_text="18.5").wait_for(timeout=WAIT_MS)
    assert page.get_by_text(CUSTOMER_USER[0]).count() == 1
    shot(page, "telemetry-customer-own")


def test_fleet_page_updates_live_and_links_to_telemetry(world, open_page):
    name = f"000-live-fleet-{uuid.uuid4().hex[:6]}"  # sorts first: Tabulator renders visible rows only
    did, token = world.new_device(name)
    page = open_page(ADMIN, "/")
    row = page.locator(".tabulator-row", has_text=name)
    row.wait_for(timeout=WAIT_MS)
    points = row.locator("[tabulator-field='points']")
    assert points.inner_text() == "0"
    post(world, token, {"temperature": 1, "humidity": 2})
    points.filter(has_text="2").wait_for(timeout=WAIT_MS)
    assert row.locator("[tabulator-field='online'] svg").count() >= 1
    assert page.locator("#nav a", has_text="Telemetry").get_attribute("href") == "/telemetry"
    shot(page, "fleet-live")
    row.locator("[tabulator-field='plot'] a").click()
    page.wait_for_url(f"**/telemetry?device={did}**", timeout=WAIT_MS)
    wait_series(page, "s.temperature && s.temperature.y.length === 1")


def test_closed_pages_leave_no_subscription(world, browser, open_page):
    did, _ = world.new_device(f"live-close-{uuid.uuid4().hex[:6]}")
    page = open_page(ADMIN, f"/telemetry?device={did}")
    page.wait_for_selector(".device-select select", timeout=WAIT_MS)
    deadline = time.time() + 30
    while world.admin.get("/api/tbpanel/live/stats").json()["pageSubscriptions"] < 1:
        assert time.time() < deadline, "the open page never subscribed"
        time.sleep(0.2)
    page.context.close()
    # Bokeh destroys a session ~15 s after its socket closes; every page of these tests is
    # closed by now, so tenant A's page subscriptions must all end
    deadline = time.time() + 60
    while (n := world.admin.get("/api/tbpanel/live/stats").json()["pageSubscriptions"]) != 0:
        assert time.time() < deadline, f"{n} page subscriptions outlived their sessions"
        time.sleep(0.5)


def test_saved_score_keys_are_never_chosen_by_default_but_stay_selectable(world, open_page):
    did, token = world.new_device(f"live-scores-{uuid.uuid4().hex[:6]}")
    t = now_ms()
    post(world, token, [{"ts": t - 60_000, "values": {"_EAD_anomaly": 12.5, "_EID_anomaly": 0.0, "power": 3.0}}])
    page = open_page(ADMIN, f"/telemetry?device={did}")
    s = wait_series(page, "s.power")
    assert set(s) == {"power"}  # the scores a model saved are not plotted unasked
    buttons = page.locator(".key-buttons button")
    assert buttons.all_inner_texts() == ["power", "_EAD_anomaly", "_EID_anomaly"]  # scores last
    buttons.filter(has_text="_EAD_anomaly").click()
    s = wait_series(page, "s._EAD_anomaly")
    assert s["_EAD_anomaly"]["y"] == [12.5]


def test_title_stays_after_a_window_change_and_keys_of_other_scales_get_their_own_plot(world, open_page):
    name = f"live-title-{uuid.uuid4().hex[:6]}"
    did, token = world.new_device(name)
    t = now_ms()
    post(world, token, [{"ts": t - i * 60_000, "values": {"speed": 3000 + i, "level": 0.5}} for i in range(30)])
    page = open_page(ADMIN, f"/telemetry?device={did}")
    wait_series(page, "s.speed && s.level")
    titles_js = """() => { const o = []; for (const d of Bokeh.documents) for (const m of d.all_models)
        if (m.name === 'telemetry-plot' && m.renderers.length) o.push({text: m.title.text, shown: m.title.visible,
          axis: m.left[0].axis_label, keys: m.renderers.map(r => r.data_source.name)}); return o; }"""
    plots = page.evaluate(titles_js)
    assert len(plots) == 2  # 0.5 and 3,000 never share an axis
    assert sorted(p["axis"] for p in plots) == ["level", "speed"]
    assert [p["shown"] for p in plots].count(True) == 1
    page.locator(".window-buttons button", has_text="5 min").click()
    page.wait_for_function(
        "() => { for (const d of Bokeh.documents) for (const m of d.all_models) "
        "if (m.name === 'telemetry-plot' && m.title.visible) return m.title.text.endsWith('live, last 5 min'); }",
        timeout=WAIT_MS,
    )
    page.wait_for_timeout(500)  # the title must still be drawn: its text, and room for it in the layout
    shown = [p for p in page.evaluate(titles_js) if p["shown"]]
    assert len(shown) == 1 and shown[0]["text"] == f"{name} · live, last 5 min"
    # the title is drawn: the rendered title view of the figure showing it has room in the layout
    heights = page.evaluate("""() => { const out = [];
      function walk(view) {
        if (view.model && view.model.name === 'telemetry-plot' && view.model.title.visible)
          for (const r of view.renderer_views.values()) if (r.model === view.model.title) out.push(r.bbox.height);
        for (const c of (view.child_views || [])) walk(c);
      }
      for (const v of Object.values(Bokeh.index)) walk(v);
      return out; }""")
    assert len(heights) == 1 and heights[0] > 10, heights
    shot(page, "telemetry-title-after-window-change")
