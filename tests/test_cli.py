"""`tbpanel init` / `tbpanel user add` / `serve` and `demo` dispatch, in-process and as real
processes (``python -m tbpanel.cli`` and the installed ``tbpanel`` script)."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tbpanel import cli
from tbpanel.entities import CUSTOMER_USER, TENANT_ADMIN, EntityRegistry

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "tbpanel"
ADMIN_PW = "Adm1n-Secret-Canary"
USER_PW = "Us3r-Secret-Canary"


def run_module(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tbpanel.cli", *args], cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=60
    )


def run_script(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # run from an unrelated directory, as a user would
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def no_secrets(result, *secrets: str) -> None:
    out = (result.stdout or "") + (result.stderr or "")
    for s in secrets:
        assert s not in out, f"password echoed: {out!r}"


def registry(data: Path) -> EntityRegistry:
    return EntityRegistry(data, create=False)


@pytest.fixture
def data(tmp_path) -> Path:
    """A data directory initialised in-process (fast) with tenant 'Main' and its admin."""
    d = tmp_path / "data"
    assert (
        cli.main(
            [
                "init",
                "--data",
                str(d),
                "--admin-email",
                "admin@main.org",
                "--admin-password",
                ADMIN_PW,
                "--tenant",
                "Main",
            ]
        )
        == 0
    )
    return d


# =========================================================================================
# real processes
# =========================================================================================
def test_module_init_and_user_add(tmp_path):
    data = tmp_path / "d"
    r = run_module("init", "--data", str(data), "--admin-email", "boss@x.org", "--admin-password", ADMIN_PW)
    assert r.returncode == 0, r.stderr
    assert "boss@x.org" in r.stdout and "'Tenant'" in r.stdout and "tbpanel serve" in r.stdout
    no_secrets(r, ADMIN_PW)
    assert stat.S_IMODE((data / "jwt.secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "entities.sqlite").stat().st_mode) == 0o600

    r = run_module(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        "cu@x.org",
        "--password",
        USER_PW,
        "--role",
        "CUSTOMER_USER",
        "--customer",
        "Acme",
    )
    assert r.returncode == 0, r.stderr
    assert "CUSTOMER_USER cu@x.org" in r.stdout and "'Acme' (created)" in r.stdout
    no_secrets(r, USER_PW)

    r = run_module("init", "--data", str(data), "--admin-email", "BOSS@x.org", "--admin-password", "a-new-password")
    assert r.returncode == 2
    assert "already exists" in r.stderr and r.stdout == ""
    no_secrets(r, "a-new-password")

    r = run_module(
        "user", "add", "--data", str(data), "--email", "cu2@x.org", "--password", USER_PW, "--role", "CUSTOMER_USER"
    )
    assert r.returncode == 2 and "--customer" in r.stderr
    no_secrets(r, USER_PW)

    with registry(data) as reg:
        assert reg.authenticate("boss@x.org", ADMIN_PW).authority == TENANT_ADMIN
        assert reg.authenticate("boss@x.org", "a-new-password") is None
        cu = reg.authenticate("cu@x.org", USER_PW)
        assert cu.authority == CUSTOMER_USER
        assert reg.get_customer(cu.customer_id).title == "Acme"
        assert reg.find_user("cu2@x.org") is None


def test_module_password_from_stdin(data):
    r = run_module(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        "stdin@x.org",
        "--password",
        "-",
        "--role",
        "TENANT_ADMIN",
        stdin="from-stdin-pw\n",
    )
    assert r.returncode == 0, r.stderr
    no_secrets(r, "from-stdin-pw")
    with registry(data) as reg:
        assert reg.authenticate("stdin@x.org", "from-stdin-pw") is not None
    r = run_module(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        "empty@x.org",
        "--password",
        "-",
        "--role",
        "TENANT_ADMIN",
        stdin="",
    )
    assert r.returncode == 2 and "standard input" in r.stderr


def test_module_usage_errors(tmp_path):
    r = run_module("init", "--data", str(tmp_path / "x"))
    assert r.returncode == 2 and "--admin-email" in r.stderr
    r = run_module()
    assert r.returncode == 2
    r = run_module("user", "add", "--data", str(tmp_path), "--email", "a@b.c", "--password", "p", "--role", "SYS_ADMIN")
    assert r.returncode == 2 and "invalid choice" in r.stderr
    assert not (tmp_path / "x").exists()


def test_installed_script(tmp_path):
    assert SCRIPT.exists(), f"{SCRIPT} missing: is tbpanel installed in this environment?"
    data = tmp_path / "via-script"
    r = run_script(
        "init",
        "--data",
        str(data),
        "--admin-email",
        "s@x.org",
        "--admin-password",
        ADMIN_PW,
        "--tenant",
        "Scripted",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    no_secrets(r, ADMIN_PW)
    r = run_script(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        "t@x.org",
        "--password",
        USER_PW,
        "--role",
        "tenant_admin",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    r = run_script(
        "user",
        "add",
        "--data",
        str(data),
        "--email",
        "t@x.org",
        "--password",
        USER_PW,
        "--role",
        "TENANT_ADMIN",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "already exists" in r.stderr
    no_secrets(r, USER_PW)
    r = run_script(
        "user",
        "add",
        "--data",
        str(tmp_path / "nothing"),
        "--email",
        "u@x.org",
        "--password",
        USER_PW,
        "--role",
        "TENANT_ADMIN",
        cwd=tmp_path,
    )
    assert r.returncode == 2 and "tbpanel init" in r.stderr
    assert not (tmp_path / "nothing").exists()
    r = run_script("--version", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "tbpanel 0.1.0"
    r = run_script("--help", cwd=tmp_path)
    assert r.returncode == 0
    assert all(cmd in r.stdout for cmd in ("init", "user", "serve", "demo"))
    with registry(data) as reg:
        assert reg.authenticate("t@x.org", USER_PW).tenant_id == reg.find_tenant("Scripted").id


# =========================================================================================
# in-process: every `user add` rule
# =========================================================================================
def add(data: Path, email: str, role: str = "TENANT_ADMIN", *extra: str) -> int:
    return cli.main(
        ["user", "add", "--data", str(data), "--email", email, "--password", USER_PW, "--role", role, *extra]
    )


def test_user_add_tenant_admin(data, capsys):
    assert add(data, "second@main.org", "TENANT_ADMIN", "--first-name", "Sec", "--last-name", "Ond") == 0
    out = capsys.readouterr()
    assert "TENANT_ADMIN second@main.org" in out.out and "'Main'" in out.out
    assert USER_PW not in out.out + out.err
    with registry(data) as reg:
        u = reg.authenticate("second@main.org", USER_PW)
        assert (u.first_name, u.last_name, u.customer_id) == ("Sec", "Ond", None)


def test_user_add_customer_created_then_reused(data, capsys):
    assert add(data, "c1@main.org", "CUSTOMER_USER", "--customer", "Shop") == 0
    assert "(created)" in capsys.readouterr().out
    assert add(data, "c2@main.org", "CUSTOMER_USER", "--customer", "Shop") == 0
    assert "(created)" not in capsys.readouterr().out
    with registry(data) as reg:
        t = reg.find_tenant("Main")
        customers, total = reg.list_customers(t.id)
        assert total == 1
        users, n = reg.list_users(t.id, customer_id=customers[0].id)
        assert n == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (("TENANT_ADMIN", "--customer", "Shop"), "only for --role CUSTOMER_USER"),
        (("CUSTOMER_USER",), "needs --customer"),
        (("CUSTOMER_USER", "--customer", "  "), "needs --customer"),
        (("TENANT_ADMIN", "--tenant", "Nope"), "no tenant titled 'Nope'"),
    ],
)
def test_user_add_bad_input(data, capsys, args, message):
    assert add(data, "new@main.org", *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("tbpanel: error:")
    with registry(data) as reg:
        assert reg.find_user("new@main.org") is None
        assert reg.list_customers(reg.find_tenant("Main").id)[1] == 0


def test_user_add_failure_leaves_no_customer(data, capsys):
    # a bad email is only detected after the customer would have been created: rolled back
    assert add(data, "not-an-email", "CUSTOMER_USER", "--customer", "Ghost") == 2
    assert "not a valid email" in capsys.readouterr().err
    # a duplicate email: refused before anything is created
    assert add(data, "ADMIN@main.org", "CUSTOMER_USER", "--customer", "Ghost") == 2
    assert "already exists" in capsys.readouterr().err
    with registry(data) as reg:
        assert reg.find_customer(reg.find_tenant("Main").id, "Ghost") is None


def test_user_add_tenant_selection(data, capsys):
    assert (
        cli.main(
            [
                "init",
                "--data",
                str(data),
                "--admin-email",
                "b@second.org",
                "--admin-password",
                ADMIN_PW,
                "--tenant",
                "Second",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert add(data, "who@x.org") == 2
    err = capsys.readouterr().err
    assert "several tenants" in err and "'Main'" in err and "'Second'" in err
    assert add(data, "who@x.org", "TENANT_ADMIN", "--tenant", "Second") == 0
    with registry(data) as reg:
        assert reg.find_user("who@x.org").tenant_id == reg.find_tenant("Second").id


def test_user_add_without_tenant(tmp_path, capsys):
    EntityRegistry(tmp_path).close()  # a database without any tenant
    assert add(tmp_path, "x@y.org") == 2
    assert "no tenant yet" in capsys.readouterr().err


def test_user_add_missing_data_dir(tmp_path, capsys):
    missing = tmp_path / "missing"
    assert add(missing, "x@y.org") == 2
    assert "tbpanel init" in capsys.readouterr().err
    assert not missing.exists()


def test_init_in_process_errors(tmp_path, capsys):
    assert cli.main(["init", "--data", str(tmp_path), "--admin-email", "bad", "--admin-password", ADMIN_PW]) == 2
    assert "not a valid email" in capsys.readouterr().err
    assert cli.main(["init", "--data", str(tmp_path), "--admin-email", "a@b.org", "--admin-password", ""]) == 2
    assert "password must not be empty" in capsys.readouterr().err
    with EntityRegistry(tmp_path) as reg:
        assert reg.list_tenants() == []


def test_unusable_data_dir(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert (
        cli.main(["init", "--data", str(blocker / "d"), "--admin-email", "a@b.org", "--admin-password", ADMIN_PW]) == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("tbpanel: error:") and ADMIN_PW not in err


# =========================================================================================
# serve / demo: options and lazy dispatch
# =========================================================================================
def test_serve_options_defaults_and_flags():
    parser = cli.build_parser()
    a = parser.parse_args(["serve"])
    assert (a.data, a.address, a.port, a.demo, a.show, a.log_level) == (
        "./data/local",
        "127.0.0.1",
        5006,
        False,
        False,
        "info",
    )
    a = parser.parse_args(
        ["serve", "--data", "/tmp/x", "--address", "0.0.0.0", "--port", "0", "--demo", "--show", "--log-level", "DEBUG"]
    )
    assert (a.data, a.address, a.port, a.demo, a.show, a.log_level) == ("/tmp/x", "0.0.0.0", 0, True, True, "debug")
    assert parser.parse_args(["serve", "--show", "--no-show"]).show is False
    for bad in (["serve", "--port", "http"], ["serve", "--port", "70000"], ["serve", "--log-level", "loud"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(bad)
        assert info.value.code == 2


def test_demo_options():
    parser = cli.build_parser()
    a = parser.parse_args(["demo"])
    assert (a.url, a.devices) == ("http://127.0.0.1:5006", 10)
    a = parser.parse_args(["demo", "--url", "http://h:1", "--data", "D", "--devices", "3"])
    assert (a.url, a.data, a.devices) == ("http://h:1", "D", 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--devices", "0"])


def test_serve_and_demo_dispatch_lazily(monkeypatch):
    seen = {}

    def serve_from_args(args):
        seen["serve"] = args  # returns None: main() turns that into 0

    def main_from_args(args):
        seen["demo"] = args
        return 3

    fake_server = types.ModuleType("tbpanel.server")
    fake_server.serve_from_args = serve_from_args
    fake_demo = types.ModuleType("tbpanel.demo")
    fake_demo.main_from_args = main_from_args
    monkeypatch.setitem(sys.modules, "tbpanel.server", fake_server)
    monkeypatch.setitem(sys.modules, "tbpanel.demo", fake_demo)
    assert cli.main(["serve", "--port", "0", "--demo"]) == 0
    assert seen["serve"].port == 0 and seen["serve"].demo is True
    assert cli.main(["demo", "--devices", "2"]) == 3
    assert seen["demo"].devices == 2


def test_cli_module_does_not_import_the_server():
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, tbpanel.cli as c; c.build_parser(); "
            "print(any(m in sys.modules for m in "
            "('tbpanel.server', 'tbpanel.demo', 'panel')))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_with_open_device_sessions(tmp_path, sig):
    """Ctrl-C or SIGTERM while devices are connected over MQTT (as in the demo, where Pump P2 and
    P3 post over MQTT): a clean stop, no asyncio CancelledError traceback."""
    from tbpanel.platform import Platform
    from tests.helpers.mqtt import RawClient
    from tests.helpers.server import ServerProcess

    with Platform(tmp_path / "data", compaction_interval_s=0) as platform:
        tenant = platform.registry.create_tenant("T")
        tokens = [platform.registry.save_device(tenant.id, f"d{i}", access_token=f"TOKEN{i}").id for i in range(2)]
    server = ServerProcess(tmp_path / "data").start()
    clients = []
    try:
        for i in range(len(tokens)):
            client = RawClient(server.mqtt_port)
            assert client.connect(f"TOKEN{i}") == 0
            client.publish("v1/devices/me/telemetry", {"t": i})
            assert client.puback()[1] == 0
            clients.append(client)
        server.proc.send_signal(sig)
        assert server.proc.wait(timeout=60) == 0
    finally:
        server.stop()
        for client in clients:
            client.sock.close()
    out = "".join(server.output)
    assert "tbpanel stopped" in out
    assert "Traceback" not in out and "CancelledError" not in out, out
