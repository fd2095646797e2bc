"""uvicorn's httptools protocol with a request header size cap (431) and a read deadline (408).

BentoML 1.4 runs uvicorn with httptools and passes it no limits, and uvicorn has none of its own
for httptools: a 32 MiB header line was answered 200, ten such connections held open added
250 MiB per worker, and 200 connections sending their headers slowly stayed open for 90 s.
`serving.http_limits.install()` makes this subclass uvicorn's "auto" protocol; it adds exactly
two checks.

- Header bytes: counted from the end of one request (or the connection's start) to the end of
  the next request's headers; past `max_header_bytes` the answer is 431 and the connection
  closes. httptools buffers a header line whole before it reports it, so the count is of raw
  bytes received, checked after each read: the buffer never holds more than the cap plus one
  read.
- Header time: a request's headers must be complete within `header_timeout` seconds of the
  connection's start or of its first byte (keep-alive idling is uvicorn's own
  `timeout_keep_alive`, 5 s); otherwise 408 and close.

It also writes each answer in one piece: uvicorn writes a response's status line and headers as
soon as the app sends `http.response.start`, then the body, two `send()` calls and two TCP
segments (the socket has TCP_NODELAY), so the client wakes twice per answer. `_JoinedWrites`
holds a write until the next one and sends both at once (a lone write goes out at the end of
the event loop's turn, or before a close).

Environment: WALSREC_MAX_HEADER_BYTES (default 16384, as uvicorn's h11 parser allows) and
WALSREC_HEADER_TIMEOUT (seconds, default 10). This module imports httptools: uvicorn loads it
only where httptools is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

__all__ = ["BoundedHttpToolsProtocol", "configure"]

DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_HEADER_TIMEOUT = 10.0
# After a refusal the connection reads and drops what the client still sends for this long,
# then closes: closing with unread bytes would reset it and lose the answer (lingering close).
LINGER_SECONDS = 1.0
JOIN_WRITES = True


class _JoinedWrites:
    """A transport that holds a write until the next one (or the end of the event loop's turn)
    and sends the two as one: an answer's headers go out with its body, as early as the body
    alone would."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        held, self._held = self._held, None
        if not self._transport.is_closing():
            self._transport.writelines([held, data])  # one writev(), no copy of a large body

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(held)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header size cap and a header read deadline."""

    max_header_bytes = DEFAULT_MAX_HEADER_BYTES
    header_timeout = DEFAULT_HEADER_TIMEOUT

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if JOIN_WRITES:
            self.transport = _JoinedWrites(transport, self.loop)  # type: ignore[assignment]
        self._refused = False
        self._in_headers = True
        self._header_bytes = 0
        self._header_deadline: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped: the answer is sent and the connection is closing
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if (
            self._in_headers
            and self._header_bytes > self.max_header_bytes
            and not self.transport.is_closing()
            and not self._refused
        ):
            self._refuse(431, f"request headers exceed {self.max_header_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_bytes = 0
        self._cancel_header_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_headers = True  # what arrives next is the next request's headers

    def _arm_header_deadline(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if self._in_headers and not self.transport.is_closing() and not self._refused:
            self._refuse(408, f"request headers not received within {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode("ascii")
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[status],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
        )
        self._refused = True
        self._cancel_header_deadline()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def configure(environ: Mapping[str, str]) -> None:
    """Set the limits from WALSREC_MAX_HEADER_BYTES and WALSREC_HEADER_TIMEOUT."""
    BoundedHttpToolsProtocol.max_header_bytes = int(
        environ.get("WALSREC_MAX_HEADER_BYTES", DEFAULT_MAX_HEADER_BYTES)
    )
    BoundedHttpToolsProtocol.header_timeout = float(
        environ.get("WALSREC_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT)
    )
    global JOIN_WRITES
    JOIN_WRITES = environ.get("WALSREC_JOIN_WRITES", "1").strip().lower() not in ("0", "false")
