"""Warm child processes: started ahead of need, so a benchmark does not wait for Python, torch
and flashinfer-bench to import (most of the seconds a fresh process takes).

A warm process has imported the harness and nothing else: it has never run agent code, so
handing it a solution is as clean as starting a fresh one. Each is used once. Warming is CPU
work only (no CUDA context until a job arrives), so spares can start while another process is
timing on the same GPU without disturbing it.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field

import anyio
import anyio.abc

from kda_mcp.tools.procs import kill_group

WARM_MARKER = b"KDA-WARM\n"
WARM_TIMEOUT_S = 180


async def spawn_child(cmd: list[str], env: dict[str, str]) -> anyio.abc.Process:
    """A child in a process group of its own (so it can be killed whole), pipes on all three streams."""
    return await anyio.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)


@dataclass
class WarmPool:
    commands: dict[str, list[str]]  # kind -> command; the process gets '--warm' and waits for a job path
    enabled: bool = True
    _idle: dict[tuple[str, int], list[anyio.abc.Process]] = field(default_factory=lambda: defaultdict(list))

    async def spawn(self, kind: str, gpu: int, env: dict[str, str]) -> anyio.abc.Process:
        return await spawn_child([*self.commands[kind], "--warm"], env)

    async def take(self, kind: str, gpu: int, env: dict[str, str]) -> anyio.abc.Process:
        """A process of this kind for this GPU, warm (waited for) and never used before."""
        idle = self._idle[(kind, gpu)]
        while idle:
            proc = idle.pop(0)
            if proc.returncode is None:
                break
        else:
            proc = await self.spawn(kind, gpu, env)
        await self._wait_warm(proc)
        return proc

    async def _wait_warm(self, proc: anyio.abc.Process) -> None:
        assert proc.stdout is not None
        seen = b""
        with anyio.move_on_after(WARM_TIMEOUT_S):
            while WARM_MARKER not in seen:
                try:
                    seen += await proc.stdout.receive(1)
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return  # it died while warming: the session will report how
            return
        kill_group(proc)  # never warmed: the session sees a dead process and says so

    async def replenish(self, gpu: int, env: dict[str, str], needed: dict[str, int]) -> None:
        """Start spares for the next job on this GPU (call when its lease has ended)."""
        for kind, count in needed.items():
            idle = self._idle[(kind, gpu)]
            idle[:] = [p for p in idle if p.returncode is None]
            while self.enabled and len(idle) < count:
                idle.append(await self.spawn(kind, gpu, env))

    async def aclose(self) -> None:
        """Kill the spares (inside the loop that owns them, so their pipes close cleanly)."""
        procs = [p for idle in self._idle.values() for p in idle]
        self._idle.clear()
        for proc in procs:
            kill_group(proc)
            with anyio.move_on_after(5):
                await proc.aclose()
