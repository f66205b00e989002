"""compare_solutions: an interleaved A/B of two solutions on one GPU, with a significance verdict.

Both solutions are loaded in their own processes at once; timed rounds alternate A B B A A B ...
so drift in clocks or temperature lands on both equally. Each round gives one median per side;
the verdict rests on the paired log-ratios of the rounds.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Literal

from pydantic import Field

from kda_mcp.tools.evaluation.stats import geomean
from kda_mcp.tools.models import Result

Verdict = Literal["b_faster", "b_slower", "no_significant_difference", "not_comparable"]


class WorkloadAB(Result):
    workload: str
    axes: dict[str, int]
    a_status: str
    b_status: str
    a_us: float | None = Field(default=None, description="Median over rounds of A's per-round medians.")
    b_us: float | None = None
    speedup_b_over_a: float | None = Field(default=None, description="a_us / b_us: above 1 means B is faster.")
    ci95: list[float] | None = Field(default=None, description="95% interval of the speedup, from the paired rounds.")
    noise_pct: float | None = Field(default=None, description="Spread of the paired log-ratios (std, in %).")
    verdict: Verdict
    rounds: int = 0


class ComparisonResult(Result):
    a: str
    a_hash: str
    b: str
    b_hash: str
    definition: str
    verdict: Verdict
    geomean_speedup_b_over_a: float | None = None
    message: str
    workloads: list[WorkloadAB]
    method: str


def paired_interval(a: list[float], b: list[float], *, seed: int = 0, resamples: int = 2000) -> tuple[float, float, float, float]:
    """(speedup, low, high, noise%) for B over A from paired per-round medians, by bootstrap."""
    logs = [math.log(x / y) for x, y in zip(a, b) if x > 0 and y > 0]
    if not logs:
        raise ValueError("no paired rounds")
    center = math.exp(statistics.median(logs))
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(logs, k=len(logs))) for _ in range(resamples))
    low, high = math.exp(means[int(0.025 * resamples)]), math.exp(means[int(0.975 * resamples) - 1])
    noise = 100 * (statistics.pstdev(logs) if len(logs) > 1 else 0.0)
    return center, low, high, noise


def verdict_for(low: float, high: float, *, threshold: float = 0.005) -> Verdict:
    """B is faster when the whole interval sits above 1 (by more than the threshold), and so on."""
    if low > 1 + threshold:
        return "b_faster"
    if high < 1 - threshold:
        return "b_slower"
    return "no_significant_difference"


def summarize(rows: list[WorkloadAB]) -> tuple[Verdict, float | None, str]:
    comparable = [r for r in rows if r.verdict != "not_comparable"]
    if not comparable:
        return "not_comparable", None, "No workload passed for both solutions, so there is no speed to compare."
    speedup = geomean([r.speedup_b_over_a for r in comparable if r.speedup_b_over_a])
    votes = {v: sum(r.verdict == v for r in comparable) for v in ("b_faster", "b_slower", "no_significant_difference")}
    if votes["b_faster"] and not votes["b_slower"]:
        overall: Verdict = "b_faster"
    elif votes["b_slower"] and not votes["b_faster"]:
        overall = "b_slower"
    else:
        overall = "no_significant_difference"
    parts = [f"{n} {v.replace('_', ' ')}" for v, n in votes.items() if n]
    message = f"Geomean speedup of B over A: {speedup:.3f}x ({'; '.join(parts)} across {len(comparable)} workload(s))." if speedup else "No speedup computed."
    failing = [r for r in rows if r.verdict == "not_comparable"]
    if failing:
        message += f" {len(failing)} workload(s) not comparable (a side did not pass)."
    return overall, speedup, message


def round_order(rounds: int) -> list[str]:
    """A B B A A B B A ...: each side goes first as often as second."""
    pattern = ["a", "b", "b", "a"]
    return [pattern[i % 4] for i in range(2 * rounds)]
