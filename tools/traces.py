"""Benchmark results as flashinfer-bench traces, in a folder `TraceSet.from_path` reads.

Layout: <root>/solutions/<author>/<op_type>/<definition>/<solution>.json and
<root>/traces/<op_type>/<definition>.jsonl, appended to, one Trace per workload.
"""

from __future__ import annotations

import datetime
import fcntl
from pathlib import Path

from flashinfer_bench.data import (
    Correctness,
    Definition,
    Environment,
    Evaluation,
    EvaluationStatus,
    Performance,
    Solution,
    Trace,
    Workload,
)

from kda_mcp.tools.evaluation.models import BenchmarkResult


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_traces(root: Path, definition: Definition, solution: Solution, workloads: list[Workload], result: BenchmarkResult) -> Path:
    """Append one trace per workload; the solution is stored under a content-qualified name, since
    a TraceSet requires unique names and agents reuse names across versions."""
    solution = Solution.model_validate({**solution.model_dump(), "name": f"{solution.name}-{result.solution_hash[:8]}"})
    by_uuid = {w.uuid: w for w in workloads}
    provenance = result.provenance
    libs = {}
    if provenance:
        libs = {k: v for k, v in (("torch", provenance.torch), ("triton", provenance.triton), ("cuda", provenance.cuda), ("kda-mcp", provenance.kda_mcp)) if v}
    environment = Environment(hardware=(provenance.gpu if provenance and provenance.gpu else "unknown").replace(" ", "_"), libs=libs)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat()
    lines = []
    for item in result.workloads:
        status = EvaluationStatus(item.status)
        correctness = performance = None
        if status in (EvaluationStatus.PASSED, EvaluationStatus.INCORRECT_NUMERICAL):
            correctness = Correctness(
                max_absolute_error=item.max_abs_error or 0.0,
                max_relative_error=item.max_rel_error or 0.0,
                extra={"matched_ratio": item.matched_ratio} if item.matched_ratio is not None else None,
            )
        if status == EvaluationStatus.PASSED:
            latency_ms = item.latency.median_us / 1e3 if item.latency else 0.0
            reference_ms = (item.reference_us or 0.0) / 1e3
            speedup = item.speedup.vs_reference if item.speedup and item.speedup.vs_reference else 0.0
            performance = Performance(latency_ms=latency_ms, reference_latency_ms=reference_ms, speedup_factor=speedup)
        evaluation = Evaluation(
            status=status,
            environment=environment,
            timestamp=stamp,
            log=(item.log or "")[-2000:],
            correctness=correctness,
            performance=performance,
        )
        lines.append(Trace(definition=definition.name, workload=by_uuid[item.workload], solution=solution.name, evaluation=evaluation).model_dump_json())
    solution_path = root / "solutions" / _safe(solution.author) / _safe(definition.op_type) / _safe(definition.name) / f"{_safe(solution.name)}.json"
    solution_path.parent.mkdir(parents=True, exist_ok=True)
    solution_path.write_text(solution.model_dump_json(indent=2))
    trace_path = root / "traces" / _safe(definition.op_type) / f"{_safe(definition.name)}.jsonl"
    trace_path.parent.mkdir(parents=True, exist_ok=True)
    with trace_path.open("a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # two jobs finishing at once append whole lines
        handle.write("".join(line + "\n" for line in lines))
    return trace_path
