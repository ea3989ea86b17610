"""The ``/rules`` page in a real browser: a tenant administrator builds a small chain (a
script filter connected to a log node), tests the script on a sample message, saves, sends
messages through it (from the page, then — made root — a device's own HTTP telemetry), and
sees the debug events appear live while the page just sits there. (Customer users are refused: the
isolation matrix's page rows.)"""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.helpers import ADMIN, WAIT_MS, shot

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_server_errors")]


def fill(page, css: str, text: str, kind: str = "input") -> None:
    box = page.locator(f".{css} {kind}")
    box.fill(text)
    box.press("Tab")


def click(page, css: str) -> None:
    page.locator(f".{css} button").click()


def pick(page, css: str, label: str) -> None:
    page.locator(f".{css} select").select_option(label=label)


def test_build_a_chain_and_watch_its_debug_events(world, open_page):
    name = f"ui-chain-{uuid.uuid4().hex[:6]}"
    page = open_page(ADMIN, "/rules")
    page.locator(".rules-chains .tabulator-row", has_text="Root Rule Chain").wait_for(timeout=WAIT_MS)
    fill(page, "rules-new-name", name)
    click(page, "rules-create")
    page.locator(".rules-title", has_text=name).wait_for(timeout=WAIT_MS)
    # a script filter, then a log node, connected by True
    pick(page, "rules-node-type", "Filter: TbJsFilterNode")
    fill(page, "rules-node-name", "hot?")
    click(page, "rules-add-node")
    page.locator(".rules-script textarea").wait_for(timeout=WAIT_MS)
    fill(page, "rules-script", "return msg.temperature > 20;", "textarea")
    fill(page, "rules-sample-msg", '{"temperature": 25}', "textarea")
    click(page, "rules-test")
    page.locator(".rules-test-output", has_text="output: true").wait_for(timeout=WAIT_MS)
    fill(page, "rules-script", "return msg.temperature > ;", "textarea")
    click(page, "rules-test")
    page.locator(".rules-test-output", has_text="SyntaxError").wait_for(timeout=WAIT_MS)
    fill(page, "rules-script", "return msg.temperature > 20;", "textarea")
    click(page, "rules-apply")
    pick(page, "rules-node-type", "Action: TbLogNode")
    fill(page, "rules-node-name", "log hot")
    click(page, "rules-add-node")
    page.locator(".rules-node", has_text="log hot").wait_for(timeout=WAIT_MS)
    pick(page, "rules-from", "hot? (#0)")
    pick(page, "rules-to", "log hot (#1)")
    fill(page, "rules-label", "True")
    click(page, "rules-connect")
    page.locator(".rules-connections option", has_text="hot? -[True]-> log hot").wait_for(
        state="attached", timeout=WAIT_MS
    )
    click(page, "rules-save")
    page.locator(".rules-message", has_text="saved").wait_for(timeout=WAIT_MS)
    # what was saved is what the REST API answers
    chains = world.admin.get("/api/ruleChains", params={"pageSize": 100, "page": 0, "textSearch": name}).json()["data"]
    [chain] = chains
    md = world.admin.get(f"/api/ruleChain/{chain['id']['id']}/metadata").json()
    assert [n["name"] for n in md["nodes"]] == ["hot?", "log hot"]
    assert md["nodes"][0]["configuration"]["jsScript"] == "return msg.temperature > 20;"
    assert md["connections"] == [{"fromIndex": 0, "toIndex": 1, "type": "True"}]
    # a message from the page
    pick(page, "rules-run-device", "dev-a1")
    fill(page, "rules-run-data", '{"temperature": 30}', "textarea")
    click(page, "rules-run")
    page.locator(".rules-run-result", has_text="log hot").wait_for(timeout=WAIT_MS)
    page.locator(".rules-debug .tabulator-row", has_text="log hot").first.wait_for(timeout=WAIT_MS)
    # made root, the chain takes the device's own telemetry (HTTP device API, through the
    # durable queue): its events reach the open page by themselves
    old_root = next(c for c in world.admin.get("/api/ruleChains?pageSize=100&page=0").json()["data"] if c["root"])
    click(page, "rules-make-root")
    page.locator(".rules-chains .tabulator-row", has_text=name).filter(has_text="root").wait_for(timeout=WAIT_MS)
    try:
        r = requests.post(f"{world.url}/api/v1/{world.token('dev-a1')}/telemetry", json={"temperature": 7}, timeout=30)
        assert r.status_code == 200, r.text
        page.locator(".rules-debug .tabulator-row", has_text='{"temperature":7}').first.wait_for(timeout=WAIT_MS)
        # the filter's OUT event (False) may be pushed after its IN event
        page.locator(".rules-debug .tabulator-row", has_text="False").first.wait_for(timeout=WAIT_MS)
    finally:
        assert world.admin.post(f"/api/ruleChain/{old_root['id']['id']}/root").status_code == 200
    shot(page, "rules-page")
