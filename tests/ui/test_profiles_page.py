"""``/profiles`` in a real browser against a real server: a tenant administrator adds an
alarm rule with the forms, a bad threshold is refused next to its field with nothing saved,
the corrected rule is saved, and after a reload it is still there (and in the REST API)."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers import ADMIN, CUSTOMER_USER, WAIT_MS, shot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_server_errors")]


def fill(page, css: str, text: str) -> None:
    box = page.locator(f"{css} input").first
    box.fill(text)
    box.press("Tab")


def alarms_of(world, profile_id: str) -> list:
    return world.admin.get(f"/api/deviceProfile/{profile_id}").json()["profileData"].get("alarms") or []


def test_add_an_alarm_rule_save_reload_and_see_it(world, open_page):
    kind = "pr" + uuid.uuid4().hex[:6]
    did, _token = world.new_device(f"{kind}-1", type=kind)
    profile_id = world.admin.get(f"/api/device/{did}").json()["deviceProfileId"]["id"]
    page = open_page(ADMIN, f"/profiles?profile={profile_id}")
    page.locator(".no-rules").wait_for(timeout=WAIT_MS)

    page.locator(".add-alarm button").click()
    page.locator(".alarm-type input").wait_for(timeout=WAIT_MS)
    fill(page, ".alarm-type", f"Overheat {kind}")
    fill(page, ".cond-key", "temperature")
    fill(page, ".cond-threshold", "hot")
    page.locator(".save-rules button").click()
    page.locator(".field-error[data-field='threshold']", has_text="not a number").wait_for(timeout=WAIT_MS)
    page.locator(".save-error", has_text="Nothing was saved").wait_for(timeout=WAIT_MS)
    assert alarms_of(world, profile_id) == []

    fill(page, ".cond-threshold", "30")
    page.locator(".save-rules button").click()
    page.locator(".save-ok", has_text="Saved 1 alarm rule").wait_for(timeout=WAIT_MS)
    assert page.locator(".field-error").count() == 0
    [saved] = alarms_of(world, profile_id)
    cond = saved["createRules"]["CRITICAL"]["condition"]["condition"][0]
    assert saved["alarmType"] == f"Overheat {kind}"
    assert cond["key"] == {"type": "TIME_SERIES", "key": "temperature"}
    assert cond["predicate"]["operation"] == "GREATER" and cond["predicate"]["value"]["defaultValue"] == 30

    page.reload()
    page.locator(".alarm-type input").wait_for(timeout=WAIT_MS)
    assert page.locator(".alarm-type input").input_value() == f"Overheat {kind}"
    assert page.locator(".cond-threshold input").input_value() == "30.0"
    shot(page, "profiles-alarm-rules")


def test_customer_users_are_refused(world, open_page):
    page = open_page(CUSTOMER_USER, "/profiles")
    page.get_by_text("tenant administrators only").wait_for(timeout=WAIT_MS)
    assert page.locator(".alarm-rules").count() == 0


def test_rest_refuses_alarm_rules_that_cannot_run(world):
    """``POST /api/deviceProfile`` reads ``profileData.alarms`` with the rules' own reader: 400 naming the field."""
    rules = {"MAJOR": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "t"}, "valueType": "NUMERIC",
             "predicate": {"type": "NUMERIC", "operation": "ABOVE", "value": {"defaultValue": 1}}}]}}}  # fmt: skip
    body = {
        "name": "bad-rules-" + uuid.uuid4().hex[:6],
        "profileData": {"alarms": [{"alarmType": "x", "createRules": rules}]},
    }
    r = world.admin.post("/api/deviceProfile", json=body)
    assert r.status_code == 400, r.text
    assert "profileData.alarms[0].createRules.MAJOR.condition.condition[0].predicate.operation" in r.json()["message"]
    names = [p["name"] for p in world.admin.get("/api/deviceProfiles?pageSize=100&page=0").json()["data"]]
    assert body["name"] not in names
