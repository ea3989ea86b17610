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


def configure(level: str = "INFO") -> None:
    """Root logging for ``tbpanel serve``; per-request access lines only at DEBUG."""
    numeric = getattr(logging, str(level).upper(), logging.INFO)
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    access = logging.getLogger("tornado.access")
    access.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    for name in ("tornado.access", "tornado.application", "tornado.general", "tbpanel", "bokeh"):
        logging.getLogger(name).addFilter(RedactSecrets())
