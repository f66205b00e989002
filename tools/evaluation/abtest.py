"""The statistics and result of an A/B comparison (compare_solutions).

Each round gives one median per side; the verdict rests on the paired log-ratios of the rounds:
statistically, B is faster when the whole 95% interval lies above 1; `meaningful` says whether it
also clears the practical threshold (PRACTICAL_THRESHOLD either way), and both are stated.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Literal

from pydantic import Field

from kda_mcp.tools.evaluation.stats import geomean
from kda_mcp.tools.evaluation.models import Finding
from kda_mcp.tools.models import Result

ABVerdict = Literal["b_faster", "b_slower", "no_significant_difference", "not_comparable"]
# Across workloads: "mixed" when B is significantly faster on some and significantly slower on
# others; that is not "no difference", and the message says which.
OverallVerdict = Literal["b_faster", "b_slower", "mixed", "no_significant_difference", "not_comparable"]
PRACTICAL_THRESHOLD = 0.01  # a difference under 1% is rarely worth a direction of its own


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
    verdict: ABVerdict
    meaningful: bool | None = Field(default=None, description=f"The whole interval is more than {PRACTICAL_THRESHOLD:.0%} away from 1.")
    rounds: int = 0
    findings: list[Finding] | None = Field(default=None, description="Integrity findings that made the workload not comparable.")


class ComparisonResult(Result):
    a: str
    a_hash: str
    b: str
    b_hash: str
    definition: str
    verdict: OverallVerdict = Field(description="b_faster / b_slower: every workload with a verdict agrees; mixed: significant both ways; else no_significant_difference.")
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


def verdict_for(low: float, high: float) -> ABVerdict:
    """B is faster when the whole 95% interval lies above 1, slower when below, else no difference."""
    if low > 1:
        return "b_faster"
    if high < 1:
        return "b_slower"
    return "no_significant_difference"


def meaningful(low: float, high: float, threshold: float = PRACTICAL_THRESHOLD) -> bool:
    return low > 1 + threshold or high < 1 - threshold


def summarize(rows: list[WorkloadAB]) -> tuple[OverallVerdict, float | None, str]:
    comparable = [r for r in rows if r.verdict != "not_comparable"]
    if not comparable:
        return "not_comparable", None, "No workload passed for both solutions, so there is no speed to compare."
    speedup = geomean([r.speedup_b_over_a for r in comparable if r.speedup_b_over_a])
    votes = {v: sum(r.verdict == v for r in comparable) for v in ("b_faster", "b_slower", "no_significant_difference")}
    if votes["b_faster"] and not votes["b_slower"]:
        overall: OverallVerdict = "b_faster"
    elif votes["b_slower"] and not votes["b_faster"]:
        overall = "b_slower"
    elif votes["b_faster"] and votes["b_slower"]:
        overall = "mixed"
    else:
        overall = "no_significant_difference"
    parts = [f"{n} {v.replace('_', ' ')}" for v, n in votes.items() if n]
    message = f"Geomean speedup of B over A: {speedup:.3f}x ({'; '.join(parts)} across {len(comparable)} workload(s))." if speedup else "No speedup computed."
    if overall == "mixed":
        message += " The workloads disagree: B is significantly faster on some and significantly slower on others (verdict 'mixed')."
    clear = [r for r in comparable if r.meaningful]
    message += (
        f" A verdict means the 95% interval excludes 1; the practical threshold is {PRACTICAL_THRESHOLD:.0%}: 'meaningful' marks intervals "
        f"wholly more than {PRACTICAL_THRESHOLD:.0%} from 1 ({len(clear)} of {len(comparable)} workload(s) here)."
    )
    failing = [r for r in rows if r.verdict == "not_comparable"]
    if failing:
        message += f" {len(failing)} workload(s) not comparable (a side did not pass)."
    return overall, speedup, message
