"""A real HTTP server on a loopback port that records what it receives (the REST node's
"external system"): tornado on its own thread and IOLoop."""

from __future__ import annotations

import asyncio
import socket
import threading

import tornado.httpserver
import tornado.web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """``requests``: ``(method, path, body bytes, headers dict)`` in arrival order; ``status``:
    what it answers (change it to make the node fail)."""

    def __init__(self, port: int | None = None, delay_s: float = 0.0) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.status = 200
        #: ``fail(path, body) -> bool``: answer 503 to this request instead of ``status``
        self.fail = None
        self.delay_s = delay_s
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()

    def start(self) -> Recorder:
        rec = self

        class Handler(tornado.web.RequestHandler):
            async def _any(self, *_: str) -> None:
                if rec.delay_s:
                    await asyncio.sleep(rec.delay_s)
                with rec._lock:
                    rec.requests.append(
                        (self.request.method, self.request.path, self.request.body, dict(self.request.headers))
                    )
                self.set_status(rec.status)
                self.write({"ok": rec.status < 300, "n": len(rec.requests)})

            get = post = put = delete = patch = _any

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            server = tornado.httpserver.HTTPServer(tornado.web.Application([(r"/(.*)", Handler)]))
            server.listen(self.port, "127.0.0.1")
            self._server = server
            self._ready.set()
            loop.run_forever()
            server.stop()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = None
            self._ready.clear()

    def bodies(self) -> list[bytes]:
        with self._lock:
            return [r[2] for r in self.requests]
