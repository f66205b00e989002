"""How tight the outside check of reported GPU time is, and what the trust boundary costs.

    python bench/bench_integrity.py calibrate      honest kernels from ~2 us to ~2 ms: what the judge
                                                   measures from outside against what the executor
                                                   reports; then known amounts of hidden work
    python bench/bench_integrity.py cost [--old DIR]
                                                   wall time of one run_benchmark (sample vector add,
                                                   dev set, default settings), with this code and, given
                                                   --old, an older checkout's (in its own process)

Needs a GPU. Prints tables; --json writes the raw numbers too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = [2**12, 2**16, 2**20, 2**22, 2**24, 2**26, 2**28]
HIDDEN = [0, 2**16, 2**20, 2**22]


def make_app(root: Path, dataset: Path | None = None):
    from kda_mcp.tools.app import KdaApp
    from kda_mcp.tools.settings import Settings

    return KdaApp(Settings.resolve(dataset=str(dataset) if dataset else None, state_dir=root / "state", cache_dir=root / "cache", workspaces=[str(root)]))


def calibration_dataset(root: Path) -> Path:
    """The sample dataset with vector-add workloads from 2^12 to 2^29 floats (2 us .. 2 ms)."""
    from kda_mcp.resources import sample_dataset_path

    target = root / "dataset"
    shutil.copytree(sample_dataset_path(), target)
    lines = [
        json.dumps({"definition": "vector_add_fp32", "workload": {"axes": {"n": n}, "inputs": {"x": {"type": "random"}, "y": {"type": "random"}}, "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kda-cal-{n}"))}})
        for n in SIZES
    ]
    (target / "workloads/elementwise/vector_add_fp32.jsonl").write_text("\n".join(lines) + "\n")
    return target


def benchmark(app, solution, workloads, config=None) -> dict:
    import anyio

    from kda_mcp.tools.evaluation.benchmark import plan_benchmark, submit_benchmark
    from kda_mcp.tools.evaluation.models import BenchmarkConfig

    plan = plan_benchmark(app, solution, workloads=workloads, baseline="none", config=BenchmarkConfig(**(config or {})))
    job = submit_benchmark(app, plan)
    view = anyio.run(app.jobs.wait, job, 1800)
    if view.status != "succeeded":
        raise SystemExit(f"benchmark failed: {view.error}")
    return view.result


def python_solution(body: str, name: str):
    from kda_mcp.tools.solution import SolutionInput

    return SolutionInput(files={"main.py": body}, spec={"language": "python", "entry_point": "main.py::run"}, definition="vector_add_fp32", name=name)


def hidden_body(elements: int) -> str:
    """A vector add that also does `elements` worth of work with CUPTI's kernel recording off."""
    return textwrap.dedent(
        f"""
        import torch
        from cupti import cupti
        KIND = cupti.ActivityKind.CONCURRENT_KERNEL
        scratch = {{}}
        def run(x, y, out):
            if {elements}:
                if "a" not in scratch:
                    scratch["a"] = torch.ones({elements} or 1, device=x.device)
                cupti.activity_disable(KIND)
                scratch["a"].mul_(1.0)
                cupti.activity_enable(KIND)
            torch.add(x, y, out=out)
        """
    )


def calibrate(args: argparse.Namespace) -> dict:
    from kda_mcp.tools.evaluation.report import VERIFY_ABS_US, VERIFY_REL

    root = Path(tempfile.mkdtemp(prefix="kda-cal-"))
    app = make_app(root, calibration_dataset(root))
    workloads = [w.uuid for w in app.dataset().workloads("vector_add_fp32")]
    out: dict = {"honest": [], "hidden": []}
    honest = benchmark(app, python_solution("import torch\ndef run(x, y, out):\n    torch.add(x, y, out=out)\n", "honest_add"), workloads)
    print("honest torch.add measured", flush=True)
    triton = benchmark(app, example_input(app), workloads)
    print(f"\nhonest kernels (tolerance max({VERIFY_REL:.0%}, {VERIFY_ABS_US:g} us)); gap = judge's outside figure - executor's reported median")
    print(f"{'n':>11} {'torch span':>11} {'outside':>9} {'gap':>7} {'triton span':>12} {'outside':>9} {'gap':>7}  flagged")
    for a, b in zip(honest["workloads"], triton["workloads"]):
        row = {
            "n": a["axes"]["n"],
            "torch_us": a["latency"]["median_us"], "torch_outside_us": a.get("outside_us"),
            "triton_us": b["latency"]["median_us"], "triton_outside_us": b.get("outside_us"),
            "flagged": sorted({f["check"] for w in (a, b) for f in w.get("findings", [])}),
        }  # fmt: skip
        out["honest"].append(row)
        gap_a = (row["torch_outside_us"] or 0) - row["torch_us"]
        gap_b = (row["triton_outside_us"] or 0) - row["triton_us"]
        print(f"{row['n']:>11} {row['torch_us']:>11.2f} {row['torch_outside_us'] or 0:>9.2f} {gap_a:>7.2f} {row['triton_us']:>12.2f} {row['triton_outside_us'] or 0:>9.2f} {gap_b:>7.2f}  {','.join(row['flagged']) or '-'}")
    print("\nhidden work (a kernel run with CUPTI's recording off): caught?")
    picks = [workloads[1], workloads[4]]  # ~3 us and ~50 us kernels
    print(f"{'n':>11} {'hidden elts':>12} {'reported':>9} {'outside':>9} {'hidden us':>10} {'tolerance':>10}  caught")
    for elements in HIDDEN:
        result = benchmark(app, python_solution(hidden_body(elements), f"hidden_{elements}"), picks)
        for row in result["workloads"]:
            reported = row["latency"]["median_us"]
            outside = row.get("outside_us") or 0.0
            caught = any(f["check"] == "timing_unverified" for f in row.get("findings", []))
            tolerance = max(VERIFY_REL * reported, VERIFY_ABS_US)
            out["hidden"].append({"n": row["axes"]["n"], "elements": elements, "reported_us": reported, "outside_us": outside, "caught": caught})
            print(f"{row['axes']['n']:>11} {elements:>12} {reported:>9.2f} {outside:>9.2f} {outside - reported:>10.2f} {tolerance:>10.2f}  {'yes' if caught else 'no'}", flush=True)
    app.jobs.close()
    return out


EXAMPLE = "solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json"


def example_input(app):
    from kda_mcp.tools.solution import SolutionInput

    return SolutionInput(path=str(app.settings.dataset_path / EXAMPLE))


OLD_DRIVER = """
import json, sys, tempfile, time
from pathlib import Path
import anyio
sys.path.insert(0, sys.argv[1])
from tools.app import KdaApp
from tools.settings import Settings
from tools.solution import SolutionInput
root = Path(tempfile.mkdtemp())
app = KdaApp(Settings.resolve(state_dir=root / "state", cache_dir=root / "cache"))
seconds = []
for _ in range(2):
    plan = app.plan_benchmark(SolutionInput(path=sys.argv[2]), workloads="dev")
    start = time.monotonic()
    job = app.submit_benchmark(plan)
    view = anyio.run(app.jobs.wait, job, 1800)
    seconds.append(round(time.monotonic() - start, 2))
    assert view.status == "succeeded", view
print(json.dumps({"seconds": seconds, "statuses": [w["status"] for w in view.result["workloads"]], "message": view.result.get("message")}))
app.jobs.close()
"""


def cost(args: argparse.Namespace) -> dict:
    root = Path(tempfile.mkdtemp(prefix="kda-cost-"))
    app = make_app(root)
    example = app.settings.dataset_path / EXAMPLE
    seconds = []
    for _ in range(2):
        start = time.monotonic()
        result = benchmark_default(app, example_input(app))
        seconds.append(round(time.monotonic() - start, 2))
    app.jobs.close()
    out = {"new_seconds": seconds, "new_statuses": [w["status"] for w in result["workloads"]], "new_phases": result.get("phase_seconds")}
    if args.old:
        done = subprocess.run([sys.executable, "-c", OLD_DRIVER, args.old, str(example)], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            print(done.stderr[-2000:])
        else:
            out["old"] = json.loads(done.stdout.strip().splitlines()[-1])
    print("\none run_benchmark of the sample vector add (4 dev workloads, dataset baseline, default settings), wall seconds")
    print(f"{'code':<24} {'first':>7} {'second':>7}")
    print(f"{'this (trusted judge)':<24} {seconds[0]:>7.2f} {seconds[1]:>7.2f}   phases {out['new_phases']}")
    if "old" in out:
        print(f"{'older checkout':<24} {out['old']['seconds'][0]:>7.2f} {out['old']['seconds'][1]:>7.2f}   statuses {out['old']['statuses']}")
    print(f"this code's statuses: {out['new_statuses']}")
    return out


def benchmark_default(app, solution) -> dict:
    import anyio

    from kda_mcp.tools.evaluation.benchmark import plan_benchmark, submit_benchmark

    plan = plan_benchmark(app, solution, workloads="dev")
    job = submit_benchmark(app, plan)
    view = anyio.run(app.jobs.wait, job, 1800)
    if view.status != "succeeded":
        raise SystemExit(f"benchmark failed: {view.error}")
    return view.result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["calibrate", "cost"])
    parser.add_argument("--old", help="an older checkout (its root) to time the same benchmark with")
    parser.add_argument("--json", help="write the raw numbers here")
    args = parser.parse_args()
    out = calibrate(args) if args.what == "calibrate" else cost(args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
