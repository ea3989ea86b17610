"""Login, refresh, and how every protected route answers bad or missing credentials."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import requests

from tests.helpers import ADMIN, CUSTOMER_USER


def test_login_returns_real_jwts_with_thingsboard_claims(world):
    r = requests.post(f"{world.url}/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]})
    assert r.status_code == 200
    pair = r.json()
    claims = jwt.decode(pair["token"], options={"verify_signature": False})
    assert claims["sub"] == ADMIN[0] and claims["scopes"] == ["TENANT_ADMIN"]
    for key in ("userId", "tenantId", "customerId", "iss", "iat", "exp"):
        assert key in claims
    assert 8000 < claims["exp"] - claims["iat"] <= 9000
    refresh = jwt.decode(pair["refreshToken"], options={"verify_signature": False})
    assert refresh["exp"] - refresh["iat"] == 604800


def test_customer_user_claims(world):
    r = requests.post(f"{world.url}/api/auth/login", json={"username": CUSTOMER_USER[0], "password": CUSTOMER_USER[1]})
    claims = jwt.decode(r.json()["token"], options={"verify_signature": False})
    assert claims["scopes"] == ["CUSTOMER_USER"]
    assert claims["customerId"] == world.customer_ids["Customer A1"]


@pytest.mark.parametrize(
    "body", [{"username": ADMIN[0], "password": "wrong"}, {"username": "nobody@x.test", "password": "x"}]
)
def test_bad_login_is_401_in_thingsboard_shape(world, body):
    r = requests.post(f"{world.url}/api/auth/login", json=body)
    assert r.status_code == 401
    err = r.json()
    assert set(err) == {"status", "message", "errorCode", "timestamp"}
    assert err["errorCode"] == 10


def test_malformed_login_is_400(world):
    assert requests.post(f"{world.url}/api/auth/login", data=b"{oops").status_code == 400
    assert requests.post(f"{world.url}/api/auth/login", json=["a"]).status_code == 400


def test_refresh_gives_new_pair_and_rejects_access_token(world):
    pair = requests.post(f"{world.url}/api/auth/login", json={"username": ADMIN[0], "password": ADMIN[1]}).json()
    r = requests.post(f"{world.url}/api/auth/token", json={"refreshToken": pair["refreshToken"]})
    assert r.status_code == 200 and {"token", "refreshToken"} <= set(r.json())
    r = requests.post(f"{world.url}/api/auth/token", json={"refreshToken": pair["token"]})
    assert r.status_code == 401
    # and a refresh token is not an access token
    r = requests.get(f"{world.url}/api/auth/user", headers={"X-Authorization": f"Bearer {pair['refreshToken']}"})
    assert r.status_code == 401


def test_current_user(world):
    r = world.admin.get("/api/auth/user")
    assert r.status_code == 200 and r.json()["email"] == ADMIN[0] and r.json()["authority"] == "TENANT_ADMIN"


def test_authorization_header_variant(world):
    token = world.admin.session.headers["X-Authorization"].split()[1]
    r = requests.get(f"{world.url}/api/auth/user", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


def _tampered(token: str) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["scopes"] = ["SYS_ADMIN"]
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{head}.{body}.{sig}"


def test_missing_tampered_and_foreign_tokens_are_401(world):
    did = world.devices["dev-a1"]["id"]["id"]
    token = world.admin.session.headers["X-Authorization"].split()[1]
    forged = jwt.encode(
        {"sub": ADMIN[0], "userId": "x", "exp": int(time.time()) + 600}, "guess" * 20, algorithm="HS512"
    )
    for headers in (
        {},
        {"X-Authorization": f"Bearer {_tampered(token)}"},
        {"X-Authorization": f"Bearer {forged}"},
        {"X-Authorization": "Bearer not.a.jwt"},
        {"X-Authorization": "Basic abc"},
    ):
        r = requests.get(f"{world.url}/api/device/{did}", headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["errorCode"] == 10


def test_expired_token_is_401_with_error_code_11(world):
    # sign an expired token with the server's own secret, read from its data directory
    secret = (world.server.data / "jwt.secret").read_bytes()
    token = world.admin.session.headers["X-Authorization"].split()[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(iat=int(time.time()) - 20000, exp=int(time.time()) - 10)
    expired = jwt.encode(claims, secret, algorithm="HS512")
    r = requests.get(f"{world.url}/api/auth/user", headers={"X-Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and r.json()["errorCode"] == 11


def test_unknown_api_route_is_json_404(world):
    r = world.admin.get("/api/no/such/route")
    assert r.status_code == 404 and r.json()["errorCode"] == 32


def test_secret_file_is_owner_only(world):
    assert (world.server.data / "jwt.secret").stat().st_mode & 0o077 == 0
