"""Exclusive GPU leases: at most one timing, profile or JIT compile per GPU at a time, machine-wide.

One pool per server process. A lease is held only while a child process uses the GPU, and a
waiter is served in arrival order, so no two measurements ever share a GPU. Across processes
(several kda-mcp servers on one machine) a lease also holds the GPU's OS file lock
(tools/locks.py); a lease waiting for another process's lock polls it without blocking the loop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel

from kda_mcp.tools.errors import UnavailableError
from kda_mcp.tools.locks import LOCK_POLL_S, HeldLock, LockDir, LockUnavailable, describe_holder

log = logging.getLogger(__name__)


@dataclass
class Lease:
    gpu: int
    purpose: str

    def child_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a child that must see exactly this GPU (as cuda:0)."""
        env = dict(os.environ if base is None else base)
        env["CUDA_VISIBLE_DEVICES"] = str(self.gpu)
        return env


@dataclass(eq=False)
class _Waiter:
    gpu: int | None  # the GPU asked for, None for any
    elsewhere: bool = False  # a GPU it could take is locked by another process


@dataclass
class GpuPool:
    gpus: list[int]
    lock_dir: Path | None = None  # machine-wide lock folder: None is KDA_LOCK_DIR or /tmp/kda-mcp-locks
    machine_wide: bool = True  # False: exclusive within this process only
    _free: list[int] = field(default_factory=list)
    _busy: dict[int, str] = field(default_factory=dict)
    _changed: anyio.Condition | None = None
    _loop: object = None
    _waiters: list[_Waiter] = field(default_factory=list)
    _held: dict[int, HeldLock] = field(default_factory=dict)
    _locks: LockDir | None = None
    _warned: bool = False

    def __post_init__(self) -> None:
        self._free = list(self.gpus)
        if self.machine_wide:
            self._locks = LockDir(self.lock_dir)

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
        """GPU index -> what holds it ('' when free): a purpose of this server's, or another kda-mcp process."""
        out = {}
        for gpu in self.gpus:
            held = self._busy.get(gpu, "")
            if not held and self._locks is not None:
                holder = self._locks.holder(_lock_name(gpu))
                held = "" if holder is None else describe_holder(holder)
            out[gpu] = held
        return out

    # ---- machine-wide locks

    def _lock_elsewhere(self, gpu: int, purpose: str) -> bool:
        """Take the GPU's machine-wide lock now if no other process holds it."""
        if self._locks is None:
            return True
        try:
            held = self._locks.try_lock(_lock_name(gpu), purpose)
        except LockUnavailable as exc:
            if not self._warned:
                self._warned = True
                log.warning("GPU leases are exclusive within this process only: %s", exc)
            return True
        if held is None:
            return False
        self._held[gpu] = held
        return True

    def _unlock_elsewhere(self, gpu: int) -> None:
        held = self._held.pop(gpu, None)
        if held is not None:
            held.release()

    def _take(self, me: _Waiter, purpose: str) -> int | None:
        """A GPU for `me` now, or None. Earlier waiters come first for every GPU they could use."""
        ahead = self._waiters[: self._waiters.index(me)]
        me.elsewhere = False
        for gpu in self._free:
            if me.gpu is not None and gpu != me.gpu:
                continue
            if any(w.gpu is None or w.gpu == gpu for w in ahead):
                continue
            if self._lock_elsewhere(gpu, purpose):
                return gpu
            me.elsewhere = True
        return None

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
        me = _Waiter(gpu)
        chosen: int | None = None
        self._waiters.append(me)
        try:
            async with changed:
                while True:
                    chosen = self._take(me, purpose)
                    if chosen is not None:
                        break
                    if me.elsewhere:  # another process holds it: try again shortly
                        with anyio.move_on_after(LOCK_POLL_S):
                            await changed.wait()
                    else:
                        await changed.wait()
                self._waiters.remove(me)
                self._free.remove(chosen)
                self._busy[chosen] = purpose
                changed.notify_all()  # those behind may now come first for some GPU
        except BaseException:
            if me in self._waiters:  # given up while waiting: let those behind look again
                self._waiters.remove(me)
                with anyio.CancelScope(shield=True):
                    async with changed:
                        changed.notify_all()
            if chosen is not None and chosen in self._held and chosen not in self._busy:
                self._unlock_elsewhere(chosen)
            raise
        try:
            yield Lease(gpu=chosen, purpose=purpose)
        finally:
            with anyio.CancelScope(shield=True):
                self._unlock_elsewhere(chosen)
                async with changed:
                    del self._busy[chosen]
                    self._free.append(chosen)
                    self._free.sort()
                    changed.notify_all()


def _lock_name(gpu: int) -> str:
    return f"gpu{gpu}"
