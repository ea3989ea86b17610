"""MQTT device transport (ThingsBoard's device and gateway topics), MQTT 3.1.1 and 5.

This is a device transport, not a broker: each TCP connection is one device session,
authenticated by its access token (the CONNECT username), and ``v1/devices/me/...`` means
that session's device only. Publishes go through the same payload rules and the same durable
write path as the HTTP device API, and a QoS 1 PUBACK (QoS 2 PUBREC) is sent only once the data
is on disk.

Retained messages are not supported (nothing is ever delivered to another session): MQTT 5
advertises Retain Available = 0 and ends a session that sets retain anyway (0x9A); MQTT 3.1.1
cannot say so, and its retain flag is ignored. A will on ``v1/devices/me/telemetry`` or
``.../attributes`` is stored as if the device had published it when its session ends without a
normal DISCONNECT; wills on other topics are ignored (logged; MQTT 5 hears it in the CONNACK).

Acknowledgements leave in the order the publishes arrived (MQTT requires it) while the writes
themselves overlap: telemetry is handed to the store's group-commit writer as soon as it is
parsed, and a per-session writer task awaits each result in turn before sending its answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..clock import now_ms
from ..errors import EntityError
from ..store.faults import storage_fault
from ..store.limits import mqtt_reason
from ..store.payload import PayloadError, loads, parse_attributes, parse_telemetry
from ..store.validate import ValidPoints, payload_points
from . import mqtt_attributes, mqtt_provision
from . import mqtt_codec as c
from .mqtt_claiming import CLAIM_TOPIC, claim
from .mqtt_rpc import GATEWAY_RPC, Push, SessionRpc
from .mqtt_topics import (
    ATTRIBUTE_REQUEST,
    ATTRIBUTE_RESPONSE,
    DEVICE_ATTRIBUTES,
    DEVICE_TELEMETRY,
    RPC_REQUEST,
    RPC_RESPONSE,
    inbound,
    outbound,
    push_topic,
)

log = logging.getLogger("tbpanel.mqtt")

GATEWAY_CONNECT = "v1/gateway/connect"
GATEWAY_DISCONNECT = "v1/gateway/disconnect"
GATEWAY_TELEMETRY = "v1/gateway/telemetry"
GATEWAY_ATTRIBUTES = "v1/gateway/attributes"

#: Topic filters a device may subscribe to (those tb-mqtt-client and gateways use, and the
#: ThingsBoard 3.5+ short forms ``v2/a``, ``v2/r/req/+`` … of :mod:`.mqtt_topics`).
SUBSCRIBABLE = ("v1/devices/me/", "v1/gateway/", "v2/")

CONNECT_TIMEOUT = 10.0
_CLOSE = object()


@dataclass
class MqttLimits:
    """Per-device limits; exceeding one is answered with a reason, never silently dropped."""

    max_payload_bytes: int = 1 << 20
    max_sessions_per_device: int = 16
    messages_per_second: float = 5_000.0
    receive_maximum: int = 100  # QoS 1 publishes a client may have unacknowledged


class _RateLimit:
    """Token bucket of one device (shared by its sessions): burst = one second's worth."""

    def __init__(self, rate: float):
        self.rate, self.tokens, self.stamp = rate, rate, time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Rejected(Exception):
    """A publish refused for a reason the client should hear (v5 reason code + text)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class MqttTransport:
    """The listening socket and the device sessions; runs on the server's asyncio loop."""

    def __init__(self, platform: Any, limits: MqttLimits | None = None):
        self.platform = platform
        self.limits = limits or MqttLimits(max_payload_bytes=platform.max_body_bytes)
        self.sessions: dict[str, int] = {}  # device id -> open sessions
        self._rates: dict[str, _RateLimit] = {}
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self.attribute_pushes = mqtt_attributes.AttributePushes(platform.registry)

    async def start(self, host: str = "127.0.0.1", port: int = 1883) -> int:
        """Listen; returns the bound port (useful with ``port=0``)."""
        self._server = await asyncio.start_server(self._accept, host, port)
        self.attribute_pushes.start(asyncio.get_running_loop())
        self.port: int = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        """Stop listening and end every open session (their tasks finish before this returns)."""
        if self._server is not None:
            self._closing = True
            self._server.close()
            self.attribute_pushes.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await _Session(self, reader, writer).run()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # ended by close(): return normally, or Python 3.11's StreamReaderProtocol logs
            # the cancelled handler task as an "Exception in callback" traceback
        except Exception:
            log.exception("MQTT session failed")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    def rate(self, device_id: str) -> _RateLimit:
        bucket = self._rates.get(device_id)
        if bucket is None:
            bucket = self._rates[device_id] = _RateLimit(self.limits.messages_per_second)
        return bucket

    def session_limits(self) -> dict[str, Any]:
        """The answer to tb-mqtt-client's ``getSessionLimits`` RPC (ThingsBoard's shape)."""
        rate = f"{int(self.limits.messages_per_second)}:1"
        return {
            "maxPayloadSize": self.limits.max_payload_bytes,
            "maxInflightMessages": self.limits.receive_maximum,
            "rateLimits": {"messages": rate, "telemetryMessages": rate, "telemetryDataPoints": ""},
        }


class _Session:
    """One device connection: reads packets, queues answers in arrival order."""

    def __init__(self, transport: MqttTransport, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.t = transport
        self.platform = transport.platform
        self.reader, self.writer = reader, writer
        self.level = c.MQTT_311
        self.device: Any = None
        self.peer = writer.get_extra_info("peername")
        self.out: asyncio.Queue = asyncio.Queue(maxsize=2 * transport.limits.receive_maximum)
        self.gateway_devices: dict[str, str] = {}  # name -> device id
        self.qos2_pending: set[int] = set()  # QoS 2 packet ids stored, awaiting PUBREL
        self.will: c.Will | None = None
        self.clean_disconnect = False
        self.subscriptions: set[str] = set()  # granted topic filters (see push_topic)
        self.rpc = SessionRpc(self)  # RPC both ways (transports/mqtt_rpc.py)

    # ------------------------------------------------------------------ reading
    async def read_packet(self) -> tuple[int, bytes]:
        first = (await self.reader.readexactly(1))[0]
        length, shift = 0, 0
        for _i in range(4):
            byte = (await self.reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise c.MalformedPacket("remaining length longer than 4 bytes")
        limit = self.t.limits.max_payload_bytes + 65_536  # topic and properties on top
        if length > limit:
            raise Rejected(c.V5_PACKET_TOO_LARGE, f"packet of {length} bytes exceeds the limit of {limit} bytes")
        return first, await self.reader.readexactly(length)

    async def run(self) -> None:
        try:
            first, body = await asyncio.wait_for(self.read_packet(), CONNECT_TIMEOUT)
        except (TimeoutError, c.MalformedPacket, Rejected) as exc:
            log.info("MQTT %s: closed before CONNECT: %s", self.peer, exc or "timeout")
            return
        if first >> 4 != c.CONNECT:
            log.info("MQTT %s: first packet is not CONNECT; closing", self.peer)
            return
        try:
            connect = c.parse_connect(body)
        except c.UnsupportedProtocol as exc:
            code = c.V5_UNSUPPORTED_PROTOCOL_VERSION if exc.level > c.MQTT_5 else c.V311_UNACCEPTABLE_PROTOCOL
            await self.send_now(c.connack(c.MQTT_5 if exc.level > c.MQTT_5 else c.MQTT_311, code))
            log.info("MQTT %s: %s", self.peer, exc)
            return
        except c.MalformedPacket as exc:
            log.info("MQTT %s: malformed CONNECT: %s", self.peer, exc)
            return
        self.level = connect.level
        if mqtt_provision.is_provision(connect):  # provisioning: a session without a device
            await mqtt_provision.serve(self, connect)
            return
        if not await self.authenticate(connect):
            return
        device_id = self.device.id
        self.t.sessions[device_id] = self.t.sessions.get(device_id, 0) + 1
        self.t.attribute_pushes.add(device_id, self)
        writer_task = asyncio.create_task(self.write_loop())
        self.session_event(True)
        cancelled = False
        try:
            await self.read_loop(connect.keepalive)
        except asyncio.CancelledError:  # server shutdown: no will either
            cancelled = True
            raise
        finally:
            self.t.attribute_pushes.remove(self, [device_id, *self.gateway_devices.values()])
            self.t.sessions[device_id] -= 1
            if not self.t.sessions[device_id]:
                del self.t.sessions[device_id]
            if not writer_task.done():
                try:
                    self.out.put_nowait(_CLOSE)
                except asyncio.QueueFull:
                    writer_task.cancel()
            try:
                await writer_task
            except (asyncio.CancelledError, ConnectionError):
                pass
            self.rpc.close()
            if not cancelled and not self.clean_disconnect and self.will is not None:
                await self.publish_will()
            if not cancelled:  # (at server shutdown the rule engine closes right after)
                self.session_event(False)

    def session_event(self, connected: bool) -> None:
        """CONNECT_EVENT / DISCONNECT_EVENT into the tenant's root chain, off the loop and
        not awaited (the session does not wait for the rule engine)."""
        loop = asyncio.get_running_loop()
        loop.run_in_executor(self.platform.executor, self.platform.rules.ingress.session_event, self.device, connected)

    async def authenticate(self, connect: c.Connect) -> bool:
        """CONNACK: accepted for a known token under the session limit; refused otherwise."""
        token = connect.username
        device = self.platform.registry.device_by_token(token) if token else None
        if device is None:  # no token at all is a bad user name (ThingsBoard: CONNACK 4 / 0x86)
            v5 = self.level == c.MQTT_5
            if token:
                code = c.V5_NOT_AUTHORIZED if v5 else c.V311_NOT_AUTHORIZED
            else:
                code = c.V5_BAD_USERNAME_OR_PASSWORD if v5 else c.V311_BAD_USERNAME_OR_PASSWORD
            log.info(
                "MQTT %s: refused: %s", self.peer, "unknown access token" if token else "no access token (username)"
            )
            await self.send_now(c.connack(self.level, code))
            return False
        limit = self.t.limits.max_sessions_per_device
        if self.t.sessions.get(device.id, 0) >= limit:
            log.warning("MQTT %s: refused device %s: %d sessions already open (the limit)", self.peer, device.id, limit)
            code = c.V5_QUOTA_EXCEEDED if self.level == c.MQTT_5 else c.V311_SERVER_UNAVAILABLE
            await self.send_now(
                c.connack(self.level, code, {c.PROP_REASON_STRING: f"device has {limit} open sessions (the limit)"})
            )
            return False
        props = {
            c.PROP_RETAIN_AVAILABLE: 0,
            c.PROP_MAXIMUM_PACKET_SIZE: self.t.limits.max_payload_bytes + 65_536,
            c.PROP_RECEIVE_MAXIMUM: self.t.limits.receive_maximum,
            c.PROP_WILDCARD_AVAILABLE: 1,
            c.PROP_SUBSCRIPTION_IDS_AVAILABLE: 0,
            c.PROP_SHARED_SUBSCRIPTION_AVAILABLE: 0,
        }
        if connect.will is not None:
            refusal = self.accept_will(connect.will, device, props)
            if refusal is not None:
                log.info("MQTT %s: refused device %s: %s", self.peer, device.id, refusal[1])
                await self.send_now(c.connack(self.level, refusal[0], {c.PROP_REASON_STRING: refusal[1][:512]}))
                return False
        self.device = device
        await self.send_now(c.connack(self.level, 0, props))
        log.info(
            "MQTT %s: device %s connected (MQTT %s)", self.peer, device.id, "5" if self.level == c.MQTT_5 else "3.1.1"
        )
        return True

    def accept_will(self, will: c.Will, device: Any, props: dict) -> tuple[int, str] | None:
        """Keep a will this transport can store; (v5 CONNACK code, reason) to refuse the session.

        Only MQTT 5 refuses (retain, or a bad payload on a device topic): 3.1.1 has no code to
        say why, so there the will is dropped and the reason logged, and the session goes on."""
        v5 = self.level == c.MQTT_5
        if will.topic not in (DEVICE_TELEMETRY, DEVICE_ATTRIBUTES):
            note = f"will on {will.topic!r} ignored: only wills on {DEVICE_TELEMETRY} or {DEVICE_ATTRIBUTES} are stored"
            log.info("MQTT %s: device %s: %s", self.peer, device.id, note)
            if v5:
                props[c.PROP_REASON_STRING] = note
            return None
        problem: tuple[int, str] | None = None
        if will.retain and v5:
            problem = (c.V5_RETAIN_NOT_SUPPORTED, "retained wills are not supported (Retain Available = 0)")
        elif len(will.payload) > self.t.limits.max_payload_bytes:
            problem = (
                c.V5_PACKET_TOO_LARGE,
                f"will payload of {len(will.payload)} bytes exceeds "
                f"the limit of {self.t.limits.max_payload_bytes} bytes",
            )
        else:
            try:
                parse = parse_telemetry if will.topic == DEVICE_TELEMETRY else parse_attributes
                parse(will.payload, now_ms())
            except ValueError as exc:
                problem = (c.V5_PAYLOAD_FORMAT_INVALID, f"will payload: {exc}")
        if problem is not None and not v5:
            log.warning("MQTT %s: device %s: will dropped: %s", self.peer, device.id, problem[1])
            return None
        if problem is None:
            self.will = will
        return problem

    async def publish_will(self) -> None:
        """Store the will like a publish of the device (the session ended abnormally)."""
        will = self.will
        assert will is not None  # called only for a session that left a will
        try:
            work = self.dispatch(c.Publish(will.topic, will.payload, will.qos))
            await (work() if callable(work) else work)
        except Exception as exc:  # e.g. a string that no longer fits; nothing else to tell
            log.warning("MQTT device %s: will on %s not stored: %s", self.device.id, will.topic, exc)
            return
        log.info("MQTT device %s: session ended without DISCONNECT: will stored on %s", self.device.id, will.topic)

    async def read_loop(self, keepalive: int) -> None:
        timeout = keepalive * 1.5 if keepalive else None
        while True:
            try:
                first, body = await asyncio.wait_for(self.read_packet(), timeout)
            except TimeoutError:
                log.info("MQTT device %s: keep-alive expired", self.device.id)
                return
            except asyncio.IncompleteReadError:
                return
            except Rejected as exc:
                await self.fail(exc.code, str(exc))
                return
            except c.MalformedPacket as exc:
                await self.fail(c.V5_MALFORMED_PACKET, f"malformed packet: {exc}")
                return
            try:
                packet = c.parse_packet(first, body, self.level)
            except c.MalformedPacket as exc:
                await self.fail(c.V5_MALFORMED_PACKET, f"malformed packet: {exc}")
                return
            if isinstance(packet, c.Publish):
                if not await self.on_publish(packet):
                    return
            elif isinstance(packet, c.Subscribe):
                codes = [
                    min(opts & 0x03, 1)
                    if filt.startswith(SUBSCRIBABLE)
                    else (c.V5_NOT_AUTHORIZED if self.level == c.MQTT_5 else 0x80)
                    for filt, opts in packet.topics
                ]
                self.subscriptions.update(filt for (filt, _), code in zip(packet.topics, codes) if code < 0x80)
                await self.out.put(c.suback(self.level, packet.packet_id, codes))
                self.rpc.subscriptions_changed({f: q for (f, _), q in zip(packet.topics, codes) if q < 0x80})
            elif isinstance(packet, c.Unsubscribe):
                self.subscriptions.difference_update(packet.topics)
                await self.out.put(c.unsuback(self.level, packet.packet_id, len(packet.topics)))
                self.rpc.subscriptions_changed()
            elif packet.type == c.PINGREQ:
                await self.out.put(c.pingresp())
            elif packet.type == c.DISCONNECT:
                self.clean_disconnect = packet.reason != c.V5_DISCONNECT_WITH_WILL
                return
            elif packet.type == c.PUBREL:  # QoS 2, step 3: the device releases the packet id
                assert packet.packet_id is not None  # acknowledgements always carry one
                known = packet.packet_id in self.qos2_pending
                self.qos2_pending.discard(packet.packet_id)
                await self.out.put(
                    c.puback(self.level, packet.packet_id, 0 if known else c.V5_PACKET_ID_NOT_FOUND, ptype=c.PUBCOMP)
                )
            elif packet.type == c.PUBACK and packet.packet_id is not None and self.rpc.acked(packet.packet_id):
                continue  # the device acknowledged a QoS 1 RPC request (transports/mqtt_rpc.py)
            elif packet.type in (c.PUBACK, c.PUBCOMP, c.PUBREC, c.AUTH):
                continue  # acknowledgements of our QoS 0 RPC answers never arrive; ignore
            else:  # pragma: no cover - parse_packet rejects the rest
                return

    # ------------------------------------------------------------------ publishing
    async def on_publish(self, p: c.Publish) -> bool:
        """Validate now (so a bad payload stores nothing), queue the durable write and answer.

        QoS 2: the write is acknowledged with PUBREC once durable; a resend of a packet id still
        awaiting its PUBREL is answered again without storing it twice."""
        if p.retain and self.level == c.MQTT_5:
            await self.fail(c.V5_RETAIN_NOT_SUPPORTED, "retained messages are not supported (Retain Available = 0)")
            return False
        if p.qos == 2 and p.packet_id in self.qos2_pending:
            await self.out.put((self._just(None), p))
            return True
        try:
            if not self.t.rate(self.device.id).allow():
                raise Rejected(
                    c.V5_QUOTA_EXCEEDED, f"message rate limit of {self.t.limits.messages_per_second:g}/s exceeded"
                )
            if len(p.payload) > self.t.limits.max_payload_bytes:
                raise Rejected(
                    c.V5_PACKET_TOO_LARGE if p.qos == 0 else c.V5_QUOTA_EXCEEDED,
                    f"payload of {len(p.payload)} bytes exceeds the limit of {self.t.limits.max_payload_bytes} bytes",
                )
            work = self.dispatch(p)
        except (ValueError, Rejected) as exc:  # PayloadError, or the store's point check
            code = exc.code if isinstance(exc, Rejected) else mqtt_reason(exc, p.qos) or c.V5_PAYLOAD_FORMAT_INVALID
            log.info("MQTT device %s: rejected publish on %s: %s", self.device.id, p.topic, exc)
            if self.level == c.MQTT_5 and p.qos:
                assert p.packet_id is not None  # QoS 1 and 2 publishes always carry one
                await self.out.put(
                    c.puback(self.level, p.packet_id, code, str(exc)[:512], ptype=c.PUBACK if p.qos == 1 else c.PUBREC)
                )
                return True
            await self.fail(code, str(exc))  # 3.1.1 cannot say why: close (reason logged)
            return False
        if p.qos == 2:
            assert p.packet_id is not None
            self.qos2_pending.add(p.packet_id)
        await self.out.put((work, p))
        return True

    def dispatch(self, p: c.Publish) -> Awaitable[bytes | None] | Callable[[], Awaitable[Any]]:
        """Parse the payload for its topic; returns the (started or deferred) work."""
        (topic, short), now = inbound(p.topic), now_ms()
        device_id = self.device.id
        if topic == DEVICE_TELEMETRY:
            points = parse_telemetry(p.payload, now)
            self.platform.check_message(len(points))
            return self.write_points(payload_points(device_id, points))
        if topic == DEVICE_ATTRIBUTES:
            points = parse_attributes(p.payload, now)
            return lambda: self.platform.rules.ingress.attributes(self.device, points)
        if topic.startswith(RPC_REQUEST) and topic[len(RPC_REQUEST) :].isdigit():
            return self.rpc.device_request(topic, short, p.payload)
        if topic.startswith(RPC_RESPONSE) and topic[len(RPC_RESPONSE) :].isdigit():
            return self.rpc.reply(topic[len(RPC_RESPONSE) :], p.payload)
        if topic.startswith(ATTRIBUTE_REQUEST) and topic[len(ATTRIBUTE_REQUEST) :].isdigit():
            wanted = mqtt_attributes.parse_request(loads(p.payload) if p.payload.strip() else None)
            return lambda: self.answer_attributes(
                outbound(ATTRIBUTE_RESPONSE + topic[len(ATTRIBUTE_REQUEST) :], short), wanted
            )
        if topic == CLAIM_TOPIC:  # claiming: see mqtt_claiming
            return claim(self.platform, device_id, p.payload)
        if topic.startswith("v1/gateway/"):
            return self.gateway(topic, p.payload, now)
        raise Rejected(c.V5_TOPIC_NAME_INVALID, f"unsupported topic {topic!r}")

    def write_points(self, rows: list) -> Awaitable[Any]:
        """Into the tenant's root chain (tbpanel/rules/ingress.py): with the default chain the
        store's write starts now; otherwise the messages are queued when the writer awaits it."""
        if not rows:
            return self._just(None)
        return self.platform.rules.ingress.telemetry(self.device.tenant_id, rows)

    async def _just(self, value: Any) -> Any:
        return value

    async def in_executor(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.platform.executor, fn, *args)

    async def answer_attributes(self, response_topic: str, wanted: dict) -> bytes:
        """``attributes/request/{n}``: ``{"client": {..}, "shared": {..}}`` (see mqtt_attributes)."""
        body = await self.in_executor(mqtt_attributes.answer_request, self.platform.registry, self.device.id, wanted)
        return c.publish(self.level, response_topic, body)

    def push_topic(self, canonical: str) -> str | None:
        """The topic this session receives ``canonical`` pushes on (shared attributes, RPC
        requests), in the form it subscribed with; None when it has not subscribed."""
        return push_topic(self.subscriptions, canonical)

    def push(self, canonical: str, payload: bytes) -> None:
        """A QoS 0 push (a shared attribute change) if subscribed; dropped when the session's
        queue is full (a device that does not read), logged once per session."""
        topic = self.push_topic(canonical)
        if topic is None:
            return
        try:
            self.out.put_nowait(c.publish(self.level, topic, payload))
        except asyncio.QueueFull:
            if not getattr(self, "_push_dropped", False):
                self._push_dropped = True
                log.warning("MQTT device %s: pushes dropped: the session does not keep up", self.device.id)

    # ------------------------------------------------------------------ gateway API
    def gateway(self, topic: str, payload: bytes, now: int) -> Callable[[], Awaitable[Any]]:
        if not (self.device.additional_info or {}).get("gateway"):
            raise Rejected(c.V5_NOT_AUTHORIZED, "gateway topics need a gateway device (additionalInfo.gateway = true)")
        data = loads(payload)
        if topic == mqtt_attributes.GATEWAY_ATTRIBUTE_REQUEST:
            return self.gateway_attribute_request(*mqtt_attributes.parse_gateway_request(data))
        if topic == GATEWAY_RPC:
            return self.rpc.gateway_reply(data)
        if topic in (GATEWAY_CONNECT, GATEWAY_DISCONNECT):
            if not isinstance(data, dict) or not isinstance(data.get("device"), str) or not data["device"].strip():
                raise PayloadError('expected {"device": "name"[, "type": "..."]}')
            if topic == GATEWAY_DISCONNECT:
                return lambda: self._just(None)
            name, dtype = data["device"].strip(), str(data.get("type") or "default")
            return lambda: self.gateway_device(name, dtype)
        if not isinstance(data, dict):
            raise PayloadError("gateway payload must be an object keyed by device name")
        parsed: dict[str, list] = {}
        for name, entries in data.items():
            if topic == GATEWAY_TELEMETRY:
                if not isinstance(entries, list):
                    raise PayloadError(f"telemetry of device {name!r} must be an array")
                parsed[name] = parse_telemetry(entries, now)
            elif topic == GATEWAY_ATTRIBUTES:
                parsed[name] = parse_attributes(entries, now)
            else:
                raise Rejected(c.V5_TOPIC_NAME_INVALID, f"unsupported topic {topic!r}")
        if topic == GATEWAY_TELEMETRY:
            self.platform.check_message(sum(map(len, parsed.values())))

        async def store() -> None:
            ids = {name: await self.gateway_device(name.strip(), "default") for name in parsed}
            if topic == GATEWAY_TELEMETRY:
                rows = ValidPoints()  # one batch, its points numbered across the devices
                for n, pts in parsed.items():
                    rows += payload_points(ids[n], pts, first=len(rows))
                await self.write_points(rows)
            else:
                for name, pts in parsed.items():
                    if pts:
                        device = await self.in_executor(self.platform.registry.get_device, ids[name])
                        await self.platform.rules.ingress.attributes(device, pts)

        return store

    def gateway_attribute_request(self, rid: Any, name: str, scope: str, keys: list) -> Callable[[], Awaitable[Any]]:
        async def answer() -> bytes:
            device_id = await self.gateway_device(name, "default")
            args = (self.platform.registry, self.device.id, rid, name, device_id, scope, keys)
            body = await self.in_executor(mqtt_attributes.gateway_answer, *args)
            return c.publish(self.level, mqtt_attributes.GATEWAY_ATTRIBUTE_RESPONSE, body)

        return answer

    async def gateway_device(self, name: str, dtype: str) -> str:
        """The id of the gateway's device ``name``, created (owned by the gateway) on first sight."""
        if not name:
            raise PayloadError("device name must not be empty")
        known = self.gateway_devices.get(name)
        if known is not None:
            return known
        gw = self.device
        registry = self.platform.registry

        def find_or_create() -> str:
            found = registry.find_device(gw.tenant_id, name)
            if found is None:
                try:
                    found = registry.save_device(
                        gw.tenant_id,
                        name,
                        type=dtype,
                        customer_id=gw.customer_id,
                        additional_info={"gateway": False, "lastConnectedGateway": gw.id},
                    )
                    log.info("MQTT gateway %s created device %s (%s)", gw.id, found.id, name)
                except EntityError:
                    found = registry.find_device(gw.tenant_id, name)  # created concurrently
                    if found is None:
                        raise
            return found.id

        try:
            device_id = await self.in_executor(find_or_create)
        except EntityError as exc:
            raise PayloadError(f"device {name!r}: {exc}") from None
        self.gateway_devices[name] = device_id
        if await self.in_executor(mqtt_attributes.gateway_may_read, self.platform.registry, gw.id, device_id):
            self.t.attribute_pushes.add_gateway_device(device_id, name, self)
            self.rpc.gateway_device_added(name, device_id)  # RPC: the same rule as attributes
        return device_id

    # ------------------------------------------------------------------ writing
    async def write_loop(self) -> None:
        """Sends answers in arrival order, awaiting each write before its PUBACK / PUBREC."""
        while True:
            item = await self.out.get()
            if item is _CLOSE:
                return
            if isinstance(item, tuple):
                work, p = item
                result = None  # unset on the PayloadError path below (an UnboundLocalError before)
                try:
                    result = await (work() if callable(work) else work)
                    code, text = 0, None
                except PayloadError as exc:  # (an ingest limit has a reason code of its own)
                    code, text = mqtt_reason(exc, p.qos) or c.V5_PAYLOAD_FORMAT_INVALID, str(exc)
                except Exception as exc:
                    code, text, result = self.failed(exc, p.topic)
                if code and (self.level != c.MQTT_5 or p.qos == 0):
                    log.info("MQTT device %s: closing session: %s", self.device.id, text)
                    if self.level == c.MQTT_5:  # a 3.1.1 server has no DISCONNECT to send
                        await self.write(c.disconnect(self.level, code, (text or "")[:512]))
                    self.writer.close()
                    return
                data = b""
                if isinstance(result, bytes):
                    data += result
                if p.qos == 1:
                    data += c.puback(self.level, p.packet_id, code, text)
                elif p.qos == 2:
                    if code:  # refused: the exchange ends here, no PUBREL follows
                        self.qos2_pending.discard(p.packet_id)
                    data += c.puback(self.level, p.packet_id, code, text, ptype=c.PUBREC)
                if data:
                    await self.write(data)
            elif isinstance(item, Push):  # an RPC request (transports/mqtt_rpc.py)
                await self.write(item.data)
                item.written()
            else:
                await self.write(item)

    def failed(self, exc: Exception, topic: str) -> tuple[int, str, None]:
        """The reason code and text for a publish that could not be stored."""
        fault = storage_fault(exc)
        if fault is not None:  # full disk or read-only: a warning, not a traceback per message
            log.warning("MQTT device %s: storage refused a write: %s", self.device.id, exc)
            return c.V5_QUOTA_EXCEEDED, f"Insufficient storage: {fault}", None
        log.exception("MQTT device %s: storing a publish on %s failed", self.device.id, topic)
        return c.V5_UNSPECIFIED_ERROR, f"not stored: {exc}", None

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_now(self, data: bytes) -> None:
        """Before the writer task exists (CONNACK)."""
        await self.write(data)

    async def fail(self, code: int, reason: str) -> None:
        """End the session after the answers already queued: v5 says why, 3.1.1 just closes."""
        log.info("MQTT device %s: closing session: %s", self.device.id if self.device else self.peer, reason)
        if self.level == c.MQTT_5:
            await self.out.put(c.disconnect(self.level, code, reason[:512]))
