"""Debian's headless chromium through Playwright (never a downloaded browser), signed in
through the login form as a user would."""

from __future__ import annotations

import shutil
from contextlib import contextmanager

import requests

from .server import ROOT

ARTIFACTS = ROOT / "test-artifacts"  # gitignored; screenshots of the browser tests
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: how long a browser test waits for a page to show what it expects
WAIT_MS = 30_000
BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@contextmanager
def signed_in_pages(browser, base_url: str, height: int = 900, wait_ms: int = 30_000):
    """Yields ``open_(user, path)``: a page signed in as ``(email, password)`` through the login
    form and landed on ``path``, each in its own browser context (closed on exit)."""
    contexts = []

    def open_(user: tuple[str, str], path: str):
        ctx = browser.new_context(viewport={"width": 1400, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.goto(f"{base_url}/login?next={requests.utils.quote(path, safe='')}")
        page.fill("#username", user[0])
        page.fill("#password", user[1])
        page.click("#login")
        page.wait_for_url(f"{base_url}{path}", timeout=wait_ms)
        return page

    try:
        yield open_
    finally:
        for ctx in contexts:
            ctx.close()


def shot(page, name: str) -> None:
    """A full-page screenshot under ``test-artifacts/`` (gitignored) for a person to look at."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
