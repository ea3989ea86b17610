"""Repeated failed logins lock the account (and a noisy address) for a while, on API and page alike."""

from __future__ import annotations

import requests

from tbpanel.entities import LoginThrottle
from tests.helpers import ADMIN, ServerProcess, cli


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_throttle_rules():
    clock = Clock()
    th = LoginThrottle(clock, max_failures=3, max_address_failures=5, window_s=60, lockout_s=120)
    for _ in range(2):
        th.failed("a@x", "1.2.3.4")
    assert th.retry_after("a@x", "1.2.3.4") == 0
    th.failed("A@X", "1.2.3.4")  # accounts are case-insensitive
    assert th.retry_after("a@x", "9.9.9.9") == 120  # the account is locked from anywhere
    assert th.retry_after("b@x", "1.2.3.4") == 0  # the address is not (yet)
    clock.t += 121
    assert th.retry_after("a@x", "1.2.3.4") == 0
    th.failed("a@x", "1.2.3.4")
    clock.t += 61  # old failures leave the window
    th.failed("a@x", "1.2.3.4")
    th.failed("a@x", "1.2.3.4")
    assert th.retry_after("a@x", "5.5.5.5") == 0
    th.succeeded("a@x")
    th.failed("a@x", "7.7.7.7")
    th.failed("a@x", "7.7.7.7")
    assert th.retry_after("a@x", "7.7.7.7") == 0  # success cleared the account's count
    for account in "cdefg":
        th.failed(f"{account}@x", "6.6.6.6")
    assert th.retry_after("new@x", "6.6.6.6") == 120  # a noisy address is locked too


def test_api_and_page_logins_are_throttled(tmp_path):
    cli("init", "--data", str(tmp_path), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1])
    server = ServerProcess(tmp_path).start()
    try:
        for _ in range(5):
            r = requests.post(f"{server.url}/api/auth/login", json={"username": ADMIN[0], "password": "guess"})
            assert r.status_code == 401
        r = requests.post(f"{server.url}/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
        assert r.status_code == 429 and r.json()["errorCode"] == 33 and "try again" in r.json()["message"]
        page = requests.post(
            f"{server.url}/login", data={"username": ADMIN[0], "password": ADMIN[1]}, allow_redirects=False
        )
        assert page.status_code == 429 and "Too many failed logins" in page.text
        assert "user" not in page.cookies
        # other accounts are not affected
        r = requests.post(f"{server.url}/api/auth/login", json={"username": "other@x.test", "password": "x"})
        assert r.status_code == 401
    finally:
        server.stop()


def test_a_noisy_address_is_locked_for_every_account_and_headers_do_not_unlock_it(tmp_path):
    """Guessing across many accounts from one address (50 failures by default) locks the
    address for every account, the right password included, on API and page alike; a forged
    X-Forwarded-For or X-Real-IP does not make the server see another address."""
    cli("init", "--data", str(tmp_path), "--admin-email", ADMIN[0], "--admin-password", ADMIN[1])
    server = ServerProcess(tmp_path).start()
    try:
        login = f"{server.url}/api/auth/login"
        for i in range(50):  # one failure per account: no account reaches its own limit
            r = requests.post(login, json={"username": f"guess{i}@x.test", "password": "guess"}, timeout=60)
            assert r.status_code == 401, (i, r.text)
        r = requests.post(login, json={"username": ADMIN[0], "password": ADMIN[1]}, timeout=60)
        assert r.status_code == 429 and r.json()["errorCode"] == 33
        for header in ("X-Forwarded-For", "X-Real-IP"):
            r = requests.post(
                login, json={"username": ADMIN[0], "password": ADMIN[1]}, headers={header: "203.0.113.7"}, timeout=60
            )
            assert r.status_code == 429, (header, r.text)
        page = requests.post(
            f"{server.url}/login", data={"username": ADMIN[0], "password": ADMIN[1]}, allow_redirects=False, timeout=60
        )
        assert page.status_code == 429 and "user" not in page.cookies
        assert "Traceback" not in "".join(server.output)
    finally:
        server.stop()
