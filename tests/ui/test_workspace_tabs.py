"""The model tabs in a real browser on `tbpanel serve --demo` (one demo server for the module).

Review: a planted anomaly opened from the sorted table zooms the chart onto it. Input: a new
threshold changes the alarm preview before anything is saved. Tasks: a reprocess is started and
cancelled from the table. Jobs: refresh is switched on. Experiments: two variants and the stored
model side by side, nothing stored changed. Every tab leaves a screenshot in test-artifacts/.
"""

from __future__ import annotations

import re
import time

import pytest

from tbpanel.clock import utc_text
from tbpanel.demo import TENANT_EMAIL, TENANT_PASSWORD, load_fleet
from tests.helpers import ARTIFACTS, Api, ServerProcess, no_errors_logged, signed_in_pages

WAIT_MS = 60_000
HOUR, DAY = 3_600_000, 86_400_000
pytestmark = pytest.mark.browser

X_RANGE_JS = """() => {
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.name === 'review-plot') return [m.x_range.start, m.x_range.end];
  return null;
}"""
RAW_SERIES_JS = """() => {
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.name === 'review:raw') return {item: m.tags[0], key: m.tags[1], x: Array.from(m.data.x), y: Array.from(m.data.y)};
  return null;
}"""
SOURCE_LEN_JS = """(name) => {
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.name === name && m.data) return Object.values(m.data)[0].length;
  return -1;
}"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("tabs-demo"), extra=("--demo",)).start(timeout=240)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tenant(demo):
    return Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)


@pytest.fixture
def no_errors(demo):
    """Exceptions in page callbacks only reach the server log: fail the test that caused one."""
    with no_errors_logged(demo):
        yield


@pytest.fixture
def open_tab(demo, browser, no_errors):
    """``open_tab(model name, tab title)``: the model page signed in as the demo tenant admin."""
    with signed_in_pages(browser, demo.url, height=1000, wait_ms=WAIT_MS) as open_page:

        def open_(name: str, tab: str):
            tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
            model = next(m for m in tenant.get("/api/tbpanel/models").json() if m["name"] == name)
            page = open_page((TENANT_EMAIL, TENANT_PASSWORD), f"/model?id={model['id']}")
            page.wait_for_selector("#model-title", timeout=WAIT_MS)
            page.locator(".bk-tab").filter(has_text=re.compile(f"^{re.escape(tab)}$")).click()
            return page, model

        yield open_


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"model-tab-{name}.png"), full_page=True)


def history_end(tenant: Api, device_id: str, key: str) -> int:
    """The demo history's end (its planted anomalies are placed relative to it)."""
    first = tenant.get(
        f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries",
        params={"keys": key, "startTs": 0, "endTs": int(time.time() * 1000), "limit": 1, "orderBy": "ASC"},
    ).json()[key][0]["ts"]
    return first + load_fleet()["history_days"] * DAY


def test_review_opens_the_planted_level_shift_from_the_sorted_table(open_tab, tenant):
    page, model = open_tab("Pump health", "Review")
    devices = {d["name"]: d["id"]["id"] for d in tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]}
    planted = next(a for a in load_fleet()["anomalies"] if a["device"] == "Pump P1")
    end = history_end(tenant, devices["Pump P1"], planted["key"])
    p_start = end - int(planted["hours_before_end"] * HOUR)
    p_end = p_start + int(planted["duration_h"] * HOUR)
    anomalies = tenant.get(f"/api/tbpanel/models/{model['id']}/anomalies").json()
    hit = [a for a in anomalies if a["item"] == devices["Pump P1"] and a["startTs"] < p_end and a["endTs"] > p_start]
    assert len(hit) == 1, anomalies
    target = hit[0]
    # the Review table (it has a severity column; the Result tab's tables, hidden once Review
    # renders, do not)
    table_rows = page.locator(".tabulator-row:visible", has=page.locator("[tabulator-field='severity']"))
    table_rows.first.wait_for(timeout=WAIT_MS)
    assert table_rows.count() == len(anomalies)
    page.locator(".tabulator-col[tabulator-field='score']:visible").click()  # sort by score, ascending
    page.locator(".tabulator-col[tabulator-field='score']:visible").click()  # then descending
    scores = [float(t) for t in page.locator(".tabulator-row:visible [tabulator-field='score']").all_inner_texts()]
    assert scores == sorted(scores, reverse=True)
    row = table_rows.filter(has_text="Pump P1").filter(has_text=f"{target['score']:.1f}")
    row.locator("[tabulator-field='start']").click()
    focus = page.locator(f"#review-focus[data-start='{target['startTs']}']")
    focus.wait_for(timeout=WAIT_MS)
    page.wait_for_function(
        f"() => {{ const r = ({X_RANGE_JS})(); return r && r[0] < {target['startTs']} "
        f"&& r[1] > {target['endTs']} && r[1] - r[0] < {3 * DAY}; }}",
        timeout=WAIT_MS,
    )
    assert page.get_by_text("Pump P1", exact=True).count() >= 1
    assert page.evaluate(SOURCE_LEN_JS, "review:anomalies") >= 1
    page.wait_for_timeout(500)
    shot(page, "review")


def drawn(page, item: str, key: str) -> dict:
    """The Review plot's raw series once it is ``key`` of device ``item`` (its source's tags)."""
    page.wait_for_function(
        f"() => {{ const s = ({RAW_SERIES_JS})(); return s && s.item === '{item}' && s.key === '{key}' && s.x.length > 0; }}",
        timeout=WAIT_MS,
    )
    return page.evaluate(RAW_SERIES_JS)


def test_review_zooms_on_the_field_that_drove_the_anomaly(open_tab, tenant):
    page, model = open_tab("Pump health", "Review")
    devices = {d["name"]: d["id"]["id"] for d in tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]}
    anomalies = tenant.get(f"/api/tbpanel/models/{model['id']}/anomalies").json()
    top = max(anomalies, key=lambda a: a["scoreIndex"])
    assert top["item"] == devices["Pump P1"]
    # the tab opens on the field of the highest-ranked anomaly: P1's vibration level shift
    drawn(page, devices["Pump P1"], "vibration")
    page.locator(".review-field select").select_option("flow")  # look somewhere else first
    drawn(page, devices["Pump P1"], "flow")
    table_rows = page.locator(".tabulator-row:visible", has=page.locator("[tabulator-field='severity']"))
    for name, key in (("Pump P2", "pressure"), ("Pump P1", "vibration")):  # planted: a drift, a level shift
        # the device's most important anomaly (a drift can come out as more than one, in an
        # order of the API's that differs from the table's), clicked by its start time
        target = max((a for a in anomalies if a["item"] == devices[name]), key=lambda a: a["scoreIndex"])
        row = table_rows.filter(has_text=name).filter(has_text=utc_text(target["startTs"]))
        row.first.locator("[tabulator-field='start']").click()
        page.locator(f"#review-focus[data-start='{target['startTs']}'][data-field='{key}']").wait_for(timeout=WAIT_MS)
        series = drawn(page, devices[name], key)
        page.wait_for_function(
            f"() => {{ const r = ({X_RANGE_JS})(); return r && r[0] < {target['startTs']} && r[1] > {target['endTs']}; }}",
            timeout=WAIT_MS,
        )
        # the drawn values are that key's, point for point inside the anomaly
        raw = tenant.get(
            f"/api/plugins/telemetry/DEVICE/{devices[name]}/values/timeseries",
            params={
                "keys": key,
                "startTs": target["startTs"],
                "endTs": target["endTs"] - 1,
                "limit": 100_000,
                "orderBy": "ASC",
                "useStrictDataTypes": "true",
            },
        ).json()[key]
        inside = [y for x, y in zip(series["x"], series["y"]) if target["startTs"] <= x < target["endTs"]]
        assert inside == [p["value"] for p in raw] and len(inside) > 10
        assert page.locator(".review-field select").input_value() == key
    page.wait_for_timeout(300)
    shot(page, "review-driving-field")


def test_input_threshold_changes_the_alarm_preview_before_saving(open_tab, tenant):
    page, model = open_tab("Thermostat comfort", "Input")
    scores = sorted(a["score"] for a in tenant.get(f"/api/tbpanel/models/{model['id']}/anomalies").json())
    cell = page.locator("#alarm-preview tr[data-severity='critical'] td.count")
    cell.wait_for(timeout=WAIT_MS)
    before = int(cell.inner_text())
    new = round(scores[len(scores) // 2] - 0.05, 2)  # the median anomaly: about half would be CRITICAL
    expected = sum(s >= new for s in scores)
    assert expected != before
    field = page.locator(".threshold-critical input")
    field.fill(str(new))
    field.press("Enter")
    page.locator("#alarm-preview tr[data-severity='critical'] td.count").filter(has_text=str(expected)).wait_for(
        timeout=WAIT_MS
    )
    total = sum(int(t) for t in page.locator("#alarm-preview td.count").all_inner_texts())
    assert total == len(scores)
    # a lower CRITICAL than MAJOR is flagged next to the field; nothing was saved
    stored = tenant.get(f"/api/tbpanel/models/{model['id']}").json()["config"]
    assert stored["critical_threshold"] is None
    page.wait_for_timeout(300)
    shot(page, "input")


def test_tasks_start_and_cancel_a_reprocess(open_tab, tenant):
    page, model = open_tab("Pump health", "Tasks")
    page.locator(".run-reprocess button").wait_for(timeout=WAIT_MS)
    # keep the (single) task worker busy with a long experiment so the reprocess waits in the queue
    now = int(time.time() * 1000)
    variants = {f"v{i}": {"threshold_percent": 0.5 + i / 10} for i in range(40)}
    blocker = tenant.post(
        f"/api/tbpanel/models/{model['id']}/experiments",
        json={"variants": variants, "startTs": now - 3 * DAY, "endTs": now},
    ).json()
    try:
        page.locator(".run-reprocess button").click()
        queued = page.locator(".tabulator-row:visible").filter(has_text="REPROCESS")
        queued.first.wait_for(timeout=WAIT_MS)
        # the experiment's progress arrives live in the same table
        running = page.locator(".tabulator-row:visible").filter(has_text="EXPERIMENT")
        running.first.locator("[tabulator-field='status']").filter(has_text="IN_PROGRESS").wait_for(timeout=WAIT_MS)
        tasks = tenant.get(f"/api/tbpanel/models/{model['id']}/tasks").json()
        reprocess = next(t for t in tasks if t["kind"] == "REPROCESS")
        assert reprocess["status"] == "QUEUED"
        queued.first.locator(".task-cancel").click()
        page.get_by_text("Cancel requested.").wait_for(timeout=WAIT_MS)
    finally:  # free the worker: the queued reprocess then ends as cancelled without running
        tenant.post(f"/api/tbpanel/tasks/{blocker['id']}/cancel")
    queued.first.locator("[tabulator-field='status']").filter(has_text="CANCELLED").wait_for(timeout=WAIT_MS)
    running.first.locator("[tabulator-field='status']").filter(has_text="CANCELLED").wait_for(timeout=WAIT_MS)
    task = tenant.get(f"/api/tbpanel/tasks/{reprocess['id']}").json()
    assert task["status"] == "CANCELLED" and any("cancelled" in line for line in task["log"])
    page.locator("#task-log-of[data-status='CANCELLED']").wait_for(timeout=WAIT_MS)  # its log, shown live
    shot(page, "tasks")


def test_reprocess_form_starts_from_the_models_switches_and_says_when_it_is_done(open_tab, tenant):
    models = {m["name"]: m for m in tenant.get("/api/tbpanel/models").json()}
    mid = models["Thermostat comfort"]["id"]
    assert models["Thermostat comfort"]["refresh"]["create_alarms"]  # the demo's switch is on
    page, _ = open_tab("Thermostat comfort", "Tasks")
    alarms = page.locator(".reprocess-alarms input[type=checkbox]")
    alarms.wait_for(timeout=WAIT_MS)
    assert alarms.is_checked() and page.locator(".reprocess-telemetry input[type=checkbox]").is_checked()
    page.locator(".run-reprocess button").click()
    page.locator(".tasks-message").get_by_text(re.compile(r"Reprocess of .* done: ")).wait_for(timeout=WAIT_MS)
    assert "queued" not in page.locator(".tasks-message").inner_text()
    tasks = tenant.get(f"/api/tbpanel/models/{mid}/tasks").json()
    latest = next(t for t in tasks if t["kind"] == "REPROCESS")
    assert latest["status"] == "DONE" and latest["params"]["createAlarms"] is True
    shot(page, "tasks-done")
    # switched off in Jobs (here over REST), a new Tasks tab starts unticked
    r = tenant.put(f"/api/tbpanel/models/{mid}/refresh", json={"create_alarms": False})
    assert r.status_code == 200, r.text
    try:
        page, _ = open_tab("Thermostat comfort", "Tasks")
        alarms = page.locator(".reprocess-alarms input[type=checkbox]")
        alarms.wait_for(timeout=WAIT_MS)
        assert not alarms.is_checked()
    finally:
        tenant.put(f"/api/tbpanel/models/{mid}/refresh", json={"create_alarms": True})


def test_jobs_switches_refresh_on(open_tab, tenant):
    models = {m["name"]: m for m in tenant.get("/api/tbpanel/models").json()}
    mid = models["Pump health"]["id"]
    assert tenant.put(f"/api/tbpanel/models/{mid}/refresh", json={"enabled": False}).status_code == 200
    page, model = open_tab("Pump health", "Jobs")
    page.get_by_text("Refresh is off").wait_for(timeout=WAIT_MS)
    page.get_by_text("not below the model's sliding step").wait_for(timeout=WAIT_MS)  # the advice, inline
    page.locator(".refresh-enabled .bk-body").click()
    page.get_by_text("Every 1 hour over").first.wait_for(timeout=WAIT_MS)
    page.locator(".jobs-save button").click()
    page.get_by_text("Saved.").first.wait_for(timeout=WAIT_MS)
    stored = tenant.get(f"/api/tbpanel/models/{mid}").json()["refresh"]
    assert stored["enabled"] is True and stored["every"] == 1 and stored["unit"] == "HOUR"
    shot(page, "jobs")


def test_experiment_with_two_variants_leaves_the_model_alone(open_tab, tenant):
    page, model = open_tab("Thermostat comfort", "Experiments")
    before = sorted(a["id"] for a in tenant.get(f"/api/tbpanel/models/{model['id']}/anomalies").json())
    page.locator(".variant-row").nth(1).wait_for(timeout=WAIT_MS)
    assert page.locator(".variant-row").count() == 2
    page.locator(".run-experiment button").click()
    table = page.locator(".tabulator-row:visible")
    for name in ("current", "more sensitive", "less sensitive"):
        table.filter(has_text=name).first.wait_for(timeout=WAIT_MS)
    counts = {
        r.locator("[tabulator-field='variant']").inner_text(): int(
            r.locator("[tabulator-field='anomalies']").inner_text()
        )
        for r in table.all()
    }
    assert set(counts) == {"current", "more sensitive", "less sensitive"}
    assert counts["more sensitive"] >= counts["current"] >= counts["less sensitive"]
    # the table and the overlay plot's source reach the browser as separate patches: wait for both
    page.wait_for_function(f"() => ({SOURCE_LEN_JS})('experiment:anomalies') > 0", timeout=WAIT_MS)
    assert page.evaluate(SOURCE_LEN_JS, "experiment:anomalies") == sum(counts.values())
    after = sorted(a["id"] for a in tenant.get(f"/api/tbpanel/models/{model['id']}/anomalies").json())
    assert after == before
    page.wait_for_timeout(300)
    shot(page, "experiments")


def test_cluster_info_shows_every_cluster(open_tab, tenant):
    page, model = open_tab("Pump health", "Cluster info")
    # the table is drawn first and again once the centroids and the training scores arrive
    # after it: count its rows once the last part is on the page
    page.get_by_text("Raw values of member segments").wait_for(timeout=WAIT_MS)
    rows = page.locator(".tabulator-row:visible")
    rows.nth(1).wait_for(timeout=WAIT_MS)
    assert rows.count() >= 2
    page.wait_for_timeout(500)
    shot(page, "cluster-info")
