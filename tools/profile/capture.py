"""Run Nsight Compute on one call of a solution, as a job on a leased GPU."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp.tools.capabilities import CounterAccess, find_cuda_tool
from kda_mcp.tools.errors import InvalidArgumentError, KdaError, UnavailableError
from kda_mcp.tools.gpus import Lease
from kda_mcp.tools.harness.staging import Built, stage_solution
from kda_mcp.tools.procs import run_process
from kda_mcp.tools.sandbox.files import copy_out, write_into
from kda_mcp.tools.sandbox.launch import child_env, prepare_room_dirs
from kda_mcp.tools.sandbox.sandbox import Room, Sandbox
from kda_mcp.tools.sandbox.specs import CallSpec

ProfileSet = Literal["quick", "full", "source"]
# quick: speed-of-light, launch, occupancy and warp stalls (seconds); full: every section;
# source: full plus per-line source counters with the sources imported into the report.
SET_FLAGS: dict[str, list[str]] = {
    "quick": ["--section", "SpeedOfLight", "--section", "LaunchStats", "--section", "Occupancy", "--section", "WarpStateStats", "--section", "MemoryWorkloadAnalysis"],
    "full": ["--set", "full"],
    "source": ["--set", "full", "--section", "SourceCounters", "--import-source", "yes"],
}
MAX_REPORT_BYTES = 1 << 30
PERMISSION_HELP = (
    "Nsight Compute may not read GPU performance counters here (ERR_NVGPUCTRPERM). Run kda-mcp as root, or allow "
    "non-admin profiling: add 'options nvidia NVreg_RestrictProfilingToAdminUsers=0' to /etc/modprobe.d/ and reload the "
    "driver; in Docker, start the container with --cap-add SYS_ADMIN."
)


@dataclass
class CaptureRequest:
    solution: Solution
    definition: Definition
    workload: Workload
    built: Built
    dataset_root: Path
    report: Path  # where the .ncu-rep is kept (without the suffix), outside the sandbox
    profile_set: ProfileSet = "quick"
    kernels: str | None = None
    launch_skip: int = 0
    launch_count: int = 20
    timeout_s: float = 600


def preflight(counters: CounterAccess) -> str:
    """The ncu binary, or an error saying how to get a working one."""
    ncu = find_cuda_tool("ncu")
    if ncu is None:
        raise UnavailableError(
            "Nsight Compute (ncu) is not installed on this server.",
            hint="Install the CUDA toolkit's nsight-compute package or put ncu on PATH (kda-mcp's Docker image has it).",
        )
    if counters.permitted is False:
        raise UnavailableError(PERMISSION_HELP)
    return ncu


def check_regex(pattern: str | None) -> None:
    if pattern is None:
        return
    if len(pattern) > 200:
        raise InvalidArgumentError("kernels= is longer than 200 characters; match a distinctive part of the kernel name.")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidArgumentError(f"kernels={pattern!r} is not a valid regular expression: {exc}.") from exc


def command(ncu: str, request: CaptureRequest, spec_path: Path, export: Path) -> list[str]:
    cmd = [
        ncu,
        "--clock-control", "none",  # measure at the clocks the benchmark sees, not base clocks
        "--target-processes", "all",
        "--nvtx", "--nvtx-include", "kda/",  # only the timed call, not input generation or warm-up
        *SET_FLAGS[request.profile_set],
        "--launch-skip", str(request.launch_skip),
        "--launch-count", str(request.launch_count),
        "--export", str(export),
        "--force-overwrite",
    ]  # fmt: skip
    if request.profile_set != "source":
        cmd += ["--import-source", "yes"]
    if request.kernels:
        cmd += ["--kernel-name", f"regex:{request.kernels}"]
    return [*cmd, sys.executable, "-m", "kda_mcp.tools.profile.child", "--spec", str(spec_path)]


def stage_call(room: Room, request_solution: Solution, definition: Definition, workload: Workload, built: Built, dataset_root: Path) -> Path:
    """The solution and a CallSpec in the room; returns the spec's path."""
    source_dir, library = stage_solution(room.path, request_solution, built.library)
    spec = CallSpec(
        solution=request_solution.model_dump_json(),
        definition=definition.model_dump_json(),
        workload=workload.model_dump_json(),
        source_dir=str(source_dir),
        library=str(library) if library else None,
        dataset_root=str(dataset_root),
    )
    return write_into(room.path, "call_spec.json", spec.model_dump_json())


async def capture(request: CaptureRequest, lease: Lease, ncu: str, sandbox: Sandbox) -> tuple[Path, str, float]:
    """Profile one call as the GPU's sandbox user; returns (report path, ncu's output, seconds)."""
    room = sandbox.room(f"g{lease.gpu}solo", request.report.name)
    try:
        prepare_room_dirs(room)
        spec_path = stage_call(room, request.solution, request.definition, request.workload, request.built, request.dataset_root)
        export = room.path / "report"
        env = child_env(room, gpu=lease.gpu)
        # ncu talks to the process it profiles over a local socket: the profiling child keeps the network.
        argv = sandbox.wrap(command(ncu, request, spec_path, export), room, network=True)
        outcome = await run_process(argv, timeout=request.timeout_s, env=env, cwd=room.path)
        text = outcome.output
        if "ERR_NVGPUCTRPERM" in text:
            raise UnavailableError(PERMISSION_HELP)
        if outcome.timed_out:
            raise KdaError(f"Profiling ran past {request.timeout_s:.0f} s and was stopped; use set='quick', a kernels regex, or a smaller workload.")
        report = request.report.with_suffix(".ncu-rep")
        if not await anyio.to_thread.run_sync(lambda: copy_out(room.path, "report.ncu-rep", report, limit=MAX_REPORT_BYTES)):
            if "No kernels were profiled" in text:
                raise KdaError(
                    "Nsight Compute profiled no kernel of the call.",
                    hint="Check the kernels regex and launch_skip (the call launched fewer kernels than skipped), or whether the solution launches GPU work at all.",
                )
            raise KdaError(f"ncu did not produce a report (exit status {outcome.returncode}). Its last output:\n{text[-1500:]}")
        return report, text, outcome.seconds
    finally:
        await anyio.to_thread.run_sync(sandbox.clear, [room])
