"""uvicorn's httptools HTTP protocol with a request read deadline, a header size limit and JSON errors.

Stock uvicorn has no timeout while a request is being received: a client that
opens a connection and then sends nothing, or dribbles its headers or body a
byte at a time (slowloris), holds the connection for ever, and enough of them
exhaust the server's file descriptors. Here every request must arrive whole
within `read_timeout_seconds` of its first byte (of the connection, for the
first request); otherwise the client gets 408 with a JSON error body and the
connection is closed. Time spent running the model or writing the response
does not count. Nor does httptools limit the request line and headers, which
it buffers whole: past `MAX_HEADER_BYTES` the client gets 431. Malformed HTTP,
which uvicorn answers with a plain-text 400, gets TF Serving's `{"error": ...}`
body instead, so every answer is JSON.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tfrs_mm.serving.errors import error_body

# Long enough for a large body on a slow link; short enough that stalled connections cannot pile up.
DEFAULT_READ_TIMEOUT_SECONDS = 30.0
# Request line plus headers. Real clients send well under 8 KiB (nginx allows 32 KiB by default).
MAX_HEADER_BYTES = 64 * 2**10


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = error_body(message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class DeadlineHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that times out requests not received within `read_timeout_seconds`.

    The deadline is armed when a connection opens and when a request's first
    byte arrives on a kept-alive one, and disarmed once the request is whole.
    """

    read_timeout_seconds = DEFAULT_READ_TIMEOUT_SECONDS
    _deadline: asyncio.TimerHandle | None = None
    _headers_done = False  # the request being received has reached the app (it has a cycle)
    _head_bytes = 0  # bytes received while the request line and headers were incomplete

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is the cheapest slowloris

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # bytes on an idle kept-alive connection, even blank lines the parser skips
        if not self._headers_done:
            self._head_bytes += len(data)
        super().data_received(data)
        # Checked after parsing, as a chunk may hold headers and body: the parser holds at most one
        # read (256 KiB) beyond the limit.
        if not self._headers_done and self._head_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._reject(431, "Request Header Fields Too Large", f"Headers exceed {MAX_HEADER_BYTES} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._headers_done = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()  # received whole: the model may take as long as it needs
        self._headers_done, self._head_bytes = False, 0  # the next request's count starts

    def send_400_response(self, msg: str) -> None:
        self._reject(400, "Bad Request", msg)

    def _reject(self, status: int, reason: str, message: str) -> None:
        self._disarm()
        self.transport.write(_raw_response(status, reason, message))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.read_timeout_seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and not self._headers_done:
            self._arm()  # an earlier, pipelined request is still being answered: time this one after it
            return
        # After an early answer (413 before the body was read) the client only loses the connection.
        if not (self._headers_done and self.cycle is not None and self.cycle.response_started):
            message = f"Request not received within {self.read_timeout_seconds:g} seconds"
            self.transport.write(_raw_response(408, "Request Timeout", message))
        self.logger.warning("closed a connection whose request did not arrive within the read timeout")
        self.transport.close()  # an app still reading the body then gets http.disconnect


def deadline_protocol(read_timeout_seconds: float) -> type[DeadlineHttpToolsProtocol]:
    """A `DeadlineHttpToolsProtocol` subclass with this timeout, for `uvicorn.Config(http=...)`."""
    if read_timeout_seconds <= 0:
        raise ValueError(f"read_timeout_seconds must be positive, got {read_timeout_seconds}")
    attributes = {"read_timeout_seconds": float(read_timeout_seconds)}
    return type("DeadlineHttpToolsProtocol", (DeadlineHttpToolsProtocol,), attributes)
