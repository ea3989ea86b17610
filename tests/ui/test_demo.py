"""`tbpanel serve --demo`: the demo logins, fleet, history, live simulator, and the pages in a browser."""

from __future__ import annotations

import time

import pytest
import requests

from tbpanel.demo import CUSTOMER_EMAIL, CUSTOMER_PASSWORD, TENANT_EMAIL, TENANT_PASSWORD, load_fleet
from tests.helpers import ARTIFACTS, Api, signed_in_pages


def test_demo_prints_its_url_and_logins(demo):
    text = "".join(demo.output)
    assert "tbpanel serving at http://localhost:" in text
    assert TENANT_EMAIL in text and CUSTOMER_EMAIL in text
    assert requests.get(demo.url + "/liveness", timeout=10).status_code == 200


def test_demo_fleet_history_and_roles(demo):
    fleet = load_fleet()
    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
    devices = tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]
    assert sorted(d["name"] for d in devices) == sorted(d["name"] for d in fleet["devices"])
    assert {d["type"] for d in devices} == {"thermostat", "pump"}
    customer = Api.login(demo.url, CUSTOMER_EMAIL, CUSTOMER_PASSWORD)
    cid = customer.get("/api/auth/user").json()["customerId"]["id"]
    mine = customer.get(f"/api/customer/{cid}/devices?pageSize=100&page=0").json()["data"]
    assert sorted(d["name"] for d in mine) == sorted(d["name"] for d in fleet["devices"] if d["customer"])
    pump = next(d for d in devices if d["name"] == "Pump P1")["id"]["id"]
    now = int(time.time() * 1000)
    day = tenant.get(
        f"/api/plugins/telemetry/DEVICE/{pump}/values/timeseries",
        params=dict(
            keys="vibration",
            startTs=now - 20 * 86_400_000,
            endTs=now,
            agg="COUNT",
            interval=86_400_000,
            useStrictDataTypes="true",
        ),
    ).json()
    assert len(day["vibration"]) >= 19 and all(p["value"] >= 1400 for p in day["vibration"][1:-1])


def test_demo_has_built_models_with_refresh_and_alarms_on(demo):
    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
    models = {m["name"]: m for m in tenant.get("/api/tbpanel/models").json()}
    assert set(models) == {"Pump health", "Thermostat comfort"}
    for m in models.values():
        assert m["status"] == "READY" and m["counts"]["anomalies"] >= 1
        assert m["refresh"]["enabled"] and m["refresh"]["create_alarms"] and m["refresh"]["save_telemetry"]
    devices = {d["id"]["id"]: d["name"] for d in tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]}
    pump = tenant.get(f"/api/tbpanel/models/{models['Pump health']['id']}/anomalies").json()
    top = max(pump, key=lambda a: a["scoreIndex"])
    assert devices[top["item"]] == "Pump P1"  # the planted level shift ranks first


def test_fresh_demo_has_active_and_cleared_alarms_from_the_planted_anomalies(demo):
    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)

    def names(status):
        page = tenant.get("/api/alarms", params={"pageSize": 100, "page": 0, "searchStatus": status}).json()
        return sorted(a["originatorName"] for a in page["data"])

    assert names("ACTIVE") == ["Thermostat T1"]  # the window still open
    assert {"Pump P1", "Pump P2", "Thermostat T2"} <= set(names("CLEARED"))  # episodes that are over
    models = {m["name"]: m["id"] for m in tenant.get("/api/tbpanel/models").json()}
    for mid in models.values():  # each model's alarms come from its own anomalies
        alarms = tenant.get("/api/alarms", params={"pageSize": 100, "page": 0, "modelId": mid}).json()["data"]
        anomalies = {a["id"] for a in tenant.get(f"/api/tbpanel/models/{mid}/anomalies").json()}
        assert alarms and all(a["details"]["anomalyId"] in anomalies for a in alarms)
    customer = Api.login(demo.url, CUSTOMER_EMAIL, CUSTOMER_PASSWORD)
    seen = customer.get("/api/alarms", params={"pageSize": 100, "page": 0, "searchStatus": "ACTIVE"}).json()["data"]
    assert [a["originatorName"] for a in seen] == ["Thermostat T1"]  # T1 is Customer A's


@pytest.mark.browser
@pytest.mark.parametrize(
    "login, active, cleared, hidden",
    [
        ((TENANT_EMAIL, TENANT_PASSWORD), "Thermostat T1", ["Pump P1", "Pump P2", "Thermostat T2"], []),
        ((CUSTOMER_EMAIL, CUSTOMER_PASSWORD), "Thermostat T1", ["Pump P1", "Thermostat T2"], ["Pump P2"]),
    ],
    ids=["tenant", "customer"],
)
def test_alarms_page_of_a_fresh_demo_shows_active_and_cleared_alarms(demo, browser, login, active, cleared, hidden):
    with signed_in_pages(browser, demo.url, height=1000, wait_ms=60_000) as open_page:
        page = open_page(login, "/alarms")
        rows = page.locator(".tabulator-row")
        status = "[tabulator-field='status']"
        rows.filter(has_text=active).locator(status).filter(has_text="ACTIVE_UNACK").first.wait_for(timeout=60_000)
        for name in cleared:
            rows.filter(has_text=name).locator(status).filter(has_text="CLEARED_UNACK").first.wait_for(timeout=60_000)
        for name in hidden:
            assert rows.filter(has_text=name).count() == 0
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"alarms-demo-{login[0].split('@')[0]}.png"), full_page=True)


def test_demo_fleet_keeps_posting_over_http(demo):
    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
    devices = tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]
    t1 = next(d for d in devices if d["name"] == "Thermostat T1")["id"]["id"]
    first = tenant.get(f"/api/plugins/telemetry/DEVICE/{t1}/values/timeseries?keys=temperature").json()
    deadline = time.time() + 30
    while time.time() < deadline:
        latest = tenant.get(f"/api/plugins/telemetry/DEVICE/{t1}/values/timeseries?keys=temperature").json()
        if latest["temperature"][0]["ts"] > first["temperature"][0]["ts"]:
            return
        time.sleep(0.5)
    pytest.fail("the simulated fleet did not post a new point within 30 s")


def test_pages_need_login(demo):
    r = requests.get(demo.url + "/", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and "/login" in r.headers["Location"]


@pytest.mark.browser
def test_customer_logs_in_and_sees_only_its_fleet(demo, browser):
    page = browser.new_page()
    try:
        page.goto(demo.url + "/")
        page.wait_for_url("**/login**")
        page.fill("#username", CUSTOMER_EMAIL)
        page.fill("#password", "wrong")
        page.click("#login")
        assert "Invalid username or password" in page.inner_text("body")
        page.fill("#password", CUSTOMER_PASSWORD)
        page.click("#login")
        # Panel renders into shadow roots: locators pierce them, inner_text("body") does not
        page.wait_for_selector("text=Thermostat T1", timeout=60_000)
        assert page.get_by_text(CUSTOMER_EMAIL).count() == 1
        assert page.get_by_text("Points stored", exact=True).count() == 1
        for name in ("Pump P1", "Thermostat T1", "Thermostat T2"):
            assert page.get_by_text(name, exact=True).count() == 1, name
        for name in ("Pump P2", "Pump P3", "Thermostat T3"):
            assert page.get_by_text(name, exact=True).count() == 0, name
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "landing-customer.png"), full_page=True)
        page.goto(demo.url + "/logout")
        page.wait_for_url("**/login**")
    finally:
        page.close()


@pytest.mark.browser
def test_tenant_sees_the_whole_fleet(demo, browser):
    page = browser.new_page()
    try:
        page.goto(demo.url + "/login")
        page.fill("#username", TENANT_EMAIL)
        page.fill("#password", TENANT_PASSWORD)
        page.click("#login")
        page.wait_for_selector("text=Pump P3", timeout=60_000)
        for d in load_fleet()["devices"]:
            assert page.get_by_text(d["name"], exact=True).count() == 1, d["name"]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "landing-tenant.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.browser
@pytest.mark.parametrize(
    "login", [(TENANT_EMAIL, TENANT_PASSWORD), (CUSTOMER_EMAIL, CUSTOMER_PASSWORD)], ids=["tenant", "customer"]
)
def test_demo_users_see_posted_telemetry_live(demo, browser, login):
    """Each demo login opens /telemetry for Thermostat T1 and sees a value posted over the
    device API arrive in the latest table and the plot data, without reloading."""
    from tests.ui.test_live_pages import SERIES_JS

    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
    devices = tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]
    t1 = next(d for d in devices if d["name"] == "Thermostat T1")["id"]["id"]
    key = f"setpoint_{login[0].split('@')[0]}"  # a key the simulator never posts

    def post(v):
        return requests.post(f"{demo.url}/api/v1/T1_DEMO_TOKEN/telemetry", json={key: v}, timeout=30)

    assert post(1.5).status_code == 200
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{demo.url}/login?next=/telemetry%3Fdevice%3D{t1}")
        page.fill("#username", login[0])
        page.fill("#password", login[1])
        page.click("#login")
        cell = page.locator(f"#latest-table tr[data-key='{key}'] td.value")
        cell.filter(has_text="1.5").wait_for(timeout=60_000)
        assert post(77.125).status_code == 200
        cell.filter(has_text="77.125").wait_for(timeout=30_000)
        page.wait_for_function(
            f"() => {{ const s = ({SERIES_JS})(); return s['{key}'] && s['{key}'].y.includes(77.125); }}",
            timeout=30_000,
        )
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"telemetry-demo-{login[0].split('@')[0]}.png"), full_page=True)
    finally:
        context.close()
