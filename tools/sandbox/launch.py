"""Starting children: the one function that builds a child's environment, and the one that starts it.

The environment is an allow-list: a child sees the toolchain's variables (PATH, CUDA_*, ...) and
the folders of its own room, and nothing else the server has, so no secret (the HTTP token, a
cloud key) reaches it whatever its name. Combined with a user of its own and a non-dumpable
server, a child cannot read the token from the environment, from /proc or from a file.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import anyio.abc

from kda_mcp.tools.sandbox.sandbox import Room, Sandbox

_KEEP = {"PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "PYTHONPATH", "VIRTUAL_ENV", "CC", "CXX", "TORCH_CUDA_ARCH_LIST"}
# Prefixes of toolchain and driver settings; NCCL/NVSHMEM/TORCH_SYMM carry a machine's safety
# switches (multicast off) that must reach every process.
_KEEP_PREFIXES = ("CUDA_", "NVIDIA_", "NCCL_", "NVSHMEM_", "TORCH_SYMM_", "LC_", "OMP_", "CUTLASS_", "TRITON_")
_NEVER = {"TRITON_CACHE_DIR", "TRITON_HOME", "CUDA_CACHE_PATH"}  # per-room, set below


def child_env(room: Room | None, *, gpu: int | None = None, extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a child: allowed variables of `base` (default: ours), its room's folders
    as HOME, TMPDIR and caches, the one GPU it may use, then `extra`."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if (k in _KEEP or k.startswith(_KEEP_PREFIXES)) and k not in _NEVER}
    if room is not None:
        home = room.path
        env.update(
            HOME=str(home),
            TMPDIR=str(home / "tmp"),
            XDG_CACHE_HOME=str(home / "cache"),
            TRITON_CACHE_DIR=str(home / "triton"),
            TORCHINDUCTOR_CACHE_DIR=str(home / "inductor"),
            CUDA_CACHE_PATH=str(home / "nvcache"),
        )
        if room.identity is not None:
            env.update(USER=room.identity.name, LOGNAME=room.identity.name)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra or {})
    return env


def prepare_room_dirs(room: Room) -> None:
    """The folders child_env points at, owned by the room's user."""
    for name in ("tmp", "cache", "triton", "inductor", "nvcache"):
        room.mkdir(name)


async def start_child(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    sandbox: Sandbox | None = None,
    room: Room | None = None,
    network: bool = False,
    pass_fds: Sequence[int] = (),
    cwd: Path | None = None,
) -> anyio.abc.Process:
    """Start a child in a session of its own (so its group can be killed whole), with pipes on all
    three streams; inside the room's sandbox when there is one."""
    argv = list(command)
    if sandbox is not None and room is not None:
        argv = sandbox.wrap(argv, room, network=network)
    return await anyio.open_process(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=str(cwd or (room.path if room else Path.cwd())),
        start_new_session=True,
        pass_fds=tuple(pass_fds),
    )
