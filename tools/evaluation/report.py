"""Turning what the children reported into a BenchmarkResult: statuses, statistics, speedups,
integrity findings, aggregates and provenance. Pure functions of the records; no processes."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

from kda_mcp.tools.evaluation.models import (
    Aggregate,
    BenchmarkResult,
    Finding,
    Provenance,
    Speedups,
    TimingStats,
    WorkloadResult,
)
from kda_mcp.tools.evaluation.policy import Policy, kernel_findings, runtime_findings, static_findings
from kda_mcp.tools.evaluation.stats import geomean, summarize
from kda_mcp.tools.ledger import solution_hash

if TYPE_CHECKING:
    from kda_mcp.tools.evaluation.runner import Built, Plan


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

def assemble(
    plan: Plan,
    records: dict[int, dict[str, Any]],
    base_records: dict[int, dict[str, Any]],
    verdicts: dict[str, Any],
    seeds: dict[str, list[int]],
    timing_seeds: dict[str, int],
    clocks: dict[str, int] | None,
    gpu: int,
) -> BenchmarkResult:
    bandwidth = verdicts.get("bandwidth_bytes_per_s")
    judged = verdicts.get("workloads", {})
    static = static_findings(plan.solution, plan.policy)
    rows: list[WorkloadResult] = []
    methods = set()
    for index, workload in enumerate(plan.workloads):
        record = records.get(index, {"status": "RUNTIME_ERROR", "error": "not run"})
        row = WorkloadResult(workload=workload.uuid, axes=dict(workload.axes), status="RUNTIME_ERROR")
        findings: list[Finding] = []
        if record.get("status") != "ok":
            row.status = record["status"]
            row.log = "\n".join(x for x in (record.get("error"), record.get("log")) if x)[-3000:]
            if record.get("finding"):
                findings.append(Finding(check=record["finding"], detail=record.get("error", "")))
            row.findings = findings or None
            rows.append(row)
            continue
        verdict = judged.get(f"candidate:{index}")
        if verdict is None:
            row.log = verdicts.get("error", "the judge gave no verdict for this workload")
            rows.append(row)
            continue
        row.status = verdict["status"]
        row.max_abs_error = verdict.get("max_abs_error")
        row.max_rel_error = verdict.get("max_rel_error")
        row.matched_ratio = verdict.get("matched_ratio") if plan.tolerance.required_matched_ratio else None
        findings += [Finding(**f) for f in verdict.get("findings", [])]
        if verdict.get("message"):
            row.log = verdict["message"]
        timing = record["timing"]
        methods.add(timing["method"])
        stats = summarize(timing["gpu_us"])
        row.latency = TimingStats(
            median_us=round(stats["median"], 3), p10_us=round(stats["p10"], 3), p90_us=round(stats["p90"], 3), min_us=round(stats["min"], 3), count=int(stats["count"])
        )
        row.host_call_us = round(summarize(timing["host_call_us"])["median"], 2)
        row.wall_us = round(summarize(timing["wall_us"])["median"], 2)
        findings += timing_findings(timing, verdict.get("harness_seconds"))
        findings += _integrity_findings(record.get("integrity", {}), timing, plan.policy)
        reference = verdict.get("reference")
        if reference and reference.get("gpu_us"):
            row.reference_us = round(summarize(reference["gpu_us"])["median"], 3)
        base = base_records.get(index)
        base_verdict = judged.get(f"baseline:{index}")
        if base and base.get("status") == "ok" and base_verdict and base_verdict.get("status") == "PASSED":
            row.baseline_us = round(summarize(base["timing"]["gpu_us"])["median"], 3)
        if bandwidth and verdict.get("bytes_moved"):
            row.floor_us = round(verdict["bytes_moved"] / bandwidth * 1e6, 3)
            if plan.floor_check and row.latency.median_us < plan.config.floor_factor * row.floor_us:
                findings.append(
                    Finding(
                        check="below_physical_floor",
                        detail=f"median {row.latency.median_us:.2f} us is under {plan.config.floor_factor:g} x the floor {row.floor_us:.2f} us "
                        f"({verdict['bytes_moved']} bytes at {bandwidth / 1e12:.2f} TB/s measured copy bandwidth)",
                    )
                )
        ceiling = plan.policy.speedup_ceiling or plan.config.speedup_ceiling
        for name, base in (("reference", row.reference_us), ("baseline", row.baseline_us)):
            if base and row.latency.median_us > 0 and base / row.latency.median_us > ceiling:
                findings.append(Finding(check="speedup_above_ceiling", detail=f"{base / row.latency.median_us:.1f}x over the {name} exceeds the {ceiling:g}x ceiling; review before trusting it"))
        findings += static
        row.findings = findings or None
        row.suspect = bool(findings) or None
        if row.status == "PASSED" and not row.suspect and row.latency.median_us > 0:
            row.speedup = Speedups(
                vs_reference=round(row.reference_us / row.latency.median_us, 4) if row.reference_us else None,
                vs_baseline=round(row.baseline_us / row.latency.median_us, 4) if row.baseline_us else None,
            )
        rows.append(row)
    return BenchmarkResult(
        solution=plan.solution.name,
        solution_hash=solution_hash(plan.solution),
        definition=plan.definition.name,
        baseline=plan.baseline.name if plan.baseline else None,
        baseline_hash=solution_hash(plan.baseline) if plan.baseline else None,
        status="failed" if verdicts.get("error") and not judged else "complete",
        message=_message(rows, verdicts),
        aggregate=_aggregate(rows),
        workloads=rows,
        provenance=Provenance(
            gpu=(verdicts.get("device") or {}).get("name"),
            gpu_index=gpu,
            driver=_driver(),
            cuda=_cuda_version(),
            torch=_version("torch"),
            triton=_version("triton"),
            clocks_mhz=clocks,
            method="; ".join(sorted(methods)) + _method_tail(records) if methods else "none (nothing was timed)",
            copy_bandwidth_tb_s=round(bandwidth / 1e12, 3) if bandwidth else None,
            seeds={"correctness": seeds, "timing": timing_seeds},
            config=plan.config.model_dump(),
            kda_mcp=_version("kda-mcp"),
        ),
    )

def timing_findings(timing: dict[str, Any], harness_seconds: float | None) -> list[Finding]:
    findings = []
    outside = timing.get("outside_wall_s")
    if outside is not None and harness_seconds is not None:
        # What the batch should take: the harness alone (measured by the judge around a no-op
        # call) plus the calls as reported. Much longer means the reported times are too small.
        walls = sorted(timing["wall_us"])
        expected = harness_seconds + (sum(walls) + timing["warmup"] * walls[len(walls) // 2]) / 1e6
        if outside > 1.5 * expected + 0.25:
            findings.append(
                Finding(
                    check="timing_inconsistent",
                    detail=f"the timed batch took {outside:.3f} s measured outside the worker, but the harness ({harness_seconds:.3f} s) "
                    f"plus the reported calls account for only {expected:.3f} s",
                )
            )
    if timing.get("new_threads"):
        findings.append(Finding(check="background_threads", detail=f"threads started during timing: {timing['new_threads'][:5]}"))
    if timing.get("stray_gpu_work"):
        names = sorted({s["name"] for s in timing["stray_gpu_work"]})[:3]
        findings.append(Finding(check="work_outside_timed_span", detail=f"{len(timing['stray_gpu_work'])} GPU activities ran outside every timed call, e.g. {names}"))
    gpu_total_s = sum(timing["gpu_us"]) / 1e6
    if outside is not None and gpu_total_s > outside * 1.05 + 0.01:
        findings.append(
            Finding(check="timing_inconsistent", detail=f"reported GPU time {gpu_total_s:.3f} s exceeds the {outside:.3f} s the batch took, measured outside the worker")
        )
    return findings




def _integrity_findings(integrity: dict[str, Any], timing: dict[str, Any], policy: Policy) -> list[Finding]:
    findings = []
    if integrity.get("harness_tampered"):
        findings.append(Finding(check="harness_tampered", detail=f"the solution replaced functions the measurement relies on: {integrity['harness_tampered'][:5]}"))
    findings += runtime_findings(integrity.get("forbidden_calls"))
    findings += kernel_findings(timing.get("kernel_names", []), policy)
    return findings


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


def _message(rows: list[WorkloadResult], verdicts: dict[str, Any]) -> str:
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
    if verdicts.get("error"):
        parts.append(verdicts["error"])
    return "; ".join(parts) + "."


def _method_tail(records: dict[int, dict[str, Any]]) -> str:
    sample = next((r["timing"] for r in records.values() if r.get("status") == "ok"), None)
    if not sample:
        return ""
    return (
        f"; cold L2 (flush {sample['flush_bytes'] // 2**20} MiB + persisting-L2 reset before each call); "
        f"{sample['rotation_sets']} rotating input sets"
        + (", refilled with fresh random data before each timed call" if sample.get("regenerated_inputs") else "")
        + f"; median of {sample['iterations']} calls after {sample['warmup']} warm-up"
    )


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cuda_version() -> str | None:
    from kda_mcp.tools.capabilities import _cuda_runtime_version

    return _cuda_runtime_version()


def _driver() -> str | None:
    out = _smi(["--query-gpu=driver_version", "--format=csv,noheader"])
    return out.splitlines()[0].strip() if out else None


def gpu_clocks(gpu: int) -> dict[str, int] | None:
    out = _smi([f"--id={gpu}", "--query-gpu=clocks.sm,clocks.mem,clocks.max.sm", "--format=csv,noheader,nounits"])
    if not out:
        return None
    try:
        sm, mem, max_sm = (int(float(x)) for x in out.strip().split(","))
    except ValueError:
        return None
    return {"sm": sm, "memory": mem, "max_sm": max_sm}


def _smi(args: list[str]) -> str | None:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        done = subprocess.run([smi, *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None
