"""What run_benchmark answers, and the knobs it takes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kda_mcp.tools.models import Result

Status = Literal[
    "PASSED", "INCORRECT_SHAPE", "INCORRECT_DTYPE", "INCORRECT_NUMERICAL", "RUNTIME_ERROR", "COMPILE_ERROR", "TIMEOUT"
]


class BenchmarkConfig(BaseModel):
    """Measurement settings; the defaults are the recommended method."""

    model_config = ConfigDict(extra="forbid")
    correctness_trials: int = Field(default=3, ge=1, le=20, description="Calls on fresh random inputs (new seed each) checked against the reference.")
    warmup: int = Field(default=10, ge=1, le=1000, description="Untimed calls before timing (JIT, autotune, allocator).")
    iterations: int | None = Field(default=None, ge=5, le=5000, description="Timed calls; default: enough for ~0.3 s of GPU time, 20-200.")
    min_iterations: int = Field(default=20, ge=5, le=5000)
    max_iterations: int = Field(default=200, ge=5, le=5000)
    target_seconds: float = Field(default=0.3, gt=0, le=30)
    rotation_sets: int = Field(default=3, ge=2, le=64, description="Input sets with distinct storage that timed calls rotate through.")
    rotation_budget_bytes: int = Field(default=4 * 2**30, ge=2**20)
    regenerate_limit_bytes: int = Field(default=512 * 2**20, ge=0, description="Refill inputs with fresh data before each timed call up to this size.")
    workload_timeout_s: float = Field(default=120, ge=1, le=3600, description="A workload step that runs longer is stopped: TIMEOUT.")
    memory_limit_gb: float | None = Field(default=None, gt=0, description="Host memory a solution process may use (default: half of RAM).")
    force_cuda_events: bool = Field(default=False, description="Time with CUDA events instead of CUPTI (labelled fallback).")
    floor_factor: float = Field(default=0.8, gt=0, le=1, description="Flag times below this fraction of the bytes/bandwidth floor.")
    speedup_ceiling: float = Field(default=100.0, gt=1, description="Flag speedups above this (over the reference or the baseline) for review.")


class TimingStats(Result):
    median_us: float
    p10_us: float
    p90_us: float
    min_us: float
    count: int


class Speedups(Result):
    vs_reference: float | None = None
    vs_baseline: float | None = None


class Finding(Result):
    check: str
    detail: str


class WorkloadResult(Result):
    workload: str
    axes: dict[str, int]
    status: Status
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    matched_ratio: float | None = None
    latency: TimingStats | None = None
    host_call_us: float | None = Field(default=None, description="Median CPU time of one call until it returns (launch overhead and host work).")
    wall_us: float | None = Field(default=None, description="Median start-to-finish time of one call, host and synchronize included.")
    reference_us: float | None = None
    baseline_us: float | None = None
    speedup: Speedups | None = None
    floor_us: float | None = Field(default=None, description="Bytes that must move / measured copy bandwidth.")
    suspect: bool | None = Field(default=None, description="True when a check flagged this result: speedups are withheld.")
    findings: list[Finding] | None = None
    log: str | None = None


class Aggregate(Result):
    passed: int
    total: int
    geomean_speedup_vs_reference: float | None = None
    geomean_speedup_vs_baseline: float | None = None
    mean_speedup_vs_reference: float | None = None
    mean_speedup_vs_baseline: float | None = None
    worst_workload: str | None = Field(default=None, description="Lowest speedup vs baseline (or reference) among passed workloads, or the first failure.")


class Provenance(Result):
    gpu: str | None = None
    gpu_index: int | None = None
    driver: str | None = None
    cuda: str | None = None
    torch: str | None = None
    triton: str | None = None
    clocks_mhz: dict[str, int] | None = Field(default=None, description="SM and memory clocks as found before timing (not locked).")
    method: str
    copy_bandwidth_tb_s: float | None = None
    seeds: dict[str, Any]
    config: dict[str, Any]
    kda_mcp: str | None = None


class BenchmarkResult(Result):
    attempt_id: str | None = None
    parent_attempt: str | None = Field(default=None, description="The attempt this one improves on, as given.")
    solution: str
    solution_hash: str
    definition: str
    baseline: str | None = None
    baseline_hash: str | None = None
    status: Literal["complete", "compile_error", "failed"]
    message: str
    aggregate: Aggregate
    workloads: list[WorkloadResult]
    provenance: Provenance | None = None
    compile: dict[str, Any] | None = None
    phase_seconds: dict[str, float] | None = Field(default=None, description="Where the wall time went: build, waiting for the GPU, processes, timing, judging.")
