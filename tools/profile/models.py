"""What profile_solution and compare_profiles answer."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from kda_mcp.tools.models import Result


class Evidence(Result):
    metric: str
    value: float | None = None
    unit: str | None = None


class Bottleneck(Result):
    label: str = Field(
        description="memory-bound, compute-bound, small-grid (fewer than one wave of blocks), tail-effect, occupancy-limited, latency-bound; "
        "secondary labels: register-spills, short-kernel (under 5 us of GPU time; ncu's duration holds no launch or host time)"
    )
    reason: str
    evidence: list[Evidence]
    secondary: list[str] | None = None
    wiki: list[dict[str, str]] | None = Field(default=None, description="Pages for this label: id, title, path (read_wiki_page).")


class StallReason(Result):
    reason: str
    warps_per_issue: float = Field(description="Average warps stalled for this reason per issued instruction.")
    share: float = Field(description="Share of all stall cycles.")


class SourceLine(Result):
    file: str
    line: int
    samples: int
    top_stalls: list[str] | None = None


class Finding(Result):
    rule: str
    title: str
    message: str
    estimated_speedup_pct: float | None = None


class Roofline(Result):
    flops: float | None = None
    dram_bytes: float | None = None
    arithmetic_intensity: float | None = Field(default=None, description="FLOPs per DRAM byte.")
    achieved_tflops: float | None = None
    achieved_dram_tb_s: float | None = None
    peak_dram_tb_s: float | None = None
    peak_tflops_fp32: float | None = None
    peak_tflops_tensor: float | None = Field(default=None, description="Dense tensor-core peak for the data type used most.")
    note: str | None = None


class KernelProfile(Result):
    name: str
    duration_us: float | None = None
    grid: list[int] | None = None
    block: list[int] | None = None
    registers: int | None = None
    shared_static_bytes: int | None = None
    shared_dynamic_bytes: int | None = None
    waves_per_sm: float | None = None
    occupancy_theoretical_pct: float | None = None
    occupancy_achieved_pct: float | None = None
    occupancy_limiter: str | None = Field(
        default=None,
        description="What caps theoretical occupancy: the resource(s) allowing the fewest blocks per SM ('registers and shared memory' when they tie); "
        "'none (theoretical occupancy is 100%)' when nothing does.",
    )
    occupancy_limits: dict[str, int] | None = Field(default=None, description="Blocks per SM each resource allows (ncu's launch__occupancy_limit_*).")
    sm_count: int | None = None
    compute_throughput_pct: float | None = None
    memory_throughput_pct: float | None = None
    dram_throughput_pct: float | None = None
    l2_hit_pct: float | None = None
    l1_hit_pct: float | None = None
    sectors_per_request: float | None = Field(default=None, description="Global loads; 4 is ideal for 4-byte loads by a full warp.")
    tensor_pipe_pct: float | None = None
    local_memory_bytes: float | None = Field(default=None, description="Local (spill/stack) traffic, loads + stores.")
    stalls: list[StallReason] | None = Field(default=None, description="Stall reasons by share: the top five, and every other with at least 1% of the total.")
    source_lines: list[SourceLine] | None = None
    findings: list[Finding] | None = None
    roofline: Roofline | None = None
    bottleneck: Bottleneck | None = None
    metrics: dict[str, Any] | None = Field(default=None, description="Raw metric values (detail='full').")


class ProfileSummary(Result):
    profile_id: str
    report_path: str
    attempt_id: str | None = None
    solution: str
    definition: str
    workload: str
    profile_set: str
    capture_seconds: float | None = None
    gpu: str | None = None
    kernels: list[KernelProfile]
    total_duration_us: float | None = None
    message: str


class StallShift(Result):
    reason: str
    a_share: float | None = Field(default=None, description="Share of A's stalls; null: under 1% (not listed in A's profile).")
    b_share: float | None = None
    moved: float = Field(description="b_share - a_share, an unlisted share counted as 0: positive means B stalls more for this reason.")


class KernelDelta(Result):
    name: str
    a_us: float | None = None
    b_us: float | None = None
    speedup: float | None = Field(default=None, description="a duration / b duration (>1: b is faster).")
    changes: dict[str, list[float | None]] | None = Field(default=None, description="metric -> [a, b] where they differ noticeably.")
    stall_shifts: list[StallShift] | None = Field(
        default=None, description="Stall reasons whose share of all stalls moved by at least 2 points, largest move first."
    )
    headline: str | None = Field(default=None, description="The largest change in one sentence: time, and the stall reason that moved most.")
    bottleneck: list[str | None] | None = None


class ProfileComparison(Result):
    a: str
    b: str
    total_a_us: float | None = None
    total_b_us: float | None = None
    speedup: float | None = None
    kernels: list[KernelDelta]
    only_in_a: list[str] | None = None
    only_in_b: list[str] | None = None
