"""A real ``tbpanel serve`` child process on a free loopback port, the users the tests sign in
as, and a requests-based API client."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent.parent
ADMIN = ("admin@tenant-a.test", "admin-a-pass")
OTHER_ADMIN = ("admin@tenant-b.test", "admin-b-pass")
CUSTOMER_USER = ("user@customer-a1.test", "customer-pass")
OTHER_CUSTOMER_USER = ("user@customer-a2.test", "customer2-pass")


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tbpanel.cli", *args], cwd=ROOT, capture_output=True, text=True, check=check, timeout=120
    )


@dataclass
class ServerProcess:
    """A ``tbpanel serve`` child process; ``url`` is what it printed."""

    data: Path
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen | None = None
    url: str = ""
    mqtt_port: int = 0  # from the "mqtt listening on" line (0: not printed)
    coap_port: int = 0  # from the "coap listening on" line
    output: list[str] = field(default_factory=list)

    def start(self, timeout: float = 90) -> ServerProcess:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tbpanel.cli",
                "serve",
                "--data",
                str(self.data),
                "--port",
                "0",
                "--mqtt-port",
                "0",
                "--coap-port",
                "0",
                *self.extra,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found = threading.Event()

        def pump():
            for line in self.proc.stdout:
                self.output.append(line)
                mq = re.search(r"(mqtt|coap) listening on \S+:(\d+)", line)
                if mq:
                    setattr(self, f"{mq.group(1)}_port", int(mq.group(2)))
                m = re.search(r"tbpanel serving at (http://\S+)", line)
                if m and not found.is_set():
                    self.url = m.group(1).rstrip("/")
                    found.set()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + timeout
        while not found.is_set():
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError("server did not start:\n" + "".join(self.output))
            time.sleep(0.05)
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/liveness", timeout=5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server never became live:\n" + "".join(self.output))

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Api:
    """A logged-in (or anonymous) HTTP client for one user."""

    def __init__(self, base: str, token: str | None = None):
        self.base = base
        self.session = requests.Session()
        if token:
            self.session.headers["X-Authorization"] = f"Bearer {token}"

    @classmethod
    def login(cls, base: str, email: str, password: str) -> Api:
        r = requests.post(f"{base}/api/auth/login", json={"username": email, "password": password}, timeout=30)
        assert r.status_code == 200, r.text
        return cls(base, r.json()["token"])

    def __getattr__(self, method: str):
        if method not in ("get", "post", "delete", "put"):
            raise AttributeError(method)
        return lambda path, **kw: self.session.request(method.upper(), self.base + path, timeout=60, **kw)


@dataclass
class World:
    """Two tenants; tenant A with two customers, each with a user and a device."""

    server: ServerProcess
    admin: Api
    other_admin: Api
    customer: Api
    other_customer: Api
    anon: Api
    customer_ids: dict
    devices: dict  # name -> device json

    @property
    def url(self) -> str:
        return self.server.url

    def token(self, name: str) -> str:
        r = self.admin.get(f"/api/device/{self.devices[name]['id']['id']}/credentials")
        assert r.status_code == 200, r.text
        return r.json()["credentialsId"]

    def new_device(self, name: str, type: str = "sensor") -> tuple[str, str]:
        r = self.admin.post("/api/device", json={"name": name, "type": type})
        assert r.status_code == 200, r.text
        did = r.json()["id"]["id"]
        return did, self.admin.get(f"/api/device/{did}/credentials").json()["credentialsId"]


def open_world(data: Path, extra: tuple[str, ...] = ()) -> World:
    """Initialise ``data`` with the two tenants, customers, users and devices, and serve it."""
    cli("init", "--data", str(data), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1], "--tenant", "Tenant A")
    cli(
        "init",
        "--data",
        str(data),
        "--admin-email",
        OTHER_ADMIN[0],
        "--admin-password",
        OTHER_ADMIN[1],
        "--tenant",
        "Tenant B",
    )
    cli(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        CUSTOMER_USER[0],
        "--password",
        CUSTOMER_USER[1],
        "--role",
        "CUSTOMER_USER",
        "--customer",
        "Customer A1",
        "--tenant",
        "Tenant A",
    )
    cli(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        OTHER_CUSTOMER_USER[0],
        "--password",
        OTHER_CUSTOMER_USER[1],
        "--role",
        "CUSTOMER_USER",
        "--customer",
        "Customer A2",
        "--tenant",
        "Tenant A",
    )
    server = ServerProcess(data, extra).start()
    try:
        admin = Api.login(server.url, *ADMIN)
        customers = {c["title"]: c["id"]["id"] for c in admin.get("/api/customers?pageSize=10&page=0").json()["data"]}
        devices = {}
        for name, customer in [("dev-a1", "Customer A1"), ("dev-a2", "Customer A2"), ("dev-tenant", None)]:
            r = admin.post("/api/device", json={"name": name, "type": "sensor"})
            assert r.status_code == 200, r.text
            devices[name] = r.json()
            if customer:
                r = admin.post(f"/api/customer/{customers[customer]}/device/{devices[name]['id']['id']}")
                assert r.status_code == 200, r.text
                devices[name] = r.json()
        other = Api.login(server.url, *OTHER_ADMIN)
        r = other.post("/api/device", json={"name": "dev-b", "type": "sensor"})
        assert r.status_code == 200, r.text
        devices["dev-b"] = r.json()
        return World(
            server,
            admin,
            other,
            Api.login(server.url, *CUSTOMER_USER),
            Api.login(server.url, *OTHER_CUSTOMER_USER),
            Api(server.url),
            customers,
            devices,
        )
    except BaseException:
        server.stop()
        raise


def wait_task(api: Api, task_id: str, timeout: float = 120) -> dict:
    """Poll ``/api/tbpanel/tasks/{id}`` until the task is DONE, FAILED or CANCELLED."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        task = api.get(f"/api/tbpanel/tasks/{task_id}").json()
        if task["status"] in ("DONE", "FAILED", "CANCELLED"):
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish")


def jwt(api: Api) -> str:
    """The bearer token an :class:`Api` client sends."""
    return api.session.headers["X-Authorization"].split(" ", 1)[1]


@contextmanager
def no_errors_logged(server: ServerProcess):
    """Fails (on exit) if ``server`` logged a traceback or an ERROR line meanwhile: exceptions in
    handlers and page callbacks reach only the server log, never the client."""
    start = len(server.output)
    yield
    out = server.output[start:]
    assert not [line for line in out if "Traceback" in line or "ERROR" in line], "".join(out)
