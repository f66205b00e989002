"""Messages between the processes of a benchmark: JSON lines over a Unix socket, with file
descriptors (shared GPU memory) passed alongside.

Used by the orchestrator and the judge, and by the judge and each executor. A socketpair has two
ends and nobody else can write into it: unlike a pipe found under /proc or a nonce in a file, a
message on it comes from the process at the other end. What an executor sends is still untrusted
data: every message is size-capped and must be a JSON object, and the receiver checks its fields.
"""

from __future__ import annotations

import array
import json
import select
import socket
import time
from collections import deque
from typing import Any

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_FDS = 16


class WireClosed(EOFError):
    """The other end closed the connection (it exited or was killed)."""


class WireError(ValueError):
    """The other end sent something that is not a message."""


class Wire:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._fds: deque[int] = deque()
        self._messages: deque[dict[str, Any]] = deque()

    @classmethod
    def from_fd(cls, fd: int) -> Wire:
        return cls(socket.socket(fileno=fd))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message: dict[str, Any], fds: tuple[int, ...] | list[int] = ()) -> None:
        data = json.dumps({**message, "nfds": len(fds)} if fds else message, separators=(",", ":")).encode() + b"\n"
        if fds:
            # The descriptors travel with the first byte of the message; the rest follows.
            sent = socket.send_fds(self.sock, [data[:1]], list(fds))
            data = data[sent:]
        self.sock.sendall(data)

    def _fill(self, timeout: float | None) -> None:
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0))
            if not ready:
                raise TimeoutError
        fds = array.array("i")
        data, ancillary, _, _ = self.sock.recvmsg(1 << 20, socket.CMSG_LEN(MAX_FDS * fds.itemsize))
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        self._fds.extend(fds)
        if not data:
            raise WireClosed("the other end closed the connection")
        self._buffer += data
        if len(self._buffer) > MAX_MESSAGE_BYTES and b"\n" not in self._buffer:
            raise WireError(f"a message over {MAX_MESSAGE_BYTES} bytes")
        while b"\n" in self._buffer:
            line, _, rest = bytes(self._buffer).partition(b"\n")
            self._buffer = bytearray(rest)
            try:
                message = json.loads(line)
            except ValueError as exc:
                raise WireError(f"not JSON: {line[:80]!r}") from exc
            if not isinstance(message, dict):
                raise WireError("a message must be a JSON object")
            self._messages.append(message)

    def recv(self, timeout: float | None = None) -> tuple[dict[str, Any], list[int]]:
        """The next message and the descriptors that came with it. Raises TimeoutError, WireClosed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._messages:
            self._fill(None if deadline is None else deadline - time.monotonic())
        message = self._messages.popleft()
        count = message.get("nfds", 0)
        if not isinstance(count, int) or not 0 <= count <= MAX_FDS or count > len(self._fds):
            raise WireError(f"a message announces {count!r} descriptors; {len(self._fds)} arrived")
        return message, [self._fds.popleft() for _ in range(count)]

    def poll(self) -> dict[str, Any] | None:
        """A message if one is already waiting (descriptors stay queued), else None; never blocks."""
        if not self._messages:
            try:
                self._fill(0)
            except TimeoutError:
                return None
        return self._messages[0] if self._messages else None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def pair() -> tuple[socket.socket, socket.socket]:
    """Two connected ends; the second is inheritable so a child can be given it."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.set_inheritable(True)
    return a, b
