"""Run Nsight Compute on one call of a solution, as a job on a leased GPU."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp.tools.evaluation.runner import Built
from kda_mcp.tools.compile.compiler import PROJECT_ROOT
from kda_mcp.tools.capabilities import CounterAccess, find_cuda_tool
from kda_mcp.tools.errors import InvalidArgumentError, KdaError, UnavailableError
from kda_mcp.tools.gpus import Lease
from kda_mcp.tools.procs import run_process, scrubbed_env

ProfileSet = Literal["quick", "full", "source"]
# quick: speed-of-light, launch, occupancy and warp stalls (seconds); full: every section;
# source: full plus per-line source counters with the sources imported into the report.
SET_FLAGS: dict[str, list[str]] = {
    "quick": ["--section", "SpeedOfLight", "--section", "LaunchStats", "--section", "Occupancy", "--section", "WarpStateStats", "--section", "MemoryWorkloadAnalysis"],
    "full": ["--set", "full"],
    "source": ["--set", "full", "--section", "SourceCounters", "--import-source", "yes"],
}
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
    report: Path  # without the .ncu-rep suffix
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
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidArgumentError(f"kernels={pattern!r} is not a valid regular expression: {exc}.") from exc


def command(ncu: str, request: CaptureRequest, job_path: Path) -> list[str]:
    cmd = [
        ncu,
        "--clock-control", "none",  # measure at the clocks the benchmark sees, not base clocks
        "--target-processes", "all",
        "--nvtx", "--nvtx-include", "kda/",  # only the timed call, not input generation or warm-up
        *SET_FLAGS[request.profile_set],
        "--launch-skip", str(request.launch_skip),
        "--launch-count", str(request.launch_count),
        "--export", str(request.report),
        "--force-overwrite",
    ]
    if request.profile_set != "source":
        cmd += ["--import-source", "yes"]
    if request.kernels:
        cmd += ["--kernel-name", f"regex:{request.kernels}"]
    return [*cmd, sys.executable, "-m", "kda_mcp.tools.profile.child", str(job_path)]


async def capture(request: CaptureRequest, lease: Lease, ncu: str) -> tuple[Path, str, float]:
    """Profile; returns (report path, ncu's output, seconds). Raises with a clear message on failure."""
    request.report.parent.mkdir(parents=True, exist_ok=True)
    job_path = request.report.with_suffix(".job.json")
    job_path.write_text(
        json.dumps(
            {
                "solution": request.solution.model_dump_json(),
                "definition": request.definition.model_dump_json(),
                "workload": request.workload.model_dump_json(),
                "source_dir": str(request.built.source_dir),
                "library": request.built.library,
                "dataset_root": str(request.dataset_root),
            }
        )
    )
    env = lease.child_env(scrubbed_env())
    env["PYTHONPATH"] = ":".join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    outcome = await run_process(command(ncu, request, job_path), timeout=request.timeout_s, env=env, cwd=request.report.parent)
    report = request.report.with_suffix(".ncu-rep")
    text = outcome.output
    if "ERR_NVGPUCTRPERM" in text:
        raise UnavailableError(PERMISSION_HELP)
    if outcome.timed_out:
        raise KdaError(f"Profiling ran past {request.timeout_s:.0f} s and was stopped; use set='quick', a kernels regex, or a smaller workload.")
    if not report.is_file():
        if "No kernels were profiled" in text:
            raise KdaError(
                "Nsight Compute profiled no kernel of the call.",
                hint="Check the kernels regex and launch_skip (the call launched fewer kernels than skipped), or whether the solution launches GPU work at all.",
            )
        raise KdaError(f"ncu did not produce a report (exit status {outcome.returncode}). Its last output:\n{text[-1500:]}")
    return report, text, outcome.seconds
