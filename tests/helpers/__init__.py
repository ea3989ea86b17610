"""What the tests share: a real server process and its API client (``server``), the browser
(``browser``), and for some folders their own helpers (``crash``, ``mqtt``, ``alarms``,
``clients_venv``). Fixtures that wrap these are in ``tests/conftest.py``."""

from .browser import ARTIFACTS, BROWSER_ARGS, CHROMIUM, WAIT_MS, shot, signed_in_pages
from .server import (
    ADMIN,
    CUSTOMER_USER,
    OTHER_ADMIN,
    OTHER_CUSTOMER_USER,
    ROOT,
    Api,
    ServerProcess,
    World,
    cli,
    jwt,
    no_errors_logged,
    open_world,
    wait_task,
)

__all__ = [
    "ADMIN",
    "ARTIFACTS",
    "BROWSER_ARGS",
    "CHROMIUM",
    "CUSTOMER_USER",
    "OTHER_ADMIN",
    "OTHER_CUSTOMER_USER",
    "ROOT",
    "Api",
    "ServerProcess",
    "World",
    "cli",
    "jwt",
    "no_errors_logged",
    "open_world",
    "WAIT_MS",
    "shot",
    "signed_in_pages",
    "wait_task",
]
