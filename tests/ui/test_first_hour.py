"""What a newcomer meets on `tbpanel serve --demo`: the login page offers the demo logins, the
landing page shows trends, alarms and models (customers: only theirs), and no page asks any
host but the server itself for anything (the product works offline)."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests

from tbpanel.demo import CUSTOMER_EMAIL, CUSTOMER_PASSWORD, TENANT_EMAIL, TENANT_PASSWORD, load_fleet
from tests.helpers import ARTIFACTS, WAIT_MS, Api, shot

pytestmark = pytest.mark.browser

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def sign_in(page, base: str, email: str, password: str) -> None:
    page.goto(base + "/login")
    page.fill("#username", email)
    page.fill("#password", password)
    page.click("#login")
    page.wait_for_url(base + "/", timeout=WAIT_MS)


def test_the_demo_login_page_offers_both_demo_logins(demo, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1200, "height": 800})
    try:
        page.goto(demo.url + "/login")
        box = page.locator("#demo-logins")
        assert box.is_visible()
        text = box.inner_text()
        for login in (TENANT_EMAIL, TENANT_PASSWORD, CUSTOMER_EMAIL, CUSTOMER_PASSWORD):
            assert login in text
        shot(page, "login-demo")
        page.locator("#demo-logins button", has_text=CUSTOMER_EMAIL).click()  # fills the form
        assert page.input_value("#username") == CUSTOMER_EMAIL
        assert page.input_value("#password") == CUSTOMER_PASSWORD
        page.click("#login")
        page.wait_for_url(demo.url + "/", timeout=WAIT_MS)
        page.get_by_text("Thermostat T1", exact=True).wait_for(timeout=WAIT_MS)
    finally:
        page.close()


def test_a_server_without_demo_shows_no_demo_logins(world):
    body = requests.get(world.url + "/login", timeout=30).text
    assert 'id="username"' in body
    assert 'id="demo-logins"' not in body and TENANT_EMAIL not in body and CUSTOMER_EMAIL not in body


def test_the_tenant_lands_on_trends_alarms_and_models(demo, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        sign_in(page, demo.url, TENANT_EMAIL, TENANT_PASSWORD)
        rows = page.locator(".tabulator-row")
        rows.first.wait_for(timeout=WAIT_MS)
        devices = load_fleet()["devices"]
        page.locator("[tabulator-field='trend'] svg.sparkline").nth(len(devices) - 1).wait_for(timeout=WAIT_MS)
        assert page.locator("[tabulator-field='trend'] svg.sparkline").count() == len(devices)
        models = page.locator("#fleet-models")
        models.wait_for(timeout=WAIT_MS)
        for name in ("Pump health", "Thermostat comfort"):
            models.locator("a", has_text=name).wait_for(timeout=WAIT_MS)
        assert "anomal" in models.inner_text()
        page.locator("#fleet-alarms:not(.loading)").wait_for(timeout=WAIT_MS)
        assert "Active alarms (" in page.locator("#fleet-alarms").inner_text()
        for d in devices:  # the side cards never repeat a device name as a cell of its own
            assert page.get_by_text(d["name"], exact=True).count() == 1, d["name"]
        shot(page, "landing-tenant-first-hour")
    finally:
        page.close()


def test_a_customer_lands_on_its_devices_and_alarms_and_no_models(demo, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        sign_in(page, demo.url, CUSTOMER_EMAIL, CUSTOMER_PASSWORD)
        mine = [d["name"] for d in load_fleet()["devices"] if d["customer"]]
        page.locator("[tabulator-field='trend'] svg.sparkline").nth(len(mine) - 1).wait_for(timeout=WAIT_MS)
        assert page.locator("[tabulator-field='trend'] svg.sparkline").count() == len(mine)
        page.locator("#fleet-alarms:not(.loading)").wait_for(timeout=WAIT_MS)
        text = page.locator("#fleet-alarms").inner_text()
        others = [d["name"] for d in load_fleet()["devices"] if not d["customer"]]
        assert not any(name in text for name in others)
        assert page.locator("#fleet-models").count() == 0
        for name in ("Pump health", "Thermostat comfort", "Anomaly models"):
            assert page.get_by_text(name).count() == 0, name
        shot(page, "landing-customer-first-hour")
    finally:
        page.close()


def test_no_page_requests_anything_but_the_server_itself(demo, browser):
    """Every request of every page (documents, scripts, styles, fonts, images, WebSockets) goes to
    the loopback server: nothing from fonts.googleapis.com, cdn.holoviz.org or any CDN."""
    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
    model = tenant.get("/api/tbpanel/models").json()[0]["id"]
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    seen: list[tuple[str, str]] = []
    ctx.on("request", lambda r: seen.append((r.url, r.resource_type)))
    try:
        page = ctx.new_page()
        page.on("websocket", lambda ws: seen.append((ws.url, "websocket")))  # Bokeh's session socket
        page.goto(demo.url + "/login")
        page.wait_for_load_state("networkidle")
        sign_in(page, demo.url, TENANT_EMAIL, TENANT_PASSWORD)
        for path in ("/", "/telemetry", "/alarms", "/models", f"/model?id={model}"):
            page.goto(demo.url + path)
            page.wait_for_load_state("networkidle")
        tabs = page.locator(".bk-tab")
        tabs.first.wait_for(timeout=WAIT_MS)
        for i in range(tabs.count()):  # the model page's tabs load their own parts
            tabs.nth(i).click()
            page.wait_for_load_state("networkidle")
    finally:
        ctx.close()
    assert len(seen) > 20  # the pages did load their assets
    outside = sorted(
        {
            url
            for url, _ in seen
            if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname not in LOOPBACK
        }
    )
    assert outside == [], outside
    assert any(kind == "websocket" for _, kind in seen)


def first_documents(page) -> list[str]:
    """The documents the page's session socket receives (Bokeh's PULL-DOC replies), as they come."""
    docs: list[str] = []

    def frame(payload) -> None:
        if isinstance(payload, str) and payload.startswith('{"doc":'):
            docs.append(payload)

    page.on("websocket", lambda ws: ws.on("framereceived", frame))
    return docs


def test_a_page_sends_what_a_person_came_for_first_and_the_rest_after_it_was_drawn(demo, browser):
    """Issue 19's speed: the first document a page sends holds what the page is for (the plot, the
    alarm table, the model's cards), and the parts that cost its first paint (the RPC console, the
    alarm filters, the Result tables and heatmap) come once the browser has drawn it."""
    tenant = Api.login(demo.url, TENANT_EMAIL, TENANT_PASSWORD)
    model = next(m["id"] for m in tenant.get("/api/tbpanel/models").json() if m["name"] == "Pump health")
    devices = tenant.get("/api/tenant/devices?pageSize=100&page=0").json()["data"]
    pump = next(d["id"]["id"] for d in devices if d["name"] == "Pump P1")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        sign_in(page, demo.url, TENANT_EMAIL, TENANT_PASSWORD)
        for path, first, later, then in (
            (f"/telemetry?device={pump}", "telemetry-plot", "rpc-panel", ".rpc-send button"),
            ("/alarms", "DataTabulator", "MultiChoice", ".alarm-filters select"),
            (f"/model?id={model}", "model-title", "DataTabulator", ".tabulator-row [tabulator-field='device']"),
        ):
            page = ctx.new_page()
            docs = first_documents(page)
            page.goto(demo.url + path)
            page.locator(then).first.wait_for(timeout=WAIT_MS)  # the deferred part did come
            assert len(docs) == 1, path
            assert first in docs[0], (path, first)
            assert later not in docs[0], (path, later)
            page.close()
    finally:
        ctx.close()
