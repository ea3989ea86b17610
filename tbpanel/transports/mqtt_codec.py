"""MQTT 3.1.1 and 5 packet encoding and decoding: only what a device transport needs.

No maintained Python library offers a sans-I/O codec for both protocol levels (paho and
amqtt bundle their own networking), so this module parses and builds the packets a device
session exchanges: CONNECT (with its will) / CONNACK, PUBLISH with PUBACK (QoS 1) or
PUBREC/PUBREL/PUBCOMP (QoS 2), SUBSCRIBE/SUBACK, UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP and
DISCONNECT. Every parse error is a :class:`MalformedPacket` (never an
IndexError or a UnicodeDecodeError), so the server can close the session with a reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

MQTT_311 = 4
MQTT_5 = 5

#: Largest remaining length the 4-byte variable integer can express.
MAX_VARINT = 268_435_455

# v5 property identifiers (section 2.2.2.2) by wire type.
_BYTE_PROPS = {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}
_INT4_PROPS = {0x02, 0x11, 0x18, 0x27}
_STR_PROPS = {0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F}
_BIN_PROPS = {0x09, 0x16}
_VARINT_PROPS = {0x0B}
_INT2_PROPS = {0x13, 0x21, 0x22, 0x23}
_PAIR_PROPS = {0x26}

PROP_PAYLOAD_FORMAT = 0x01
PROP_SESSION_EXPIRY = 0x11
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS = 0x23
PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_MAXIMUM_PACKET_SIZE = 0x27
PROP_WILDCARD_AVAILABLE = 0x28
PROP_SUBSCRIPTION_IDS_AVAILABLE = 0x29
PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A
PROP_REASON_STRING = 0x1F
PROP_WILL_DELAY = 0x18

# Reason codes used by the transport.
V5_SUCCESS = 0x00
V5_UNSPECIFIED_ERROR = 0x80
V5_MALFORMED_PACKET = 0x81
V5_PROTOCOL_ERROR = 0x82
V5_IMPLEMENTATION_SPECIFIC = 0x83
V5_UNSUPPORTED_PROTOCOL_VERSION = 0x84
V5_BAD_USERNAME_OR_PASSWORD = 0x86
V5_NOT_AUTHORIZED = 0x87
V5_DISCONNECT_WITH_WILL = 0x04
V5_PACKET_ID_NOT_FOUND = 0x92
V5_TOPIC_NAME_INVALID = 0x90
V5_PACKET_TOO_LARGE = 0x95
V5_QUOTA_EXCEEDED = 0x97
V5_PAYLOAD_FORMAT_INVALID = 0x99
V5_RETAIN_NOT_SUPPORTED = 0x9A
V5_QOS_NOT_SUPPORTED = 0x9B
V5_CONNECTION_RATE_EXCEEDED = 0x9F
V311_UNACCEPTABLE_PROTOCOL = 1
V311_SERVER_UNAVAILABLE = 3
V311_BAD_USERNAME_OR_PASSWORD = 4
V311_NOT_AUTHORIZED = 5


class MalformedPacket(ValueError):
    """Bytes that are not a valid MQTT packet; the message says why."""


# ----------------------------------------------------------------------------- primitives
def encode_varint(value: int) -> bytes:
    """The variable byte integer of MQTT (1–4 bytes, 7 bits each, little end first)."""
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"variable integer out of range: {value}")
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def decode_varint(data: bytes, pos: int = 0) -> tuple[int, int]:
    """(value, next position); at most 4 bytes, as the spec requires."""
    value = 0
    for i in range(4):
        if pos >= len(data):
            raise MalformedPacket("truncated variable byte integer")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos
    raise MalformedPacket("variable byte integer longer than 4 bytes")


class _Reader:
    """Bounds-checked cursor over one packet's bytes."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise MalformedPacket("packet is shorter than its fields")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack(">H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack(">I", self.take(4))[0]

    def varint(self) -> int:
        value, pos = decode_varint(self.data[: self.end], self.pos)
        self.pos = pos
        return value

    def binary(self) -> bytes:
        return self.take(self.u16())

    def string(self) -> str:
        raw = self.binary()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPacket("string is not valid UTF-8") from None
        if "\x00" in text:
            raise MalformedPacket("string contains U+0000")
        return text

    def properties(self) -> dict[int, Any]:
        """v5 properties; repeated user properties collect into a list."""
        length = self.varint()
        sub = _Reader(self.data, self.pos, self.pos + length)
        if sub.end > self.end:
            raise MalformedPacket("properties are longer than the packet")
        props: dict[int, Any] = {}
        while sub.remaining():
            ident = sub.varint()
            if ident in _BYTE_PROPS:
                value: Any = sub.byte()
            elif ident in _INT4_PROPS:
                value = sub.u32()
            elif ident in _STR_PROPS:
                value = sub.string()
            elif ident in _BIN_PROPS:
                value = sub.binary()
            elif ident in _VARINT_PROPS:
                value = sub.varint()
            elif ident in _INT2_PROPS:
                value = sub.u16()
            elif ident in _PAIR_PROPS:
                props.setdefault(ident, []).append((sub.string(), sub.string()))
                continue
            else:
                raise MalformedPacket(f"unknown property identifier 0x{ident:02x}")
            props[ident] = value
        self.pos = sub.end
        return props


def _u16(value: int) -> bytes:
    return struct.pack(">H", value)


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _u16(len(raw)) + raw


def encode_properties(props: dict[int, Any] | None) -> bytes:
    """v5 property block (length prefix included)."""
    out = bytearray()
    for ident, value in (props or {}).items():
        if ident in _PAIR_PROPS:
            for k, v in value:
                out += encode_varint(ident) + _string(k) + _string(v)
            continue
        out += encode_varint(ident)
        if ident in _BYTE_PROPS:
            out.append(value)
        elif ident in _INT4_PROPS:
            out += struct.pack(">I", value)
        elif ident in _STR_PROPS:
            out += _string(value)
        elif ident in _BIN_PROPS:
            out += _u16(len(value)) + value
        elif ident in _VARINT_PROPS:
            out += encode_varint(value)
        elif ident in _INT2_PROPS:
            out += _u16(value)
        else:
            raise ValueError(f"unknown property 0x{ident:02x}")
    return encode_varint(len(out)) + bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_varint(len(body)) + body


# ----------------------------------------------------------------------------- packets
@dataclass
class Will:
    """The message a client asks the server to publish for it if its session ends abnormally."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass
class Connect:
    level: int
    client_id: str
    keepalive: int
    clean_start: bool
    username: str | None = None
    password: bytes | None = None
    properties: dict[int, Any] = field(default_factory=dict)
    will: Will | None = None


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    dup: bool = False
    packet_id: int | None = None
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass
class Subscribe:
    packet_id: int
    topics: list[tuple[str, int]]  # (filter, options byte; QoS in the low 2 bits)
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass
class Unsubscribe:
    packet_id: int
    topics: list[str]
    properties: dict[int, Any] = field(default_factory=dict)


@dataclass
class Simple:
    """PINGREQ, DISCONNECT, the publish acknowledgements and AUTH: type, reason, packet id."""

    type: int
    reason: int = 0
    packet_id: int | None = None


ClientPacket = Publish | Subscribe | Unsubscribe | Simple  # what a client sends after CONNECT
Packet = Connect | ClientPacket


def split_fixed_header(buffer: bytes) -> tuple[int, int, int] | None:
    """(first byte, remaining length, header size) once the fixed header is complete."""
    if not buffer:
        return None
    try:
        length, pos = decode_varint(buffer, 1)
    except MalformedPacket:
        if len(buffer) >= 5:
            raise
        return None
    return buffer[0], length, pos


class UnsupportedProtocol(MalformedPacket):
    """A CONNECT for another protocol name or level (answered with 'unacceptable protocol')."""

    def __init__(self, name: str, level: int):
        super().__init__(f"unsupported protocol {name!r} level {level}")
        self.level = level


def parse_connect(body: bytes) -> Connect:
    """CONNECT's variable header and payload (both protocol levels)."""
    r = _Reader(body)
    name = r.string()
    level = r.byte()
    if name != "MQTT" or level not in (MQTT_311, MQTT_5):
        raise UnsupportedProtocol(name, level)
    flags = r.byte()
    if flags & 0x01:
        raise MalformedPacket("reserved CONNECT flag is set")
    keepalive = r.u16()
    props = r.properties() if level == MQTT_5 else {}
    client_id = r.string()
    will = None
    if flags & 0x04:  # will flag: properties (v5), topic, payload
        will_qos = (flags >> 3) & 0x03
        if will_qos == 3:
            raise MalformedPacket("will QoS 3")
        will_props = r.properties() if level == MQTT_5 else {}
        will = Will(r.string(), r.binary(), will_qos, bool(flags & 0x20), will_props)
    elif flags & 0x38:
        raise MalformedPacket("will QoS/retain set without the will flag")
    username = r.string() if flags & 0x80 else None
    password = r.binary() if flags & 0x40 else None
    if r.remaining():
        raise MalformedPacket("trailing bytes after CONNECT payload")
    return Connect(level, client_id, keepalive, bool(flags & 0x02), username, password, props, will)


def parse_packet(first_byte: int, body: bytes, level: int) -> ClientPacket:
    """One packet after CONNECT, given its fixed header byte and body."""
    ptype, flags = first_byte >> 4, first_byte & 0x0F
    r = _Reader(body)
    if ptype == CONNECT:
        raise MalformedPacket("second CONNECT in one session")
    if ptype == PUBLISH:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        topic = r.string()
        if not topic or "+" in topic or "#" in topic:
            if not (level == MQTT_5 and not topic):
                raise MalformedPacket("PUBLISH topic is empty or has wildcards")
        packet_id = r.u16() if qos else None
        if packet_id == 0:
            raise MalformedPacket("packet identifier 0")
        props = r.properties() if level == MQTT_5 else {}
        return Publish(topic, r.take(r.remaining()), qos, bool(flags & 1), bool(flags & 8), packet_id, props)
    if ptype in (SUBSCRIBE, UNSUBSCRIBE):
        if flags != 0x02:
            raise MalformedPacket("SUBSCRIBE/UNSUBSCRIBE with wrong fixed-header flags")
        packet_id = r.u16()
        if packet_id == 0:
            raise MalformedPacket("packet identifier 0")
        props = r.properties() if level == MQTT_5 else {}
        if ptype == SUBSCRIBE:
            topics = []
            while r.remaining():
                topics.append((r.string(), r.byte()))
            if not topics:
                raise MalformedPacket("SUBSCRIBE without topic filters")
            return Subscribe(packet_id, topics, props)
        names = []
        while r.remaining():
            names.append(r.string())
        if not names:
            raise MalformedPacket("UNSUBSCRIBE without topic filters")
        return Unsubscribe(packet_id, names, props)
    if ptype in (PINGREQ, DISCONNECT):
        if flags:
            raise MalformedPacket("reserved flags set")
        reason = r.byte() if ptype == DISCONNECT and level == MQTT_5 and r.remaining() else 0
        return Simple(ptype, reason)
    if ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        if flags != (0x02 if ptype == PUBREL else 0):
            raise MalformedPacket("publish acknowledgement with wrong fixed-header flags")
        packet_id = r.u16()
        reason = r.byte() if level == MQTT_5 and r.remaining() else 0
        if level == MQTT_5 and r.remaining():
            r.properties()
        if r.remaining():
            raise MalformedPacket("trailing bytes after a publish acknowledgement")
        return Simple(ptype, reason, packet_id)
    if ptype == AUTH and level == MQTT_5:
        return Simple(ptype, r.byte() if r.remaining() else 0)
    raise MalformedPacket(f"unexpected packet type {ptype} from a client")


# ----------------------------------------------------------------------------- builders
def connack(level: int, code: int, props: dict[int, Any] | None = None, session_present: bool = False) -> bytes:
    body = bytes([1 if session_present else 0, code])
    if level == MQTT_5:
        body += encode_properties(props)
    return _packet(CONNACK << 4, body)


def puback(level: int, packet_id: int, reason: int = 0, reason_string: str | None = None, ptype: int = PUBACK) -> bytes:
    """PUBACK, or with ``ptype`` PUBREC / PUBREL / PUBCOMP (same layout; PUBREL has flags 2)."""
    body = _u16(packet_id)
    if level == MQTT_5 and (reason or reason_string):
        body += bytes([reason]) + encode_properties({PROP_REASON_STRING: reason_string} if reason_string else None)
    return _packet((ptype << 4) | (0x02 if ptype == PUBREL else 0), body)


def suback(level: int, packet_id: int, codes: list[int]) -> bytes:
    body = _u16(packet_id) + (encode_properties(None) if level == MQTT_5 else b"") + bytes(codes)
    return _packet(SUBACK << 4, body)


def unsuback(level: int, packet_id: int, count: int) -> bytes:
    body = _u16(packet_id)
    if level == MQTT_5:
        body += encode_properties(None) + bytes(count)  # 0x00 success per filter
    return _packet(UNSUBACK << 4, body)


def pingresp() -> bytes:
    return bytes([PINGRESP << 4, 0])


def disconnect(level: int, reason: int = 0, reason_string: str | None = None) -> bytes:
    if level != MQTT_5:
        return bytes([DISCONNECT << 4, 0])
    props = {PROP_REASON_STRING: reason_string} if reason_string else None
    return _packet(DISCONNECT << 4, bytes([reason]) + encode_properties(props))


def publish(
    level: int,
    topic: str,
    payload: bytes,
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    props: dict[int, Any] | None = None,
    dup: bool = False,
) -> bytes:
    body = _string(topic)
    if qos:
        body += _u16(packet_id or 1)
    if level == MQTT_5:
        body += encode_properties(props)
    return _packet((PUBLISH << 4) | (0x08 if dup else 0) | (qos << 1) | int(retain), body + payload)


def encode_connect(c: Connect) -> bytes:
    """CONNECT (for tests and benchmarks that speak raw MQTT)."""
    flags = (
        (0x02 if c.clean_start else 0)
        | (0x80 if c.username is not None else 0)
        | (0x40 if c.password is not None else 0)
    )
    if c.will is not None:
        flags |= 0x04 | (c.will.qos << 3) | (0x20 if c.will.retain else 0)
    body = _string("MQTT") + bytes([c.level, flags]) + _u16(c.keepalive)
    if c.level == MQTT_5:
        body += encode_properties(c.properties)
    body += _string(c.client_id)
    if c.will is not None:
        if c.level == MQTT_5:
            body += encode_properties(c.will.properties)
        body += _string(c.will.topic) + _u16(len(c.will.payload)) + c.will.payload
    if c.username is not None:
        body += _string(c.username)
    if c.password is not None:
        body += _u16(len(c.password)) + c.password
    return _packet(CONNECT << 4, body)


def encode_subscribe(level: int, packet_id: int, topics: list[tuple[str, int]]) -> bytes:
    body = _u16(packet_id) + (encode_properties(None) if level == MQTT_5 else b"")
    for topic, options in topics:
        body += _string(topic) + bytes([options])
    return _packet((SUBSCRIBE << 4) | 0x02, body)
