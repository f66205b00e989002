"""Exclusive GPU leases: at most one timing, profile or JIT compile per GPU at a time.

One pool per server process. A lease is held only while a child process uses the GPU, and a
waiter is served in arrival order, so no two measurements ever share a GPU.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from kda_mcp.tools.errors import UnavailableError


@dataclass
class Lease:
    gpu: int
    purpose: str

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child that must see exactly this GPU (as cuda:0)."""
        env = dict(os.environ if base is None else base)
        env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env


@dataclass
class GpuPool:
    gpus: list[int]
    _free: list[int] = field(default_factory=list)
    _busy: dict[int, str] = field(default_factory=dict)
    _changed: anyio.Condition | None = None
    _loop: object = None

    def __post_init__(self) -> None:
        self._free = list(self.gpus)

    def _condition(self) -> anyio.Condition:
        # Made lazily, inside the running event loop it belongs to (tests run several loops in turn).
        token = anyio.lowlevel.current_token()
        if self._changed is None or self._loop != token:
            self._changed, self._loop = anyio.Condition(), token
        return self._changed

    def require(self, tool: str) -> None:
        """Refuse up front, with what to do instead, when `tool` needs a GPU this server lacks."""
        if not self.gpus:
            raise UnavailableError(
                f"{tool} needs an NVIDIA GPU and this server sees none.",
                hint="Run kda-mcp on a GPU machine (capabilities shows what this one has); compile_solution works here.",
            )

    def status(self) -> dict[int, str]:
        """GPU index -> what holds it ('' when free)."""
        return {gpu: self._busy.get(gpu, "") for gpu in self.gpus}

    @asynccontextmanager
    async def lease(self, purpose: str, *, gpu: int | None = None) -> AsyncIterator[Lease]:
        if not self.gpus:
            raise UnavailableError(
                "No GPU is visible to this server, so this needs one it cannot provide.",
                hint="Run kda-mcp on a machine with an NVIDIA GPU (capabilities shows what this one has).",
            )
        if gpu is not None and gpu not in self.gpus:
            raise UnavailableError(f"GPU {gpu} is not one of this server's GPUs {self.gpus}.")
        changed = self._condition()
        async with changed:
            while not (self._free if gpu is None else gpu in self._free):
                await changed.wait()
            chosen = self._free[0] if gpu is None else gpu
            self._free.remove(chosen)
            self._busy[chosen] = purpose
        try:
            yield Lease(gpu=chosen, purpose=purpose)
        finally:
            with anyio.CancelScope(shield=True):
                async with changed:
                    del self._busy[chosen]
                    self._free.append(chosen)
                    self._free.sort()
                    changed.notify_all()
