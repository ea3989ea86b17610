"""A minimal blocking MQTT client on the server's own codec, for the answers paho hides
(CONNACK codes, PUBACK reasons, closes)."""

from __future__ import annotations

import json
import socket

from tbpanel.transports import mqtt_codec as c


class RawClient:
    """A minimal blocking MQTT client built on the server's own codec (answers parsed raw)."""

    def __init__(self, port: int, level: int = c.MQTT_311):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.level = level
        self.buf = b""

    def connect(
        self, username: str | None, client_id: str = "raw", will: c.Will | None = None, password: bytes | None = None
    ) -> int:
        self.sock.sendall(c.encode_connect(c.Connect(self.level, client_id, 30, True, username, password, will=will)))
        first, body = self.read()
        assert first >> 4 == c.CONNACK
        self.connack_body = body
        return body[1]

    def read(self) -> tuple[int, bytes]:
        while True:
            head = c.split_fixed_header(self.buf)
            if head and len(self.buf) >= head[2] + head[1]:
                first, length, size = head
                body = self.buf[size : size + length]
                self.buf = self.buf[size + length :]
                return first, body
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by server")
            self.buf += chunk

    def publish(
        self,
        topic: str,
        payload: bytes | dict,
        qos: int = 1,
        packet_id: int = 1,
        retain: bool = False,
        dup: bool = False,
    ) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        self.sock.sendall(c.publish(self.level, topic, payload, qos, packet_id, retain, dup=dup))

    def puback(self, ptype: int = c.PUBACK) -> tuple[int, int]:
        """(packet id, reason code) of the next PUBACK (or PUBREC / PUBCOMP with ``ptype``)."""
        first, body = self.read()
        assert first >> 4 == ptype, first
        return int.from_bytes(body[:2], "big"), (body[2] if len(body) > 2 else 0)

    def pubrel(self, packet_id: int) -> None:
        self.sock.sendall(c.puback(self.level, packet_id, ptype=c.PUBREL))

    def closed(self) -> bool:
        """True once the server has closed the connection (after any packets it sent)."""
        try:
            while True:
                self.read()
        except (ConnectionError, OSError):
            return True

    def close(self) -> None:
        self.sock.close()
