"""A conversation with one solution child: commands in, replies out, and a watchdog on both.

Every request has a deadline; a child that dies, hangs or outgrows its memory budget is killed
(its whole process group) and the request answers with why, never waits forever.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

from kda_mcp.tools.evaluation.protocol import decode
from kda_mcp.tools.procs import kill_group

MEMORY_POLL_S = 0.25


def rss_bytes(pid: int) -> int:
    """Resident memory of pid and its descendants (a solution may fork helpers)."""
    total = 0
    for candidate in [pid, *_descendants(pid)]:
        try:
            for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except (OSError, ValueError):
            continue
    return total


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        listing = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return children
    for child in listing:
        children.append(int(child))
        children.extend(_descendants(int(child)))
    return children


def default_memory_limit() -> int:
    """Half of physical RAM: a solution that wants more is broken, not ambitious."""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 64 * 2**30
    return pages // 2


@dataclass
class Reply:
    ok: bool
    message: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None  # why there was no reply: "timeout", "exited", "memory"
    wall_s: float = 0.0


class ChildSession:
    def __init__(self, proc: anyio.abc.Process, nonce: str, memory_limit: int) -> None:
        self.proc = proc
        self.nonce = nonce
        self.memory_limit = memory_limit
        self.log: deque[str] = deque(maxlen=200)  # the solution's own output, last lines
        self.killed_for: str | None = None
        self._send, self._receive = anyio.create_memory_object_stream[dict[str, Any]](100)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        buffer = ""
        async for chunk in TextReceiveStream(self.proc.stdout, errors="replace"):
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            for line in lines:
                message = decode(self.nonce, line)
                if message is None:
                    self.log.append(line[:500])
                else:
                    await self._send.send(message)
        await self._send.aclose()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        buffer = ""
        async for chunk in TextReceiveStream(self.proc.stderr, errors="replace"):
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            self.log.extend(line[:500] for line in lines)

    async def _watch_memory(self) -> None:
        while self.proc.returncode is None:
            if rss_bytes(self.proc.pid) > self.memory_limit:
                self.killed_for = "memory"
                self.log.append(f"[kda-mcp] killed: host memory above {self.memory_limit / 2**30:.1f} GiB")
                kill_group(self.proc)
                return
            await anyio.sleep(MEMORY_POLL_S)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.log)[-lines:])

    async def receive(self, timeout: float) -> Reply:
        started = time.monotonic()
        with anyio.move_on_after(timeout):
            try:
                message = await self._receive.receive()
                return Reply(True, message, wall_s=time.monotonic() - started)
            except anyio.EndOfStream:
                with anyio.move_on_after(5):
                    await self.proc.wait()
                return Reply(False, failure=self.killed_for or "exited", wall_s=time.monotonic() - started)
        kill_group(self.proc)
        return Reply(False, failure="timeout", wall_s=time.monotonic() - started)

    async def request(self, command: dict[str, Any], timeout: float) -> Reply:
        assert self.proc.stdin is not None
        try:
            await self.proc.stdin.send((json.dumps(command) + "\n").encode())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            return Reply(False, failure=self.killed_for or "exited")
        return await self.receive(timeout)

    @property
    def exit_description(self) -> str:
        code = self.proc.returncode
        if self.killed_for == "memory":
            return "used more host memory than allowed and was killed"
        if code is None:
            return "stopped responding"
        if code < 0:
            return f"was killed by signal {-code}" + (" (segmentation fault)" if code == -11 else "")
        return f"exited with status {code}"


@asynccontextmanager
async def child_session(proc: anyio.abc.Process, *, nonce: str, memory_limit: int) -> AsyncIterator[ChildSession]:
    """Talk to an already started child (its own session, pipes on all three streams); kill it on exit."""
    session = ChildSession(proc, nonce, memory_limit)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(session._read_stdout)
            tg.start_soon(session._read_stderr)
            tg.start_soon(session._watch_memory)
            try:
                yield session
            finally:
                kill_group(proc)
                tg.cancel_scope.cancel()
    finally:
        kill_group(proc)
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(10):
                await proc.wait()


def session_for(proc: anyio.abc.Process, job: Path, *, memory_limit: int | None = None) -> Any:
    """The session of a child working on `job` (whose file holds the nonce its lines carry)."""
    nonce = json.loads(job.read_text())["nonce"]
    return child_session(proc, nonce=nonce, memory_limit=memory_limit or default_memory_limit())


def new_nonce() -> str:
    return secrets.token_hex(8)
