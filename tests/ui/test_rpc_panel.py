"""The device page's RPC console in a real browser against a real server, with a paho device
connected over MQTT: a two-way request shows the device's answer, a request to a device that
is not connected shows why, and bad params JSON is refused before anything is sent."""

from __future__ import annotations

import pytest

from tests.helpers import ADMIN, WAIT_MS, shot
from tests.helpers.rpc_device import PahoRpcDevice

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("no_server_errors")]


def send(page, method: str, params: str, kind: str = "Two-way") -> None:
    page.locator(".rpc-method input").fill(method)
    page.locator(".rpc-method input").press("Tab")
    page.locator(".rpc-params textarea").fill(params)
    page.locator(".rpc-params textarea").press("Tab")
    page.locator(".rpc-kind button", has_text=kind).click()
    page.locator(".rpc-send button").click()


def test_send_an_rpc_and_see_the_answer(world, open_page):
    did, token = world.new_device("ui-rpc-device")
    page = open_page(ADMIN, f"/telemetry?device={did}")
    page.locator(".rpc-send button").wait_for(timeout=WAIT_MS)
    with PahoRpcDevice(world.server.mqtt_port, token) as dev:
        send(page, "setGpio", '{"pin": 7, "value": 1}')
        page.locator(".rpc-status[data-status='SUCCESSFUL']").wait_for(timeout=WAIT_MS)
        result = page.locator(".rpc-result").inner_text()
        assert '"echo": "setGpio"' in result and '"pin": 7' in result
        assert dev.requests.get(timeout=10)[1] == {"method": "setGpio", "params": {"pin": 7, "value": 1}}
        shot(page, "rpc-panel-answer")
        send(page, "blink", "{}", kind="One-way")
        page.locator(".rpc-status[data-status='DELIVERED']").wait_for(timeout=WAIT_MS)
    send(page, "setGpio", "{}")  # the device has gone
    page.locator(".rpc-status[data-status='error']").wait_for(timeout=WAIT_MS)
    assert "not connected" in page.locator(".rpc-result").inner_text()
    send(page, "setGpio", "{not json")
    page.locator(".rpc-result", has_text="not valid JSON").wait_for(timeout=WAIT_MS)
