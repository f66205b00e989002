"""Turning a measurement into a BenchmarkResult: statuses, statistics, speedups with intervals,
integrity findings, aggregates and provenance. Pure functions of what the judge reported."""

from __future__ import annotations

import importlib.metadata
import statistics
from typing import Any

from kda_mcp.tools.capabilities import driver_version
from kda_mcp.tools.evaluation.abtest import paired_interval
from kda_mcp.tools.evaluation.models import (
    Aggregate,
    BenchmarkResult,
    Finding,
    Provenance,
    Speedups,
    TimingStats,
    WorkloadResult,
)
from kda_mcp.tools.evaluation.policy import kernel_findings, runtime_findings, static_findings
from kda_mcp.tools.evaluation.runner import Measurement, Plan
from kda_mcp.tools.harness.staging import Built
from kda_mcp.tools.evaluation.stats import geomean, summarize
from kda_mcp.tools.ledger import solution_hash

# A reported time may fall short of the judge's own measurement of the same calls by this much
# before the result is withheld as timing_unverified (calibrated on honest kernels; see README).
VERIFY_REL = 0.03
VERIFY_ABS_US = 3.0
# The judge's L2 flush before each call is timed too; taking this much longer than it did before
# any solution loaded means other GPU work overlapped the measurement.
CONTENTION_FACTOR = 2.0
CONTENTION_ABS_US = 20.0


def compile_error(plan: Plan, built: Built) -> BenchmarkResult:
    rows = [WorkloadResult(workload=w.uuid, axes=dict(w.axes), status="COMPILE_ERROR", log=built.error) for w in plan.workloads]
    return BenchmarkResult(
        solution=plan.solution.name,
        solution_hash=solution_hash(plan.solution),
        definition=plan.definition.name,
        status="compile_error",
        message=f"The solution did not build: {built.error} Call compile_solution for the diagnostics.",
        aggregate=Aggregate(passed=0, total=len(rows)),
        workloads=rows,
        compile=built.compile_report,
    )


def median_gap(timing: dict[str, Any]) -> float | None:
    """Median over calls of (judge's bracket - executor's span): the handshake plus anything hidden."""
    pairs = [b - s for b, s in zip(timing.get("bracket_us", []), timing.get("span_us", [])) if b > 0]
    return statistics.median(pairs) if pairs else None


def handshake_offset(sides: dict[str, dict[str, Any]], trusted: str | None) -> float | None:
    """What the go/done handshake adds to the judge's bracket, calibrated on this workload: the
    trusted side's gap (the reference runs our code only), else the smallest gap of any side."""
    gaps = {name: median_gap(outcome["timing"]) for name, outcome in sides.items() if outcome.get("timing")}
    gaps = {k: v for k, v in gaps.items() if v is not None}
    if trusted and trusted in gaps:
        return gaps[trusted]
    return min(gaps.values()) if gaps else None


def verification_findings(timing: dict[str, Any], offset: float | None) -> tuple[list[Finding], float | None]:
    """timing_unverified when the executor reports less GPU time than the judge's clock allows."""
    gap = median_gap(timing)
    spans = [s for s in timing.get("span_us", []) if s > 0]
    if gap is None or offset is None or not spans:
        return [], None
    span = statistics.median(spans)
    hidden = gap - offset
    tolerance = max(VERIFY_REL * span, VERIFY_ABS_US)
    outside = round(statistics.median(timing["bracket_us"]) - offset, 3)
    if hidden > tolerance:
        return [
            Finding(
                check="timing_unverified",
                detail=f"the solution's process reports {span:.2f} us per call, but the judge measured {outside:.2f} us from outside it "
                f"({hidden:.2f} us unexplained, tolerance {tolerance:.2f} us): work was hidden from the timer",
            )
        ], outside
    return [], outside


def contention_findings(timing: dict[str, Any], baseline_us: float | None) -> list[Finding]:
    flushes = [f for f in timing.get("flush_us", []) if f > 0]
    if not flushes or not baseline_us:
        return []
    typical = statistics.median(flushes)
    worst = max(flushes)
    if typical > CONTENTION_FACTOR * baseline_us + CONTENTION_ABS_US or worst > 10 * baseline_us + 200:
        return [
            Finding(
                check="gpu_contention",
                detail=f"the judge's L2 flush took {typical:.0f} us (worst {worst:.0f} us) against {baseline_us:.0f} us before any solution "
                "loaded: other GPU work ran during the measurement",
            )
        ]
    return []


def speedup_over(base: dict[str, Any] | None, cand: dict[str, Any]) -> tuple[float | None, list[float] | None]:
    """base/cand from the medians, with a 95% interval from the paired rounds (None when unusable)."""
    if not base or base.get("status") != "PASSED" or not base.get("timing"):
        return None, None
    b, c = base["timing"], cand["timing"]
    b_spans = [x for x in b.get("span_us", []) if x > 0]
    c_spans = [x for x in c.get("span_us", []) if x > 0]
    if not b_spans or not c_spans:
        return None, None
    ratio = statistics.median(b_spans) / statistics.median(c_spans)
    rounds = [(x, y) for x, y in zip(b.get("round_span", []), c.get("round_span", [])) if x > 0 and y > 0]
    interval = None
    if len(rounds) >= 3:
        _, low, high, _ = paired_interval([x for x, _ in rounds], [y for _, y in rounds])
        interval = [round(low, 4), round(high, 4)]
    return round(ratio, 4), interval


def _stats(values: list[float]) -> TimingStats | None:
    values = [v for v in values if v > 0]
    if not values:
        return None
    s = summarize(values)
    return TimingStats(median_us=round(s["median"], 3), p10_us=round(s["p10"], 3), p90_us=round(s["p90"], 3), min_us=round(s["min"], 3), count=int(s["count"]))


def workload_row(plan: Plan, index: int, measurement: Measurement, static: list[Finding]) -> WorkloadResult:
    workload = plan.workloads[index]
    row = WorkloadResult(workload=workload.uuid, axes=dict(workload.axes), status="RUNTIME_ERROR")
    attached = measurement.attached.get("candidate", {})
    if not attached.get("ok"):
        row.status = attached.get("status", "RUNTIME_ERROR")
        row.log = "\n".join(x for x in (attached.get("error") or measurement.error, attached.get("log")) if x)[-3000:] or None
        return row
    report = measurement.workloads[index] if index < len(measurement.workloads) else None
    if report is None:
        row.log = measurement.error or "the judge gave no verdict for this workload"
        return row
    sides = report["sides"]
    cand = sides.get("candidate", {})
    row.status = cand.get("status", "RUNTIME_ERROR")
    row.max_abs_error = cand.get("max_abs_error")
    row.max_rel_error = cand.get("max_rel_error")
    row.matched_ratio = cand.get("matched_ratio") if plan.tolerance.required_matched_ratio else None
    findings = [Finding(**f) for f in cand.get("findings", [])]
    text = "\n".join(x for x in (cand.get("message") or cand.get("error"), cand.get("log")) if x)
    row.log = text[-3000:] or None
    timing = cand.get("timing")
    if timing:
        row.latency = _stats(timing["span_us"])
        busy = [b for b in timing.get("busy_us", []) if b > 0]
        row.busy_us = round(statistics.median(busy), 3) if busy else None
        counts = timing.get("activities", [])
        row.kernels = int(statistics.median(counts)) if counts else None
        host = [h for h in timing.get("host_us", []) if h > 0]
        row.host_call_us = round(statistics.median(host), 2) if host else None
        if row.latency and row.host_call_us:
            row.launch_bound = row.host_call_us > row.latency.median_us or None
        offset = handshake_offset(sides, "reference")
        unverified, row.outside_us = verification_findings(timing, offset)
        findings += unverified
        findings += contention_findings(timing, measurement.facts.get("flush_us"))
        for name in ("reference", "baseline"):
            other = sides.get(name)
            if other and other.get("timing"):
                findings += [Finding(check=f.check, detail=f"while the {name} was timed: {f.detail}") for f in contention_findings(other["timing"], measurement.facts.get("flush_us"))]
        findings += runtime_findings(cand.get("forbidden_calls"))
        findings += kernel_findings(timing.get("names", []), plan.policy)
        ref, ref_ci = speedup_over(sides.get("reference"), cand)
        base, base_ci = speedup_over(sides.get("baseline"), cand)
        reference_timing = (sides.get("reference") or {}).get("timing")
        if reference_timing and sides["reference"].get("status") == "PASSED":
            row.reference_us = _stats(reference_timing["span_us"]).median_us if _stats(reference_timing["span_us"]) else None
        baseline_timing = (sides.get("baseline") or {}).get("timing")
        if baseline_timing and sides["baseline"].get("status") == "PASSED":
            row.baseline_us = _stats(baseline_timing["span_us"]).median_us if _stats(baseline_timing["span_us"]) else None
        bandwidth = measurement.facts.get("bandwidth_bytes_per_s")
        if bandwidth and report.get("bytes_moved") and row.latency:
            row.floor_us = round(report["bytes_moved"] / bandwidth * 1e6, 3)
            if plan.floor_check and row.latency.median_us < plan.config.floor_factor * row.floor_us:
                findings.append(
                    Finding(
                        check="below_physical_floor",
                        detail=f"median {row.latency.median_us:.2f} us is under {plan.config.floor_factor:g} x the floor {row.floor_us:.2f} us "
                        f"({report['bytes_moved']} bytes at {bandwidth / 1e12:.2f} TB/s measured copy bandwidth)",
                    )
                )
        ceiling = plan.policy.speedup_ceiling or plan.config.speedup_ceiling
        for name, value in (("reference", ref), ("baseline", base)):
            if value and value > ceiling:
                findings.append(Finding(check="speedup_above_ceiling", detail=f"{value:.1f}x over the {name} exceeds the {ceiling:g}x ceiling; review before trusting it"))
        findings += static
        row.findings = findings or None
        row.suspect = bool(findings) or None
        if row.status == "PASSED" and not row.suspect:
            row.speedup = Speedups(vs_reference=ref, vs_reference_ci95=ref_ci, vs_baseline=base, vs_baseline_ci95=base_ci)
    else:
        row.findings = (findings + static) or None
        row.suspect = bool(row.findings) or None
    return row


def assemble(plan: Plan, measurement: Measurement, isolation: dict[str, str]) -> BenchmarkResult:
    static = static_findings(plan.solution, plan.policy)
    rows = [workload_row(plan, i, measurement, static) for i in range(len(plan.workloads))]
    methods = sorted({a.get("method", "") for name, a in measurement.attached.items() if name == "candidate" and a.get("method")})
    facts = measurement.facts
    return BenchmarkResult(
        solution=plan.solution.name,
        solution_hash=solution_hash(plan.solution),
        definition=plan.definition.name,
        baseline=plan.baseline.name if plan.baseline else None,
        baseline_hash=solution_hash(plan.baseline) if plan.baseline else None,
        status="failed" if measurement.error and not measurement.workloads else "complete",
        message=_message(rows, measurement.error),
        aggregate=_aggregate(rows),
        workloads=rows,
        phase_seconds=measurement.phases or None,
        provenance=Provenance(
            gpu=(facts.get("device") or {}).get("name"),
            gpu_index=measurement.gpu,
            driver=driver_version(),
            cuda=_cuda_version(),
            torch=_version("torch"),
            triton=_version("triton"),
            clocks_mhz=measurement.clocks,
            method=(methods[0] if methods else "none (nothing was timed)") + _method_tail(plan, facts),
            isolation=isolation,
            verification={
                "judge": "GPU events of the trusted judge around each call's go/done handshake, outside the solution's process",
                "tolerance": f"max({VERIFY_REL:.0%} of the reported time, {VERIFY_ABS_US:g} us) after subtracting the handshake, calibrated on the reference",
                "checked_calls": "timed calls are drawn for checking after they finish, with probability 0.15 each (at least 2 per side)",
            },
            copy_bandwidth_tb_s=round(facts["bandwidth_bytes_per_s"] / 1e12, 3) if facts.get("bandwidth_bytes_per_s") else None,
            seeds={"correctness": measurement.trial_seeds, "timing": "drawn per call by the judge"},
            config=plan.config.model_dump(),
            kda_mcp=_version("kda-mcp"),
        ),
    )


def _method_tail(plan: Plan, facts: dict[str, Any]) -> str:
    flush = facts.get("flush_bytes")
    return (
        f"; cold L2 (flush {flush // 2**20 if flush else '?'} MiB + persisting-L2 reset before each call); fresh random inputs for every call in two "
        f"buffer sets; {plan.config.rounds} interleaved rounds per side (candidate, reference, baseline in shuffled order); median over timed calls"
    )


def _aggregate(rows: list[WorkloadResult]) -> Aggregate:
    passed = [r for r in rows if r.status == "PASSED"]
    vs_ref = [r.speedup.vs_reference for r in passed if r.speedup and r.speedup.vs_reference]
    vs_base = [r.speedup.vs_baseline for r in passed if r.speedup and r.speedup.vs_baseline]
    worst = None
    failing = [r for r in rows if r.status != "PASSED"]
    if failing:
        worst = failing[0].workload
    else:
        keyed = [(r.speedup.vs_baseline or r.speedup.vs_reference, r.workload) for r in passed if r.speedup and (r.speedup.vs_baseline or r.speedup.vs_reference)]
        worst = min(keyed)[1] if keyed else None
    return Aggregate(
        passed=len(passed),
        total=len(rows),
        geomean_speedup_vs_reference=_round(geomean(vs_ref)),
        geomean_speedup_vs_baseline=_round(geomean(vs_base)),
        mean_speedup_vs_reference=_round(sum(vs_ref) / len(vs_ref)) if vs_ref else None,
        mean_speedup_vs_baseline=_round(sum(vs_base) / len(vs_base)) if vs_base else None,
        worst_workload=worst,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _message(rows: list[WorkloadResult], error: str | None) -> str:
    passed = sum(r.status == "PASSED" for r in rows)
    suspect = sum(bool(r.suspect) for r in rows)
    parts = [f"{passed}/{len(rows)} workloads passed"]
    failures: dict[str, int] = {}
    for r in rows:
        if r.status != "PASSED":
            failures[r.status] = failures.get(r.status, 0) + 1
    if failures:
        parts.append("failures: " + ", ".join(f"{n} {s}" for s, n in failures.items()))
    if suspect:
        parts.append(f"{suspect} result(s) flagged by integrity checks; their speedups are withheld (see findings)")
    if error:
        parts.append(error)
    return "; ".join(parts) + "."


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_version() -> str | None:
    from kda_mcp.tools.capabilities import _cuda_runtime_version

    return _cuda_runtime_version()
