"""The MQTT codec (round trips, fuzzed packets) and the transport's per-device limits in-process."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tbpanel.platform import Platform
from tbpanel.transports import mqtt_codec as c
from tbpanel.transports.mqtt import MqttLimits, MqttTransport

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@given(st.integers(0, c.MAX_VARINT))
def test_varint_round_trip(n):
    data = c.encode_varint(n)
    assert len(data) <= 4 and c.decode_varint(data + b"tail") == (n, len(data))


def test_varint_limits():
    assert c.encode_varint(127) == b"\x7f" and c.encode_varint(128) == b"\x80\x01"
    with pytest.raises(ValueError):
        c.encode_varint(c.MAX_VARINT + 1)
    with pytest.raises(c.MalformedPacket):
        c.decode_varint(b"\xff\xff\xff\xff\x01")
    with pytest.raises(c.MalformedPacket):
        c.decode_varint(b"\x80")


def _split(packet: bytes) -> tuple[int, bytes]:
    first, length, size = c.split_fixed_header(packet)
    assert len(packet) == size + length
    return first, packet[size:]


@given(
    level=st.sampled_from([c.MQTT_311, c.MQTT_5]),
    client_id=text,
    username=st.one_of(st.none(), text),
    keepalive=st.integers(0, 65535),
)
def test_connect_round_trip(level, client_id, username, keepalive):
    packet = c.encode_connect(c.Connect(level, client_id, keepalive, True, username))
    first, body = _split(packet)
    got = c.parse_connect(body)
    assert first >> 4 == c.CONNECT
    assert (got.level, got.client_id, got.username, got.keepalive) == (level, client_id, username, keepalive)


@given(
    level=st.sampled_from([c.MQTT_311, c.MQTT_5]),
    client_id=text,
    topic=text.filter(bool),
    payload=st.binary(max_size=100),
    qos=st.integers(0, 2),
    retain=st.booleans(),
    delay=st.integers(0, 2**32 - 1),
)
def test_connect_with_will_round_trip(level, client_id, topic, payload, qos, retain, delay):
    props = {c.PROP_WILL_DELAY: delay} if level == c.MQTT_5 else {}
    will = c.Will(topic, payload, qos, retain, props)
    first, body = _split(c.encode_connect(c.Connect(level, client_id, 30, True, "tok", None, {}, will)))
    got = c.parse_connect(body)
    assert (got.client_id, got.username, got.will) == (client_id, "tok", will)


@given(
    level=st.sampled_from([c.MQTT_311, c.MQTT_5]),
    topic=text.filter(lambda t: t and "+" not in t and "#" not in t),
    payload=st.binary(max_size=300),
    qos=st.integers(0, 2),
    packet_id=st.integers(1, 65535),
    retain=st.booleans(),
    dup=st.booleans(),
)
def test_publish_round_trip(level, topic, payload, qos, packet_id, retain, dup):
    first, body = _split(c.publish(level, topic, payload, qos, packet_id, retain, dup=dup))
    p = c.parse_packet(first, body, level)
    assert isinstance(p, c.Publish)
    assert (p.topic, p.payload, p.qos, p.retain, p.dup) == (topic, payload, qos, retain, dup)
    assert p.packet_id == (packet_id if qos else None)


@given(
    level=st.sampled_from([c.MQTT_311, c.MQTT_5]),
    ptype=st.sampled_from([c.PUBACK, c.PUBREC, c.PUBREL, c.PUBCOMP]),
    packet_id=st.integers(1, 65535),
    reason=st.sampled_from([0, 0x10, 0x92, 0x97, 0x99]),
    why=st.one_of(st.none(), text),
)
def test_publish_acknowledgements_round_trip(level, ptype, packet_id, reason, why):
    """PUBACK and the three QoS 2 packets; 3.1.1 carries only the packet id."""
    first, body = _split(c.puback(level, packet_id, reason, why, ptype=ptype))
    assert first == (ptype << 4) | (0x02 if ptype == c.PUBREL else 0)
    p = c.parse_packet(first, body, level)
    assert (p.type, p.packet_id, p.reason) == (ptype, packet_id, reason if level == c.MQTT_5 else 0)


@given(
    level=st.sampled_from([c.MQTT_311, c.MQTT_5]),
    topics=st.lists(st.tuples(text.filter(bool), st.integers(0, 2)), min_size=1, max_size=5),
)
def test_subscribe_round_trip(level, topics):
    first, body = _split(c.encode_subscribe(level, 7, topics))
    p = c.parse_packet(first, body, level)
    assert isinstance(p, c.Subscribe) and p.packet_id == 7 and p.topics == topics


def test_v5_properties_round_trip():
    props = {
        c.PROP_REASON_STRING: "why",
        c.PROP_RECEIVE_MAXIMUM: 10,
        c.PROP_MAXIMUM_QOS: 1,
        c.PROP_MAXIMUM_PACKET_SIZE: 70000,
        0x26: [("a", "b"), ("a", "c")],
        0x09: b"\x00\x01",
        0x0B: 300,
    }
    assert c._Reader(c.encode_properties(props)).properties() == props


@FUZZ
@given(first=st.integers(0, 255), body=st.binary(max_size=200), level=st.sampled_from([c.MQTT_311, c.MQTT_5]))
def test_fuzzed_packets_raise_only_malformed(first, body, level):
    """Arbitrary bytes never crash the parser with anything but MalformedPacket."""
    try:
        c.parse_packet(first, body, level)
    except c.MalformedPacket:
        pass
    try:
        c.parse_connect(body)
    except c.MalformedPacket:
        pass


@FUZZ
@given(data=st.data())
def test_fuzzed_mutations_of_valid_packets(data):
    """Valid packets with bytes flipped, cut or appended: parsed or MalformedPacket, nothing else."""
    level = data.draw(st.sampled_from([c.MQTT_311, c.MQTT_5]))
    packet = data.draw(
        st.sampled_from(
            [
                c.publish(
                    level,
                    "v1/devices/me/telemetry",
                    b'{"a":1}',
                    1,
                    5,
                    props={c.PROP_PAYLOAD_FORMAT: 1} if level == c.MQTT_5 else None,
                ),
                c.encode_subscribe(level, 3, [("v1/devices/me/rpc/request/+", 1)]),
                c.encode_connect(c.Connect(level, "id", 60, True, "token", b"pw")),
                c.encode_connect(
                    c.Connect(
                        level,
                        "id",
                        60,
                        True,
                        "token",
                        None,
                        {},
                        c.Will(
                            "v1/devices/me/attributes",
                            b'{"online":false}',
                            1,
                            False,
                            {c.PROP_WILL_DELAY: 5} if level == c.MQTT_5 else {},
                        ),
                    )
                ),
                c.disconnect(level, 0x99, "bad"),
                c.puback(level, 9, 0x99, "bad"),
                c.puback(level, 9, 0, ptype=c.PUBREL),
                c.puback(level, 10, 0x92, "gone", ptype=c.PUBCOMP),
            ]
        )
    )
    first, body = _split(packet)
    body = bytearray(body)
    for _ in range(data.draw(st.integers(0, 4))):
        if body:
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(body)))
    body = bytes(body[:cut]) + data.draw(st.binary(max_size=8))
    for parse in (lambda: c.parse_packet(first, body, level), lambda: c.parse_connect(body)):
        try:
            parse()
        except c.MalformedPacket:
            pass


def test_parser_rejects_protocol_violations():
    with pytest.raises(c.MalformedPacket):
        c.parse_packet(0x36, c.publish(4, "t", b"", 0)[2:], 4)  # QoS 3
    with pytest.raises(c.MalformedPacket):
        c.parse_packet(0x30, b"\x00\x03a/#", 4)  # wildcard in a topic name
    with pytest.raises(c.MalformedPacket):
        c.parse_packet(0x80, b"\x00\x01", 4)  # SUBSCRIBE with flags 0 and no filters
    with pytest.raises(c.MalformedPacket):
        c.parse_connect(b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x00")  # reserved flag
    with pytest.raises(c.MalformedPacket):
        c.parse_packet(c.PUBREL << 4, b"\x00\x01", 4)  # PUBREL must have flags 0b0010
    with pytest.raises(c.MalformedPacket):
        c.parse_packet((c.PUBACK << 4) | 2, b"\x00\x01", 4)  # PUBACK must have flags 0
    with pytest.raises(c.MalformedPacket):
        c.parse_packet(c.PUBACK << 4, b"\x00\x01\x00", 4)  # 3.1.1 PUBACK is two bytes
    with pytest.raises(c.MalformedPacket):
        c.parse_connect(b"\x00\x04MQTT\x04\x1e\x00\x3c\x00\x00\x00\x01t\x00\x00")  # will QoS 3
    with pytest.raises(c.UnsupportedProtocol):
        c.parse_connect(b"\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x00")


# ----------------------------------------------------------------------------- limits, in-process
class AsyncClient:
    def __init__(self, reader, writer, level):
        self.reader, self.writer, self.level = reader, writer, level

    @classmethod
    async def open(cls, port: int, token: str, level: int = c.MQTT_5) -> tuple[AsyncClient, int]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer, level)
        writer.write(c.encode_connect(c.Connect(level, "x", 0, True, token)))
        first, body = await client.read()
        return client, body[1]

    async def read(self) -> tuple[int, bytes]:
        first = (await self.reader.readexactly(1))[0]
        head = b""
        while True:
            head += await self.reader.readexactly(1)
            if not head[-1] & 0x80:
                break
        length, _ = c.decode_varint(head)
        return first, await self.reader.readexactly(length)

    async def publish(self, payload: dict, packet_id: int) -> tuple[int, int]:
        self.writer.write(c.publish(self.level, "v1/devices/me/telemetry", json.dumps(payload).encode(), 1, packet_id))
        first, body = await self.read()
        assert first >> 4 == c.PUBACK
        return int.from_bytes(body[:2], "big"), (body[2] if len(body) > 2 else 0)


@pytest.fixture
def platform(tmp_path):
    p = Platform(tmp_path / "data", compaction_interval_s=0)
    yield p
    p.close()


def test_per_device_limits(platform):
    tenant = platform.registry.create_tenant("T")
    device = platform.registry.save_device(tenant.id, "limited")
    token = platform.registry.get_credentials(device.id)

    accepted: list[int] = []

    async def scenario() -> None:
        transport = MqttTransport(
            platform, MqttLimits(max_payload_bytes=200, max_sessions_per_device=2, messages_per_second=5)
        )
        port = await transport.start("127.0.0.1", 0)
        try:
            a, code_a = await AsyncClient.open(port, token)
            b, code_b = await AsyncClient.open(port, token, c.MQTT_311)
            third, code_third = await AsyncClient.open(port, token)
            assert (code_a, code_b, code_third) == (0, 0, c.V5_QUOTA_EXCEEDED)
            old, code_old = await AsyncClient.open(port, token, c.MQTT_311)
            assert code_old == c.V311_SERVER_UNAVAILABLE
            # payload over 200 bytes: refused with a reason, nothing stored
            assert await a.publish({"s": "x" * 300}, 1) == (1, c.V5_QUOTA_EXCEEDED)
            # 5 messages/s per device (burst 5), shared by its sessions: a burst of 40 sent at
            # once cannot all pass (that would take 7 s); refused ones get 0x97 and are not stored
            for i in range(40):
                a.writer.write(
                    c.publish(
                        c.MQTT_5,
                        "v1/devices/me/telemetry",
                        json.dumps({"ts": 1_700_000_000_000 + i, "values": {"n": i}}).encode(),
                        1,
                        100 + i,
                    )
                )
            acks = []
            for _ in range(40):
                first, body = await a.read()
                acks.append((int.from_bytes(body[:2], "big"), body[2] if len(body) > 2 else 0))
            assert [pid for pid, _ in acks] == list(range(100, 140))  # in order
            accepted.extend(pid - 100 for pid, code in acks if code == 0)
            assert {code for _, code in acks} == {0, c.V5_QUOTA_EXCEEDED}
            a.writer.close()
            b.writer.close()
        finally:
            await transport.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))
    stored = platform.store.query_raw(device.id, ["n", "s"], 0, 2**62, limit=1000, order="ASC")
    assert [v for _, _, v in stored.get("n", [])] == accepted and not stored.get("s")


def test_cli_transport_ports():
    from tbpanel.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["serve"])
    assert args.mqtt_port is None and args.coap_port is None  # the defaults, 1883/5683 if free
    args = parser.parse_args(["serve", "--mqtt-port", "-1", "--coap-port", "0"])
    assert (args.mqtt_port, args.coap_port) == (-1, 0)
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--mqtt-port", "-2"])
