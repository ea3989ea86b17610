"""Which device sessions can take an RPC request right now.

A transport session announces "I can take RPC for device X" (an MQTT session subscribed to
``rpc/request/+``, a gateway for each of its devices, an HTTP long poll while it waits, a CoAP
observation of ``/rpc``) and withdraws when that stops. The newest announcement wins: a
device that reconnects gets its requests on the new session.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from ..events import Signal
from .model import RpcRequest


class RpcSession(Protocol):
    """A transport session that delivers requests to one device.

    ``send_rpc`` is called from the RPC service's thread and must not block: the session
    schedules the write on its own event loop, then tells the service
    :meth:`~tbpanel.rpc.RpcService.delivered` once written or
    :meth:`~tbpanel.rpc.RpcService.undelivered` if it could not be."""

    def send_rpc(self, request: RpcRequest) -> None: ...


class SessionRegistry:
    """device id → the sessions that announced it, newest last (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, list[RpcSession]] = {}
        #: a session announced a device (device id); the service sends what waits for it
        self.announced: Signal[[str]] = Signal("rpc.sessions.announced")

    def announce(self, device_id: str, session: RpcSession) -> Callable[[], None]:
        """Add ``session`` for ``device_id``; returns the withdrawal (idempotent)."""
        with self._lock:
            self._sessions.setdefault(device_id, []).append(session)
        self.announced.emit(device_id)
        return lambda: self.withdraw(device_id, session)

    def withdraw(self, device_id: str, session: RpcSession) -> None:
        with self._lock:
            sessions = self._sessions.get(device_id)
            if sessions and session in sessions:
                sessions.remove(session)
                if not sessions:
                    del self._sessions[device_id]

    def session_for(self, device_id: str) -> RpcSession | None:
        """The newest session of ``device_id``, or None when it has none."""
        with self._lock:
            sessions = self._sessions.get(device_id)
            return sessions[-1] if sessions else None

    def has(self, device_id: str, session: RpcSession) -> bool:
        with self._lock:
            return session in self._sessions.get(device_id, ())

    def connected(self, device_id: str) -> bool:
        return self.session_for(device_id) is not None
