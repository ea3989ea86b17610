"""Shared fixtures: a real tbpanel server process on a free loopback port (the two-tenant
``world``), a browser, a fresh store. Helpers that tests import live in ``tests/helpers``."""

from __future__ import annotations

import os

import pytest

from tbpanel.platform import Platform
from tests.helpers import (
    ARTIFACTS,
    BROWSER_ARGS,
    CHROMIUM,
    WAIT_MS,
    ServerProcess,
    World,
    no_errors_logged,
    open_world,
    signed_in_pages,
)
from tests.helpers.clients_venv import tb_client_python  # noqa: F401 (a session fixture)
from tests.helpers.workspace import DAY, HOUR, T0, write


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    w = open_world(tmp_path_factory.mktemp("server-data"))
    try:
        yield w
    finally:
        w.server.stop()


@pytest.fixture
def no_server_errors(world):
    """Exceptions in handlers and page callbacks only reach the server log: fail the test that
    caused one. Modules opt in with ``pytestmark = pytest.mark.usefixtures("no_server_errors")``."""
    with no_errors_logged(world.server):
        yield


@pytest.fixture(scope="module")
def browser():
    """Debian's headless chromium through Playwright (never a downloaded browser)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail("browser tests need Debian's chromium: apt-get install -y chromium (.ci/run does this)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def store(tmp_path):
    """A fresh TelemetryStore without the background compactor (tests compact explicitly)."""
    from tbpanel.store import open_store

    s = open_store(tmp_path / "data", compaction_interval_s=0)
    yield s
    s.close()


@pytest.fixture
def open_page(browser, world):
    """``open_page(user, path)``: a signed-in page in its own browser context."""
    with signed_in_pages(browser, world.url, wait_ms=WAIT_MS) as open_:
        yield open_


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``tbpanel serve --demo`` on a fresh data directory, for one test module."""
    server = ServerProcess(tmp_path_factory.mktemp("demo"), extra=("--demo",)).start(timeout=240)
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path):
    platform = Platform(tmp_path / "data", compaction_interval_s=0)
    tenant = platform.registry.create_tenant("T")
    devices = [platform.registry.save_device(tenant.id, f"pump-{i}", type="pump").id for i in range(3)]
    spikes = {0: T0 + 4 * DAY + 6 * HOUR, 1: T0 + 2 * DAY + 10 * HOUR}
    for i, d in enumerate(devices):
        write(platform, d, i, T0, T0 + 7 * DAY, keys=("vibration", "flow"), spike_at=spikes.get(i))
    platform.registry.save_device(tenant.id, "lamp", type="lamp")
    yield platform, tenant, devices
    platform.close()


#: the longest modules (seconds each, from --durations), run first: `make test` hands whole
#: modules to two xdist workers in collection order, and a long module picked up last leaves
#: the other worker idle at the end
LONG_MODULES = (
    "tests/ui/test_workspace_tabs.py",
    "tests/test_notebooks.py",
    "tests/ui/test_workspace_pages.py",
    "tests/system/test_isolation_matrix.py",
    "tests/system/test_crash_cycles.py",
    "tests/ui/test_live_pages.py",
    "tests/system/test_shutdown.py",
    "tests/ui/test_demo.py",
    "tests/ui/test_dashboards_page.py",
    "tests/ui/test_wizard_build.py",
    "tests/ui/test_first_hour.py",
    "tests/ui/test_rules_page.py",
    "tests/test_notebook_api.py",
    "tests/transports/test_mqtt.py",
    "tests/system/test_storage_faults.py",
    "tests/system/test_soak.py",
)


def pytest_collection_modifyitems(config, items):
    """The long modules first, each whole and in its own order; the rest as collected."""
    rank = {m: i for i, m in enumerate(LONG_MODULES)}

    def key(item):
        path = item.nodeid.split("::", 1)[0]
        return rank.get(path, len(rank))

    items.sort(key=key)  # stable: the order inside a module and among the rest is kept
