"""Notebook helpers: run a ``tbpanel serve`` child process and talk to it.

A notebook that wants the real HTTP device API, the REST API or the live WebSocket push needs a
server; running it as a child process (not in the kernel) keeps the kernel responsive, gives the
server its own event loop, and is exactly what a deployment runs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["NotebookDashboard", "ServerProcess", "dashboards", "start_server"]


class ServerProcess:
    """A running ``tbpanel serve --port 0`` on a data directory; ``url`` is where it listens.

    Use it as a context manager (or call :meth:`stop`) so the server ends with the notebook.
    """

    def __init__(self, data_dir: str | os.PathLike, *, demo: bool = False, timeout_s: float = 120):
        self.data_dir = str(Path(data_dir).resolve())
        self.url = ""
        self.output: list[str] = []
        args = [
            sys.executable,
            "-m",
            "tbpanel.cli",
            "serve",
            "--data",
            self.data_dir,
            "--port",
            "0",
            "--mqtt-port",
            "0",
            "--coap-port",
            "0",
        ]
        if demo:
            args.append("--demo")
        self.proc = subprocess.Popen(
            args,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found = threading.Event()
        stdout = self.proc.stdout
        assert stdout is not None  # stdout=PIPE

        def pump() -> None:  # keep reading so the child never blocks on a full pipe
            for line in stdout:
                self.output.append(line)
                m = re.search(r"tbpanel serving at (http://\S+)", line)
                if m and not found.is_set():
                    self.url = m.group(1).rstrip("/")
                    found.set()

        threading.Thread(target=pump, daemon=True, name="tbpanel-server-output").start()
        deadline = time.monotonic() + timeout_s
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start:\n" + "".join(self.output))
        while True:
            try:
                with urllib.request.urlopen(self.url + "/liveness", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server never became live:\n" + "".join(self.output))
            time.sleep(0.1)

    @property
    def ws_url(self) -> str:
        """The base WebSocket URL (``ws://host:port``)."""
        return "ws" + self.url[len("http") :]

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def post_telemetry(self, token: str, payload: dict | list) -> int:
        """POST to the device API ``/api/v1/{token}/telemetry``; returns the HTTP status (200 = on disk)."""
        req = urllib.request.Request(
            f"{self.url}/api/v1/{token}/telemetry",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    def login(self, username: str, password: str) -> str:
        """A JWT from ``POST /api/auth/login`` (send it as ``X-Authorization: Bearer <jwt>``)."""
        return self._json("POST", "/api/auth/login", {"username": username, "password": password})["token"]

    def get(self, path: str, token: str | None = None) -> Any:
        """GET a REST path and decode its JSON answer."""
        return self._json("GET", path, None, token)

    def _json(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["X-Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def stop(self, timeout_s: float = 30) -> None:
        """Terminate the server (it closes its store cleanly on SIGTERM) and wait for it."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else f"stopped (exit {self.proc.returncode})"
        return f"<ServerProcess {self.url or '?'} {state} data={self.data_dir!r}>"


def start_server(data_dir: str | os.PathLike, *, demo: bool = False, timeout_s: float = 120) -> ServerProcess:
    """Start ``tbpanel serve`` on ``data_dir`` on a free port and wait until it answers."""
    return ServerProcess(data_dir, demo=demo, timeout_s=timeout_s)


# --------------------------------------------------------------------------- dashboards
from .views.dashboards import DashboardEditor  # noqa: E402  (dashboards: below the server helpers)


class NotebookDashboard(DashboardEditor):
    """A dashboard built in Python: the same model and editor the ``/dashboard`` page uses.

    ``add`` widgets, show it inline (it is displayable), ``publish()`` it to the data directory
    the server serves; the page opens exactly what was published."""

    def add(self, kind: str, *, devices: str | dict | None = None, state: str | None = None, **params: Any) -> Any:
        """Add a widget of ``kind`` (``tbpanel.dashboards.model.WIDGET_KINDS``); ``devices`` is a
        device type (``"pump"``), a ThingsBoard alias filter (a dict), or None (the first alias)."""
        if isinstance(devices, str):
            params["alias_id"] = self.dashboard.device_type_alias(devices)
        elif isinstance(devices, dict):
            params["alias_id"] = self.dashboard.add_alias(params.pop("alias_name", "devices"), devices)
        if state is not None:
            self.state_id = state
        return self.add_widget(kind, **params)

    def publish(self, customers: tuple[str, ...] = ()) -> str:
        """Save (create or update) and assign to the customers of these titles; the dashboard id."""
        stored = self.save()
        reg = self.platform.registry
        for title in customers:
            customer = reg.find_customer(self.user.tenant_id, title)
            if customer is None:
                raise KeyError(f"no customer {title!r} in this tenant")
            self.platform.dashboards.assign(self.user, customer.id, stored["id"]["id"])
        return str(stored["id"]["id"])

    def panel(self) -> Any:
        """The dashboard drawn as the page draws it (reads run here and now: no live pushes)."""
        import panel as pn

        from .ui.dashboards import DashboardView

        pn.extension("gridstack", "tabulator", "echarts")
        return pn.panel(DashboardView(editor=self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.panel()._repr_mimebundle_(include, exclude)


class Dashboards:
    """``dashboards(platform, email)``: one user's dashboards from a notebook."""

    def __init__(self, platform: Any, user: Any):
        self.platform = platform
        self.user = platform.registry.find_user(user) if isinstance(user, str) else user
        if self.user is None:
            raise KeyError(f"no user {user!r}")

    def create(self, title: str, description: str = "") -> NotebookDashboard:
        """A new dashboard (not stored until ``publish()``)."""
        from .dashboards.model import Dashboard

        return NotebookDashboard(self.platform, self.user, Dashboard(title=title, description=description))

    def open(self, dashboard_id: str) -> NotebookDashboard:
        """A stored dashboard, to change and publish again."""
        from .dashboards.model import Dashboard

        return NotebookDashboard(
            self.platform, self.user, Dashboard.from_json(self.platform.dashboards.get(self.user, dashboard_id))
        )

    def list(self) -> list[dict[str, Any]]:
        from .views.dashboards import DashboardList

        return DashboardList(self.platform, self.user).rows()


def dashboards(platform: Any, user: Any) -> Dashboards:
    """The dashboards of ``user`` (an email or a User) on an open :class:`~tbpanel.platform.Platform`."""
    return Dashboards(platform, user)
