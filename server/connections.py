"""Connection-level limits uvicorn lacks: a deadline for request headers, a bounded SIGTERM stop.

uvicorn closes idle keep-alive connections (timeout_keep_alive) but has no header-read timeout: a
client that connects and sends nothing, or half a request line, holds a socket and a protocol object
for as long as it likes (2,000 of them stayed open for a minute in issue 10). HeaderTimeoutH11Protocol
arms a timer whenever the connection waits for a request's headers and closes the connection when it
fires, answering 408 if part of a request had arrived.

On SIGTERM uvicorn waits, by default forever, for open requests to finish; a tool call that runs for
minutes kept the server alive. StoppingServer bounds that wait and tells its owner a signal came, so
the owner can arm a deadline of its own (server/cli.py force-exits if the stop takes too long).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Generator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_KEEP_ALIVE_S = 5.0
DEFAULT_GRACEFUL_STOP_S = 2.0
# Requests in flight at once (server/http.py RequestLimits). A tool call holds its request for up to
# wait_seconds (50 s by default), so these bound open streams too; 200 concurrent clients on one token
# fit (the reliability bench runs that many).
DEFAULT_MAX_REQUESTS = 512
DEFAULT_MAX_REQUESTS_PER_TOKEN = 256

_TIMEOUT_BODY = b"Request headers not received in time; connection closed.\n"
_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY
)


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus: request headers must be complete `header_timeout` seconds after
    the connection opens (or, on a kept-alive connection, after the next request's first byte)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    @classmethod
    def with_timeout(cls, seconds: float) -> type[HeaderTimeoutH11Protocol]:
        return type(cls.__name__, (cls,), {"header_timeout": float(seconds)})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_header_timer()
        elif self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # part of a request line or headers: the clock runs (once armed, it keeps running)
        else:
            self._cancel_header_timer()  # the request's headers are in

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self.header_timeout > 0:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        partial = bool(self.conn.trailing_data[0])
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s: no request headers after %.1f s; closing", self.client, self.header_timeout)
        if partial:
            self.transport.write(_REQUEST_TIMEOUT)
        self.transport.close()


class StoppingServer(uvicorn.Server):
    """A uvicorn server whose stop on SIGTERM/SIGINT is bounded and reported.

    `on_signal(sig)` runs (in the main thread, from the signal handler) on the first signal, so the
    caller can start a deadline. Unlike uvicorn.Server, it does not re-raise the signal after the
    graceful stop: run() returns and the caller finishes its own cleanup (jobs) and exits.
    """

    def __init__(self, config: uvicorn.Config, *, on_signal: Callable[[int], None] | None = None) -> None:
        super().__init__(config)
        self.on_signal = on_signal
        self.stop_signal: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        first = self.stop_signal is None
        if first:
            self.stop_signal = sig
        super().handle_exit(sig, frame)
        if first and self.on_signal is not None:
            self.on_signal(sig)
