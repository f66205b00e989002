"""sanitize_solution: compute-sanitizer on one call of a solution, summarized.

The same child as profiling (tools.profile.child) runs under compute-sanitizer; kernels built
with -lineinfo report file:line.
"""

from __future__ import annotations

import re
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from pydantic import Field

import anyio
from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.errors import KdaError, UnavailableError
from kda_mcp.tools.gpus import Lease
from kda_mcp.tools.harness.staging import Built
from kda_mcp.tools.models import Result
from kda_mcp.tools.procs import run_process
from kda_mcp.tools.profile.capture import stage_call
from kda_mcp.tools.profile.child import DONE
from kda_mcp.tools.sandbox.launch import child_env, prepare_room_dirs
from kda_mcp.tools.sandbox.sandbox import Sandbox

SanitizerTool = Literal["memcheck", "racecheck", "initcheck", "synccheck"]
PREFIX = "========= "
# A new problem starts on a line like these; what follows (at/by/Address lines) details it.
KIND = re.compile(
    r"^(Invalid .*|Uninitialized .*|Race reported .*|Error: Race .*|Barrier error .*|Warning: .* hazard.*|"
    r"Program hit .*|Out-of-range .*|Misaligned .*|Malloc/Free error.*|Leaked .*|Saved host backtrace.*)$"
)
AT = re.compile(r"^\s*at (?P<where>.+?)(?: in (?P<file>[^:]+):(?P<line>\d+))?$")
INLINE_AT = re.compile(r" at (?P<where>.+?) in (?P<file>[^\s:]+):(?P<line>\d+)")
SUMMARY = re.compile(r"(ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY): (?P<text>.*)")


class SanitizerIssue(Result):
    kind: str
    kernel: str | None = None
    file: str | None = None
    line: int | None = None
    count: int = 1
    example: str | None = Field(default=None, description="One occurrence's detail lines (thread, block, address).")


class SanitizeResult(Result):
    tool: str
    solution: str
    definition: str
    workload: str
    clean: bool
    error_summary: str | None = None
    issues: list[SanitizerIssue] | None = None
    message: str
    seconds: float | None = None
    log: str | None = None


def _kernel_name(where: str) -> str:
    return re.sub(r"\+0x[0-9a-f]+$", "", where).strip()[:160]


def parse_sanitizer(output: str, *, limit: int = 20) -> tuple[list[SanitizerIssue], str | None]:
    """Group the sanitizer's reports by (kind, kernel, source line), counting repeats."""
    groups: OrderedDict[tuple[str, str | None, str | None, int | None], SanitizerIssue] = OrderedDict()
    summary = None
    current: dict | None = None

    def flush() -> None:
        if current is None:
            return
        key = (current["kind"], current.get("kernel"), current.get("file"), current.get("line"))
        if key in groups:
            groups[key].count += 1
        else:
            groups[key] = SanitizerIssue(
                kind=current["kind"], kernel=current.get("kernel"), file=current.get("file"), line=current.get("line"), example="\n".join(current["detail"][:4]) or None
            )

    for raw in output.splitlines():
        if not raw.startswith(PREFIX.strip()):
            continue
        text = raw[len(PREFIX) :] if raw.startswith(PREFIX) else raw.lstrip("= ")
        match = SUMMARY.search(text)
        if match:
            summary = f"{match.group(1)}: {match.group('text').strip()}"
            continue
        stripped = text.strip()
        if KIND.match(stripped) and not stripped.startswith("Saved host backtrace"):
            flush()
            current = {"kind": stripped, "detail": []}
            inline = INLINE_AT.search(stripped)  # racecheck puts the location on the same line
            if inline:
                current.update(kind=stripped[: inline.start()], kernel=_kernel_name(inline.group("where")), file=Path(inline.group("file")).name, line=int(inline.group("line")))
            continue
        if current is None:
            continue
        if stripped.startswith("and ") and INLINE_AT.search(stripped):  # the other side of a race
            current["kind"] += " and " + stripped[4 : INLINE_AT.search(stripped).start()]
            continue
        at = AT.match(stripped)
        if at and "kernel" not in current:
            where = at.group("where")
            current["kernel"] = _kernel_name(where)
            if at.group("file"):
                current["file"] = Path(at.group("file")).name
                current["line"] = int(at.group("line"))
        elif stripped and len(current["detail"]) < 4 and not stripped.startswith(("Host Frame", "=========")):
            current["detail"].append(stripped[:200])
    flush()
    issues = sorted(groups.values(), key=lambda issue: -issue.count)
    return issues[:limit], summary


async def sanitize(
    *,
    tool: SanitizerTool,
    solution: Solution,
    definition: Definition,
    workload: Workload,
    built: Built,
    dataset_root: Path,
    lease: Lease,
    sandbox: Sandbox,
    timeout_s: float,
) -> tuple[list[SanitizerIssue], str | None, str, float]:
    """One call under compute-sanitizer, run (with the sanitizer itself) as the GPU's sandbox user."""
    sanitizer = find_cuda_tool("compute-sanitizer")
    if sanitizer is None:
        raise UnavailableError("compute-sanitizer is not installed here; it ships with the CUDA toolkit (kda-mcp's Docker image has it).")
    room = sandbox.room(f"g{lease.gpu}solo", f"sanitize-{tool}")
    try:
        prepare_room_dirs(room)
        spec_path = stage_call(room, solution, definition, workload, built, dataset_root)
        # torch's caching allocator hands out pieces of larger blocks, so a write past a tensor's end
        # lands in memory the sanitizer counts as allocated: give every tensor its own allocation.
        env = child_env(room, gpu=lease.gpu, extra={"PYTORCH_NO_CUDA_MEMORY_CACHING": "1"})
        cmd = [sanitizer, "--tool", tool, "--print-limit", "200", "--show-backtrace", "device"]
        if tool == "racecheck":
            cmd += ["--racecheck-report", "all"]
        cmd += [sys.executable, "-m", "kda_mcp.tools.profile.child", "--spec", str(spec_path)]
        outcome = await run_process(sandbox.wrap(cmd, room, network=True), timeout=timeout_s, env=env, cwd=room.path)
    finally:
        await anyio.to_thread.run_sync(sandbox.clear, [room])
    if outcome.timed_out:
        raise KdaError(f"compute-sanitizer ran past {timeout_s:.0f} s and was stopped; try the smallest workload (sanitizers slow kernels down 10-100x).")
    issues, summary = parse_sanitizer(outcome.output)
    if summary is None and DONE not in outcome.output:
        raise KdaError(f"compute-sanitizer did not finish the call (exit status {outcome.returncode}). Its last output:\n{outcome.output[-1500:]}")
    return issues, summary, outcome.output, outcome.seconds
