"""External nodes against real brokers started by the tests on loopback ports (mosquitto,
tansu for Kafka, RabbitMQ): patterns, acknowledgements in the metadata, and broker down then
up through the durable queue with nothing lost."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
import pytest

from tbpanel.rules.queue import RuleQueue
from tests.rules.helpers import chain, msg

MQTT, KAFKA, RABBIT = "mqtt.TbMqttNode", "kafka.TbKafkaNode", "rabbitmq.TbRabbitMqNode"


class MqttSink:
    """A paho subscriber collecting ``(topic, payload)``."""

    def __init__(self, port: int, topic: str = "tb/#") -> None:
        import paho.mqtt.client as mqtt

        self.got: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_: self._ready.set()
        c.on_message = lambda _c, _u, m: self.got.append((m.topic, m.payload))
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self._ready.wait(10)
        self.client = c

    def wait(self, n: int, timeout: float = 20) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def drain(queue, engine, clock, rounds=200):
    for _ in range(rounds):
        if not queue.size():
            return
        queue.process_due(engine)
        clock.t += 60_000
    raise AssertionError(f"{queue.size()} messages still queued")


# -- MQTT ------------------------------------------------------------------------------------
def test_mqtt_publishes_with_patterns(bare_engine, mosquitto):
    sink = MqttSink(mosquitto.port)
    try:
        cfg = {
            "topicPattern": "tb/${deviceName}/$[n]",
            "host": "127.0.0.1",
            "port": mosquitto.port,
            "credentials": {"type": "anonymous"},
        }
        bare_engine.set_chain(chain("t", [(MQTT, "to mqtt", cfg)], []))
        ends = [bare_engine.process(msg(data={"n": i})).ended[0] for i in range(3)]
        assert [e.relation for e in ends] == ["Success"] * 3 and ends[0].msg.metadata["topic"] == "tb/dev/0"
        got = sink.wait(3)
        assert [(t, orjson.loads(p)) for t, p in got] == [(f"tb/dev/{i}", {"n": i}) for i in range(3)]
    finally:
        sink.close()


def test_mqtt_broker_down_then_up_loses_nothing(tmp_path, bare_engine, clock):
    from tests.rules.brokers import Mosquitto

    broker = Mosquitto(tmp_path)  # not started: the broker is down
    q = RuleQueue(tmp_path, retry_base_ms=1000, clock=clock)
    try:
        cfg = {"topicPattern": "tb/$[n]", "host": "127.0.0.1", "port": broker.port, "connectTimeoutSec": 2}
        bare_engine.set_chain(chain("t", [(MQTT, "to mqtt", cfg)], []))
        q.put([msg(data={"n": i}, originator=f"d{i % 2}") for i in range(6)])
        assert {o.state for o in q.process_due(bare_engine)} == {"RETRY"}
        broker.start()
        sink = MqttSink(broker.port)
        try:
            drain(q, bare_engine, clock)
            assert sorted(orjson.loads(p)["n"] for _, p in sink.wait(6)) == list(range(6))
        finally:
            sink.close()
    finally:
        broker.stop()
        q.close()


# -- Kafka (tansu) ---------------------------------------------------------------------------
def kafka_read(port: int, topic: str, n: int, timeout: float = 30) -> list:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def run():
        c = AIOKafkaConsumer(bootstrap_servers=f"127.0.0.1:{port}", enable_auto_commit=False, request_timeout_ms=10_000)
        await c.start()
        try:
            await c.topics()  # fetches the cluster metadata
            parts = c.partitions_for_topic(topic) or {0}
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            out = []
            deadline = time.monotonic() + timeout
            while len(out) < n and time.monotonic() < deadline:
                batch = await c.getmany(*tps, timeout_ms=500)
                for records in batch.values():
                    out += records
            return sorted(out, key=lambda r: orjson.loads(r.value)["n"])
        finally:
            await c.stop()

    return asyncio.run(run())


def test_kafka_sends_with_key_headers_and_offsets(bare_engine, tansu):
    cfg = {
        "topicPattern": "telemetry-${deviceType}",
        "keyPattern": "$[n]",
        "bootstrapServers": f"127.0.0.1:{tansu.port}",
        "acks": "-1",
        "addMetadataKeyValuesAsKafkaHeaders": True,
    }
    bare_engine.set_chain(chain("t", [(KAFKA, "to kafka", cfg)], []))
    ends = [bare_engine.process(msg(data={"n": i})).ended[0] for i in range(3)]
    assert [e.relation for e in ends] == ["Success"] * 3, ends[0].msg.metadata.get("error")
    offsets = [int(e.msg.metadata["offset"]) for e in ends]
    assert all(o >= 0 for o in offsets)
    assert ends[0].msg.metadata["topic"] == "telemetry-thermostat" and ends[0].msg.metadata["partition"].isdigit()
    records = kafka_read(tansu.port, "telemetry-thermostat", 3)
    assert [orjson.loads(r.value) for r in records] == [{"n": i} for i in range(3)]
    assert [r.key for r in records] == [b"0", b"1", b"2"]
    assert dict(records[0].headers)["tb_msg_md_deviceName"] == b"dev"


def test_kafka_broker_down_then_up_loses_nothing(tmp_path, bare_engine, clock):
    from tests.rules.brokers import Tansu

    broker = Tansu(tmp_path)
    q = RuleQueue(tmp_path, retry_base_ms=1000, clock=clock)
    try:
        cfg = {"topicPattern": "out", "bootstrapServers": f"127.0.0.1:{broker.port}", "requestTimeoutMs": 2000}
        bare_engine.set_chain(chain("t", [(KAFKA, "to kafka", cfg)], []))
        q.put([msg(data={"n": i}, originator=f"d{i % 2}") for i in range(6)])
        assert {o.state for o in q.process_due(bare_engine)} == {"RETRY"}
        broker.start()
        drain(q, bare_engine, clock)
        assert sorted(orjson.loads(r.value)["n"] for r in kafka_read(broker.port, "out", 6)) == list(range(6))
    finally:
        broker.stop()
        q.close()


# -- RabbitMQ --------------------------------------------------------------------------------
def rabbit_declare(port: int, queue: str) -> None:
    import aio_pika

    async def run():
        conn = await aio_pika.connect(host="127.0.0.1", port=port)
        async with conn:
            ch = await conn.channel()
            await ch.declare_queue(queue, durable=True)

    asyncio.run(run())


def rabbit_read(port: int, queue: str, n: int, timeout: float = 30) -> list:
    import aio_pika

    async def run():
        conn = await aio_pika.connect(host="127.0.0.1", port=port)
        async with conn:
            ch = await conn.channel()
            q = await ch.declare_queue(queue, durable=True)
            out = []
            deadline = time.monotonic() + timeout
            while len(out) < n and time.monotonic() < deadline:
                m = await q.get(fail=False, no_ack=True)
                if m is None:
                    await asyncio.sleep(0.05)
                else:
                    out.append(m)
            return out

    return asyncio.run(run())


def test_rabbitmq_publishes_with_confirms(bare_engine, rabbitmq):
    rabbit_declare(rabbitmq.port, "q-thermostat")
    cfg = {
        "exchangeNamePattern": "",
        "routingKeyPattern": "q-${deviceType}",
        "messageProperties": "PERSISTENT_TEXT_PLAIN",
        "host": "127.0.0.1",
        "port": rabbitmq.port,
    }
    bare_engine.set_chain(chain("t", [(RABBIT, "to rabbit", cfg)], []))
    ends = [bare_engine.process(msg(data={"n": i})).ended[0] for i in range(3)]
    assert [e.relation for e in ends] == ["Success"] * 3, ends[0].msg.metadata.get("error")
    got = rabbit_read(rabbitmq.port, "q-thermostat", 3)
    assert [orjson.loads(m.body) for m in got] == [{"n": i} for i in range(3)]
    assert got[0].content_type == "text/plain" and got[0].delivery_mode == 2


@pytest.mark.slow
def test_rabbitmq_broker_down_then_up_loses_nothing(tmp_path, bare_engine, clock, rabbitmq):
    rabbit_declare(rabbitmq.port, "durable-out")
    q = RuleQueue(tmp_path, retry_base_ms=1000, clock=clock)
    try:
        cfg = {"routingKeyPattern": "durable-out", "host": "127.0.0.1", "port": rabbitmq.port, "handshakeTimeout": 2000}
        bare_engine.set_chain(chain("t", [(RABBIT, "to rabbit", cfg)], []))
        q.put([msg(data={"n": i}, originator=f"d{i % 2}") for i in range(3)])
        drain(q, bare_engine, clock)  # delivered while up
        rabbitmq.stop()
        q.put([msg(data={"n": i}, originator=f"d{i % 2}") for i in range(3, 6)])
        assert {o.state for o in q.process_due(bare_engine)} == {"RETRY"}
        rabbitmq.start()  # same ports and data directory: the durable queue and its messages survive
        drain(q, bare_engine, clock)
        assert sorted(orjson.loads(m.body)["n"] for m in rabbit_read(rabbitmq.port, "durable-out", 6)) == list(range(6))
    finally:
        q.close()


# -- REST API call ---------------------------------------------------------------------------
def test_rest_call_success_and_error_answers(bare_engine):
    from tests.rules.recorder import Recorder

    rec = Recorder().start()
    try:
        cfg = {
            "restEndpointUrlPattern": rec.url + "/api/${deviceName}?n=$[n]",
            "requestMethod": "PUT",
            "headers": {"Content-Type": "application/json", "X-Device": "${deviceType}"},
        }
        bare_engine.set_chain(chain("t", [("rest.TbRestApiCallNode", "call", cfg)], []))
        [e] = bare_engine.process(msg(data={"n": 5})).ended
        assert e.relation == "Success" and e.msg.metadata["statusCode"] == "200" and e.msg.data == {"ok": True, "n": 1}
        method, path, body, headers = rec.requests[0]
        assert (method, path, orjson.loads(body), headers["X-Device"]) == ("PUT", "/api/dev", {"n": 5}, "thermostat")
        rec.status = 404
        [e] = bare_engine.process(msg(data={"n": 6})).ended
        assert e.relation == "Failure" and e.external and "HTTP 404" in e.msg.metadata["error"]
        assert e.msg.metadata["statusCode"] == "404"
    finally:
        rec.stop()
