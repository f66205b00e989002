"""Jobs per second through the server: the local executor against the Ray executor (issue 14).

    python bench/bench_ray.py [--jobs 16] [--gpus 2] [--sleep 0.5]

Every job is a real run_benchmark call through the MCP tools (the SDK Client, in-process): plan,
job in SQLite, build (a Python solution: none), measure, report, ledger, traces. Three bodies:

* fake children: the real Evaluator.measure, with the GPU-free judge and executor of
  tests/fake_children.py (real processes, sockets and sandbox), one workload per job. Locally with
  warm spares, as the server runs them; on Ray, cold (each task's evaluator is its own);
* stand-in SLEEP s: no processes, a GPU held for SLEEP seconds (what scheduling costs around work
  of known length; the ideal is GPUS / SLEEP jobs per second);
* stand-in 0 s: the executor's overhead alone (submission, the reporter, the result's way back).

The Ray cluster is a local one (tools/executors/local_cluster.py): a head with GPUS fake GPUs of
kind h200, on the loopback; the local executor gets GPUS fake GPUs too. No GPU is needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FAKES = REPO / "tests" / "fake_children.py"
SOLUTION = {
    "files": {"main.py": "def run(x, y, out):\n    out.copy_(x + y)\n"},
    "spec": {"language": "python", "entry_point": "main.py::run"},
    "definition": "vector_add_fp32",
}


def _stand_in(seconds: float):
    """A measure body for Ray's NodeSettings.stand_in: hold the task's GPU `seconds`, report nothing."""

    async def measure(call, ctx):
        import anyio

        from kda_mcp.tools.evaluation.runner import Measurement

        ctx.on_gpu(ctx.gpu)
        await anyio.sleep(seconds)
        return Measurement(gpu=ctx.gpu)

    return measure


def _local_stub(app, seconds: float):
    async def measure(sides, plan, timing, *, progress, on_gpu, purpose):
        import anyio

        from kda_mcp.tools.evaluation.runner import Measurement

        async with app.gpus.lease(purpose) as lease:
            on_gpu(lease.gpu)
            await anyio.sleep(seconds)
            return Measurement(gpu=lease.gpu)

    return measure


def _app(base: Path, executor: str, address: str | None):
    from kda_mcp.tools.app import KdaApp
    from kda_mcp.tools.settings import Settings

    base.mkdir(parents=True)
    runtime = Path(tempfile.mkdtemp(prefix="kda-bench-ray-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    settings = Settings.resolve(
        state_dir=base / "state", cache_dir=base / "cache", workspaces=[str(base)], runtime_dir=runtime, executor=executor, ray_address=address, gpu_kind="h200" if executor == "ray" else None
    )
    return KdaApp(settings)


def _drive(app, jobs: int, workload: str) -> tuple[float, list[float], int]:
    """Submit `jobs` run_benchmark calls at once through the MCP tools, wait for all; (wall s, job s, failed)."""
    import anyio
    from mcp import Client

    from kda_mcp.server.app import build_server

    server = build_server(app)

    async def main():
        async with Client(server, mode="legacy") as client:
            started = time.perf_counter()
            ids = []
            for _ in range(jobs):
                out = await client.call_tool("run_benchmark", {"solution": SOLUTION, "workloads": [workload], "wait_seconds": 0})
                assert not out.is_error, out.content
                ids.append(out.structured_content["job_id"])
            views = []
            for job_id in ids:
                out = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 600})
                views.append(out.structured_content)
            return time.perf_counter() - started, views

    wall, views = anyio.run(main)
    failed = sum(1 for v in views if v["status"] != "succeeded")
    for v in views:
        if v["status"] != "succeeded":
            print(f"  job {v['job_id']} {v['status']}: {v.get('error')}", file=sys.stderr)
    elapsed = [app.jobs.get(v["job_id"]).elapsed_s or 0.0 for v in views]
    return wall, elapsed, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--sleep", type=float, default=0.5)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="kda-bench-ray-"))
    os.environ.setdefault("KDA_LOCK_DIR", str(base / "locks"))
    from kda_mcp.tools.dataset import Dataset
    from kda_mcp.tools.evaluation.pool import Commands
    from kda_mcp.tools.evaluation.runner import Evaluator
    from kda_mcp.tools.executors.local_cluster import LocalCluster
    from kda_mcp.tools.executors.ray import RayExecutor
    from kda_mcp.tools.gpus import GpuPool
    from kda_mcp.resources import sample_dataset_path

    workload = Dataset.load(sample_dataset_path()).workloads("vector_add_fp32")[0].uuid
    fake = Commands(judge=[sys.executable, str(FAKES), "judge"], executor=[sys.executable, str(FAKES), "executor", "ok"])
    bodies = [("fake children", None), (f"stand-in {args.sleep:g} s", args.sleep), ("stand-in 0 s", 0.0)]
    node_runtime = Path(tempfile.mkdtemp(prefix="kda-bench-rt-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    rows = []
    try:
        for name, seconds in bodies:
            app = _app(base / f"local-{len(rows)}", "local", None)
            app.gpus = GpuPool(list(range(args.gpus)), lock_dir=base / f"locks-{len(rows)}")
            app.evaluator = Evaluator(app.compiler, app.gpus, app.sandbox, fake)
            app.jobs.on_close(app.evaluator.aclose)  # its warm spares end with the server
            if seconds is not None:
                app.evaluator.measure = _local_stub(app, seconds)  # type: ignore[method-assign]
            try:
                rows.append(("local", name, *_drive(app, args.jobs, workload)))
            finally:
                app.jobs.close()
                shutil.rmtree(app.settings.runtime_dir, ignore_errors=True)

        cluster_env = {"KDA_LOCK_DIR": str(base / "ray-locks"), "KDA_RUNTIME_DIR": str(node_runtime / "rt")}
        with LocalCluster(env=cluster_env) as cluster:
            started = time.perf_counter()
            cluster.start_head(kind="h200", gpus=args.gpus, cpus=2)
            cluster.connect()
            cluster.wait_for_nodes(1)
            print(f"local Ray cluster up in {time.perf_counter() - started:.1f} s ({cluster.address})", file=sys.stderr)
            for name, seconds in bodies:
                app = _app(base / f"ray-{len(rows)}", "ray", cluster.address)
                app.executor = RayExecutor(app.settings, commands=fake, stand_in=None if seconds is None else _stand_in(seconds))
                try:
                    _drive(app, 2, workload)  # warm the cluster's worker processes first
                    rows.append(("ray", name, *_drive(app, args.jobs, workload)))
                finally:
                    app.jobs.close()
                    shutil.rmtree(app.settings.runtime_dir, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(node_runtime, ignore_errors=True)

    print(f"\nkda-mcp jobs through the server: {args.jobs} run_benchmark jobs at once, {args.gpus} fake GPUs, {os.cpu_count()} CPUs")
    header = f"{'executor':<9} {'job body':<18} {'jobs/s':>7} {'wall s':>7} {'job p50 s':>9} {'job max s':>9} {'failed':>6}"
    print(header)
    print("-" * len(header))
    for executor, name, wall, elapsed, failed in rows:
        print(f"{executor:<9} {name:<18} {args.jobs / wall:>7.2f} {wall:>7.2f} {statistics.median(elapsed):>9.2f} {max(elapsed):>9.2f} {failed:>6}")
    if args.sleep:
        print(f"(ideal for stand-in {args.sleep:g} s: {args.gpus / args.sleep:.2f} jobs/s)")
    return 0 if all(r[4] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
