"""A real S3 API for the cold-tier tests: ``moto_server`` as a child process on a free loopback
port, stopped by its PID. Its access log (werkzeug's, one line per request) is how the tests
count the requests tbpanel makes: what the server saw, not what a client hook believes it sent."""

from __future__ import annotations

import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.rules.brokers import Broker
from tests.rules.recorder import free_port

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
_LINE = re.compile(r'"(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[\d.]+" (\d{3})')


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    status: int

    @property
    def kind(self) -> str:
        """``GET`` of an object, ``LIST`` (a GET of a bucket with ``list-type``), or the method."""
        if self.method == "GET" and ("list-type=" in self.path or "?prefix=" in self.path):
            return "LIST"
        return self.method


class MotoS3(Broker):
    """One ``moto_server`` (started and stopped by PID like the rule engine's brokers);
    :meth:`bucket` makes a bucket, :meth:`requests` reads the access log."""

    key = "tbpanel-test-key"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.port = free_port()
        #: random per server, so that a test can look for it in logs and never match by chance
        self.secret = f"tbpanel-test-secret-{uuid.uuid4().hex}"
        self._fs: Any = None

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)], {"PYTHONUNBUFFERED": "1"}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def options(self) -> dict[str, str]:
        """The storage options of an ``s3://`` URL on this server (s3fs's names)."""
        return {"endpoint_url": self.endpoint, "key": self.key, "secret": self.secret}

    @property
    def log_path(self) -> Path:
        return Path(self.log.name)

    def filesystem(self):
        """An s3fs file system on this server (for the tests' own looks at the bucket; no
        listing cache, so it always sees what tbpanel did since)."""
        if self._fs is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(
                key=self.key, secret=self.secret, endpoint_url=self.endpoint, use_listings_cache=False
            )
        return self._fs

    def bucket(self, name: str | None = None) -> str:
        """A new, empty bucket; its name."""
        name = name or f"tbpanel-{uuid.uuid4().hex[:12]}"
        self.filesystem().mkdir(name)
        return name

    def requests(self) -> list[Request]:
        """Every S3 request the server logged so far (its own /moto-api/ calls left out)."""
        text = self.log_path.read_text(errors="replace")
        return [
            Request(m.group(1), m.group(2), int(m.group(3)))
            for m in _LINE.finditer(text)
            if not m.group(2).startswith("/moto-api")
        ]

    def requests_since(self, mark: int, *, settle_s: float = 0.05) -> list[Request]:
        """The requests after the first ``mark`` (a ``len(requests())``). The server writes a
        line as it answers, so a last line may lag the answer by a moment: read until two
        looks ``settle_s`` apart agree."""
        seen = self.requests()
        while True:
            time.sleep(settle_s)
            again = self.requests()
            if len(again) == len(seen):
                return again[mark:]
            seen = again


def count(requests: list[Request]) -> dict[str, int]:
    """``{kind: n}`` of a list of requests (kinds as :attr:`Request.kind`)."""
    out: dict[str, int] = {}
    for r in requests:
        out[r.kind] = out.get(r.kind, 0) + 1
    return out


class HoldingProxy:
    """A loopback TCP proxy in front of a server that passes everything through until a request
    line starts with ``trigger`` a second time: from that request on, nothing more is forwarded
    (the connections stay open, unanswered). :meth:`wait` returns once that second request is
    held *and* the first one was answered, so a test that kills the client then knows exactly
    where it was: the first request of the kind done, the next not (no timing involved)."""

    def __init__(self, target_port: int, trigger: bytes) -> None:
        import socket
        import threading

        self.trigger = trigger
        self._holding = threading.Event()
        self._first_answered = threading.Event()
        self._first_conn: object = None
        self._lock = threading.Lock()
        self._target = target_port
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._conns: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait(self, timeout: float) -> bool:
        return self._holding.wait(timeout) and self._first_answered.wait(timeout)

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._conns += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client), daemon=True).start()

    def _requests(self, src, dst) -> None:
        tail = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if self._holding.is_set() and (dst is not self._first_conn or self._first_answered.is_set()):
                return  # holding: never forward another byte (the first request's body still goes)
            window = tail + data
            at = window.find(self.trigger)
            if at != -1 and at + len(self.trigger) <= len(tail):  # seen whole in the previous chunk
                at = window.find(self.trigger, at + 1)
            if at != -1:
                with self._lock:
                    first = self._first_conn is None
                    if first:
                        self._first_conn = dst
                if not first:
                    self._holding.set()
                    try:
                        dst.sendall(window[len(tail) : at] if at >= len(tail) else b"")
                    except OSError:
                        pass
                    return
            try:
                dst.sendall(data)
            except OSError:
                return
            tail = window[-len(self.trigger) :]

    def _answers(self, src, dst) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    return
                dst.sendall(data)
            except OSError:
                return
            if self._first_conn is src and not data.startswith(b"HTTP/1.1 1"):  # its answer (not a 100 Continue)
                self._first_answered.set()

    def close(self) -> None:
        self._sock.close()
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
