"""Run compare_solutions: both solutions loaded at once, timed rounds interleaved on one GPU, and
the judge checking each side's outputs (trials and the last timed calls) as run_benchmark does."""

from __future__ import annotations

import secrets
import shutil
import statistics
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any, Callable

import anyio

from kda_mcp.tools.evaluation.abtest import ComparisonResult, WorkloadAB, paired_interval, round_order, summarize, verdict_for
from kda_mcp.tools.evaluation.runner import Evaluator, Plan
from kda_mcp.tools.evaluation.session import Reply, new_nonce, session_for
from kda_mcp.tools.ledger import solution_hash

Progress = Callable[[int, int, str], None]


async def compare_solutions(
    evaluator: Evaluator, plan_a: Plan, plan_b: Plan, *, rounds: int, progress: Progress, on_gpu: Callable[[int], None], run_id: str
) -> ComparisonResult:
    definition = plan_a.definition
    run_dir = evaluator.runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    method = (
        f"{rounds} rounds per side in the order A B B A ..., each round a timed batch ({plan_a.config.iterations} calls, cold L2, rotating "
        "fresh inputs, CUPTI GPU time) whose median is one sample; speedup = median of the paired A/B log-ratios, 95% bootstrap interval"
    )
    try:
        built = {}
        for side, plan in (("a", plan_a), ("b", plan_b)):
            built[side] = await evaluator.build(plan.solution, definition, plan.target, plan.dataset_root, run_dir, side)
        failed = {side: b.error for side, b in built.items() if b.error}
        rows: list[WorkloadAB] = []
        if failed:
            for w in plan_a.workloads:
                rows.append(
                    WorkloadAB(
                        workload=w.uuid,
                        axes=dict(w.axes),
                        a_status="COMPILE_ERROR" if "a" in failed else "PASSED",
                        b_status="COMPILE_ERROR" if "b" in failed else "PASSED",
                        verdict="not_comparable",
                    )
                )
            return _result(plan_a, plan_b, rows, method, extra=" Build failed: " + "; ".join(f"{k.upper()}: {v}" for k, v in failed.items()))
        async with evaluator.gpus.lease(f"compare_solutions {plan_a.solution.name} vs {plan_b.solution.name}") as lease:
            on_gpu(lease.gpu)
            rows = await _interleaved(evaluator, plan_a, plan_b, built, rounds, lease, run_dir, progress)
        return _result(plan_a, plan_b, rows, method)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


async def _interleaved(evaluator: Evaluator, plan_a: Plan, plan_b: Plan, built: dict[str, Any], rounds: int, lease: Any, run_dir: Any, progress: Progress) -> list[WorkloadAB]:
    plans = {"a": plan_a, "b": plan_b}
    jobs = {"judge": ("judge", evaluator._judge_job(plan_a, run_dir))}
    for side, plan in plans.items():
        jobs[side] = ("solution", evaluator._job_file(plan, plan.solution, built[side], run_dir / side, new_nonce()))
    procs: dict[str, Any] = {}

    async def start(key: str) -> None:
        procs[key] = await evaluator._start(jobs[key][0], lease, jobs[key][1])

    async with anyio.create_task_group() as tg:
        for key in jobs:
            tg.start_soon(start, key)
    timeout = plan_a.config.workload_timeout_s
    rows: list[WorkloadAB] = []
    async with AsyncExitStack() as stack:
        sessions = {}
        for key, (_, job) in jobs.items():
            sessions[key] = await stack.enter_async_context(session_for(procs[key], job))
        hello = {key: await session.receive(180) for key, session in sessions.items()}
        broken = {k: r for k, r in hello.items() if not r.ok or r.message.get("event") != "ready"}
        for index, workload in enumerate(plan_a.workloads):
            progress(index, len(plan_a.workloads), f"workload {index + 1}: interleaved rounds")
            row = WorkloadAB(workload=workload.uuid, axes=dict(workload.axes), a_status="PASSED", b_status="PASSED", verdict="not_comparable")
            rows.append(row)
            if broken:
                for side in ("a", "b"):
                    if side in broken:
                        setattr(row, f"{side}_status", "RUNTIME_ERROR")
                continue
            seeds = [secrets.randbits(31) for _ in range(plan_a.config.correctness_trials)]
            ok = {}
            for side in ("a", "b"):
                reply = await sessions[side].request({"cmd": "trials", "index": index, "seeds": seeds}, timeout)
                ok[side] = _status(reply)
                setattr(row, f"{side}_status", ok[side])
            if ok["a"] != "PASSED" or ok["b"] != "PASSED":
                continue
            samples: dict[str, list[float]] = {"a": [], "b": []}
            seed = secrets.randbits(31)
            for turn, side in enumerate(round_order(rounds)):
                reply = await sessions[side].request({"cmd": "time", "index": index, "seed": seed + turn}, timeout)
                if _status(reply) != "PASSED":
                    setattr(row, f"{side}_status", _status(reply))
                    break
                samples[side].append(statistics.median(reply.message["gpu_us"]))
            else:
                checked = {}
                for side in ("a", "b"):
                    saved = await sessions[side].request({"cmd": "save", "index": index}, timeout)
                    checked[side] = saved.message.get("checked", []) if saved.ok else []
                for side in ("a", "b"):
                    task = {
                        "workload": workload.model_dump_json(),
                        "folder": str(run_dir / side / str(index)),
                        "trial_seeds": seeds,
                        "checked": checked[side][:3],
                        "time_reference": False,
                    }
                    verdict = await sessions["judge"].request({"cmd": "judge", "task": task}, 300)
                    setattr(row, f"{side}_status", verdict.message.get("status", "RUNTIME_ERROR") if verdict.ok else "RUNTIME_ERROR")
                if row.a_status == "PASSED" and row.b_status == "PASSED":
                    speedup, low, high, noise = paired_interval(samples["a"], samples["b"])
                    row.a_us = round(statistics.median(samples["a"]), 3)
                    row.b_us = round(statistics.median(samples["b"]), 3)
                    row.speedup_b_over_a = round(speedup, 4)
                    row.ci95 = [round(low, 4), round(high, 4)]
                    row.noise_pct = round(noise, 2)
                    row.verdict = verdict_for(low, high)
                    row.rounds = len(samples["a"])
    return rows


def _status(reply: Reply) -> str:
    if reply.ok and reply.message.get("status") == "ok":
        return "PASSED"
    if reply.ok:
        return reply.message.get("status", "RUNTIME_ERROR")
    return "TIMEOUT" if reply.failure == "timeout" else "RUNTIME_ERROR"


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


def ab_plans(plan_a: Plan, plan_b: Plan, per_round: int) -> tuple[Plan, Plan]:
    """Same workloads and settings for both sides; short timed rounds."""
    config = plan_a.config.model_copy(update={"iterations": per_round, "warmup": 3})
    return replace(plan_a, config=config, baseline=None), replace(plan_b, workloads=plan_a.workloads, config=config, baseline=None)
