"""The live alarm table in a real browser: an anomaly planted in posted telemetry becomes an
alarm that appears without a reload; ack and clear from the table change it everywhere."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pytest
import requests

from tests.helpers import ADMIN, CUSTOMER_USER, WAIT_MS, shot, wait_task

HOUR = 3_600_000
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_server_errors")]


def post_series(world, token, start, end, spike_from=None, anchor=0):
    """A daily sine plus noise from ``start`` to ``end``, as if ``anchor`` (an hour) were 10:00:
    the wall clock then never changes what the model sees (it used to, by time of day)."""
    ts = np.arange(start, end, 300_000)
    rng = np.random.default_rng(int(start - anchor) % 1000)
    phase = (ts - anchor + 10 * HOUR) % (24 * HOUR)
    values = 5 + np.sin(2 * np.pi * phase / (24 * HOUR)) + rng.normal(0, 0.05, len(ts))
    if spike_from is not None:
        values[ts >= spike_from] += 8
    body = [{"ts": int(t), "values": {"power": round(float(v), 4)}} for t, v in zip(ts, values)]
    r = requests.post(f"{world.url}/api/v1/{token}/telemetry", json=body, timeout=60)
    assert r.status_code == 200, r.text


def row(page, text: str):
    return page.locator(".tabulator-row", has_text=text)


def test_planted_anomaly_becomes_live_alarm_then_ack_and_clear_from_table(world, open_page):
    dtype = "ap" + uuid.uuid4().hex[:6]
    now = int(time.time() * 1000)
    hour = now // HOUR * HOUR
    train_end = hour - 4 * HOUR
    devices = []
    for i in range(3):
        did, token = world.new_device(f"{dtype}-{i}", type=dtype)
        post_series(world, token, train_end - 72 * HOUR, train_end, anchor=hour)
        devices.append((did, token))
    config = {
        "name": f"{dtype} model",
        "device_type": dtype,
        "fields": ["power"],
        "window": "fixed",
        "segment_ms": HOUR,
        "train_start": train_end - 72 * HOUR,
        "train_end": train_end,
        "alarm_type": f"Anomaly {dtype}",
    }
    model = world.admin.post("/api/tbpanel/models", json={"config": config}).json()
    build = world.admin.post(f"/api/tbpanel/models/{model['id']}/build").json()
    assert wait_task(world.admin, build["id"])["status"] == "DONE"

    page = open_page(ADMIN, "/alarms")
    other = open_page(ADMIN, f"/alarms?model={model['id']}")
    for p in (page, other):
        p.locator(".tabulator").first.wait_for(timeout=WAIT_MS)
        p.evaluate("() => { window.__sameDocument = true; }")
    assert row(page, f"{dtype}-1").count() == 0

    # device 1 goes wild for the last three hours; the others stay normal
    for i, (_did, token) in enumerate(devices):
        post_series(world, token, train_end, now, spike_from=hour - 3 * HOUR if i == 1 else None, anchor=hour)
    # refresh goes on only now: the server's scheduler (every 15 s) may start a due run at once,
    # and a run before the data arrived would already have moved past the spike
    r = world.admin.put(f"/api/tbpanel/models/{model['id']}/refresh", json={"enabled": True, "create_alarms": True})
    assert r.status_code == 200, r.text
    run = world.admin.post(f"/api/tbpanel/models/{model['id']}/refresh/run").json()
    assert wait_task(world.admin, run["id"])["status"] == "DONE"

    alarms = world.admin.get("/api/alarms", params={"typeList": config["alarm_type"]}).json()["data"]
    assert [a["originator"]["id"] for a in alarms] == [devices[1][0]] and alarms[0]["status"] == "ACTIVE_UNACK"
    assert alarms[0]["details"]["modelId"] == model["id"] and alarms[0]["details"]["anomalyId"]
    alarm_id = alarms[0]["id"]["id"]

    for p in (page, other):  # arrives live, no reload
        row(p, f"{dtype}-1").locator("[tabulator-field='status']").filter(has_text="ACTIVE_UNACK").wait_for(
            timeout=WAIT_MS
        )
        assert p.evaluate("() => window.__sameDocument === true")
    assert row(page, f"{dtype}-1").locator("[tabulator-field='severity']").inner_text() == alarms[0]["severity"]
    shot(page, "alarms-live-admin")

    row(page, f"{dtype}-1").locator("[data-action='ack']").click()
    row(page, f"{dtype}-1").locator("[tabulator-field='status']").filter(has_text="ACTIVE_ACK").wait_for(
        timeout=WAIT_MS
    )
    row(other, f"{dtype}-1").locator("[tabulator-field='status']").filter(has_text="ACTIVE_ACK").wait_for(
        timeout=WAIT_MS
    )
    assert world.admin.get(f"/api/alarm/{alarm_id}").json()["status"] == "ACTIVE_ACK"

    row(page, f"{dtype}-1").locator("[data-action='clear']").click()
    row(page, f"{dtype}-1").locator("[tabulator-field='status']").filter(has_text="CLEARED_ACK").wait_for(
        timeout=WAIT_MS
    )
    row(other, f"{dtype}-1").locator("[tabulator-field='status']").filter(has_text="CLEARED_ACK").wait_for(
        timeout=WAIT_MS
    )
    got = world.admin.get(f"/api/alarm/{alarm_id}").json()
    assert got["status"] == "CLEARED_ACK" and got["clearTs"] > 0
    href = row(page, f"{dtype}-1").locator("[tabulator-field='review'] a").get_attribute("href")
    assert href.startswith(f"/telemetry?device={devices[1][0]}&window=fixed")
    # the customer user sees none of the tenant's devices' alarms
    customer = open_page(CUSTOMER_USER, "/alarms")
    customer.locator(".tabulator").first.wait_for(timeout=WAIT_MS)
    assert row(customer, f"{dtype}-1").count() == 0
    shot(other, "alarms-model-view")


def test_every_alarm_table_column_has_a_header(world, open_page):
    page = open_page(ADMIN, "/alarms")
    page.locator(".tabulator-col[tabulator-field='severity']").wait_for(timeout=WAIT_MS)
    headers = page.locator(".tabulator-col:visible").evaluate_all(
        "els => els.filter(e => e.getBoundingClientRect().width > 2)"
        ".map(e => [e.getAttribute('tabulator-field'), e.innerText.trim()])"
    )
    assert len(headers) >= 10, headers
    assert all(text for _, text in headers), headers
    assert {"ack", "clear", "delete"} <= {field for field, _ in headers}
