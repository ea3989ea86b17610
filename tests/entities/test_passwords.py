"""Password hashing: stdlib scrypt, self-describing format, constant-time verification."""

from __future__ import annotations

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.entities import passwords
from tbpanel.entities.passwords import (
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple")


def test_format_is_self_describing(stored):
    prefix, n, r, p, salt, digest = stored.split("$")
    assert (prefix, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(digest, validate=True)) == 32
    assert "correct horse" not in stored


def test_verify_right_and_wrong(stored):
    assert verify_password("correct horse battery staple", stored) is True
    assert verify_password("correct horse battery stapl", stored) is False
    assert verify_password("Correct horse battery staple", stored) is False
    assert verify_password("", stored) is False


def test_fresh_salt_each_time():
    a, b = hash_password("same"), hash_password("same")
    assert a != b
    assert a.split("$")[4] != b.split("$")[4]
    assert verify_password("same", a) and verify_password("same", b)


def test_unicode_password():
    stored = hash_password("pässwörd-密码-🔑")
    assert verify_password("pässwörd-密码-🔑", stored)
    assert not verify_password("passwort-密码-🔑", stored)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "plaintext",
        "$2b$12$abcdefghijklmnopqrstuv",  # bcrypt-looking
        "scrypt$16384$8$1$c2FsdA==",  # missing hash
        "scrypt$16384$8$1$***$AAAA",  # not base64
        "scrypt$16385$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,  # n not a power of two
        "scrypt$1073741824$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,  # n absurdly large
        "scrypt$16384$999$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,  # r out of bounds
        "scrypt$x$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,
        "pbkdf2$16384$8$1$c2FsdHNhbHRzYWx0c2FsdA==$" + "A" * 44,
    ],
)
def test_malformed_stored_hash_is_false_not_an_error(bad):
    assert verify_password("anything", bad) is False


def test_tampered_hash_fails(stored):
    parts = stored.split("$")
    digest = bytearray(base64.b64decode(parts[5]))
    digest[0] ^= 1
    parts[5] = base64.b64encode(bytes(digest)).decode()
    assert verify_password("correct horse battery staple", "$".join(parts)) is False
    salt = bytearray(base64.b64decode(parts[4]))
    salt[0] ^= 1
    parts = stored.split("$")
    parts[4] = base64.b64encode(bytes(salt)).decode()
    assert verify_password("correct horse battery staple", "$".join(parts)) is False


def test_comparison_is_constant_time(monkeypatch, stored):
    calls = []
    real = passwords.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(passwords.hmac, "compare_digest", spy)
    assert verify_password("correct horse battery staple", stored)
    assert len(calls) == 1


def test_bad_argument_types():
    with pytest.raises(TypeError):
        hash_password(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        hash_password(None)  # type: ignore[arg-type]
    assert verify_password(None, "x") is False  # type: ignore[arg-type]
    assert verify_password("x", None) is False  # type: ignore[arg-type]


def test_overlong_password_refused():
    too_long = "x" * (passwords.MAX_PASSWORD_LENGTH + 1)
    with pytest.raises(ValueError):
        hash_password(too_long)
    assert verify_password(too_long, hash_password("x")) is False


def test_old_parameters_still_verify_and_need_rehash():
    # A hash made with weaker (older) parameters keeps working and is flagged for rehash.
    salt = b"0123456789abcdef"
    digest = passwords._scrypt("old", salt, 2**10, 8, 1, 32)
    old = f"scrypt$1024$8$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("old", old)
    assert needs_rehash(old)
    assert not needs_rehash(hash_password("new"))
    assert needs_rehash("garbage")


def test_dummy_verify_is_false():
    assert dummy_verify("whatever") is False
    assert dummy_verify(None) is False  # type: ignore[arg-type]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=40))
def test_roundtrip_property(pw):
    stored = hash_password(pw)
    assert verify_password(pw, stored)
    assert not verify_password(pw + "x", stored)
