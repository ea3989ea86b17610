"""Password hashing with the standard library's scrypt.

Stored form (self-describing, so parameters can be raised later without breaking old hashes)::

    scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

e.g. ``scrypt$16384$8$1$3q2+7w...$Zm9v...``. Verification recomputes the hash with the stored
parameters and compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

N = 2**14
R = 8
P = 1
SALT_BYTES = 16
HASH_BYTES = 32
#: Upper bound on a password's length (characters); longer ones are refused outright.
MAX_PASSWORD_LENGTH = 1024

_PREFIX = "scrypt"
# Bounds accepted when reading a stored hash, so that a corrupted or hostile row cannot make
# verification allocate gigabytes or spin for minutes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=128 * r * n * p + 2**24
    )


def _check_password(password: object) -> str:
    if not isinstance(password, str):
        raise TypeError(f"password must be a str, not {type(password).__name__}")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"password is longer than {MAX_PASSWORD_LENGTH} characters")
    return password


def hash_password(password: str) -> str:
    """Hash ``password`` with a fresh 16-byte random salt; returns the self-describing string."""
    _check_password(password)
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, HASH_BYTES)
    return f"{_PREFIX}${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return None
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    if not salt or not 16 <= len(digest) <= 128:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for a wrong password or a malformed hash."""
    if not isinstance(password, str) or not isinstance(stored, str):
        return False
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, digest = parsed
    candidate = _scrypt(password, salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was made with other parameters than the current ones."""
    parsed = _parse(stored) if isinstance(stored, str) else None
    if parsed is None:
        return True
    n, r, p, salt, digest = parsed
    return (n, r, p, len(salt), len(digest)) != (N, R, P, SALT_BYTES, HASH_BYTES)


# A hash of a random password, used to spend the same time on unknown users as on known ones
# (so response times do not reveal which emails exist). Computed on first use.
_DUMMY: str | None = None


def dummy_verify(password: str) -> bool:
    """Spend one verification's worth of time; always False."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = hash_password(base64.b64encode(os.urandom(18)).decode())
    verify_password(password if isinstance(password, str) else "", _DUMMY)
    return False
