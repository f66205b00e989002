"""The statistics and result of an A/B comparison (compare_solutions).

Each round gives one median per side; the verdict rests on the paired log-ratios of the rounds
(Student's t interval of their mean):
statistically, B is faster when the whole 95% interval lies above 1; `meaningful` says whether it
also clears the practical threshold (PRACTICAL_THRESHOLD either way), and both are stated.

The rounds only see noise within one job. Two processes running identical code also differ, by an
amount that stays put for the life of the processes (measured on an H200 with
`python bench/bench_timing.py self`: the reference against itself, new processes per job, gave
job-to-job spreads of the speedup of 0.5% for one large kernel and 2-5% for short and multi-kernel
calls, while each job's own interval was under +-1%). So every interval also carries that spread
(BenchmarkConfig.process_spread, a standard deviation of the log speedup), added in quadrature.
"""

from __future__ import annotations

import math
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
PROCESS_SPREAD = 0.03  # default process_spread: the typical job-to-job spread measured (see above)
Z95 = 1.96


class WorkloadAB(Result):
    workload: str
    axes: dict[str, int]
    a_status: str
    b_status: str
    a_us: float | None = Field(default=None, description="Median over rounds of A's per-round medians.")
    b_us: float | None = None
    speedup_b_over_a: float | None = Field(default=None, description="a_us / b_us: above 1 means B is faster.")
    ci95: list[float] | None = Field(default=None, description="95% interval of the speedup: the paired rounds' spread plus the spread between processes (process_spread).")
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


# Two-sided 95% quantiles of Student's t by degrees of freedom (rounds - 1); past 30, about 1.96.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def t95(df: int) -> float:
    return T95[max(k for k in T95 if k <= df)] if df <= 30 else Z95


def paired_interval(a: list[float], b: list[float], *, process_spread: float = PROCESS_SPREAD) -> tuple[float, float, float, float]:
    """(speedup, low, high, noise%) for B over A from paired per-round medians. The interval is
    Student's t on the mean log-ratio (a bootstrap of 4-8 rounds is too narrow), widened by the
    spread between processes (process_spread, in quadrature)."""
    logs = [math.log(x / y) for x, y in zip(a, b) if x > 0 and y > 0]
    if not logs:
        raise ValueError("no paired rounds")
    center = math.exp(statistics.median(logs))
    mean = statistics.fmean(logs)
    within = t95(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    half = math.hypot(within, Z95 * process_spread)
    low, high = math.exp(min(mean - half, math.log(center))), math.exp(max(mean + half, math.log(center)))
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
