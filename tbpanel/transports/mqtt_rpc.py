"""RPC over MQTT, for one device session (:class:`SessionRpc`, hooked into ``mqtt._Session``).

- Server → device: a session subscribed to ``v1/devices/me/rpc/request/+`` (or the short
  ``v2/r/req/+``, or a wildcard covering it) announces its device to the RPC service; requests
  arrive on ``rpc/request/{id}`` as ``{"method", "params"}`` in the form the device subscribed
  with, and its answer on ``rpc/response/{id}`` finishes the request. The publish is QoS 0; the
  request counts as DELIVERED once it is written to the socket.
- Gateway: a gateway session subscribed to ``v1/gateway/rpc`` announces each of its devices;
  requests go out as ``{"device": name, "data": {"id", "method", "params"}}`` and answers come
  back on the same topic as ``{"device": name, "id": n, "data": {...}}``.
- Device → server: ``rpc/request/{n}`` is answered on ``rpc/response/{n}`` (same long/short
  form) by :meth:`tbpanel.rpc.RpcService.device_request`.

A request goes out at the QoS the device subscribed with (at most 1, as ThingsBoard does):
QoS 0 counts as DELIVERED once written to the socket, QoS 1 once the device's PUBACK arrives; a
QoS 1 request not acknowledged when the session ends goes back to the service (sent again on the
next session: at least once).

Sessions never touch the RPC service's state: they enqueue (``delivered``, ``undelivered``,
``reply``) and the service's thread does the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import orjson

from ..rpc import RpcRequest
from ..store.payload import PayloadError, loads
from . import mqtt_codec as c
from .mqtt_topics import RPC_REQUEST, RPC_RESPONSE, matches, outbound

log = logging.getLogger("tbpanel.mqtt")

GATEWAY_RPC = "v1/gateway/rpc"


@dataclass
class Push:
    """An outgoing publish for the session's write loop; ``written()`` once it is on the socket."""

    data: bytes
    written: Callable[[], None]
    unwritten: Callable[[], None]


class _GatewayDevice:
    """The RPC session of one device behind a gateway: pushes through the gateway's session."""

    def __init__(self, rpc: SessionRpc, name: str, device_id: str):
        self.rpc, self.name, self.device_id = rpc, name, device_id

    def send_rpc(self, request: RpcRequest) -> None:
        self.rpc.loop.call_soon_threadsafe(self.rpc.push, self.device_id, request, self.name)


class SessionRpc:
    """The RPC side of one MQTT session (the session's own device, and a gateway's devices)."""

    def __init__(self, session: Any):
        self.s = session
        self.service = session.platform.rpc
        self.loop = asyncio.get_running_loop()
        self._withdraw: dict[str, Callable[[], None]] = {}  # device id -> its withdrawal
        self._qos: dict[str, int] = {}  # granted filter -> its QoS
        self._unacked: dict[int, tuple[str, int]] = {}  # QoS 1 packet id -> (device id, request id)
        self._last_packet_id = 0
        #: name -> id of the gateway's devices it may act for (``access.gateway_may_act_for``)
        self._gateway_devices: dict[str, str] = {}
        self.closed = False

    # ---------------------------------------------------------------- announcements
    def subscriptions_changed(self, granted: dict[str, int] | None = None) -> None:
        """After SUBSCRIBE (``granted``: filter -> QoS) / UNSUBSCRIBE: announce or withdraw the
        device and a gateway's devices."""
        self._qos.update(granted or {})
        for gone in [f for f in self._qos if f not in self.s.subscriptions]:
            del self._qos[gone]
        own = self.s.device.id
        self._set(own, self, self.s.push_topic(RPC_REQUEST + "0") is not None)
        gateway = self.s.push_topic(GATEWAY_RPC) is not None
        for name, device_id in self._gateway_devices.items():
            self._set(device_id, _GatewayDevice(self, name, device_id), gateway)

    def gateway_device_added(self, name: str, device_id: str) -> None:
        """A device the gateway connected and may act for (the session checked it)."""
        self._gateway_devices[name] = device_id
        if self.s.push_topic(GATEWAY_RPC) is not None:
            self._set(device_id, _GatewayDevice(self, name, device_id), True)

    def _set(self, device_id: str, session: Any, on: bool) -> None:
        if on and device_id not in self._withdraw and not self.closed:
            self._withdraw[device_id] = self.service.sessions.announce(device_id, session)
        elif not on and device_id in self._withdraw:
            self._withdraw.pop(device_id)()

    def close(self) -> None:
        """The session ended: withdraw everything; requests still queued go back to the service."""
        self.closed = True
        for withdraw in self._withdraw.values():
            withdraw()
        self._withdraw.clear()
        while True:
            try:
                item = self.s.out.get_nowait()
            except asyncio.QueueEmpty:
                break
            if isinstance(item, Push):
                item.unwritten()
        for device_id, rid in self._unacked.values():
            self.service.undelivered(device_id, rid, "the session ended before the device acknowledged it")
        self._unacked.clear()

    def acked(self, packet_id: int) -> bool:
        """A PUBACK from the device: True when it acknowledged one of our QoS 1 requests."""
        entry = self._unacked.pop(packet_id, None)
        if entry is None:
            return False
        self.service.delivered(*entry)
        return True

    def _packet_id(self) -> int:
        for _ in range(65_535):
            self._last_packet_id = self._last_packet_id % 65_535 + 1
            if self._last_packet_id not in self._unacked:
                return self._last_packet_id
        raise asyncio.QueueFull  # 65,535 unacknowledged requests: treated as a full queue

    # ---------------------------------------------------------------- server -> device
    def send_rpc(self, request: RpcRequest) -> None:  # the RPC service's thread
        self.loop.call_soon_threadsafe(self.push, self.s.device.id, request, None)

    def push(self, device_id: str, request: RpcRequest, gateway_name: str | None) -> None:
        """On the session's loop: queue the request's publish behind the answers already queued."""
        rid = request.request_id
        if gateway_name is None:
            topic = self.s.push_topic(RPC_REQUEST + str(rid))
            payload = orjson.dumps(request.body)
        else:
            topic = self.s.push_topic(GATEWAY_RPC)
            payload = orjson.dumps(
                {"device": gateway_name, "data": {"id": rid, "method": request.method, "params": request.params}}
            )
        if topic is None or self.closed:
            self.service.undelivered(device_id, rid, "the session no longer takes RPC")
            return
        qos = max((q for f, q in self._qos.items() if matches(f, topic)), default=0)

        def unwritten(pid: int | None = None) -> None:
            if pid is not None:
                self._unacked.pop(pid, None)
            self.service.undelivered(device_id, rid, "the session ended before it was written")

        if qos:
            try:
                pid = self._packet_id()
            except asyncio.QueueFull:
                unwritten()
                return
            self._unacked[pid] = (device_id, rid)
            item = Push(c.publish(self.s.level, topic, payload, 1, pid), lambda: None, lambda: unwritten(pid))
        else:
            item = Push(
                c.publish(self.s.level, topic, payload), lambda: self.service.delivered(device_id, rid), unwritten
            )
        try:
            self.s.out.put_nowait(item)
        except asyncio.QueueFull:
            item.unwritten()

    def reply(self, request_id: str, payload: bytes) -> Callable[[], Awaitable[None]]:
        """``rpc/response/{id}`` from the device: its answer (JSON, or the text as a string)."""
        answer = _answer(payload)
        device_id = self.s.device.id

        async def done() -> None:
            if not await asyncio.wrap_future(self.service.reply(device_id, int(request_id), answer)):
                log.info("MQTT device %s: answer to RPC %s that no request waits for", device_id, request_id)

        return done

    def gateway_reply(self, data: Any) -> Callable[[], Awaitable[None]]:
        """``v1/gateway/rpc`` from a gateway: ``{"device": name, "id": n, "data": answer}``."""
        if not isinstance(data, dict) or not isinstance(data.get("device"), str):
            raise PayloadError('expected {"device": "name", "id": n, "data": {...}}')
        rid = data.get("id")
        if isinstance(rid, str) and rid.isdigit():
            rid = int(rid)
        if isinstance(rid, bool) or not isinstance(rid, int):
            raise PayloadError(f"gateway RPC answer needs an integer 'id', got {rid!r}")
        device_id = self._gateway_devices.get(data["device"].strip())

        async def done() -> None:
            if device_id is None or not await asyncio.wrap_future(self.service.reply(device_id, rid, data.get("data"))):
                log.info("MQTT gateway %s: answer to RPC %s that no request waits for", self.s.device.id, rid)

        return done

    # ---------------------------------------------------------------- device -> server
    def device_request(self, topic: str, short: bool, payload: bytes) -> Callable[[], Awaitable[bytes]]:
        """``rpc/request/{n}`` from the device, answered on ``rpc/response/{n}``."""
        request = loads(payload)
        answer = self.service.device_request(self.s.device.id, request, self.s.t.session_limits())
        out = outbound(RPC_RESPONSE + topic[len(RPC_REQUEST) :], short)
        if isinstance(answer, Future):  # a custom root chain answers (tbpanel/rules/ingress.py)
            ingress = self.s.platform.rules.ingress

            async def chain() -> bytes:
                return c.publish(self.s.level, out, orjson.dumps(await ingress.rpc_answer(answer, request)))

            return chain
        response = c.publish(self.s.level, out, orjson.dumps(answer))

        async def just() -> bytes:
            return response

        return just


def _answer(payload: bytes) -> Any:
    if not payload.strip():
        return None
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload.decode("utf-8", "replace")
