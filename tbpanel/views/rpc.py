"""The device page's RPC console: what to send (method, params, one-way or two-way, timeout)
and what came back, with no Panel import (``ui/rpc.py`` draws it).

Sending never blocks a page: :meth:`RpcConsole.submit` checks the user and hands the request
to the RPC service (a quick registry read, run off the loop by the page), and the answer is a
future of the service's thread that the page watches (:meth:`RpcConsole.outcome` once done).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import orjson
import param

from ..clock import now_ms
from ..errors import EntityError, InvalidInput
from ..rpc import DELIVERED, SUCCESSFUL, TIMEOUT, RpcCall, parse_request


class RpcConsole(param.Parameterized):
    """One user's RPC console for one device."""

    device = param.String(default="", doc="Device id (the device page's choice).")
    method = param.String(default="", doc="RPC method name.")
    params_text = param.String(default="{}", doc="RPC params as JSON text.")
    two_way = param.Boolean(default=True, doc="Wait for the device's answer (two-way) or only for delivery.")
    timeout_ms = param.Integer(default=5000, bounds=(100, 600_000), doc="How long to wait, in ms.")
    status = param.String(default="", doc="'', 'sending', or how the last request ended.")
    answer = param.String(default="", doc="The device's answer as JSON text, or why it failed.")

    def __init__(self, platform: Any, user: Any, **params: Any):
        super().__init__(**params)
        self.platform, self.user = platform, user

    def submit(self) -> RpcCall:
        """Validate, check the user may reach the device, and send (blocking: a registry read)."""
        if not self.device:
            raise InvalidInput("pick a device first")
        try:
            params = orjson.loads(self.params_text or "null")
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"params are not valid JSON: {exc}") from None
        device = self.platform.registry.check_device(self.user, self.device)
        body = {"method": self.method, "params": params, "timeout": self.timeout_ms}
        request = parse_request(
            body, tenant_id=device.tenant_id, device_id=device.id, oneway=not self.two_way, now=now_ms()
        )
        return self.platform.rpc.submit(request)

    @staticmethod
    def when_done(call: RpcCall, fn: Any) -> None:
        """Call ``fn()`` (on the service's thread) once ``call`` was refused or has ended."""

        def accepted(f: Future) -> None:
            if f.exception() is not None:
                fn()
            else:
                call.finished.add_done_callback(lambda _: fn())

        call.accepted.add_done_callback(accepted)

    def outcome(self, call: RpcCall) -> tuple[str, str]:
        """``(status, text)`` of a call :meth:`when_done` reported (does not wait)."""
        error = call.accepted.exception(timeout=0)
        if error is not None:
            return "error", str(error)
        done = call.finished.result(timeout=0)
        if done.status == SUCCESSFUL:
            return SUCCESSFUL, orjson.dumps(done.response, option=orjson.OPT_INDENT_2).decode()
        if done.status == DELIVERED:
            return DELIVERED, "delivered (one-way: no answer expected)"
        if done.status == TIMEOUT:
            return TIMEOUT, f"no answer within {done.timeout_ms} ms"
        return done.status, ""

    def show(self, outcome: tuple[str, str]) -> None:
        self.status, self.answer = outcome

    def failed(self, exc: Exception) -> None:
        """A refusal before sending (bad input, no permission)."""
        self.status, self.answer = "error", str(exc) if isinstance(exc, EntityError | ValueError) else "failed"
