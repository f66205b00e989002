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
    r"^(Invalid .*|Uninitialized .*|Race reported .*|(?:Error|Warning|ERROR|WARN|WARNING): ?Race .*|Barrier error .*|"
    r"(?:Error|Warning|ERROR|WARN|WARNING):? ?(?:\([^)]*\) ?)?Potential \w+ hazard.*|Warning: .* hazard.*|"
    r"Program hit .*|Out-of-range .*|Misaligned .*|Malloc/Free error.*|Leaked .*|Saved host backtrace.*)$"
)
AT = re.compile(r"^\s*at (?P<where>.+?)(?: in (?P<file>[^:]+):(?P<line>\d+))?$")
INLINE_AT = re.compile(r" at (?P<where>.+?) in (?P<file>[^\s:]+):(?P<line>\d+)")
SUMMARY = re.compile(r"(ERROR SUMMARY|RACECHECK SUMMARY|LEAK SUMMARY): (?P<text>.*)")

# racecheck, two report forms (--racecheck-report hazard / analysis; "all" prints both):
#   Error: Potential RAW hazard detected at __shared__ 0x7c in block (3,0,0) :      one per byte and block
#       Write Thread (31,0,0) at racy(float *)+0x90 in kernel.cu:9                  the earlier access
#       Read Thread (32,0,0) at racy(float *)+0xb0 in kernel.cu:10                  the later one
#       Current Value : 0, Incoming Value : 1
#   Error: Race reported between Write access at racy(float *)+0x90 in kernel.cu:9  one per pair of
#       and Read access at racy(float *)+0xb0 in kernel.cu:10 [248 hazards]         instructions
# (cuda-memcheck wrote "at 0x00000170 in ./race.cu:4:test(int*, int*)"). Both are grouped into one
# issue per hazard kind and source-line pair; the count is the analysis reports' hazard total
# (which counts every hazard, printed or not) or, without them, the hazard reports seen.
HAZARD = re.compile(
    r"^(?P<sev>Error|Warning|ERROR|WARN|WARNING):? ?(?P<note>\([^)]*\) ?)?Potential (?P<type>\w+) hazard detected at (?P<space>\S+) (?P<addr>\S+)"
    r"(?: in block (?P<block>\([^)]*\)))?"
)
THREAD = re.compile(r"^(?P<access>Read|Write|Atomic)\w* Thread \([^)]*\) at (?P<loc>.+)$")
ANALYSIS = re.compile(r"^(?P<sev>Error|Warning|ERROR|WARN|WARNING): ?Race reported between (?P<access>\w+) access at (?P<loc>.+?)(?: and (?P<access2>\w+) access at (?P<loc2>.+?))?$")
PARTNER = re.compile(r"^and (?P<access>\w+) access at (?P<loc>.+?)(?: \[(?P<n>\d+) hazards?\])?$")
LOCATION = re.compile(r"^(?P<where>.+?)(?: in (?P<file>[^\s:]+):(?P<line>\d+)(?::(?P<fn>.+))?)?$")
_PAIRS = {("Write", "Read"): "RAW", ("Read", "Write"): "WAR", ("Write", "Write"): "WAW"}


class SanitizerIssue(Result):
    kind: str
    kernel: str | None = None
    file: str | None = Field(default=None, description="Where the problem is; for a race, the earlier access.")
    line: int | None = None
    second_file: str | None = Field(default=None, description="For a race: the later access that conflicts with the first.")
    second_line: int | None = None
    count: int = Field(
        default=1,
        description="Occurrences in this group; for a race, the hazards racecheck counted for this pair of lines (all of them, printed or not).",
    )
    reports: int | None = Field(default=None, description="For a race: per-address hazard reports printed and folded into this group.")
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


def _location(text: str) -> tuple[str | None, str | None, int | None, str]:
    """(kernel, file, line, key) of `racy(float *)+0x90 in kernel.cu:9` (or the cuda-memcheck form);
    the key is file:line when known, else the instruction."""
    match = LOCATION.match(text.strip())
    if match is None:
        return None, None, None, text.strip()
    where = match["where"].strip()
    kernel = _kernel_name(match["fn"]) if match["fn"] else (_kernel_name(where) if not re.fullmatch(r"0x[0-9a-fA-F]+", where) else None)
    if match["file"]:
        file = Path(match["file"]).name
        return kernel, file, int(match["line"]), f"{file}:{match['line']}"
    return kernel, None, None, where


def _severity(word: str) -> str:
    return "Error" if word.upper().startswith("ERR") else "Warning"


class _Race:
    """One group: a hazard kind between two source lines (or instructions) of one kernel."""

    def __init__(self, hazard: str, first: tuple[str | None, str | None, int | None, str], second: tuple[str | None, str | None, int | None, str], accesses: tuple[str, str]) -> None:
        self.hazard, self.first, self.second, self.accesses = hazard, first, second, accesses
        self.severity = "Warning"
        self.analysed = 0  # hazards counted by analysis reports
        self.reports = 0  # per-address hazard reports
        self.example: str | None = None
        self.analysis_example: str | None = None

    def issue(self) -> SanitizerIssue:
        a, b = self.accesses
        return SanitizerIssue(
            kind=f"{self.severity}: Race reported between {a} access and {b} access ({self.hazard} hazard)",
            kernel=self.first[0] or self.second[0],
            file=self.first[1],
            line=self.first[2],
            second_file=self.second[1],
            second_line=self.second[2],
            count=self.analysed or self.reports or 1,
            reports=self.reports or None,
            example=self.example or self.analysis_example,
        )


def _blocks(output: str) -> tuple[list[list[str]], str | None]:
    """The sanitizer's reports, each as its stripped lines, and the last summary line."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    summary = None
    for raw in output.splitlines():
        if not raw.startswith(PREFIX.strip()):
            continue
        text = raw[len(PREFIX) :] if raw.startswith(PREFIX) else raw.lstrip("= ")
        match = SUMMARY.search(text)
        if match:
            summary = f"{match.group(1)}: {match.group('text').strip()}"
            current = None
            continue
        stripped = text.strip()
        if KIND.match(stripped) and not stripped.startswith("Saved host backtrace"):
            current = [stripped]
            blocks.append(current)
        elif current is not None and stripped:
            current.append(stripped)
    return blocks, summary


def parse_sanitizer(output: str, *, limit: int = 20) -> tuple[list[SanitizerIssue], str | None]:
    """Group the sanitizer's reports: one issue per (kind, kernel, source line), counting repeats;
    for racecheck, one per hazard kind and source-line pair, with racecheck's hazard total and one
    example, however many per-address reports it printed."""
    blocks, summary = _blocks(output)
    groups: OrderedDict[tuple, SanitizerIssue | _Race] = OrderedDict()

    def race(hazard: str, first: tuple, second: tuple, accesses: tuple[str, str]) -> _Race:
        key = ("race", hazard, first[0] or second[0], first[3], second[3])
        found = groups.get(key)
        if not isinstance(found, _Race):
            found = groups[key] = _Race(hazard, first, second, accesses)
        return found

    for block in blocks:
        head = block[0]
        if hazard := HAZARD.match(head):
            threads = [m for m in (THREAD.match(line) for line in block[1:3]) if m]
            if len(threads) == 2:
                accesses = (threads[0]["access"], threads[1]["access"])
                group = race(hazard["type"], _location(threads[0]["loc"]), _location(threads[1]["loc"]), accesses)
                group.reports += 1
                if _severity(hazard["sev"]) == "Error":
                    group.severity = "Error"
                if group.example is None:
                    group.example = "\n".join(line[:200] for line in block[:4])
                continue
        if analysis := ANALYSIS.match(head):
            first = _location(analysis["loc"])
            partners = [(analysis["access2"], analysis["loc2"], None)] if analysis["access2"] else []
            partners += [(m["access"], m["loc"], m["n"]) for m in (PARTNER.match(line) for line in block[1:]) if m]
            for access, loc, hazards in partners:
                accesses = (analysis["access"], access)
                group = race(_PAIRS.get(accesses, "race"), first, _location(loc), accesses)
                group.analysed += int(hazards) if hazards else 1
                if _severity(analysis["sev"]) == "Error":
                    group.severity = "Error"
                if group.analysis_example is None:
                    group.analysis_example = "\n".join(line[:200] for line in block[:3])
            if partners:
                continue
        _other(block, groups)
    issues = [g.issue() if isinstance(g, _Race) else g for g in groups.values()]
    issues.sort(key=lambda issue: (issue.kind.startswith("Warning"), -issue.count))  # errors first, then by count
    return issues[:limit], summary


def _other(block: list[str], groups: OrderedDict[tuple, SanitizerIssue | _Race]) -> None:
    """memcheck, initcheck, synccheck (and anything unrecognized): by kind, kernel and source line."""
    head = block[0]
    current: dict = {"kind": head, "detail": []}
    inline = INLINE_AT.search(head)  # some reports put the location on the same line
    if inline:
        current.update(kind=head[: inline.start()], kernel=_kernel_name(inline.group("where")), file=Path(inline.group("file")).name, line=int(inline.group("line")))
    for stripped in block[1:]:
        if stripped.startswith("and ") and INLINE_AT.search(stripped):
            current["kind"] += " and " + stripped[4 : INLINE_AT.search(stripped).start()]
            continue
        at = AT.match(stripped)
        if at and "kernel" not in current:
            current["kernel"] = _kernel_name(at.group("where"))
            if at.group("file"):
                current["file"] = Path(at.group("file")).name
                current["line"] = int(at.group("line"))
        elif len(current["detail"]) < 4 and not stripped.startswith(("Host Frame", "=========", "Saved host backtrace")):
            current["detail"].append(stripped[:200])
    key = (current["kind"], current.get("kernel"), current.get("file"), current.get("line"))
    found = groups.get(key)
    if isinstance(found, SanitizerIssue):
        found.count += 1
    else:
        groups[key] = SanitizerIssue(
            kind=current["kind"], kernel=current.get("kernel"), file=current.get("file"), line=current.get("line"), example="\n".join(current["detail"][:4]) or None
        )


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
