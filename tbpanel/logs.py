"""Logging set-up that keeps secrets out of logs.

Device access tokens travel in URL paths (``/api/v1/{token}/telemetry``, as ThingsBoard
defines it) and JWTs in query strings (``?token=``); tornado's access log would print both.
"""

from __future__ import annotations

import logging
import re

_SECRETS = [
    (re.compile(r"(/api/v1/)[^/\s?]+"), r"\1***"),
    (re.compile(r"([?&](?:token|accessToken)=)[^&\s]+"), r"\1***"),
]


def redact(text: str) -> str:
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return text


class RedactSecrets(logging.Filter):
    """Rewrites a record's message so that tokens never reach a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class ClosedSocketWrites(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for a write to a WebSocket that closed.

    Panel pushes document patches without awaiting the writes (``dispatch_tornado``); when a
    browser tab closes mid-push, the write fails and asyncio reports it as an unretrieved error
    with two tracebacks. A closed tab is not a server error, so it is logged as one DEBUG line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and type(exc).__name__ in ("WebSocketClosedError", "StreamClosedError"):
            logging.getLogger("tbpanel.server").debug("write to a closed WebSocket dropped")
            return False
        return True


def configure(level: str = "INFO") -> None:
    """Root logging for ``tbpanel serve``; per-request access lines only at DEBUG."""
    numeric = getattr(logging, str(level).upper(), logging.INFO)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access = logging.getLogger("tornado.access")
    access.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    for name in ("tornado.access", "tornado.application", "tornado.general", "tbpanel", "bokeh"):
        logging.getLogger(name).addFilter(RedactSecrets())
    logging.getLogger("asyncio").addFilter(ClosedSocketWrites())
