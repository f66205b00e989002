"""compare_solutions: an interleaved A/B of two solutions of one definition, as a job.

The same runner as run_benchmark, with sides A and B: both loaded at once on one leased GPU,
timed in rounds whose order is shuffled, each round one sample per side; the judge checks both
sides' outputs exactly as for run_benchmark.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import InvalidArgumentError
from kda_mcp.tools.evaluation.abtest import ComparisonResult, WorkloadAB, meaningful, paired_interval, summarize, verdict_for
from kda_mcp.tools.evaluation.benchmark import plan_benchmark
from kda_mcp.tools.evaluation.models import Finding
from kda_mcp.tools.evaluation.report import handshake_offset, verification_findings
from kda_mcp.tools.evaluation.runner import Measurement, Plan, SidePlan
from kda_mcp.tools.jobs import JobContext
from kda_mcp.tools.ledger import solution_hash
from kda_mcp.tools.solution import SolutionInput

Progress = Callable[[int, int, str], None]


def ab_plans(plan_a: Plan, plan_b: Plan, rounds: int, per_round: int) -> tuple[Plan, Plan]:
    """Same workloads and settings for both sides: `rounds` rounds of `per_round` timed calls."""
    config = plan_a.config.model_copy(update={"rounds": rounds, "iterations": rounds * per_round, "warmup": 3})
    return replace(plan_a, config=config, baseline=None), replace(plan_b, workloads=plan_a.workloads, config=config, baseline=None)


def submit_compare(
    app: KdaApp,
    a: SolutionInput,
    b: SolutionInput,
    *,
    workloads: str | list[str] = "dev",
    rounds: int = 8,
    per_round: int = 20,
    arch: str | None = None,
    gpu_kind: str | None = None,
) -> str:
    plan_a = plan_benchmark(app, a, workloads=workloads, baseline="none", arch=arch, gpu_kind=gpu_kind)
    plan_b = plan_benchmark(app, b, workloads=workloads, baseline="none", arch=arch, gpu_kind=gpu_kind)
    if plan_a.definition.name != plan_b.definition.name:
        raise InvalidArgumentError(f"A solves {plan_a.definition.name} and B solves {plan_b.definition.name}; compare solutions of one definition.")
    app.executor.require("compare_solutions", gpu_kind)
    plan_a, plan_b = ab_plans(plan_a, plan_b, rounds, per_round)

    async def work(job: JobContext) -> dict:
        result = await compare(app, plan_a, plan_b, progress=job.progress, on_gpu=job.on_gpu, gpu_kind=gpu_kind)
        return result.model_dump(mode="json", exclude_none=True)

    params = {"a": plan_a.solution.name, "b": plan_b.solution.name, "definition": plan_a.definition.name, "rounds": rounds}
    return app.jobs.submit("compare_solutions", params, work)


async def compare(app: KdaApp, plan_a: Plan, plan_b: Plan, *, progress: Progress, on_gpu: Callable[[int], None], gpu_kind: str | None = None) -> ComparisonResult:
    evaluator = app.evaluator
    built = {"a": await evaluator.build(plan_a.solution, plan_a.definition, plan_a.target, plan_a.dataset_root)}
    built["b"] = await evaluator.build(plan_b.solution, plan_b.definition, plan_b.target, plan_b.dataset_root)
    method = (
        f"{plan_a.config.rounds} rounds, each one timed batch per side in a shuffled order; a round's median is one sample; "
        "speedup = A's median / B's median, 95% Student's t interval from the paired rounds, "
        f"widened by a {plan_a.config.process_spread:.1%} spread between processes (process_spread)"
    )
    failed = {side: b.error for side, b in built.items() if b.error}
    if failed:
        rows = [
            WorkloadAB(workload=w.uuid, axes=dict(w.axes), a_status="COMPILE_ERROR" if "a" in failed else "PASSED", b_status="COMPILE_ERROR" if "b" in failed else "PASSED", verdict="not_comparable")
            for w in plan_a.workloads
        ]
        return _result(plan_a, plan_b, rows, method, extra=" Build failed: " + "; ".join(f"{k.upper()}: {v}" for k, v in failed.items()))
    sides = [SidePlan("a", built["a"]), SidePlan("b", built["b"])]
    measurement = await app.executor.measure(
        sides, plan_a, plan_a.config.timing(), progress=progress, on_gpu=on_gpu, purpose=f"compare_solutions {plan_a.solution.name} vs {plan_b.solution.name}", kind=gpu_kind
    )
    rows = [ab_row(plan_a, i, measurement) for i in range(len(plan_a.workloads))]
    return _result(plan_a, plan_b, rows, method, extra=f" {measurement.error}" if measurement.error else "")


def ab_row(plan: Plan, index: int, measurement: Measurement) -> WorkloadAB:
    workload = plan.workloads[index]
    row = WorkloadAB(workload=workload.uuid, axes=dict(workload.axes), a_status="RUNTIME_ERROR", b_status="RUNTIME_ERROR", verdict="not_comparable")
    report = measurement.workloads[index] if index < len(measurement.workloads) else None
    for side in ("a", "b"):
        attached = measurement.attached.get(side, {})
        if not attached.get("ok"):
            setattr(row, f"{side}_status", attached.get("status", "RUNTIME_ERROR"))
    if report is None:
        return row
    sides = report["sides"]
    for side in ("a", "b"):
        setattr(row, f"{side}_status", sides.get(side, {}).get("status", getattr(row, f"{side}_status")))
    if row.a_status != "PASSED" or row.b_status != "PASSED":
        return row
    offset = handshake_offset(sides, None)
    findings: list[Finding] = []
    for side in ("a", "b"):
        unverified, _ = verification_findings(sides[side]["timing"], offset)
        findings += [Finding(check=f.check, detail=f"{side.upper()}: {f.detail}") for f in unverified]
        findings += [Finding(check=f["check"], detail=f"{side.upper()}: {f['detail']}") for f in sides[side].get("findings", [])]
    if findings:
        row.findings = findings
        return row
    a_rounds, b_rounds = sides["a"]["timing"]["round_span"], sides["b"]["timing"]["round_span"]
    paired = [(x, y) for x, y in zip(a_rounds, b_rounds) if x > 0 and y > 0]
    if len(paired) < 3:
        return row
    speedup, low, high, noise = paired_interval([x for x, _ in paired], [y for _, y in paired], process_spread=plan.config.process_spread)
    row.a_us = round(statistics.median(x for x in sides["a"]["timing"]["span_us"] if x > 0), 3)
    row.b_us = round(statistics.median(x for x in sides["b"]["timing"]["span_us"] if x > 0), 3)
    row.speedup_b_over_a = round(speedup, 4)
    row.ci95 = [round(low, 4), round(high, 4)]
    row.noise_pct = round(noise, 2)
    row.verdict = verdict_for(low, high)
    row.meaningful = meaningful(low, high)
    row.rounds = len(paired)
    return row


def _result(plan_a: Plan, plan_b: Plan, rows: list[WorkloadAB], method: str, extra: str = "") -> ComparisonResult:
    verdict, speedup, message = summarize(rows)
    return ComparisonResult(
        a=plan_a.solution.name,
        a_hash=solution_hash(plan_a.solution),
        b=plan_b.solution.name,
        b_hash=solution_hash(plan_b.solution),
        definition=plan_a.definition.name,
        verdict=verdict,
        geomean_speedup_b_over_a=round(speedup, 4) if speedup else None,
        message=message + extra,
        workloads=rows,
        method=method,
    )
