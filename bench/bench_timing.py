"""Timing fidelity and speed of kda-mcp's run_benchmark, against peers in the same run.

  python bench/bench_timing.py fidelity   # kda-mcp median vs a direct CUPTI loop; spread over 5 runs
  python bench/bench_timing.py dataset    # wall time of benchmarking the sample dataset: kda-mcp vs flashinfer-bench
  python bench/bench_timing.py self       # a definition's reference against itself, job after job: how far from 1.0

Needs a GPU, cupti-python and flashinfer-bench. Prints tables; --json PATH also writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (definition, example solution file, workload axis values) — small and large kernels of each kind.
CASES = [
    ("vector_add_fp32", "kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json", [{"n": 2**20}, {"n": 2**26}]),
    ("rmsnorm_h4096_bf16", "kda-examples/rmsnorm/rmsnorm_h4096_bf16/rmsnorm_h4096_bf16_triton_row.json", [{"batch_size": 128}, {"batch_size": 8192}]),
    ("gemm_n4096_k4096_bf16", "kda-examples/gemm/gemm_n4096_k4096_bf16/gemm_n4096_k4096_bf16_triton_tiled.json", [{"M": 16}, {"M": 4096}]),
]


def make_app(state: Path):
    from kda_mcp.tools.app import KdaApp
    from kda_mcp.tools.settings import Settings

    return KdaApp(Settings.resolve(state_dir=state / "state", cache_dir=state / "cache"))


def solution_input(path: str):
    from kda_mcp.tools.solution import SolutionInput

    return SolutionInput(path=str(REPO / "resources/dataset/solutions" / path))


def uuids_for(app, definition: str, axes_list: list[dict]) -> list[str]:
    workloads = app.dataset().workloads(definition)
    return [next(w.uuid for w in workloads if w.axes == axes) for axes in axes_list]


def run_kda(app, solution, workloads, config, baseline="none") -> dict:
    import anyio

    from kda_mcp.tools.evaluation.benchmark import plan_benchmark, submit_benchmark

    plan = plan_benchmark(app, solution, workloads=workloads, baseline=baseline, config=config)
    job_id = submit_benchmark(app, plan)
    view = anyio.run(app.jobs.wait, job_id, 1800)
    assert view.status == "succeeded", view
    return view.result


_RECORDS: list[list[tuple[int, int]]] = []  # CUPTI callbacks are registered once per process


def direct_cupti(definition_name: str, solution_path: str, axes: dict, app, iterations: int = 200) -> float:
    """A minimal independent measurement: same kernel, fixed inputs, L2 flushed before each call,
    CUPTI kernel records, per-call time = last end - first start of the records inside the call."""
    import torch
    from cupti import cupti
    from flashinfer_bench.data import Solution

    from kda_mcp.tools.harness.inputs import allocate_outputs, make_inputs
    from kda_mcp.tools.harness.loading import load_entry, write_sources

    dataset = app.dataset()
    definition = dataset.definition(definition_name)
    workload = next(w for w in dataset.workloads(definition_name) if w.axes == axes)
    solution = Solution.model_validate_json((REPO / "resources/dataset/solutions" / solution_path).read_text())
    folder = Path(tempfile.mkdtemp())
    write_sources(solution, folder)
    entry = load_entry(solution, folder)
    inputs = make_inputs(definition, workload, seed=1, device="cuda:0", dataset_root=app.settings.dataset_path)
    outputs = allocate_outputs(definition, inputs, device="cuda:0")
    flush = torch.empty(256 * 2**20 // 4, dtype=torch.int32, device="cuda:0")
    if not _RECORDS:
        cupti.activity_register_callbacks(lambda: (8 * 2**20, 0), lambda acts: _RECORDS[0].extend((a.start, a.end) for a in acts))
        _RECORDS.append([])
    records = _RECORDS[0]
    records.clear()
    for _ in range(10):
        entry(*inputs, *outputs)
    torch.cuda.synchronize()
    brackets = []
    cupti.activity_enable(cupti.ActivityKind.CONCURRENT_KERNEL)
    for _ in range(iterations):
        flush.fill_(0)
        torch.cuda.synchronize()
        start = cupti.get_timestamp()
        entry(*inputs, *outputs)
        torch.cuda.synchronize()
        brackets.append((start, cupti.get_timestamp()))
    cupti.activity_flush_all(1)
    cupti.activity_disable(cupti.ActivityKind.CONCURRENT_KERNEL)
    times = []
    for lo, hi in brackets:
        inside = [(s, e) for s, e in records if lo <= s <= hi]
        times.append((max(e for _, e in inside) - min(s for s, _ in inside)) / 1e3)
    shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(times)


def fidelity(args: argparse.Namespace) -> dict:
    from kda_mcp.tools.evaluation.models import BenchmarkConfig

    app = make_app(Path(tempfile.mkdtemp()))
    rows = []
    for definition, path, axes_list in CASES:
        uuids = uuids_for(app, definition, axes_list)
        medians: dict[str, list[float]] = {u: [] for u in uuids}
        for _ in range(args.repeats):
            result = run_kda(app, solution_input(path), uuids, BenchmarkConfig())
            for row in result["workloads"]:
                assert row["status"] == "PASSED", row
                medians[row["workload"]].append(row["latency"]["median_us"])
        for axes, uuid in zip(axes_list, uuids):
            direct = direct_cupti(definition, path, axes, app)
            runs = medians[uuid]
            kda = statistics.median(runs)
            rows.append(
                {
                    "case": f"{definition} {axes}",
                    "direct_cupti_us": round(direct, 2),
                    "kda_us": round(kda, 2),
                    "ratio": round(kda / direct, 4),
                    "abs_diff_us": round(kda - direct, 2),
                    "spread_pct": round(100 * (max(runs) - min(runs)) / kda, 2),
                    "runs": [round(x, 2) for x in runs],
                }
            )
    print(f"{'case':44} {'direct CUPTI us':>15} {'kda-mcp us':>11} {'ratio':>7} {'diff us':>8} {'spread %':>9}")
    for r in rows:
        print(f"{r['case']:44} {r['direct_cupti_us']:15.2f} {r['kda_us']:11.2f} {r['ratio']:7.4f} {r['abs_diff_us']:8.2f} {r['spread_pct']:9.2f}")
    print(f"(kda-mcp: median of the per-run medians over {args.repeats} runs; spread = (max - min) / median of those runs)")
    return {"fidelity": rows}


SELF_CASES = [
    ("vector_add_fp32", [{"n": 4096}, {"n": 2**24}]),
    ("gdn_decode_qk4_v8_d128_k_last", [{"batch_size": 1}, {"batch_size": 64}]),
    ("rmsnorm_h4096_bf16", [{"batch_size": 128}]),
]


def self_comparison(args: argparse.Namespace) -> dict:
    """Identical code as candidate and reference, in separate jobs (new processes each time). Within
    a job the 95% interval covers round-to-round noise; across jobs the spread of the ratio shows
    what differs between two processes running the same code, which no single job's interval sees."""
    from kda_mcp.tools.evaluation.models import BenchmarkConfig
    from kda_mcp.tools.solution import SolutionInput

    app = make_app(Path(tempfile.mkdtemp()))
    rows = []
    for definition, axes_list in SELF_CASES:
        reference = app.dataset().definition(definition).reference
        solution = SolutionInput(files={"main.py": reference}, spec={"language": "python", "entry_point": "main.py::run", "destination_passing_style": False}, definition=definition, name=f"{definition}_self")
        uuids = uuids_for(app, definition, axes_list)
        runs: dict[str, list[tuple[float, list[float] | None]]] = {u: [] for u in uuids}
        for _ in range(args.repeats):
            result = run_kda(app, solution, uuids, BenchmarkConfig())
            for row in result["workloads"]:
                speedup = row.get("speedup") or {}
                runs[row["workload"]].append((speedup.get("vs_reference"), speedup.get("vs_reference_ci95")))
        for axes, uuid in zip(axes_list, uuids):
            ratios = [r for r, _ in runs[uuid] if r]
            covered = sum(1 for _, ci in runs[uuid] if ci and ci[0] <= 1.0 <= ci[1])
            rows.append(
                {
                    "case": f"{definition} {axes}",
                    "ratios": ratios,
                    "intervals": [ci for _, ci in runs[uuid]],
                    "mean": round(statistics.mean(ratios), 4) if ratios else None,
                    "sd_pct": round(100 * statistics.stdev(ratios), 2) if len(ratios) > 1 else None,
                    "covered": f"{covered}/{len(runs[uuid])}",
                }
            )
    print(f"{'case':48} {'ratio per job':40} {'mean':>7} {'sd %':>6} {'CI has 1.0':>10}")
    for r in rows:
        print(f"{r['case']:48} {' '.join(f'{x:.3f}' for x in r['ratios']):40} {r['mean'] or 0:7.4f} {r['sd_pct'] or 0:6.2f} {r['covered']:>10}")
    print(f"(speedup of the reference over itself, default config, {args.repeats} jobs per case)")
    return {"self": rows}


def dataset_wall(args: argparse.Namespace) -> dict:
    from flashinfer_bench.bench import Benchmark, BenchmarkConfig as FibConfig
    from flashinfer_bench.data import TraceSet

    from kda_mcp.tools.evaluation.models import BenchmarkConfig

    # The same work for both: every example and baseline solution on every workload, with
    # flashinfer-bench's defaults (10 warm-up, 50 iterations, 3 trials) on both sides.
    app = make_app(Path(tempfile.mkdtemp()))
    config = BenchmarkConfig(warmup=10, iterations=50, correctness_trials=3)
    started = time.perf_counter()
    kda_rows = 0
    phases = []
    for definition, path, _ in CASES:
        result = run_kda(app, solution_input(path), "all", config, baseline="dataset")
        kda_rows += len(result["workloads"])
        phases.append((definition, result.get("phase_seconds")))
    kda_s = time.perf_counter() - started
    for definition, spent in phases:
        print(f"kda-mcp {definition}: {spent}")

    copy = Path(tempfile.mkdtemp()) / "dataset"
    shutil.copytree(REPO / "resources/dataset", copy)
    started = time.perf_counter()
    traces = Benchmark(TraceSet.from_path(str(copy)), FibConfig(warmup_runs=10, iterations=50, num_trials=3)).run_all(dump_traces=False)
    fib_s = time.perf_counter() - started
    fib_rows = sum(len(v) for v in traces.traces.values())
    print(f"{'tool':28} {'wall s':>8} {'evaluations':>12}")
    print(f"{'kda-mcp run_benchmark':28} {kda_s:8.1f} {2 * kda_rows:12d}")
    print(f"{'flashinfer-bench Benchmark':28} {fib_s:8.1f} {fib_rows:12d}")
    print(f"ratio kda-mcp / flashinfer-bench: {kda_s / fib_s:.2f}")
    fib_latency = {
        (t.definition, json.dumps(t.workload.axes, sort_keys=True), t.solution): t.evaluation.performance.latency_ms * 1e3
        for v in traces.traces.values()
        for t in v
        if t.evaluation and t.evaluation.performance
    }
    return {"kda_phases": phases, "kda_s": kda_s, "fib_s": fib_s, "ratio": kda_s / fib_s, "kda_evaluations": 2 * kda_rows, "fib_evaluations": fib_rows, "fib_latency_us": {" ".join(k): v for k, v in fib_latency.items()}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["fidelity", "dataset", "self"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    numbers = {"fidelity": fidelity, "dataset": dataset_wall, "self": self_comparison}[args.what](args)
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":  # flashinfer-bench's Benchmark spawns workers: keep the guard
    main()
