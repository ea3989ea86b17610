"""The anomaly workspace in a real browser on the demo (``tbpanel serve --demo``): a new user
walks the creation wizard, builds a model and reads the Result cards, checked against the REST
API; the models page's switches, duplicate and delete confirmation; customers are refused.

Screenshots of the models page, every wizard step and the Result tab go to test-artifacts/.
"""

from __future__ import annotations

import time

import pytest

from tbpanel.demo import CUSTOMER_EMAIL, CUSTOMER_PASSWORD, TENANT_EMAIL, TENANT_PASSWORD
from tests.helpers import ARTIFACTS, Api, no_errors_logged, signed_in_pages, wait_task

WAIT_MS = 60_000
DAY = 86_400_000
pytestmark = pytest.mark.browser
#: what the wizard test built, for the models-page test after it
BUILT: dict = {}


@pytest.fixture
def open_page(browser, demo):  # noqa: F811
    with signed_in_pages(browser, demo.url, height=1000, wait_ms=WAIT_MS) as open_:
        yield open_


@pytest.fixture(autouse=True)
def no_server_errors(demo):  # noqa: F811
    """Exceptions in page callbacks only reach the server log: fail the test that caused one."""
    with no_errors_logged(demo):
        yield


@pytest.fixture(scope="module")
def api(demo):  # noqa: F811
    return Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"workspace-{name}.png"), full_page=True)


def models_by_name(api) -> dict:
    return {m["name"]: m for m in api.get("/api/tbpanel/models").json()}


def wait_until(check, timeout: float = 60, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def row(page, model_id: str):
    return page.locator(".model-row").filter(has=page.locator(f"[data-model-id='{model_id}']"))


def switch(row_, toggle: str):
    """A row's monitoring / saving / alarms checkbox."""
    return row_.locator(f".toggle-{toggle} input[type=checkbox]")


def test_new_user_walks_the_wizard_builds_and_sees_the_result(open_page, api, demo):  # noqa: F811
    page = open_page((TENANT_EMAIL, TENANT_PASSWORD), "/models")
    page.locator(".model-head").first.wait_for(timeout=WAIT_MS)
    assert page.locator(".model-head").count() == 2  # the demo's two models
    shot(page, "models")

    page.get_by_role("button", name="New model").click()
    # 1. intent
    page.get_by_text("What is this model for?").wait_for(timeout=WAIT_MS)
    page.locator("label", has_text="Quick scan").click()
    shot(page, "wizard-1-intent")
    page.get_by_role("button", name="Next ›").click()
    # 2. data: the pump profile, all its devices, two of its three keys, the last 7 days
    page.get_by_text("Which data?").wait_for(timeout=WAIT_MS)
    assert page.locator(".choices__item", has_text="vibration").count() >= 1
    page.locator(".choices__item", has_text="flow").locator(".choices__button").click()
    page.get_by_role("button", name="last 7 days").click()
    shot(page, "wizard-2-data")
    page.get_by_role("button", name="Next ›").click()
    # 3. readiness, read from the store
    verdict = page.locator("#readiness-verdict")
    verdict.wait_for(timeout=WAIT_MS)
    assert verdict.get_attribute("data-verdict") in ("Poor", "Fair", "Good", "Excellent")
    facts = {
        k: page.locator(f"[data-fact='{k}']").inner_text()
        for k in ("Devices with data", "Keys", "Points (approximate)", "Sampling step", "Coverage")
    }
    assert facts["Devices with data"] == "3 of 3" and facts["Keys"] == "pressure, vibration"
    assert facts["Sampling step"] == "1 min"
    devices = {d["name"]: d["id"]["id"] for d in api.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]}
    now = int(time.time() * 1000)
    counted = 0
    for name in ("Pump P1", "Pump P2", "Pump P3"):
        r = api.get(
            f"/api/plugins/telemetry/DEVICE/{devices[name]}/values/timeseries",
            params=dict(
                keys="pressure,vibration",
                startTs=now - 7 * DAY,
                endTs=now,
                agg="COUNT",
                interval=8 * DAY,
                useStrictDataTypes="true",
            ),
        ).json()
        counted += sum(p["value"] for series in r.values() for p in series)
    points = int(facts["Points (approximate)"].replace(",", ""))
    assert abs(points - counted) <= 0.01 * counted, (points, counted)
    assert page.locator("#readiness-why li").count() >= 3
    shot(page, "wizard-3-readiness")
    page.get_by_role("button", name="Next ›").click()
    # 4. sensitivity and granularity (offered from the 1-minute step)
    page.get_by_text("Granularity", exact=True).wait_for(timeout=WAIT_MS)
    assert page.locator("label", has_text="recommended").count() == 1
    page.locator("label", has_text="High").click()
    page.locator("label", has_text="30 min segments").click()
    page.get_by_label("Model name").fill("Pump scan (browser)")
    page.get_by_label("Model name").press("Tab")
    shot(page, "wizard-4-tuning")
    page.get_by_role("button", name="Next ›").click()
    # 5. review; Advanced shows per-field validation next to the field
    page.locator("#review-table").wait_for(timeout=WAIT_MS)
    assert "Pump scan (browser)" == page.get_by_label("Model name").input_value()
    page.get_by_text("Advanced: every setting").click()
    minor, major = page.get_by_label("Minor threshold"), page.get_by_label("Major threshold")
    minor.fill("300")
    minor.press("Tab")
    major.fill("150")
    major.press("Tab")
    msg = page.locator(".advanced-field").filter(has=major).locator(".field-error")
    msg.filter(has_text="below the MINOR threshold").wait_for(timeout=WAIT_MS)
    build = page.get_by_role("button", name="Build model")
    assert build.is_disabled() and page.locator("#review-invalid").count() == 1
    msg.scroll_into_view_if_needed()
    shot(page, "wizard-5-review-invalid")
    major.fill("400")
    major.press("Tab")
    page.locator("#review-invalid").wait_for(state="detached", timeout=WAIT_MS)
    assert msg.count() == 0
    page.evaluate("() => { window.__wizardDocument = true; }")
    build.click()
    page.locator("#build-state").wait_for(timeout=WAIT_MS)  # the live progress line
    shot(page, "wizard-5-building")
    # → the model's Result tab
    page.wait_for_url("**/model?id=*", timeout=WAIT_MS)
    model_id = page.url.split("id=")[1]
    page.locator("#card-anomalies .value").wait_for(timeout=WAIT_MS)
    model = api.get(f"/api/tbpanel/models/{model_id}").json()
    cfg = model["config"]
    assert model["status"] == "READY" and model["name"] == "Pump scan (browser)"
    assert (cfg["device_type"], cfg["fields"], cfg["items"]) == ("pump", ["pressure", "vibration"], [])
    assert (cfg["window"], cfg["segment_ms"], cfg["threshold_percent"]) == ("fixed", 1_800_000, 2.0)
    assert (cfg["minor_threshold"], cfg["major_threshold"]) == (300.0, 400.0)
    assert 7 * DAY - 120_000 <= cfg["train_end"] - cfg["train_start"] <= 7 * DAY
    anomalies = api.get(f"/api/tbpanel/models/{model_id}/anomalies").json()
    assert anomalies, "the planted pump anomalies should be found"

    def card(key: str) -> str:
        return page.locator(f"#card-{key} .value").get_attribute("data-value")

    assert int(card("anomalies")) == len(anomalies) == model["counts"]["anomalies"]
    assert int(card("items")) == len({a["item"] for a in anomalies})
    assert float(card("peak")) == pytest.approx(max(a["score"] for a in anomalies))
    assert float(card("impact")) == pytest.approx(sum(a["scoreIndex"] for a in anomalies))
    lo, hi = (float(x) for x in card("range").split(".."))
    assert (lo, hi) == (
        pytest.approx(min(a["score"] for a in anomalies)),
        pytest.approx(max(a["score"] for a in anomalies)),
    )
    names = {v: k for k, v in devices.items()}
    top = max(anomalies, key=lambda a: a["scoreIndex"])
    first_ranked = page.locator(".tabulator").nth(1).locator(".tabulator-row").first
    assert first_ranked.locator("[tabulator-field='device']").inner_text() == names[top["item"]]
    heat = page.evaluate("""() => { for (const d of Bokeh.documents) for (const m of d.all_models)
        if (m.name === 'activity-heatmap') return m.renderers.length; return -1; }""")
    assert heat >= 1
    shot(page, "result")
    BUILT["id"], BUILT["name"] = model_id, model["name"]


def test_models_page_switches_duplicate_and_delete_confirmation(open_page, api, demo):  # noqa: F811
    if "id" not in BUILT:
        pytest.skip("needs the model the wizard test built")
    models = models_by_name(api)
    pump = models["Pump health"]
    page = open_page((TENANT_EMAIL, TENANT_PASSWORD), "/models")
    row(page, BUILT["id"]).wait_for(timeout=WAIT_MS)
    page.evaluate("() => { window.__sameDocument = true; }")

    # the switches write the refresh settings
    alarms_box = switch(row(page, pump["id"]), "alarms")
    assert alarms_box.is_checked() and pump["refresh"]["create_alarms"]
    alarms_box.uncheck()
    wait_until(
        lambda: not api.get(f"/api/tbpanel/models/{pump['id']}").json()["refresh"]["create_alarms"],
        what="alarms switched off",
    )
    alarms_box.check()
    wait_until(
        lambda: api.get(f"/api/tbpanel/models/{pump['id']}").json()["refresh"]["create_alarms"],
        what="alarms switched on",
    )
    mine = row(page, BUILT["id"])
    assert not switch(mine, "monitoring").is_checked()
    switch(mine, "monitoring").check()
    switch(mine, "saving").check()
    wait_until(
        lambda: (lambda r: r["enabled"] and r["save_telemetry"])(
            api.get(f"/api/tbpanel/models/{BUILT['id']}").json()["refresh"]
        ),
        what="monitoring on",
    )
    page.locator(".alert", has_text="save scores switched on").wait_for(timeout=WAIT_MS)

    # the delete confirmation spells out what happens to the demo model's alarms; keep it
    now = int(time.time() * 1000)
    task = api.post(
        f"/api/tbpanel/models/{pump['id']}/reprocess",
        json={"startTs": now - 22 * DAY, "endTs": now, "createAlarms": True},
    ).json()
    assert wait_task(api, task["id"])["status"] == "DONE"

    def count(**kw):
        return api.get("/api/alarms", params={"modelId": pump["id"], "pageSize": 1, "page": 0, **kw}).json()[
            "totalElements"
        ]

    total, active = count(), count(searchStatus="ACTIVE")
    assert total >= 1
    row(page, pump["id"]).get_by_role("button", name="Delete").click()
    warning = page.locator(".delete-confirm").get_by_text("This cannot be undone")  # the paragraph
    warning.wait_for(timeout=WAIT_MS)
    text = warning.inner_text()
    assert "Delete Pump health?" in text and "alarms are cleared" in text
    assert f"{active} of its {total} alarm{'s' if total != 1 else ''}" in text and "become CLEARED" in text
    assert "alarm behaviour on anomaly deletion" in text and "_EAD_anomaly" in text
    shot(page, "models-delete-confirm-clear")
    page.get_by_role("button", name="Keep it").click()
    warning.wait_for(state="hidden", timeout=WAIT_MS)
    assert api.get(f"/api/tbpanel/models/{pump['id']}").status_code == 200

    # duplicate: a new row appears and builds live, without a reload
    mine.get_by_role("button", name="Duplicate").click()
    copy = wait_until(lambda: models_by_name(api).get(f"{BUILT['name']} (copy)"), what="the copy")
    row(page, copy["id"]).locator(".model-status[data-status='READY']").wait_for(timeout=WAIT_MS)
    assert row(page, copy["id"]).locator(".model-head").get_attribute("data-anomalies") == str(
        len(api.get(f"/api/tbpanel/models/{BUILT['id']}/anomalies").json())
    )
    shot(page, "models-duplicated")

    # a model whose anomaly deletion deletes alarms says so; confirming deletes it
    r = api.put(f"/api/tbpanel/models/{copy['id']}", json={"config": {"alarm_on_delete": "delete"}})
    assert r.status_code == 200, r.text
    row(page, copy["id"]).get_by_role("button", name="Delete").click()
    warning.filter(has_text="Delete Pump scan (browser) (copy)?").wait_for(timeout=WAIT_MS)
    assert "alarms are deleted" in warning.inner_text() and "= delete" in warning.inner_text()
    shot(page, "models-delete-confirm-delete")
    page.get_by_role("button", name="Delete model").click()
    row(page, copy["id"]).wait_for(state="detached", timeout=WAIT_MS)
    assert api.get(f"/api/tbpanel/models/{copy['id']}").status_code == 404
    assert page.evaluate("() => window.__sameDocument === true")
    # "Open" leads to the model page
    mine.locator("a.model-open").click()
    page.wait_for_url(f"**/model?id={BUILT['id']}", timeout=WAIT_MS)
    card = page.locator("#card-anomalies .value")
    card.wait_for(timeout=WAIT_MS)
    before = int(card.get_attribute("data-value"))
    page.evaluate("() => { window.__resultDocument = true; }")
    # a rebuild with another sensitivity changes the anomalies: the cards follow, live
    r = api.put(f"/api/tbpanel/models/{BUILT['id']}", json={"config": {"threshold_percent": 6.0}, "rebuild": True})
    assert r.status_code == 200, r.text
    assert wait_task(api, r.json()["task"]["id"])["status"] == "DONE"
    after = len(api.get(f"/api/tbpanel/models/{BUILT['id']}/anomalies").json())
    assert after != before
    page.locator(f"#card-anomalies .value[data-value='{after}']").wait_for(timeout=WAIT_MS)
    assert page.evaluate("() => window.__resultDocument === true")
    shot(page, "result-after-rebuild")


def test_customers_are_refused_without_data(open_page, api):
    pump = models_by_name(api)["Pump health"]
    page = open_page((CUSTOMER_EMAIL, CUSTOMER_PASSWORD), "/models")
    page.get_by_text("tenant administrators only").wait_for(timeout=WAIT_MS)
    assert page.get_by_text("Pump health").count() == 0 and page.locator(".model-row").count() == 0
    assert page.get_by_role("button", name="New model").count() == 0
    shot(page, "models-customer")
    page.goto(page.url.split("/models")[0] + f"/model?id={pump['id']}")
    page.get_by_text("No such model, or you may not open it").wait_for(timeout=WAIT_MS)
    assert page.locator("#card-anomalies").count() == 0
