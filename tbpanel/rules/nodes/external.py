"""External nodes: what leaves tbpanel. A failure here (service down, an error answer) is
retried by the delivery queue from this node, never dropped (``external = True``)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

import orjson
import param

from ..message import TbMsg
from .base import FAILURE, SUCCESS, Outputs, RuleNode, register, substitute


@register
class RestApiCallNode(RuleNode):
    """Sends the message data to ``restEndpointUrlPattern`` (``${metadata}`` / ``$[data]``
    patterns in the URL and header values); Success carries ``status``/``statusCode``/
    ``statusReason`` in the metadata and the answer as data, a non-2xx answer is a Failure."""

    tb_type = "rest.TbRestApiCallNode"
    category = "EXTERNAL"
    relations = (SUCCESS, FAILURE)
    external = True
    rest_endpoint_url_pattern = param.String(default="http://localhost/api")
    request_method: param.Selector[str] = param.Selector(
        default="POST", objects=["GET", "POST", "PUT", "DELETE", "PATCH"]
    )
    headers = param.Dict(default={"Content-Type": "application/json"})
    read_timeout_ms = param.Integer(default=0, bounds=(0, None), doc="0: 10 s.")
    ignore_request_body = param.Boolean(default=False)

    def check(self) -> None:
        url = self.rest_endpoint_url_pattern
        if not url.startswith(("http://", "https://")):
            raise ValueError("restEndpointUrlPattern must be an http:// or https:// URL")

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        url = substitute(self.rest_endpoint_url_pattern, msg)
        headers = {str(k): substitute(str(v), msg) for k, v in self.headers.items()}
        body = None
        if self.request_method in ("POST", "PUT", "PATCH") and not self.ignore_request_body:
            body = msg.data.encode() if isinstance(msg.data, str) else orjson.dumps(msg.data)
        req = urllib.request.Request(url, data=body, method=self.request_method, headers=headers)
        timeout = (self.read_timeout_ms or 10_000) / 1000
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the user's URL, by design)
                status, reason, answer = resp.status, resp.reason, resp.read()
        except urllib.error.HTTPError as exc:
            status, reason, answer = exc.code, exc.reason, exc.read()
        meta = {**msg.metadata, "status": str(reason), "statusCode": str(status), "statusReason": str(reason)}
        try:
            data: Any = orjson.loads(answer) if answer else {}
        except orjson.JSONDecodeError:
            data = answer.decode("utf-8", "replace")
        if not 200 <= status < 300:
            meta["error"] = f"HTTP {status} {reason}: {answer[:200].decode('utf-8', 'replace')}"
            return [(FAILURE, msg.copy(metadata=meta))]
        return [(SUCCESS, msg.copy(metadata=meta, data=data))]


def _payload(msg: TbMsg) -> bytes:
    return msg.data.encode() if isinstance(msg.data, str) else orjson.dumps(msg.data)


@register
class MqttNode(RuleNode):
    """Publishes the message data to ``topicPattern`` on an MQTT broker (paho-mqtt); Success
    once the broker acknowledged it (QoS 1 or 2; tbpanel's ``qos``, default 1)."""

    tb_type = "mqtt.TbMqttNode"
    category = "EXTERNAL"
    external = True
    topic_pattern = param.String(default="my-topic")
    host = param.String(default="localhost")
    port = param.Integer(default=1883, bounds=(1, 65535))
    connect_timeout_sec = param.Integer(default=10, bounds=(1, None))
    client_id = param.String(default=None, allow_None=True)
    append_client_id_suffix = param.Boolean(default=False)
    clean_session = param.Boolean(default=True)
    retained_message = param.Boolean(default=False)
    ssl = param.Boolean(default=False)
    credentials = param.Dict(default={"type": "anonymous"})
    qos = param.Integer(default=1, bounds=(0, 2), doc="tbpanel: MQTT QoS of the publish (ThingsBoard uses 1).")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._client: Any = None

    def check(self) -> None:
        if self.credentials.get("type", "anonymous") not in ("anonymous", "basic"):
            raise ValueError("MQTT credentials type must be anonymous or basic")
        if self.ssl:
            raise ValueError("MQTT over TLS is not supported yet")

    def _connect(self, ctx: Any) -> Any:
        import uuid

        import paho.mqtt.client as mqtt

        cid = self.client_id or f"tbpanel-{uuid.uuid4().hex[:12]}"
        if self.client_id and self.append_client_id_suffix:
            cid += f"_{uuid.uuid4().hex[:8]}"
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, clean_session=self.clean_session)
        if self.credentials.get("type") == "basic":
            c.username_pw_set(self.credentials.get("username") or "", self.credentials.get("password") or None)
        c.connect(self.host, self.port, keepalive=60)
        c.loop_start()
        deadline = time.monotonic() + self.connect_timeout_sec
        while not c.is_connected():
            if time.monotonic() > deadline:
                c.loop_stop()
                raise ConnectionError(f"MQTT broker {self.host}:{self.port} did not accept the connection")
            time.sleep(0.01)
        return c

    def _drop(self) -> None:
        c, self._client = self._client, None
        if c is not None:
            try:
                c.disconnect()
                c.loop_stop()
            except Exception:  # pragma: no cover - best effort
                pass

    def close(self) -> None:
        self._drop()

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        if self._client is None or not self._client.is_connected():
            self._drop()
            self._client = self._connect(ctx)
        topic = substitute(self.topic_pattern, msg)
        try:
            info = self._client.publish(topic, _payload(msg), qos=self.qos, retain=self.retained_message)
            info.wait_for_publish(timeout=self.connect_timeout_sec)
            if not info.is_published():
                raise ConnectionError(f"MQTT broker did not acknowledge the publish to {topic!r}")
        except Exception:
            self._drop()
            raise
        return [(SUCCESS, msg.copy(metadata={**msg.metadata, "topic": topic}))]


@register
class KafkaNode(RuleNode):
    """Sends the data to Kafka topic ``topicPattern`` (key ``keyPattern``; metadata as headers
    with ``addMetadataKeyValuesAsKafkaHeaders``); Success carries offset, partition and topic."""

    tb_type = "kafka.TbKafkaNode"
    category = "EXTERNAL"
    external = True
    topic_pattern = param.String(default="my-topic")
    key_pattern = param.String(default=None, allow_None=True)
    bootstrap_servers = param.String(default="localhost:9092")
    retries = param.Integer(default=0, bounds=(0, None))
    batch_size = param.Integer(default=16384, bounds=(1, None))
    linger = param.Integer(default=0, bounds=(0, None))
    buffer_memory = param.Integer(default=33554432, bounds=(1, None))
    acks: param.Selector[str] = param.Selector(default="-1", objects=["-1", "all", "0", "1"])
    other_properties = param.Dict(default={})
    add_metadata_key_values_as_kafka_headers = param.Boolean(default=False)
    kafka_headers_charset = param.String(default="UTF-8")
    request_timeout_ms = param.Integer(default=10_000, bounds=(100, None), doc="tbpanel: how long one send may take.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._producer: Any = None

    async def _send(self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> Any:
        from aiokafka import AIOKafkaProducer

        if self._producer is None:
            acks: Any = "all" if self.acks in ("-1", "all") else int(self.acks)
            p = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                acks=acks,
                linger_ms=self.linger,
                max_batch_size=self.batch_size,
                request_timeout_ms=self.request_timeout_ms,
            )
            try:
                await p.start()
            except BaseException:
                await p.stop()
                raise
            self._producer = p
        try:
            return await self._producer.send_and_wait(topic, value, key=key, headers=headers or None)
        except BaseException:
            p, self._producer = self._producer, None
            await p.stop()
            raise

    def close(self) -> None:
        from . import aio

        p, self._producer = self._producer, None
        if p is not None:
            try:
                aio.run(p.stop(), 10)
            except Exception:  # pragma: no cover - best effort
                pass

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        from . import aio

        topic = substitute(self.topic_pattern, msg)
        key = substitute(self.key_pattern, msg).encode() if self.key_pattern else None
        headers = []
        if self.add_metadata_key_values_as_kafka_headers:
            headers = [(f"tb_msg_md_{k}", v.encode(self.kafka_headers_charset)) for k, v in msg.metadata.items()]
        md = aio.run(self._send(topic, key, _payload(msg), headers), self.request_timeout_ms / 1000 + 5)
        meta = {**msg.metadata, "offset": str(md.offset), "partition": str(md.partition), "topic": md.topic}
        return [(SUCCESS, msg.copy(metadata=meta))]


_AMQP_PROPS: dict[str, dict[str, Any]] = {
    "BASIC": dict(content_type="application/octet-stream", delivery_mode=1),
    "TEXT_PLAIN": dict(content_type="text/plain", delivery_mode=1),
    "MINIMAL_BASIC": dict(delivery_mode=1),
    "MINIMAL_PERSISTENT_BASIC": dict(delivery_mode=2),
    "PERSISTENT_BASIC": dict(content_type="application/octet-stream", delivery_mode=2),
    "PERSISTENT_TEXT_PLAIN": dict(content_type="text/plain", delivery_mode=2),
}


@register
class RabbitMqNode(RuleNode):
    """Publishes the data to RabbitMQ (exchange and routing key patterns) with publisher
    confirms: Success only once the broker confirmed it."""

    tb_type = "rabbitmq.TbRabbitMqNode"
    category = "EXTERNAL"
    external = True
    exchange_name_pattern = param.String(default="")
    routing_key_pattern = param.String(default="")
    message_properties: param.Selector[str] = param.Selector(
        default="PERSISTENT_TEXT_PLAIN", objects=[*_AMQP_PROPS, ""]
    )
    host = param.String(default="localhost")
    port = param.Integer(default=5672, bounds=(1, 65535))
    virtual_host = param.String(default="/")
    username = param.String(default="guest")
    password = param.String(default="guest")
    automatic_recovery_enabled = param.Boolean(default=False)
    connection_timeout = param.Integer(default=60000, bounds=(1, None))
    handshake_timeout = param.Integer(default=10000, bounds=(1, None))
    client_properties = param.Dict(default={})

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._conn: Any = None
        self._channel: Any = None

    async def _publish(self, exchange: str, key: str, body: bytes) -> None:
        import aio_pika

        if self._channel is None or self._channel.is_closed:
            old, self._conn, self._channel = self._conn, None, None
            if old is not None:
                await old.close()
            self._conn = await aio_pika.connect(
                host=self.host,
                port=self.port,
                login=self.username,
                password=self.password,
                virtualhost=self.virtual_host,
                timeout=self.handshake_timeout / 1000,
            )
            self._channel = await self._conn.channel(publisher_confirms=True)
        props = _AMQP_PROPS.get(self.message_properties, {})
        try:
            ex = self._channel.default_exchange if not exchange else await self._channel.get_exchange(exchange)
            await ex.publish(aio_pika.Message(body, **props), routing_key=key, mandatory=False)
        except BaseException:
            conn, self._conn, self._channel = self._conn, None, None
            if conn is not None:
                await conn.close()
            raise

    def close(self) -> None:
        from . import aio

        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            try:
                aio.run(conn.close(), 10)
            except Exception:  # pragma: no cover - best effort
                pass

    def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        from . import aio

        exchange = substitute(self.exchange_name_pattern, msg)
        key = substitute(self.routing_key_pattern, msg)
        aio.run(self._publish(exchange, key, _payload(msg)), self.handshake_timeout / 1000 + 10)
        return [(SUCCESS, msg)]
