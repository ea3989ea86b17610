"""Device transport over HTTP: ``POST /api/v1/{token}/telemetry`` and ``/attributes``, and the
device's attribute request ``GET /api/v1/{token}/attributes?clientKeys=..&sharedKeys=..``.

A 200 here means the points are durably stored (ThingsBoard's only means "queued"), or, once the
tenant's root chain is not the default one, durably queued for it (tbpanel/rules/ingress.py). The
token is checked before the body is read, the body size is capped while it streams in, and a
rejected payload stores nothing.
"""

from __future__ import annotations

import time

import tornado.web
from tornado.httputil import HTTPHeaders, format_timestamp

from ..clock import now_ms
from ..entities.device_attributes import key_list, request_attributes, wanted_scopes
from ..platform import Platform
from ..store.limits import OFF_LOOP_BYTES, LimitExceeded, telemetry_points
from ..store.payload import parse_attributes
from .base import ApiError, ApiHandler
from .encoding import StreamedBody

#: tornado's own ``Server`` header value
SERVER = f"TornadoServer/{tornado.version}"
_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """The ``Date`` header of this second (formatted once a second, not per request)."""
    global _date
    second = int(time.time())
    if _date[0] != second:
        _date = (second, format_timestamp(second))
    return _date[1]


@tornado.web.stream_request_body
class DeviceUploadHandler(ApiHandler):
    """Accepts telemetry or client attributes from a device identified by its access token.

    The ingest hot path: per request it builds only the headers its answers carry (``clear``)
    and answers a stored upload with an empty 200 without touching them again."""

    def clear(self) -> None:
        # tornado's clear() formats the date and sets Content-Type, which set_default_headers
        # replaces and post() removes: the same headers, built once. Errors set their own
        # Content-Type (write_error); other methods (the attributes GET) keep tornado's way.
        if self.request.method != "POST":
            super().clear()
            return
        self._headers = HTTPHeaders({"Server": SERVER, "Date": http_date(), "Cache-Control": "no-store"})
        self._write_buffer: list[bytes] = []
        self._status_code = 200
        self._reason = "OK"

    def initialize(self, platform: Platform, kind: str) -> None:  # type: ignore[override]
        super().initialize(platform)
        self.kind = kind
        self._body: StreamedBody | None = None

    def prepare(self) -> None:
        token = self.path_args[0] if self.path_args else ""
        device = self.device_of_token(token)
        self.device = device
        length = self.request.headers.get("Content-Length")
        limit = self.platform.max_body_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"Payload of {length} bytes exceeds the limit of {limit} bytes")
        # gzip is inflated as it streams in, capped at the same limit (415 for other codings)
        self._body = StreamedBody(self.request.headers.get("Content-Encoding"), limit)

    def data_received(self, chunk: bytes) -> None:
        if self._body is not None:
            self._body.feed(chunk)

    async def post(self, token: str) -> None:
        body = self._body.result() if self._body is not None else b""  # 413 / 400 if refused
        if not body or body.isspace():  # blank (no copy of the body, unlike strip())
            raise ApiError(400, "Invalid JSON body: the request body is empty")
        ts = now_ms()
        if self.kind == "telemetry":
            args = (self.device.id, body, ts, self.platform.max_points_per_message)
            try:  # a big body is parsed off the loop, which keeps serving the other devices
                rows = (
                    telemetry_points(*args)
                    if len(body) < OFF_LOOP_BYTES
                    else await self.in_thread(telemetry_points, *args)
                )
                if rows:  # into the tenant's root chain (compiled default: stored when this returns)
                    await self.platform.rules.ingress.telemetry(self.device.tenant_id, rows)
            except LimitExceeded as exc:  # 413 (points per message) or 400 (keys per device)
                raise ApiError(exc.status, str(exc)) from None
        else:
            points = parse_attributes(body, ts)
            if points:
                await self.platform.rules.ingress.attributes(self.device, points)
        self.finish()  # 200, no Content-Type: clear() set none


class DeviceAttributesHandler(DeviceUploadHandler):
    """``/api/v1/{token}/attributes``: POST stores client attributes (as above); GET answers
    ``{"client": {..}, "shared": {..}}`` for ``clientKeys``/``sharedKeys`` (comma-separated;
    neither: every client and shared attribute; ``allClientKeys``/``allSharedKeys=true``: every
    key of that scope). Never SERVER_SCOPE."""

    def prepare(self) -> None:
        if self.request.method != "GET":
            super().prepare()
        # GET: the token is checked in get() — a refusal raised in a streaming handler's
        # prepare() makes tornado drop the keep-alive connection without a word

    async def get(self, token: str) -> None:
        device = self.device_of_token(token)
        wanted = wanted_scopes(
            key_list(self.get_query_argument("clientKeys", None), "clientKeys"),
            key_list(self.get_query_argument("sharedKeys", None), "sharedKeys"),
            all_client=self.bool_arg("allClientKeys", False),
            all_shared=self.bool_arg("allSharedKeys", False),
        )
        self.write_json(await self.in_thread(request_attributes, self.platform.registry, device.id, wanted))
