"""Request bodies sent with ``Content-Encoding: gzip`` (ThingsBoard's clients may compress).

A body is inflated as it arrives, a bounded piece at a time, and never beyond the body limit
of its route: a small compressed body that would inflate to gigabytes (a "zip bomb") is refused
with 413 after at most ``limit + 1`` decompressed bytes, never inflated whole first. ``identity``
(or no header) passes the body through; any other coding gets 415 naming it, before the body
is read. Tornado's own ``decompress_request`` is not used: it inflates without a limit.
"""

from __future__ import annotations

import zlib

#: Codings this server decodes (``x-gzip`` is gzip's old name, RFC 9110 §8.4.1.3).
GZIP = ("gzip", "x-gzip")
IDENTITY = "identity"
#: Inflate at most this much per step, so memory stays bounded whatever the ratio.
STEP = 64 * 1024


class BodyEncodingError(Exception):
    """A body that cannot be decoded: ``status`` 400 (corrupt), 413 (too large), 415 (unknown)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def codings(header: str | None) -> list[str]:
    """The codings of a ``Content-Encoding`` header that need decoding, in the order applied;
    415 for one this server does not decode."""
    out = []
    for raw in (header or "").split(","):
        name = raw.strip().lower()
        if not name or name == IDENTITY:
            continue
        if name not in GZIP:
            shown = raw.strip()[:40]
            raise BodyEncodingError(
                415, f"Unsupported Content-Encoding {shown!r}: only gzip (or identity) request bodies are accepted"
            )
        out.append("gzip")
    return out


class GzipInflater:
    """Streaming gzip decoder of one body, capped at ``limit`` decompressed bytes; handles
    gzip files of several members (concatenated ``gzip`` output) as one stream."""

    def __init__(self, limit: int):
        self.limit = limit
        self.size = 0
        self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._any = False

    def feed(self, data: bytes) -> bytes:
        """Decompress ``data`` (the next compressed bytes); 413 once past the limit."""
        out = []
        self._any = self._any or bool(data)
        while True:
            # never more than limit + 1 bytes in total: enough to know the limit is passed
            cap = min(STEP, self.limit - self.size + 1)
            try:
                piece = self._z.decompress(data, cap)
            except zlib.error as exc:
                raise BodyEncodingError(400, f"Invalid gzip body: {exc}") from None
            self.size += len(piece)
            if self.size > self.limit:
                raise BodyEncodingError(
                    413, f"Payload exceeds the limit of {self.limit} bytes once decompressed (Content-Encoding: gzip)"
                )
            out.append(piece)
            if self._z.eof:  # a member ended: what follows is the next member (or trailing junk)
                data = self._z.unused_data
                if not data:
                    break
                self._z = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                continue
            data = self._z.unconsumed_tail
            if not data and len(piece) < cap:  # input used up and no output pending
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of the body: 400 if the compressed stream stopped before its end."""
        if not self._any:
            return b""
        if not self._z.eof:
            raise BodyEncodingError(400, "Invalid gzip body: the compressed data is truncated")
        return b""


def decode_body(header: str | None, body: bytes, limit: int) -> bytes:
    """The body as sent before ``Content-Encoding`` was applied, at most ``limit`` bytes."""
    for _ in codings(header)[::-1]:  # the last coding applied is undone first
        inflater = GzipInflater(limit)
        body = inflater.feed(body) + inflater.finish()
    return body


class StreamedBody:
    """A request body collected chunk by chunk as it streams in (the device API), decoded on
    the way and capped at ``limit`` bytes after decoding. A refusal is kept, not raised, while
    the chunks arrive (tornado's ``data_received`` is no place for it), and :meth:`result`
    raises it; the chunks of a refused body are dropped at once."""

    def __init__(self, content_encoding: str | None, limit: int):
        self.limit = limit
        self._chain = [GzipInflater(limit) for _ in codings(content_encoding)]  # 415 here
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: BodyEncodingError | None = None

    def feed(self, chunk: bytes) -> None:
        if self._error is not None:
            return
        try:
            for inflater in reversed(self._chain):
                chunk = inflater.feed(chunk)
        except BodyEncodingError as exc:
            self._refuse(exc)
            return
        self._size += len(chunk)
        if self._size > self.limit:
            self._refuse(BodyEncodingError(413, f"Payload exceeds the limit of {self.limit} bytes"))
            return
        self._chunks.append(chunk)

    def _refuse(self, exc: BodyEncodingError) -> None:
        self._error = exc
        self._chunks.clear()

    def result(self) -> bytes:
        """The whole decoded body; raises the refusal (400 corrupt, 413 too large) if any."""
        if self._error is None:
            try:
                tail = b""
                for inflater in reversed(self._chain):
                    tail = inflater.feed(tail) + inflater.finish()
                self._size += len(tail)
                if self._size > self.limit:
                    raise BodyEncodingError(413, f"Payload exceeds the limit of {self.limit} bytes")
                self._chunks.append(tail)
            except BodyEncodingError as exc:
                self._refuse(exc)
        if self._error is not None:
            raise self._error
        return b"".join(self._chunks)
