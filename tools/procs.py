"""Child processes that can always be stopped: a timeout or a cancelled call kills the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc

OUTPUT_CAP = 4 * 1024 * 1024  # bytes of combined output kept (head and tail)


@dataclass
class ProcOutcome:
    returncode: int | None
    output: str
    timed_out: bool
    seconds: float


def kill_group(proc: anyio.abc.Process | subprocess.Popen) -> None:
    """SIGKILL the child's process group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _clip(data: bytes) -> str:
    if len(data) > OUTPUT_CAP:
        half = OUTPUT_CAP // 2
        data = data[:half] + b"\n... [output clipped] ...\n" + data[-half:]
    return data.decode("utf-8", errors="replace")


async def run_process(
    cmd: list[str],
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> ProcOutcome:
    """Run cmd to completion with stdout+stderr merged; on timeout or cancellation, kill its group."""
    start = time.monotonic()
    chunks: list[bytes] = []
    proc = await anyio.open_process(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    timed_out = False
    try:
        with anyio.move_on_after(timeout) as scope:
            assert proc.stdout is not None
            async for chunk in proc.stdout:
                chunks.append(chunk)
            await proc.wait()
        timed_out = scope.cancelled_caught
    finally:
        if proc.returncode is None:
            kill_group(proc)
            with anyio.CancelScope(shield=True):
                await proc.wait()
        # Grandchildren that outlived the child (a daemonized helper) go too.
        kill_group(proc)
    return ProcOutcome(
        returncode=None if timed_out else proc.returncode,
        output=_clip(b"".join(chunks)),
        timed_out=timed_out,
        seconds=time.monotonic() - start,
    )
