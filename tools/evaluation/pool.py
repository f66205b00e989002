"""The processes of a benchmark: the trusted judge and the sandboxed executors, started ahead of
need so a benchmark does not wait for Python, torch and flashinfer-bench to import.

A spare has imported the harness and nothing else: it has never run agent code, so handing it a
solution is as clean as starting a fresh process. Each is used once. Warming is CPU work only
(no CUDA context until its spec arrives), so spares start while another job times on the GPU.
An executor spare lives in its role's room, as its role's user, from the start.
"""

from __future__ import annotations

import logging
import sys
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from anyio.streams.text import TextReceiveStream

from kda_mcp.tools.evaluation.wire import Wire, pair
from kda_mcp.tools.sandbox.launch import child_env, prepare_room_dirs, start_child
from kda_mcp.tools.sandbox.sandbox import Room, Sandbox, terminate_group
from kda_mcp.tools.sandbox.specs import WARM_MARKER

log = logging.getLogger(__name__)
WARM_TIMEOUT_S = 180
LOG_LINES = 200


@dataclass
class Commands:
    """How children start; tests substitute fakes that need no GPU."""

    judge: list[str] = field(default_factory=lambda: [sys.executable, "-m", "kda_mcp.tools.evaluation.judge"])
    executor: list[str] = field(default_factory=lambda: [sys.executable, "-m", "kda_mcp.tools.evaluation.executor"])
    warm: bool = True


@dataclass
class Child:
    """A started judge or executor: its process, our end of its socket, its room, its output."""

    kind: str
    proc: anyio.abc.Process
    wire: Wire
    room: Room | None
    slot: str
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    killed_for: str | None = None  # why we killed it, when we did

    def tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.log)[-lines:])

    async def send_spec(self, spec_json: str) -> None:
        """Hand the child its spec; a child that already died says how when it is next asked."""
        assert self.proc.stdin is not None
        try:
            await self.proc.stdin.send((spec_json + "\n").encode())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    def kill(self) -> None:
        terminate_group(self.proc.pid)
        self.wire.close()

    @property
    def exit_description(self) -> str:
        code = self.proc.returncode
        if code is None:
            return "stopped responding"
        if code < 0:
            return f"was killed by signal {-code}" + (" (segmentation fault)" if code == -11 else "")
        return f"exited with status {code}"


async def _pump(child: Child, stream: Any) -> None:
    """Keep the last lines a child printed (the log an agent sees when it fails)."""
    buffer = ""
    try:
        async for chunk in TextReceiveStream(stream, errors="replace"):
            buffer += chunk
            *lines, buffer = buffer.split("\n")
            child.log.extend(line[:500] for line in lines)
    except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
        pass


async def _wait_warm(child: Child) -> None:
    """Read the child's stdout up to the warm marker (it prints nothing else before it)."""
    assert child.proc.stdout is not None
    seen = b""
    marker = WARM_MARKER.encode() + b"\n"
    with anyio.move_on_after(WARM_TIMEOUT_S):
        while marker not in seen:
            try:
                seen += await child.proc.stdout.receive(1)
            except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # it died while warming: its job reports how
        return
    child.kill()


class Pool:
    """Starts children, and keeps warm spares per GPU (a judge, an executor per role slot)."""

    def __init__(self, sandbox: Sandbox, commands: Commands) -> None:
        self.sandbox = sandbox
        self.commands = commands
        self._spares: dict[tuple[str, str], list[Child]] = defaultdict(list)
        self._serial = 0

    async def start(self, kind: str, gpu: int, slot: str) -> Child:
        """A fresh child of `kind` ('judge' or 'executor') for GPU `gpu` (in its slot's room)."""
        self._serial += 1
        ours, theirs = pair()
        room = None
        if kind == "executor":
            room = self.sandbox.room(slot, f"r{self._serial}")
            prepare_room_dirs(room)
        fd_var = "KDA_CONTROL_FD" if kind == "judge" else "KDA_JUDGE_FD"
        env = child_env(room, gpu=gpu, extra={fd_var: str(theirs.fileno())})
        command = list(self.commands.judge if kind == "judge" else self.commands.executor)
        if self.commands.warm:
            command.append("--warm")
        proc = await start_child(
            command, env, sandbox=self.sandbox if kind == "executor" else None, room=room, pass_fds=[theirs.fileno()]
        )
        theirs.close()
        return Child(kind=kind, proc=proc, wire=Wire(ours), room=room, slot=slot)

    async def take(self, kind: str, gpu: int, slot: str, tg: anyio.abc.TaskGroup) -> Child:
        """A warm spare if there is one, else a fresh child; returns once it has finished importing,
        with its output collected by tasks in `tg` from then on."""
        spares = self._spares[(kind, slot)]
        child = None
        while spares:
            candidate = spares.pop(0)
            if candidate.proc.returncode is None:
                child = candidate
                break
        if child is None:
            child = await self.start(kind, gpu, slot)
        if self.commands.warm:
            await _wait_warm(child)
        tg.start_soon(_pump, child, child.proc.stdout)
        tg.start_soon(_pump, child, child.proc.stderr)
        return child

    async def replenish(self, gpu: int, wanted: dict[str, list[str]]) -> None:
        """Start spares for the next job on this GPU ({kind: [slots]}); call once its rooms are cleared."""
        if not self.commands.warm:
            return
        for kind, slots in wanted.items():
            for slot in slots:
                spares = self._spares[(kind, slot)]
                spares[:] = [c for c in spares if c.proc.returncode is None]
                if not spares:
                    spares.append(await self.start(kind, gpu, slot))

    def rooms(self) -> list[Room]:
        return [child.room for items in self._spares.values() for child in items if child.room is not None]

    async def aclose(self) -> None:
        """Kill the spares, inside the loop that owns them so their pipes close cleanly."""
        children = [child for items in self._spares.values() for child in items]
        self._spares.clear()
        for child in children:
            child.kill()
            with anyio.move_on_after(5):
                await child.proc.aclose()
