"""JWT access and refresh tokens (HS512), shaped like ThingsBoard's.

Access token claims: ``sub`` (email), ``userId``, ``scopes`` ([authority]), ``sessionId``,
``tenantId``, ``customerId`` (ThingsBoard's NULL UUID when there is none), ``firstName``,
``lastName``, ``enabled``, ``isPublic`` (false), ``iss``, ``iat``, ``exp``, ``jti``.
Refresh token claims: ``sub``, ``userId``, ``scopes: ["REFRESH_TOKEN"]``, ``sessionId``,
``isPublic``, ``iss``, ``iat``, ``exp``, ``jti``.

The signing secret lives in ``DATA/jwt.secret`` (64 random bytes, mode 0600); it is never
logged or printed.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt

from ..errors import TokenExpired, TokenInvalid
from .models import AUTHORITIES, NULL_UUID, User

__all__ = [
    "TokenIssuer",
    "TokenExpired",
    "TokenInvalid",
    "load_or_create_secret",
    "SECRET_FILE",
    "SECRET_BYTES",
    "REFRESH_SCOPE",
]

ALGORITHM = "HS512"
REFRESH_SCOPE = "REFRESH_TOKEN"
SECRET_FILE = "jwt.secret"
SECRET_BYTES = 64
#: Shortest secret accepted: HS512 wants a key at least as long as its 64-byte output.
MIN_SECRET_BYTES = 64

_ACCESS_REQUIRED = ["sub", "userId", "scopes", "iss", "iat", "exp", "jti"]
_REFRESH_REQUIRED = ["sub", "userId", "scopes", "iss", "iat", "exp", "jti"]


class TokenIssuer:
    """Issues and verifies the JWT pair returned by ``POST /api/auth/login``.

    ``secret`` must be at least 64 bytes (see :func:`load_or_create_secret`). ``access_ttl``
    and ``refresh_ttl`` are lifetimes in seconds (ThingsBoard's defaults: 9000 and 604800).
    """

    def __init__(self, secret: bytes, access_ttl: int = 9000, refresh_ttl: int = 604800, issuer: str = "tbpanel"):
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError("secret must be bytes")
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"secret must be at least {MIN_SECRET_BYTES} bytes long")
        for label, ttl in (("access_ttl", access_ttl), ("refresh_ttl", refresh_ttl)):
            if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
                raise ValueError(f"{label} must be a positive number of seconds, got {ttl!r}")
        self._secret = bytes(secret)
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.issuer = issuer

    def __repr__(self) -> str:  # never show the secret
        return f"TokenIssuer(access_ttl={self.access_ttl}, refresh_ttl={self.refresh_ttl}, issuer={self.issuer!r})"

    # -- issuing ---------------------------------------------------------------------------
    def issue(self, user: User, *, now: float | None = None) -> dict[str, str]:
        """A fresh ``{"token": access JWT, "refreshToken": refresh JWT}`` pair for ``user``.

        ``now`` (epoch seconds) defaults to the current time; tests pass a past time to get
        tokens that are already expired.
        """
        if not user.id or user.authority not in AUTHORITIES:
            raise ValueError("cannot issue a token for a user without id or authority")
        iat = int(time.time() if now is None else now)
        session_id = str(uuid.uuid4())
        common = {
            "sub": user.email,
            "userId": user.id,
            "sessionId": session_id,
            "isPublic": False,
            "iss": self.issuer,
            "iat": iat,
        }
        access = {
            **common,
            "scopes": [user.authority],
            "tenantId": user.tenant_id or NULL_UUID,
            "customerId": user.customer_id or NULL_UUID,
            "firstName": user.first_name,
            "lastName": user.last_name,
            "enabled": bool(user.enabled),
            "exp": iat + self.access_ttl,
            "jti": secrets.token_hex(16),
        }
        refresh = {
            **common,
            "scopes": [REFRESH_SCOPE],
            "exp": iat + self.refresh_ttl,
            "jti": secrets.token_hex(16),
        }
        return {
            "token": jwt.encode(access, self._secret, algorithm=ALGORITHM),
            "refreshToken": jwt.encode(refresh, self._secret, algorithm=ALGORITHM),
        }

    # -- verifying -------------------------------------------------------------------------
    def verify(self, token: str, *, refresh: bool = False) -> dict[str, Any]:
        """The claims of a valid token of the requested kind.

        Raises :class:`TokenExpired` for a correctly signed token of the right kind whose
        ``exp`` has passed, and :class:`TokenInvalid` for anything else that is wrong: bad
        signature, malformed, other algorithm or issuer, missing claims, or the wrong kind (an
        access token given as a refresh token or the other way round).
        """
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise TokenInvalid("Invalid JWT token: not ASCII") from None
        if not isinstance(token, str) or not token:
            raise TokenInvalid("Invalid JWT token: empty")
        required = _REFRESH_REQUIRED if refresh else _ACCESS_REQUIRED
        try:
            claims = self._decode(token, required, verify_exp=True)
        except jwt.ExpiredSignatureError:
            # Signature and shape are fine but exp has passed: still report a wrong-kind token
            # as invalid rather than expired.
            try:
                claims = self._decode(token, required, verify_exp=False)
            except jwt.InvalidTokenError as exc:
                raise TokenInvalid(f"Invalid JWT token: {exc}") from None
            self._check_kind(claims, refresh)
            raise TokenExpired("Token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"Invalid JWT token: {exc}") from None
        self._check_kind(claims, refresh)
        return claims

    def _decode(self, token: str, required: list[str], *, verify_exp: bool) -> dict[str, Any]:
        return jwt.decode(
            token,
            self._secret,
            algorithms=[ALGORITHM],
            issuer=self.issuer,
            options={"require": required, "verify_exp": verify_exp, "verify_signature": True},
        )

    @staticmethod
    def _check_kind(claims: dict[str, Any], refresh: bool) -> None:
        scopes = claims.get("scopes")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise TokenInvalid("Invalid JWT token: bad scopes claim")
        is_refresh = scopes == [REFRESH_SCOPE]
        if refresh and not is_refresh:
            raise TokenInvalid("Invalid JWT token: not a refresh token")
        if not refresh:
            if REFRESH_SCOPE in scopes:
                raise TokenInvalid("Invalid JWT token: a refresh token cannot be used for access")
            if len(scopes) != 1 or scopes[0] not in AUTHORITIES:
                raise TokenInvalid("Invalid JWT token: unknown authority")
        if not isinstance(claims.get("userId"), str) or not isinstance(claims.get("sub"), str):
            raise TokenInvalid("Invalid JWT token: bad subject")


def load_or_create_secret(data_dir: str | os.PathLike[str]) -> bytes:
    """The JWT signing secret of ``data_dir``: ``DATA/jwt.secret``, created on first use.

    The file holds 64 random bytes and is created with mode 0600. Creation is atomic: the
    bytes are written and fsynced to a private temporary file (``os.open`` with
    ``O_CREAT | O_EXCL``, mode 0600), which is then hard-linked into place; ``link`` never
    overwrites, so concurrent first starts agree on one secret and nobody reads a half-written
    file. An existing secret is never replaced.
    """
    directory = Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SECRET_FILE
    if not path.exists():
        tmp = directory / f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # in case the umask was unusual
                view = memoryview(secrets.token_bytes(SECRET_BYTES))
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # someone else won the race: use theirs
            else:
                _fsync_dir(directory)
        finally:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
    secret = path.read_bytes()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{path} holds {len(secret)} bytes; a JWT secret needs at least {MIN_SECRET_BYTES}. "
            "Delete the file to generate a new one (this logs everybody out)."
        )
    return secret


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
