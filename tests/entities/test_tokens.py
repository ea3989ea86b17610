"""JWT issue/verify (HS512, ThingsBoard claims) and the on-disk signing secret."""

from __future__ import annotations

import base64
import os
import stat
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest

from tbpanel.entities import (
    NULL_UUID,
    TokenExpired,
    TokenInvalid,
    TokenIssuer,
    User,
    load_or_create_secret,
)
from tbpanel.errors import AuthError

SECRET = bytes(range(64))
TENANT = str(uuid.uuid4())
CUSTOMER = str(uuid.uuid4())


def make_user(authority="TENANT_ADMIN", customer_id=None, tenant_id=TENANT, **kw) -> User:
    email = kw.pop("email", "admin@example.org")
    return User(
        id=str(uuid.uuid4()),
        email=email,
        name=email,
        authority=authority,
        tenant_id=tenant_id,
        customer_id=customer_id,
        first_name="Ada",
        last_name="Lovelace",
        **kw,
    )


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(SECRET)


def claims_of(token: str) -> dict:
    # What tb-rest-client does: read the claims without checking the signature.
    return jwt.decode(token, options={"verify_signature": False})


# -- issuing -------------------------------------------------------------------------------
def test_access_token_claims(issuer):
    user = make_user()
    before = int(time.time())
    pair = issuer.issue(user)
    assert set(pair) == {"token", "refreshToken"}
    assert jwt.get_unverified_header(pair["token"])["alg"] == "HS512"
    c = claims_of(pair["token"])
    assert c["sub"] == "admin@example.org"
    assert c["userId"] == user.id
    assert c["scopes"] == ["TENANT_ADMIN"]
    assert c["tenantId"] == TENANT
    assert c["customerId"] == NULL_UUID
    assert (c["firstName"], c["lastName"]) == ("Ada", "Lovelace")
    assert c["enabled"] is True
    assert c["isPublic"] is False
    assert c["iss"] == "tbpanel"
    assert before <= c["iat"] <= int(time.time())
    assert c["exp"] - c["iat"] == 9000
    assert c["jti"]


def test_refresh_token_claims(issuer):
    user = make_user()
    pair = issuer.issue(user)
    c = claims_of(pair["refreshToken"])
    assert jwt.get_unverified_header(pair["refreshToken"])["alg"] == "HS512"
    assert c["scopes"] == ["REFRESH_TOKEN"]
    assert c["sub"] == user.email and c["userId"] == user.id
    assert c["exp"] - c["iat"] == 604800
    assert "tenantId" not in c
    assert c["jti"] != claims_of(pair["token"])["jti"]
    assert c["sessionId"] == claims_of(pair["token"])["sessionId"]


def test_customer_user_and_sys_admin_claims(issuer):
    cu = claims_of(issuer.issue(make_user("CUSTOMER_USER", customer_id=CUSTOMER))["token"])
    assert cu["scopes"] == ["CUSTOMER_USER"] and cu["customerId"] == CUSTOMER
    sa = claims_of(issuer.issue(make_user("SYS_ADMIN", tenant_id=None))["token"])
    assert sa["scopes"] == ["SYS_ADMIN"] and sa["tenantId"] == NULL_UUID


def test_custom_ttls_and_issuer():
    issuer = TokenIssuer(SECRET, access_ttl=60, refresh_ttl=120, issuer="me")
    pair = issuer.issue(make_user())
    a, r = claims_of(pair["token"]), claims_of(pair["refreshToken"])
    assert a["exp"] - a["iat"] == 60 and r["exp"] - r["iat"] == 120
    assert a["iss"] == "me"
    assert issuer.verify(pair["token"])["iss"] == "me"
    with pytest.raises(TokenInvalid):
        TokenIssuer(SECRET).verify(pair["token"])  # other issuer


def test_every_issue_is_unique(issuer):
    user = make_user()
    a, b = issuer.issue(user), issuer.issue(user)
    assert a["token"] != b["token"] and a["refreshToken"] != b["refreshToken"]


def test_cannot_issue_for_incomplete_user(issuer):
    with pytest.raises(ValueError):
        issuer.issue(User(email="x@y.z"))  # no id


# -- verifying -----------------------------------------------------------------------------
def test_verify_round_trip(issuer):
    user = make_user("CUSTOMER_USER", customer_id=CUSTOMER)
    pair = issuer.issue(user)
    claims = issuer.verify(pair["token"])
    assert claims["userId"] == user.id and claims["scopes"] == ["CUSTOMER_USER"]
    refresh = issuer.verify(pair["refreshToken"], refresh=True)
    assert refresh["userId"] == user.id
    assert issuer.verify(pair["token"].encode())["userId"] == user.id  # bytes accepted


def test_access_and_refresh_are_not_interchangeable(issuer):
    pair = issuer.issue(make_user())
    with pytest.raises(TokenInvalid, match="refresh"):
        issuer.verify(pair["refreshToken"])
    with pytest.raises(TokenInvalid, match="not a refresh token"):
        issuer.verify(pair["token"], refresh=True)


def test_expired_access_token(issuer):
    pair = issuer.issue(make_user(), now=time.time() - 9001)
    with pytest.raises(TokenExpired) as info:
        issuer.verify(pair["token"])
    assert info.value.error_code == 11 and info.value.status == 401
    # the refresh token of the same pair lives longer and still works
    assert issuer.verify(pair["refreshToken"], refresh=True)


def test_expired_refresh_token(issuer):
    pair = issuer.issue(make_user(), now=time.time() - 604801)
    with pytest.raises(TokenExpired):
        issuer.verify(pair["refreshToken"], refresh=True)
    # an expired token of the wrong kind is reported as invalid, not expired
    with pytest.raises(TokenInvalid):
        issuer.verify(pair["refreshToken"])
    with pytest.raises(TokenInvalid):
        issuer.verify(pair["token"], refresh=True)


def test_crafted_exp_in_the_past(issuer):
    user = make_user()
    claims = claims_of(issuer.issue(user)["token"])
    claims["exp"] = int(time.time()) - 1
    token = jwt.encode(claims, SECRET, algorithm="HS512")
    with pytest.raises(TokenExpired):
        issuer.verify(token)


def _flip_signature(token: str) -> str:
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0xFF
    return ".".join([head, payload, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")])


def test_tampered_signature(issuer):
    pair = issuer.issue(make_user())
    with pytest.raises(TokenInvalid):
        issuer.verify(_flip_signature(pair["token"]))
    with pytest.raises(TokenInvalid):
        issuer.verify(_flip_signature(pair["refreshToken"]), refresh=True)


def test_tampered_payload(issuer):
    token = issuer.issue(make_user("CUSTOMER_USER", customer_id=CUSTOMER))["token"]
    head, _, sig = token.split(".")
    claims = claims_of(token)
    claims["scopes"] = ["TENANT_ADMIN"]
    forged_payload = jwt.encode(claims, b"k" * 64, algorithm="HS512").split(".")[1]
    with pytest.raises(TokenInvalid):
        issuer.verify(".".join([head, forged_payload, sig]))


def test_other_secret_and_other_algorithms(issuer):
    claims = claims_of(issuer.issue(make_user())["token"])
    with pytest.raises(TokenInvalid):
        issuer.verify(jwt.encode(claims, b"x" * 64, algorithm="HS512"))
    with pytest.raises(TokenInvalid):
        issuer.verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(TokenInvalid):
        issuer.verify(unsigned)


@pytest.mark.parametrize("drop", ["exp", "sub", "userId", "scopes", "iss", "iat", "jti"])
def test_missing_claims(issuer, drop):
    claims = claims_of(issuer.issue(make_user())["token"])
    del claims[drop]
    with pytest.raises(TokenInvalid):
        issuer.verify(jwt.encode(claims, SECRET, algorithm="HS512"))


@pytest.mark.parametrize(
    "scopes", [["ROOT"], [], ["TENANT_ADMIN", "SYS_ADMIN"], "TENANT_ADMIN", ["TENANT_ADMIN", "REFRESH_TOKEN"]]
)
def test_bad_scopes(issuer, scopes):
    claims = claims_of(issuer.issue(make_user())["token"])
    claims["scopes"] = scopes
    with pytest.raises(TokenInvalid):
        issuer.verify(jwt.encode(claims, SECRET, algorithm="HS512"))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 5000, None, 42, b"\xff\xfe"])
def test_garbage_is_invalid(issuer, garbage):
    with pytest.raises(TokenInvalid):
        issuer.verify(garbage)  # type: ignore[arg-type]


def test_error_hierarchy():
    assert issubclass(TokenExpired, AuthError) and issubclass(TokenInvalid, AuthError)
    assert TokenInvalid("x").error_code == 10 and TokenInvalid("x").status == 401


# -- issuer construction -------------------------------------------------------------------
def test_issuer_rejects_weak_secret_and_bad_ttls():
    with pytest.raises(ValueError):
        TokenIssuer(b"short")
    with pytest.raises(TypeError):
        TokenIssuer("a string secret of enough length" * 4)  # type: ignore[arg-type]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            TokenIssuer(SECRET, access_ttl=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            TokenIssuer(SECRET, refresh_ttl=bad)  # type: ignore[arg-type]


def test_repr_hides_secret(issuer):
    assert SECRET.hex() not in repr(issuer) and str(SECRET) not in repr(issuer)


# -- secret file ---------------------------------------------------------------------------
def test_secret_created_private_and_stable(tmp_path):
    data = tmp_path / "new" / "data"
    secret = load_or_create_secret(data)
    path = data / "jwt.secret"
    assert len(secret) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == secret
    assert load_or_create_secret(data) == secret
    assert sorted(p.name for p in data.iterdir()) == ["jwt.secret"]  # no temp files left
    TokenIssuer(secret)  # long enough for HS512


def test_secret_private_even_with_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        load_or_create_secret(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "jwt.secret").stat().st_mode) == 0o600


def test_secrets_differ_between_data_dirs(tmp_path):
    assert load_or_create_secret(tmp_path / "a") != load_or_create_secret(tmp_path / "b")


def test_existing_secret_is_never_replaced(tmp_path):
    (tmp_path / "jwt.secret").write_bytes(b"s" * 64)
    assert load_or_create_secret(tmp_path) == b"s" * 64


def test_truncated_secret_is_an_error(tmp_path):
    (tmp_path / "jwt.secret").write_bytes(b"short")
    with pytest.raises(ValueError, match="at least 64"):
        load_or_create_secret(tmp_path)
    assert (tmp_path / "jwt.secret").read_bytes() == b"short"


def test_concurrent_first_use_agrees_on_one_secret(tmp_path):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: load_or_create_secret(tmp_path), range(16)))
    assert len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jwt.secret"]
