"""A paho-mqtt 2.x device that takes server-side RPC: it subscribes to the request topic (long
or short form), records every request and answers two-way ones through ``answer``."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from typing import Any


class PahoRpcDevice:
    """``with PahoRpcDevice(port, token) as dev:`` — subscribed once the block starts."""

    def __init__(
        self,
        port: int,
        token: str,
        *,
        short: bool = False,
        answer: Callable[[str, dict], Any] | None = lambda method, params: {"echo": method, "params": params},
        version: int = 5,
        client_id: str | None = None,
    ):
        import paho.mqtt.client as mqtt

        self.port, self.short, self.answer = port, short, answer
        self.requests: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.responses: queue.Queue[tuple[str, Any]] = queue.Queue()
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "", protocol=protocol)
        self.client.username_pw_set(token)
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()

    @property
    def request_prefix(self) -> str:
        return "v2/r/req/" if self.short else "v1/devices/me/rpc/request/"

    @property
    def response_prefix(self) -> str:
        return "v2/r/res/" if self.short else "v1/devices/me/rpc/response/"

    def __enter__(self) -> PahoRpcDevice:
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        if not connected.wait(20):
            raise TimeoutError("no CONNACK")
        self.client.subscribe([(self.request_prefix + "+", 1), (self.response_prefix + "+", 1)])
        if not self._subscribed.wait(20):
            raise TimeoutError("no SUBACK")
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_message(self, client, userdata, msg) -> None:
        body = json.loads(msg.payload) if msg.payload else None
        if msg.topic.startswith(self.request_prefix):
            rid = msg.topic[len(self.request_prefix) :]
            self.requests.put((rid, body))
            if self.answer is not None:
                reply = self.answer(body["method"], body.get("params"))
                if reply is not None:
                    client.publish(self.response_prefix + rid, json.dumps(reply), qos=1)
        elif msg.topic.startswith(self.response_prefix):
            self.responses.put((msg.topic[len(self.response_prefix) :], body))

    def call_server(self, n: int, method: str, params: Any = None) -> Any:
        """A device → server request on ``rpc/request/{n}``: the server's answer."""
        self.client.publish(self.request_prefix + str(n), json.dumps({"method": method, "params": params}), qos=1)
        while True:
            rid, body = self.responses.get(timeout=20)
            if rid == str(n):
                return body
