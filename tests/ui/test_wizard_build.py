"""The creation wizard in a real browser on the demo (issue 19, items 4 and 6): the chosen
segmented button is clearly visible, radio options are round, and the build shows a progress bar
on screen that follows the task and then opens the model."""

from __future__ import annotations

import re
import time

import pytest

from tbpanel.demo import TENANT_EMAIL, TENANT_PASSWORD
from tests.helpers import ARTIFACTS, no_errors_logged, signed_in_pages

WAIT_MS = 60_000
pytestmark = pytest.mark.browser


@pytest.fixture
def open_page(browser, demo):  # noqa: F811
    with signed_in_pages(browser, demo.url, height=900, wait_ms=WAIT_MS) as open_:
        yield open_


@pytest.fixture(autouse=True)
def no_server_errors(demo):  # noqa: F811
    with no_errors_logged(demo):
        yield


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in re.findall(r"[\d.]+", css)[:3])


def test_segmented_choice_radios_and_a_live_build_progress_bar(open_page):
    page = open_page((TENANT_EMAIL, TENANT_PASSWORD), "/models")
    page.get_by_role("button", name="New model").click()
    page.get_by_text("What is this model for?").wait_for(timeout=WAIT_MS)
    # radio options are round, not checkbox squares
    radio = page.locator("input[type=radio]").first
    assert radio.evaluate("el => getComputedStyle(el).borderRadius") == "50%"
    page.get_by_role("button", name="Next ›").click()
    page.get_by_text("Which data?").wait_for(timeout=WAIT_MS)
    chosen, other = page.get_by_role("button", name="last 7 days"), page.get_by_role("button", name="last 90 days")
    chosen.click()
    page.locator(".bk-btn.bk-active", has_text="last 7 days").wait_for(timeout=WAIT_MS)
    page.mouse.move(0, 0)  # no hover colour on either button
    on, off = (rgb(b.evaluate("el => getComputedStyle(el).backgroundColor")) for b in (chosen, other))
    assert sum(abs(a - b) for a, b in zip(on, off)) >= 150, (on, off)  # was (234,234,234) vs (229,229,229)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "wizard-segmented-choice.png"))
    page.get_by_role("button", name="Next ›").click()
    page.locator("#readiness-verdict").wait_for(timeout=WAIT_MS)
    page.get_by_role("button", name="Next ›").click()
    page.get_by_text("Granularity", exact=True).wait_for(timeout=WAIT_MS)
    page.get_by_label("Model name").fill("Progress bar check")
    page.get_by_label("Model name").press("Tab")
    page.get_by_role("button", name="Next ›").click()
    page.locator("#review-table").wait_for(timeout=WAIT_MS)

    build = page.get_by_role("button", name="Build model")
    build.wait_for(timeout=WAIT_MS)
    build.click()
    bar = page.locator(".build-progress progress")
    bar.wait_for(state="visible", timeout=WAIT_MS)
    box, viewport = bar.bounding_box(), page.viewport_size
    assert box and box["width"] >= 200 and 0 <= box["y"] and box["y"] + box["height"] <= viewport["height"], box
    page.screenshot(path=str(ARTIFACTS / "wizard-build-progress.png"))
    seen = []
    deadline = time.time() + 120
    while "/model?" not in page.url and time.time() < deadline:
        try:
            state = page.locator("#build-state").get_attribute("data-progress", timeout=500)
        except Exception:  # the page is navigating to the model
            break
        if state is not None:
            seen.append(int(state))
        time.sleep(0.05)
    page.wait_for_url("**/model?id=*", timeout=WAIT_MS)
    page.locator("#card-anomalies .value").wait_for(timeout=WAIT_MS)
    assert seen and seen == sorted(seen), seen  # the bar only moves forward
