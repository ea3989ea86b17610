"""The two WebSocket endpoints: authentication, the message loop and the dispatch of each
command to :class:`~.telemetry.TelemetryCommands`, :class:`~.attributes.AttributeCommands`,
:class:`~.alarms.AlarmCommands` or :class:`~.entity_data.EntityDataCommands`.

A socket answers nothing before it knows who it acts for (``?token=`` on the legacy URL, else
an ``authCmd`` within ``AUTH_TIMEOUT_S``); the command handlers are made then, for that user,
and ended when the socket closes.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
import tornado.websocket
from tornado.ioloop import IOLoop

from ...entities import User
from ...errors import EntityError, NotFound
from ...live import LiveHub
from ...platform import Platform
from ...store import QueryError
from .alarms import AlarmCommands
from .attributes import AttributeCommands
from .entity_data import EntityDataCommands
from .protocol import (
    AUTH_TIMEOUT_S,
    BAD_REQUEST,
    CLOSE_BAD_DATA,
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    INTERNAL_ERROR,
    UNAUTHORIZED,
    CmdError,
    cmd_id_of,
    error_update,
    legacy_commands,
    typed_commands,
)
from .telemetry import TelemetryCommands

log = logging.getLogger("tbpanel.api.ws")


class TelemetryWebSocket(tornado.websocket.WebSocketHandler):
    """``/api/ws/plugins/telemetry``: the legacy command wrapper (see :mod:`tbpanel.api.ws`)."""

    legacy = True

    def initialize(self, platform: Platform, live: LiveHub) -> None:
        self.platform = platform
        self.live = live

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 405:  # a WebSocket is opened with GET only (RFC 9110: a 405 says so)
            self.set_header("Allow", "GET")
        super().write_error(status_code, **kwargs)

    # ------------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        self.user: User | None = None
        self.telemetry: TelemetryCommands | None = None
        self.attributes: AttributeCommands | None = None
        self.alarms: AlarmCommands | None = None
        self.entity_data: EntityDataCommands | None = None
        self._closed = False
        self._auth_timer: object | None = None
        token = self.get_query_argument("token", None) if self.legacy else None
        if token:
            try:
                self._authenticate(token)
            except CmdError as e:
                self.close(CLOSE_SERVER_ERROR, e.message)
            return
        self._auth_timer = IOLoop.current().call_later(AUTH_TIMEOUT_S, self._auth_timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def on_close(self) -> None:
        self._closed = True
        if self._auth_timer is not None:
            IOLoop.current().remove_timeout(self._auth_timer)
            self._auth_timer = None
        for commands in (self.telemetry, self.attributes, self.alarms, self.entity_data):
            if commands is not None:
                commands.close()

    def _auth_timeout(self) -> None:
        self._auth_timer = None
        if self.user is None and not self._closed:
            self.close(CLOSE_POLICY, f"No authCmd within {AUTH_TIMEOUT_S} s")

    def _authenticate(self, token: Any) -> None:
        """Who this socket acts for, with the same checks as a REST request's JWT."""
        if not isinstance(token, str) or not token:
            raise CmdError(UNAUTHORIZED, "Authentication failed: the token is missing")
        try:
            claims = self.platform.tokens.verify(token)
            user = self.platform.registry.get_user(claims["userId"])
        except NotFound:
            raise CmdError(UNAUTHORIZED, "Authentication failed: the token's user no longer exists") from None
        except EntityError as e:
            raise CmdError(UNAUTHORIZED, f"Authentication failed: {e}") from None
        if not user.enabled:
            raise CmdError(UNAUTHORIZED, "Authentication failed: the user is disabled")
        self.user = user
        self.telemetry = TelemetryCommands(self, self.platform, self.live, user)
        self.attributes = AttributeCommands(self, self.platform, user)
        if not self.legacy:
            self.alarms = AlarmCommands(self, self.platform, user)
            self.entity_data = EntityDataCommands(self, self.platform, self.live, user)
        if self._auth_timer is not None:
            IOLoop.current().remove_timeout(self._auth_timer)
            self._auth_timer = None

    # ------------------------------------------------------------------------- messages
    async def on_message(self, message: str | bytes) -> None:
        # a coroutine: tornado reads the next message only after this one is handled, so
        # commands are answered in the order they were sent, as in ThingsBoard
        try:
            msg = orjson.loads(message)
            if not isinstance(msg, dict):
                raise ValueError(f"expected a JSON object, got {type(msg).__name__}")
        except (orjson.JSONDecodeError, ValueError) as e:
            if self.user is None:
                self.close(CLOSE_BAD_DATA, "Failed to parse the payload")
            else:
                self.send(error_update(0, BAD_REQUEST, f"Failed to parse the payload: {e}"))
            return
        if self.user is None:
            auth = msg.get("authCmd")
            if not isinstance(auth, dict):
                self.close(CLOSE_POLICY, "Auth cmd is missing")
                return
            try:
                self._authenticate(auth.get("token"))
            except CmdError as e:
                self.close(CLOSE_BAD_DATA, e.message)
                return
        for kind, cmd in legacy_commands(msg) if self.legacy else typed_commands(msg):
            if self._closed:
                return
            await self._run(kind, cmd)

    async def _run(self, kind: str, cmd: Any) -> None:
        if kind == "MISSING_TYPE":
            cmd_id = cmd.get("cmdId") if isinstance(cmd, dict) else 0
            self.send(
                error_update(
                    cmd_id if isinstance(cmd_id, int) else 0,
                    BAD_REQUEST,
                    "'type' is required (TIMESERIES, TIMESERIES_HISTORY, ATTRIBUTES, ALARM_DATA, ENTITY_DATA, ENTITY_COUNT or ALARM_COUNT)",
                )
            )
            return
        if self.alarms is not None and kind in AlarmCommands.KINDS:
            await self.alarms.run(kind, cmd)
            return
        if self.entity_data is not None and kind in EntityDataCommands.KINDS:
            await self.entity_data.run(kind, cmd)
            return
        cmd_id = 0
        try:
            if kind == "INVALID":
                raise CmdError(BAD_REQUEST, cmd)
            cmd_id = cmd_id_of(cmd)
            if self.telemetry is not None and kind in TelemetryCommands.KINDS:
                await self.telemetry.run(kind, cmd_id, cmd)
            elif self.attributes is not None and kind in AttributeCommands.KINDS:
                await self.attributes.run(kind, cmd_id, cmd)
            else:
                raise CmdError(
                    BAD_REQUEST,
                    f"{kind} commands are not supported by tbpanel "
                    "(supported: TIMESERIES, TIMESERIES_HISTORY, ATTRIBUTES, ALARM_DATA, ENTITY_DATA, ENTITY_COUNT, ALARM_COUNT)",
                )
        except CmdError as e:
            self.send(error_update(cmd_id, e.code, e.message))
        except QueryError as e:
            self.send(error_update(cmd_id, BAD_REQUEST, str(e)))
        except tornado.websocket.WebSocketClosedError:
            pass
        except Exception:
            log.exception("websocket command failed: %r", cmd)
            self.send(error_update(cmd_id, INTERNAL_ERROR, "Failed to fetch data!"))

    def send(self, msg: dict[str, Any]) -> None:
        """Write one message without waiting for it to drain (a closed socket drops it)."""
        if self._closed:
            return
        try:
            sent = self.write_message(orjson.dumps(msg).decode())
        except tornado.websocket.WebSocketClosedError:
            return
        # not awaited: a socket that closes mid-write fails this future, which is expected —
        # retrieve the error so asyncio does not log "Task exception was never retrieved"
        sent.add_done_callback(lambda f: f.cancelled() or f.exception())


class WsApiWebSocket(TelemetryWebSocket):
    """``/api/ws``: ``authCmd`` first, then ``cmds`` with a ``type`` each (ALARM_DATA too)."""

    legacy = False
