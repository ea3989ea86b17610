"""The errors every layer raises when a request cannot be served (registry, tokens, alarms,
models, transports); the API layer turns them into ThingsBoard's error answer.

Every error carries a human message (``str(exc)``) that can be shown to the client as is,
plus the HTTP ``status`` and ThingsBoard ``error_code`` the API layer should answer with
(ThingsBoard's ``ThingsboardErrorCode``: 2 general, 10 authentication, 11 JWT expired,
20 permission denied, 30 invalid arguments, 31 bad request params, 32 item not found, 35 version conflict).
"""

from __future__ import annotations


class EntityError(Exception):
    """Base class of all registry errors."""

    status: int = 500
    error_code: int = 2

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidInput(EntityError, ValueError):
    """A malformed argument: bad id, empty name, unknown authority, bad page size..."""

    status = 400
    error_code = 31


class NotFound(EntityError, LookupError):
    """The entity does not exist (ThingsBoard answers 404)."""

    status = 404
    error_code = 32


class Conflict(EntityError):
    """A uniqueness rule would be broken (duplicate device name, email, access token...).

    ThingsBoard reports these as 400 "bad request params" (``DataValidationException``),
    hence ``status = 400``; the API layer may choose 409 instead.
    """

    status = 400
    error_code = 31


class VersionConflict(Conflict):
    """An update carried a ``version`` older than the stored one: someone saved in between
    (ThingsBoard's ``EntityVersionMismatchException``: 409, VERSION_CONFLICT 35)."""

    status = 409
    error_code = 35


class PermissionDenied(EntityError, PermissionError):
    """The entity exists but belongs to another tenant/customer (ThingsBoard answers 403)."""

    status = 403
    error_code = 20


class AuthError(EntityError):
    """Base class of token errors (HTTP 401)."""

    status = 401
    error_code = 10


class TokenInvalid(AuthError):
    """Bad signature, malformed token, wrong issuer or the wrong kind of token."""

    error_code = 10


class TokenExpired(AuthError):
    """A well-formed, correctly signed token whose ``exp`` has passed (errorCode 11)."""

    error_code = 11


class TooManyAttempts(EntityError):
    """Login refused for a while after repeated failures (ThingsBoard's TOO_MANY_REQUESTS)."""

    status = 429
    error_code = 33

    def __init__(self, retry_after_s: float):
        super().__init__(f"Too many failed logins; try again in {int(retry_after_s) + 1} s")
        self.retry_after_s = retry_after_s
