"""Shared handler behaviour: JSON in and out, ThingsBoard's error shape, who is asking."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

import orjson
import tornado.web

from ..clock import now_ms
from ..entities import User
from ..errors import EntityError, NotFound
from ..platform import Platform
from ..store import QueryError
from ..store.faults import storage_fault
from ..store.payload import PayloadError
from ..store.values import LONG_MAX, LONG_MIN
from .encoding import BodyEncodingError, decode_body

log = logging.getLogger("tbpanel.api")

# ThingsBoard's errorCode values (ThingsboardErrorCode).
GENERAL = 2
AUTHENTICATION = 10
JWT_TOKEN_EXPIRED = 11
PERMISSION_DENIED = 20
INVALID_ARGUMENTS = 30
BAD_REQUEST_PARAMS = 31
ITEM_NOT_FOUND = 32
TOO_MANY_REQUESTS = 33

#: Largest REST body once decoded from gzip: tornado's own limit on any REST body (100 MiB).
REST_BODY_LIMIT = 100 * 1024 * 1024

#: ThingsBoard's ``page`` is a Java int; larger pages would overflow the SQL offset.
MAX_PAGE = 2**31 - 1

#: ThingsBoard's message for every refusal of an authenticated user
DENIED = "You don't have permission to perform this operation!"

_INTEGER = re.compile(r"[+-]?\d{1,19}")

T = TypeVar("T")

#: one path segment of a route (an id, a token, an entity type), captured
ID = r"([^/]+)"
#: one row of a tornado URL table: (pattern, handler class, its ``initialize`` arguments)
Route = tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]


def in_pool(platform: Platform, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """Run blocking work (SQLite, Zarr) on the platform's pool, keeping the loop free
    (REST handlers and WebSocket commands alike); await the result."""
    return asyncio.get_running_loop().run_in_executor(platform.executor, fn, *args)


class ApiError(Exception):
    """An error answered to the client in ThingsBoard's JSON shape."""

    def __init__(self, status: int, message: str, error_code: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = (
            error_code
            if error_code is not None
            else {
                400: BAD_REQUEST_PARAMS,
                401: AUTHENTICATION,
                403: PERMISSION_DENIED,
                404: ITEM_NOT_FOUND,
                409: INVALID_ARGUMENTS,
                413: BAD_REQUEST_PARAMS,
                429: TOO_MANY_REQUESTS,
            }.get(status, GENERAL)
        )


def as_api_error(e: BaseException) -> ApiError | None:
    """Domain exceptions → HTTP answers, in one place (entity errors carry their own codes)."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, BodyEncodingError):  # gzip bodies: 400 corrupt, 413 too large, 415 other codings
        return ApiError(e.status, e.message)
    if isinstance(e, (PayloadError, QueryError)):
        return ApiError(400, str(e), BAD_REQUEST_PARAMS)
    if isinstance(e, EntityError):
        return ApiError(e.status, str(e), e.error_code)
    fault = storage_fault(e)
    if fault is not None:  # full disk, read-only or quota: the client's data is fine, retry later
        log.warning("storage refused a write: %s", e)
        return ApiError(507, f"Insufficient storage: {fault}", GENERAL)
    return None


class ApiHandler(tornado.web.RequestHandler):
    """Base of every /api handler. Subclasses raise ApiError or domain errors; never 500 on bad input."""

    platform: Platform

    def initialize(self, platform: Platform) -> None:
        self.platform = platform

    # -- output -------------------------------------------------------------------------
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            status, message, code = exc.status, exc.message, exc.error_code
        elif isinstance(exc, tornado.web.HTTPError):
            status, code = exc.status_code, ApiError(exc.status_code, "").error_code
            message = exc.log_message or self._reason
        else:
            status, message, code = status_code, self._reason, ApiError(status_code, "").error_code
            if status_code >= 500:
                message = "Internal server error"
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        if status == 405:  # RFC 9110: a 405 lists the methods the route does support
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.finish(orjson.dumps({"status": status, "message": message, "errorCode": code, "timestamp": now_ms()}))

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The HTTP methods this handler implements (those it overrides), for ``Allow``."""
        base = tornado.web.RequestHandler
        return [m for m in cls.SUPPORTED_METHODS if getattr(cls, m.lower()) is not getattr(base, m.lower())]

    def _handle_request_exception(self, e: BaseException) -> None:
        api_error = as_api_error(e)
        if api_error is None:
            super()._handle_request_exception(e)
        elif not self._finished:
            self.send_error(api_error.status, exc_info=(ApiError, api_error, e.__traceback__))

    # -- input --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Undo ``Content-Encoding: gzip`` (415 for other codings): handlers read the body as
        sent. A subclass that overrides ``prepare`` calls this first (streamed handlers decode
        their chunks themselves, see :class:`~tbpanel.api.encoding.StreamedBody`)."""
        encoding = self.request.headers.get("Content-Encoding")
        if encoding:
            self.request.body = decode_body(encoding, self.request.body, self.body_limit())

    def body_limit(self) -> int:
        """The largest body this route takes once decoded (device routes: the device limit)."""
        return REST_BODY_LIMIT

    def json_body(self) -> Any:
        if not self.request.body:
            raise ApiError(400, "Invalid JSON body: the request body is empty")
        try:
            return orjson.loads(self.request.body)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"Invalid JSON body: {exc}") from None

    def json_object(self, what: str = "the") -> dict[str, Any]:
        """The body, which must be a JSON object (``what``: the name in the 400 message)."""
        body = self.json_body()
        if not isinstance(body, dict):
            raise ApiError(400, f"{what} body must be a JSON object")
        return body

    @overload
    def int_arg(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int: ...
    @overload
    def int_arg(
        self, name: str, default: None = None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None: ...
    def int_arg(
        self, name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        value = int(raw) if _INTEGER.fullmatch(raw) else None
        if value is None or not LONG_MIN <= value <= LONG_MAX:
            raise ApiError(400, f"parameter '{name}' must be a 64-bit integer, got {raw[:40]!r}")
        if minimum is not None and value < minimum:
            raise ApiError(400, f"parameter '{name}' must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ApiError(400, f"parameter '{name}' must be at most {maximum}, got {value}")
        return value

    def bool_arg(self, name: str, default: bool) -> bool:
        raw = self.get_query_argument(name, None)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        raise ApiError(400, f"parameter '{name}' must be true or false, got {raw!r}")

    def keys_arg(self, required: bool) -> list[str] | None:
        """``keys=a,b`` and/or repeated ``key=`` (keys containing commas); None = every key."""
        keys: list[str] = []
        raw = self.get_query_argument("keys", None)
        if raw:
            keys.extend(k.strip() for k in raw.split(",") if k.strip())
        keys.extend(k for k in self.get_query_arguments("key") if k)
        if not keys:
            if required:
                raise ApiError(400, "parameter 'keys' is required (comma-separated keys, or repeated 'key=')")
            return None
        return list(dict.fromkeys(keys))

    # -- who is asking ------------------------------------------------------------------
    def device_of_token(self, token: str) -> Any:
        """The device whose access token the device API path carries; 401 for an unknown one."""
        device = self.platform.registry.device_by_token(token)
        if device is None:
            raise ApiError(401, "Unknown device access token")
        return device

    def bearer_token(self) -> str | None:
        for header in ("X-Authorization", "Authorization"):
            value = self.request.headers.get(header)
            if value:
                scheme, _, token = value.partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return token.strip()
                raise ApiError(401, f"{header} header must be 'Bearer <token>'")
        return None

    def require_user(self) -> User:
        """The authenticated user, or 401 in ThingsBoard's shape (errorCode 11 when expired)."""
        token = self.bearer_token()
        if token is None:
            raise ApiError(401, "Authentication failed: no JWT token in the X-Authorization header")
        return self.user_for_claims(self.platform.tokens.verify(token))

    def user_for_claims(self, claims: dict[str, Any]) -> User:
        """The enabled user a verified token names; 401 if it was deleted or disabled since."""
        try:
            user = self.platform.registry.get_user(claims["userId"])
        except NotFound:
            user = None
        if user is None or not user.enabled:
            raise ApiError(401, "Authentication failed: the token's user no longer exists or is disabled")
        return user

    def require_role(self, user: User, *roles: str) -> None:
        if user.authority not in roles:
            raise ApiError(403, DENIED)

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work (SQLite, Zarr) on the platform's pool, keeping the loop free."""
        return await in_pool(self.platform, fn, *args)


def page_data(items: list[Any], total: int, page: int, page_size: int) -> dict[str, Any]:
    """ThingsBoard's PageData envelope."""
    pages = (total + page_size - 1) // page_size if page_size else 0
    return {"data": items, "totalPages": pages, "totalElements": total, "hasNext": (page + 1) * page_size < total}
