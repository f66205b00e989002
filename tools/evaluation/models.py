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
    warmup: int = Field(default=10, ge=1, le=1000, description="Untimed calls per side before timing (JIT, autotune, allocator).")
    rounds: int = Field(default=8, ge=2, le=64, description="Timed rounds; each side runs one batch per round, in a shuffled order, so drift lands on every side alike.")
    iterations: int | None = Field(default=None, ge=4, le=5000, description="Timed calls per side over all rounds; default: enough for ~target_seconds of GPU time, between min and max.")
    min_iterations: int = Field(default=32, ge=4, le=5000)
    max_iterations: int = Field(default=200, ge=4, le=5000)
    target_seconds: float = Field(default=0.3, gt=0, le=30)
    workload_timeout_s: float = Field(default=120, ge=1, le=3600, description="A call that runs longer is stopped: TIMEOUT.")
    memory_limit_gb: float | None = Field(default=None, gt=0, description="Host memory a solution process may use (default: half of RAM).")
    force_cuda_events: bool = Field(default=False, description="Have the executor report CUDA events instead of CUPTI (labelled fallback).")
    floor_factor: float = Field(default=0.8, gt=0, le=1, description="Flag times below this fraction of floor_us (0.8: over 1.25x the best copy bandwidth).")
    speedup_ceiling: float = Field(default=100.0, gt=1, description="Flag speedups above this (over the reference or the baseline) for review.")
    process_spread: float = Field(
        default=0.03, ge=0, le=0.5,
        description="How much two processes running identical code differ (std of the log speedup), added to every interval; "
        "0.03 is typical on an H200 for short and multi-kernel calls (bench/bench_timing.py self measures it).",
    )  # fmt: skip

    def timing(self) -> dict[str, int | float | None]:
        """What the judge needs to plan its rounds."""
        per_round = -(-self.iterations // self.rounds) if self.iterations else None
        return {
            "rounds": self.rounds,
            "warmup": self.warmup,
            "calls": per_round,
            "min_calls": self.min_iterations,
            "max_calls": self.max_iterations,
            "target_seconds": self.target_seconds,
        }


class TimingStats(Result):
    median_us: float
    p10_us: float
    p90_us: float
    min_us: float
    count: int


class Speedups(Result):
    vs_reference: float | None = None
    vs_reference_ci95: list[float] | None = Field(default=None, description="95% interval of the speedup over the reference: the paired rounds' spread plus the spread between processes (process_spread).")
    vs_baseline: float | None = None
    vs_baseline_ci95: list[float] | None = None


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
    latency: TimingStats | None = Field(default=None, description="GPU time per call: first kernel start to last kernel end, over every stream (the executor's CUPTI records, verified by the judge).")
    outside_us: float | None = Field(default=None, description="The judge's own measurement of a call from outside the solution's process, minus the handshake's calibrated overhead.")
    busy_us: float | None = Field(default=None, description="Median GPU busy time per call (kernel intervals merged); far below latency means gaps between kernels.")
    kernels: int | None = Field(default=None, description="Median number of GPU activities (kernels, copies) per call.")
    host_call_us: float | None = Field(default=None, description="Median CPU time to launch one call (until it returns).")
    launch_bound: bool | None = Field(default=None, description="True when launching a call takes the host longer than the GPU takes to run it.")
    too_small_to_verify: bool | None = Field(
        default=None,
        description="True when the judge measured under 15 us per call: it cannot tell a few us of hidden work from handshake noise there, so the speedup is shown but left out of the geomeans.",
    )
    reference_us: float | None = None
    baseline_us: float | None = None
    speedup: Speedups | None = None
    floor_us: float | None = Field(default=None, description="Bytes that must move / the best copy bandwidth recorded for this GPU and memory clock; flagged under floor_factor x floor_us.")
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
    left_out_of_geomeans: int | None = Field(default=None, description="Passed workloads too small for the judge to verify (too_small_to_verify), not in the geomeans and means.")


class Provenance(Result):
    gpu: str | None = None
    gpu_index: int | None = None
    driver: str | None = None
    cuda: str | None = None
    torch: str | None = None
    triton: str | None = None
    clocks_mhz: dict[str, Any] | None = Field(
        default=None,
        description="GPU clocks (not locked) sampled once a second while the job held the GPU: min and max of the SM and memory clocks, "
        "the clocks when it was leased, and whether the SM clock moved by more than 5%.",
    )
    method: str
    isolation: dict[str, str] | None = Field(default=None, description="How the solution was kept from the evaluator (sandbox mode and what it means).")
    verification: dict[str, Any] | None = Field(default=None, description="How the executor's times were checked against the judge's own clock, and the tolerance.")
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
    warnings: list[Finding] | None = Field(default=None, description="Conditions of the whole run that weaken its numbers (e.g. timing_fallback), each with what fixes it.")
    aggregate: Aggregate
    workloads: list[WorkloadResult]
    provenance: Provenance | None = None
    compile: dict[str, Any] | None = None
    phase_seconds: dict[str, float] | None = Field(default=None, description="Where the wall time went: build, waiting for the GPU, processes, timing, judging.")
