"""The RPC service: server → device requests from submission to their final status, and the
answers to device → server requests.

Every state change runs on one thread of the service's own (an actor): transports and REST
handlers only enqueue (``submit``, ``delivered``, ``reply``, ``undelivered``) and get a
:class:`concurrent.futures.Future` back, which an event loop awaits with
``asyncio.wrap_future`` — nothing here blocks a loop, and no lock is needed around the
in-flight table. The same thread keeps the deadlines (a heap; its queue wait ends at the next
one), so a request times out or expires without anyone polling, and writes persistent
requests' status changes to ``rpc.sqlite`` before it tells anyone about them.

Delivery goes to the newest session that announced the device (:mod:`.sessions`); a session
announcing a device makes the service send whatever waits for it, oldest first — persistent
requests stored QUEUED (also those found at start-up, see
:meth:`~.repository.RpcRepository.recover`) and non-persistent ones a session gave back.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..clock import now_ms
from ..entities import User
from ..errors import NotFound
from . import model as m
from .model import DeviceNotConnected, RpcRequest
from .repository import RpcRepository
from .sessions import RpcSession, SessionRegistry

log = logging.getLogger("tbpanel.rpc")
T = TypeVar("T")

#: what a :attr:`RpcService.device_rpc_handler` returns for a method it does not answer
NOT_HANDLED = object()


@dataclass
class RpcCall:
    """A submitted request: ``accepted`` resolves once it is stored (persistent) or handed to a
    session (else DeviceNotConnected); ``finished`` with the request in its final status."""

    accepted: Future[RpcRequest] = field(default_factory=Future)
    finished: Future[RpcRequest] = field(default_factory=Future)


@dataclass
class _Live:
    request: RpcRequest
    call: RpcCall
    session: RpcSession | None = None
    deadline: int = 0
    #: sessions that took it and could not write it (``retries`` of them end it FAILED)
    failures: int = 0


def _nothing() -> None:
    pass


class RpcService:
    """Server-side RPC of one data directory (``rpc.sqlite``) and its live sessions."""

    def __init__(self, data_dir: str | os.PathLike, registry: Any) -> None:
        self.registry = registry
        self.repo = RpcRepository(data_dir)
        self.sessions = SessionRegistry()
        #: Device → server methods tbpanel itself does not answer go here when set: the rule
        #: engine installs ``fn(device_id, method, params) -> answer`` (``Ingress.device_rpc``):
        #: :data:`NOT_HANDLED` on the default chain, else a Future of the custom root chain's
        #: reply, which the transport awaits (``Ingress.rpc_answer``).
        self.device_rpc_handler: Callable[[str, str, Any], Any] | None = None
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._heap: list[tuple[int, int, str]] = []
        self._seq = itertools.count()
        self._live: dict[str, _Live] = {}
        self._wire: dict[tuple[str, int], str] = {}
        self._closed = False
        self._active = False
        self._next_request_id = 1
        self.sessions.announced.connect(lambda device_id: self._enqueue(lambda: self._flush(device_id)))
        self._thread = threading.Thread(target=self._run, name="tbpanel-rpc", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public, any thread
    def activate(self) -> None:
        """Make this process the one that delivers RPC (the server calls it at start-up):
        recover the persistent requests a stopped or killed server left (see
        ``RpcRepository.recover``) and track the queued ones. Until then (the CLI, a notebook
        reading alongside a server) the service reads but changes no stored request; it
        activates itself on the first submit or session."""
        self._call(self._activate).result()

    def submit(self, request: RpcRequest) -> RpcCall:
        """Start ``request`` (made by :func:`~.model.parse_request`); see :class:`RpcCall`."""
        call = RpcCall()
        self._enqueue(lambda: self._submit(request, call), call.accepted)
        return call

    def delivered(self, device_id: str, request_id: int) -> None:
        """A session wrote request ``request_id`` to the device."""
        self._enqueue(lambda: self._delivered(device_id, request_id))

    def undelivered(self, device_id: str, request_id: int, reason: str) -> None:
        """A session could not write the request (closed, queue full): it waits for another."""
        self._enqueue(lambda: self._undelivered(device_id, request_id, reason))

    def reply(self, device_id: str, request_id: int, response: Any) -> Future[bool]:
        """The device answered request ``request_id``; resolves False when no two-way request
        of *this* device waits under that number (a device never answers another's)."""
        return self._call(lambda: self._reply(device_id, request_id, response))

    def device_request(self, device_id: str, request: Any, limits: dict[str, Any]) -> Any:
        """The answer to a device → server request ``{"method", "params"}``: ``getCurrentTime``
        and ``getSessionLimits`` (``limits``, the asking transport's) are answered here, others by
        :attr:`device_rpc_handler`, else ``{"error": ...}``."""
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return {"error": 'an RPC request must be a JSON object {"method": "...", "params": ...}'}
        method = request["method"]
        if method == "getCurrentTime":
            return {"currentTime": now_ms()}
        if method == "getSessionLimits":
            return limits
        handler = self.device_rpc_handler
        if handler is not None:
            answer = handler(device_id, method, request.get("params"))
            if answer is not NOT_HANDLED:
                return answer
        return {"error": f"unsupported RPC method {method[:100]!r}: no rule answers it"}

    # ------------------------------------------------------------------ reads (REST), blocking
    def get(self, user: User, rpc_id: str) -> RpcRequest:
        """A persistent request ``user`` may see (its device's read rule), else NotFound/403."""
        request = self.repo.get(rpc_id)
        if request is None:
            raise NotFound(f"RPC request {rpc_id} not found")
        self.registry.check_device(user, request.device_id)
        return request

    def delete(self, user: User, rpc_id: str) -> None:
        """Forget a persistent request (it is not sent any more if it was still waiting)."""
        self.get(user, rpc_id)
        self._call(lambda: self._delete(rpc_id)).result()

    def list(self, user: User, device_id: str, **query: Any) -> tuple[list[RpcRequest], int]:
        """A page of the device's persistent requests (see ``RpcRepository.by_device``)."""
        device = self.registry.check_device(user, device_id)
        return self.repo.by_device(device.id, **query)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(timeout=30)
            self.repo.close()

    # ------------------------------------------------------------------ the service thread
    def _enqueue(self, fn: Callable[[], Any], future: Future[Any] | None = None) -> None:
        if future is None:
            self._queue.put(fn)
            return

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)

        self._queue.put(run)

    def _call(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._enqueue(fn, future)
        return future

    def _run(self) -> None:
        while True:
            wait = None
            if self._heap:
                wait = max(0.0, (self._heap[0][0] - now_ms()) / 1000)
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = _nothing  # a deadline is due
            if item is None:
                return
            try:
                item()
                self._expire_due()
            except Exception:
                log.exception("RPC service step failed")

    def _track(self, request: RpcRequest, call: RpcCall) -> _Live:
        live = self._live[request.id] = _Live(request, call)
        self._set_deadline(live, request.expiration_time)
        return live

    def _set_deadline(self, live: _Live, deadline: int) -> None:
        live.deadline = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), live.request.id))

    def _activate(self) -> None:
        if self._active:
            return
        self._active = True
        expired, requeued = self.repo.recover(now_ms())
        if expired or requeued:
            log.info("persistent RPC after restart: %d expired, %d queued again", expired, requeued)
        self._next_request_id = self.repo.max_request_id() + 1
        for request in self.repo.queued():
            if request.id not in self._live:
                self._track(request, RpcCall())

    def _submit(self, request: RpcRequest, call: RpcCall) -> RpcRequest:
        self._activate()
        session = self.sessions.session_for(request.device_id)
        if session is None and not request.persistent:
            raise DeviceNotConnected(f"device {request.device_id} is not connected (no session takes RPC for it)")
        request = request.with_(status=m.QUEUED)
        if request.persistent:
            self.repo.insert(request)
        live = self._track(request, call)
        if session is not None:
            self._send(live, session)
        return live.request

    def _send(self, live: _Live, session: RpcSession) -> None:
        request_id = self._next_request_id
        self._next_request_id += 1
        self._update(live, status=m.SENT, request_id=request_id)
        if live.request.id not in self._live:  # deleted meanwhile
            return
        self._wire[(live.request.device_id, request_id)] = live.request.id
        live.session = session
        r = live.request
        self._set_deadline(live, min(now_ms() + r.timeout_ms, r.expiration_time))
        try:
            session.send_rpc(r)
        except Exception as exc:  # a broken session must not stop the others
            log.warning("RPC %s: session failed to take it: %s", r.id, exc)
            self._undelivered(r.device_id, request_id, str(exc))

    def _update(self, live: _Live, **changes: Any) -> None:
        live.request = live.request.with_(**changes)
        if live.request.persistent and not self.repo.update(live.request):
            # deleted meanwhile (a race with DELETE): nothing more to do for it
            self._forget(live)

    def _forget(self, live: _Live) -> None:
        self._live.pop(live.request.id, None)
        self._wire.pop((live.request.device_id, live.request.request_id), None)

    def _finish(self, live: _Live, status: str, response: Any = None) -> None:
        self._update(live, status=status, response=response)
        self._forget(live)
        if not live.call.finished.done():
            live.call.finished.set_result(live.request)

    def _find(self, device_id: str, request_id: int) -> _Live | None:
        rpc_id = self._wire.get((device_id, request_id))
        return self._live.get(rpc_id) if rpc_id is not None else None

    def _delivered(self, device_id: str, request_id: int) -> None:
        live = self._find(device_id, request_id)
        if live is None or live.request.status != m.SENT:
            return
        if live.request.oneway:
            self._finish(live, m.DELIVERED)
        else:
            self._update(live, status=m.DELIVERED)

    def _undelivered(self, device_id: str, request_id: int, reason: str) -> None:
        live = self._find(device_id, request_id)
        if live is None or live.request.status != m.SENT:
            return
        self._wire.pop((device_id, request_id), None)
        live.failures += 1
        retries = live.request.retries
        if live.request.persistent and retries is not None and live.failures > retries:
            log.info(
                "RPC %s to device %s failed: not delivered %d times (%s)",
                live.request.id,
                device_id,
                live.failures,
                reason,
            )
            self._finish(live, m.FAILED, {"error": f"not delivered after {live.failures} attempt(s): {reason}"})
            return
        log.info("RPC %s to device %s not delivered (%s): waiting for a session", live.request.id, device_id, reason)
        self._update(live, status=m.QUEUED, request_id=0)
        live.session = None
        self._set_deadline(live, live.request.expiration_time)
        session = self.sessions.session_for(device_id)
        if session is not None and live.request.id in self._live:
            self._send(live, session)

    def _reply(self, device_id: str, request_id: int, response: Any) -> bool:
        live = self._find(device_id, request_id)
        if live is None or live.request.oneway:
            return False
        self._finish(live, m.SUCCESSFUL, response)
        return True

    def _flush(self, device_id: str) -> None:
        self._activate()
        waiting = [
            live
            for live in self._live.values()
            if live.request.device_id == device_id and live.request.status == m.QUEUED
        ]
        for live in sorted(waiting, key=lambda x: x.request.created_time):
            session = self.sessions.session_for(device_id)
            if session is None:
                return
            if live.request.id in self._live:
                self._send(live, session)

    def _delete(self, rpc_id: str) -> None:
        self.repo.delete(rpc_id)
        live = self._live.get(rpc_id)
        if live is not None:
            self._forget(live)
            live.call.finished.cancel()

    def _expire_due(self) -> None:
        now = now_ms()
        while self._heap and self._heap[0][0] <= now:
            deadline, _, rpc_id = heapq.heappop(self._heap)
            live = self._live.get(rpc_id)
            if live is None or live.deadline != deadline:
                continue  # finished, or a later deadline replaced this one
            r = live.request
            sent = r.status in (m.SENT, m.DELIVERED)
            if not r.persistent:
                status = m.TIMEOUT
            elif sent and deadline < r.expiration_time:
                status = m.TIMEOUT
            else:
                status = m.EXPIRED
            self._finish(live, status)
