"""run_benchmark: plan what to measure, run it as a job, record the attempt and its traces."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flashinfer_bench.data import Definition, Solution

from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import InvalidArgumentError, not_found
from kda_mcp.tools.evaluation import input_rules
from kda_mcp.tools.evaluation.models import BenchmarkConfig, BenchmarkResult
from kda_mcp.tools.evaluation.policy import Policy
from kda_mcp.tools.evaluation.report import COPY_BANDWIDTH_FILE, assemble, compile_error, record_copy_bandwidth
from kda_mcp.tools.evaluation.runner import Plan, SidePlan, reference_solution
from kda_mcp.tools.harness.staging import Built
from kda_mcp.tools.jobs import JobContext
from kda_mcp.tools.solution import SolutionInput, check_signature, resolve_input
from kda_mcp.tools.traces import write_traces

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]


def choose_baseline(app: KdaApp, definition: Definition, choice: str | None) -> Solution | None:
    """'dataset' (default): the dataset's baseline; 'none'; a dataset solution name; an attempt id."""
    dataset = app.dataset()
    if choice in (None, "", "dataset"):
        return dataset.baseline(definition.name)
    if choice == "none":
        return None
    named = [s for s in dataset.solutions(definition.name) if s.name == choice]
    if named:
        return named[0]
    if choice.startswith("a") and choice[1:].isdigit():
        return app.ledger.solution(choice)
    candidates = [s.name for s in dataset.solutions(definition.name)]
    raise not_found("baseline", choice, candidates + ["dataset", "none"])


def plan_benchmark(
    app: KdaApp,
    given: SolutionInput,
    *,
    workloads: str | list[str] = "dev",
    baseline: str | None = None,
    config: BenchmarkConfig | None = None,
    arch: str | None = None,
    gpu_kind: str | None = None,
) -> Plan:
    solution, definition = resolve_input(app, given)
    check_signature(solution, definition)
    dataset = app.dataset()
    extras = dataset.extras(definition.name)
    chosen = dataset.select_workloads(definition.name, workloads)
    if not chosen:
        raise InvalidArgumentError(f"{definition.name} has no workloads to run.")
    return Plan(
        solution=solution,
        definition=definition,
        workloads=chosen,
        tolerance=dataset.tolerance(definition.name),
        baseline=choose_baseline(app, definition, baseline),
        config=config or BenchmarkConfig(),
        dataset_root=app.settings.dataset_path,
        target=app.target(arch, gpu_kind),
        mutable_inputs=list(extras.get("mutable_inputs", [])),
        floor_check=bool(extras.get("floor_check", True)),
        policy=Policy.model_validate(extras.get("policy") or {}),
        input_rules=input_rules.resolve(definition, extras),  # the definition's, else the embedded definition's of that name
    )


async def run(app: KdaApp, plan: Plan, *, progress: Progress, on_gpu: Callable[[int], None], gpu_kind: str | None = None) -> BenchmarkResult:
    """Build the candidate (and baseline), then measure candidate, reference and baseline together."""
    started = time.monotonic()
    progress(0, len(plan.workloads) + 1, "building")
    evaluator = app.evaluator
    candidate = await evaluator.build(plan.solution, plan.definition, plan.target, plan.dataset_root)
    if candidate.error:
        return compile_error(plan, candidate)
    sides = [SidePlan("candidate", candidate, policy_applies=True), SidePlan("reference", Built(solution=reference_solution(plan.definition)))]
    if plan.baseline is not None:
        baseline = await evaluator.build(plan.baseline, plan.definition, plan.target, plan.dataset_root)
        if baseline.error:
            log.warning("the baseline %s did not build: %s", plan.baseline.name, baseline.error)
        else:
            sides.append(SidePlan("baseline", baseline))
    built_s = time.monotonic() - started
    measurement = await app.executor.measure(sides, plan, plan.config.timing(), progress=progress, on_gpu=on_gpu, purpose=f"run_benchmark {plan.solution.name}", kind=gpu_kind)
    measurement.phases = {"build": round(built_s, 2), **measurement.phases}
    record_copy_bandwidth(app.settings.state_dir / COPY_BANDWIDTH_FILE, measurement)  # the floor uses the best seen on this GPU
    return assemble(plan, measurement, app.executor.isolation(measurement))


def submit_benchmark(app: KdaApp, plan: Plan, *, parent_attempt: str | None = None, gpu_kind: str | None = None) -> str:
    app.ledger.check_parent(parent_attempt)
    app.executor.require("run_benchmark", gpu_kind)

    async def work(job: JobContext) -> dict:
        result = await run(app, plan, progress=job.progress, on_gpu=job.on_gpu, gpu_kind=gpu_kind)
        result.attempt_id = app.ledger.new_id()
        result.parent_attempt = parent_attempt
        app.ledger.record(
            result.attempt_id, solution=plan.solution, parent=parent_attempt, job_id=job.job_id, result=result.model_dump(mode="json", exclude_none=True)
        )
        try:
            write_traces(app.settings.state_dir / "traceset", plan.definition, plan.solution, plan.workloads, result)
        except OSError as exc:
            log.warning("could not write traces: %s", exc)
        return result.model_dump(mode="json", exclude_none=True)

    params = {"solution": plan.solution.name, "definition": plan.definition.name, "workloads": [w.uuid for w in plan.workloads]}
    return app.jobs.submit("run_benchmark", params, work)
