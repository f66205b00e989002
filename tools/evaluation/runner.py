"""The orchestrator of one benchmark: build, run the candidate and the baseline in solution
children on a leased GPU, let the judge decide, and assemble the result.

Runs in the job loop. A child that crashes, hangs or exhausts memory costs its workload a
status (RUNTIME_ERROR / TIMEOUT) and is replaced for the rest; nothing waits forever.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp.tools.evaluation.models import (
    BenchmarkConfig,
    BenchmarkResult,
)
from kda_mcp.tools.evaluation.policy import Policy
from kda_mcp.tools.evaluation.pool import WarmPool, spawn_child
from kda_mcp.tools.evaluation.report import assemble, compile_error, gpu_clocks
from kda_mcp.tools.evaluation.session import ChildSession, Reply, default_memory_limit, new_nonce, session_for
from kda_mcp.tools.compile.compiler import PROJECT_ROOT, Compiler
from kda_mcp.tools.compile.targets import Target
from kda_mcp.tools.gpus import GpuPool, Lease
from kda_mcp.tools.models import Tolerance
from kda_mcp.tools.procs import scrubbed_env

LOAD_TIMEOUT_S = 180  # import + first CUDA use of a fresh child
Progress = Callable[[int, int, str], None]


@dataclass
class Plan:
    solution: Solution
    definition: Definition
    workloads: list[Workload]
    tolerance: Tolerance
    baseline: Solution | None
    config: BenchmarkConfig
    dataset_root: Path
    target: Target
    mutable_inputs: list[str] = field(default_factory=list)
    floor_check: bool = True
    policy: Policy = field(default_factory=Policy)


@dataclass
class Built:
    """A solution ready for a child: its sources on disk and, for CUDA/C++, the library."""

    source_dir: Path | None = None
    library: str | None = None
    error: str | None = None
    compile_report: dict[str, Any] | None = None


@dataclass
class ChildCommands:
    """How children start; tests substitute fakes to exercise crash handling without a GPU."""

    solution: list[str] = field(default_factory=lambda: [sys.executable, "-m", "kda_mcp.tools.evaluation.solution_child"])
    judge: list[str] = field(default_factory=lambda: [sys.executable, "-m", "kda_mcp.tools.evaluation.judge_child"])
    warm: bool = True  # the real children support '--warm' (tools/bench/pool.py)


class Evaluator:
    def __init__(self, compiler: Compiler, gpus: GpuPool, runs_dir: Path, commands: ChildCommands | None = None) -> None:
        self.compiler = compiler
        self.gpus = gpus
        self.runs_dir = runs_dir
        self.commands = commands or ChildCommands()
        self.pool = WarmPool({"solution": self.commands.solution, "judge": self.commands.judge}, enabled=self.commands.warm)

    async def _start(self, kind: str, lease: Lease, job: Path) -> Any:
        """A child of `kind` working on `job`: a warm one from the pool, or a fresh one."""
        env = self._child_env(lease)
        if not self.commands.warm:
            command = self.commands.solution if kind == "solution" else self.commands.judge
            return await spawn_child([*command, str(job)], env)
        proc = await self.pool.take(kind, lease.gpu, env)
        if proc.returncode is None and proc.stdin is not None:
            try:
                await proc.stdin.send(f"{job}\n".encode())
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass  # it died while warming; the session reports it
        return proc

    # ---- building

    async def build(self, solution: Solution, definition: Definition, target: Target, dataset_root: Path, run_dir: Path, tag: str) -> Built:
        if solution.spec.language.value in ("cuda", "cpp"):
            report = await self.compiler.compile(
                solution, definition, target=target, extra_flags=[], timeout_s=600, first_call_workload=None, dataset_root=dataset_root
            )
            if report.status != "ok":
                return Built(error=report.message, compile_report=report.model_dump(exclude_none=True))
            artifacts = self.compiler.cache.artifacts(report.build_key)
            if not artifacts.get("library", "").endswith(".so"):
                return Built(error="built for analysis only (this torch has no CUDA); cannot run it", compile_report=report.model_dump(exclude_none=True))
            return Built(source_dir=Path(artifacts["source_dir"]), library=artifacts["library"])
        source_dir = run_dir / f"{tag}_src"
        for source in solution.sources:
            path = source_dir / source.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(source.content, encoding="utf-8")
        return Built(source_dir=source_dir)

    # ---- the whole benchmark

    async def run(self, plan: Plan, *, progress: Progress, on_gpu: Callable[[int], None], run_id: str) -> BenchmarkResult:
        run_dir = self.runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        seeds = {w.uuid: [secrets.randbits(31) for _ in range(plan.config.correctness_trials)] for w in plan.workloads}
        timing_seeds = {w.uuid: secrets.randbits(31) for w in plan.workloads}
        total = len(plan.workloads) * (2 if plan.baseline else 1) + 1
        progress(0, total, "building")
        phases: dict[str, float] = {}
        clock = time.monotonic()

        def phase(name: str) -> None:
            nonlocal clock
            now = time.monotonic()
            phases[name] = round(now - clock, 2)
            clock = now

        try:
            candidate = await self.build(plan.solution, plan.definition, plan.target, plan.dataset_root, run_dir, "candidate")
            if candidate.error:
                return compile_error(plan, candidate)
            baseline = await self.build(plan.baseline, plan.definition, plan.target, plan.dataset_root, run_dir, "baseline") if plan.baseline else None

            phase("build")
            async with self.gpus.lease(f"run_benchmark {plan.solution.name}") as lease:
                phase("wait_for_gpu")
                on_gpu(lease.gpu)
                clocks = gpu_clocks(lease.gpu)
                done = 0

                def step(message: str) -> None:
                    nonlocal done
                    done += 1
                    progress(done, total, message)

                # Start every process now so they load in parallel; nothing is timed until all are up.
                judge_job = self._judge_job(plan, run_dir)
                jobs = {"judge": ("judge", judge_job), "candidate": ("solution", self._job_file(plan, plan.solution, candidate, run_dir / "candidate", new_nonce()))}
                if baseline and not baseline.error and plan.baseline:
                    jobs["baseline"] = ("solution", self._job_file(plan, plan.baseline, baseline, run_dir / "baseline", new_nonce()))
                procs: dict[str, Any] = {}

                async def start(key: str) -> None:
                    procs[key] = await self._start(jobs[key][0], lease, jobs[key][1])

                async with anyio.create_task_group() as tg:
                    for key in jobs:
                        tg.start_soon(start, key)
                judge_proc, first, base_first = procs["judge"], procs["candidate"], procs.get("baseline")
                # Spares for the next job start importing now (CPU only, see pool.py).
                await self.pool.replenish(lease.gpu, self._child_env(lease), {"solution": 2, "judge": 1})
                phase("start_processes")
                async with session_for(judge_proc, judge_job) as judge:
                    ready = await judge.receive(LOAD_TIMEOUT_S)
                    records = await self._run_solution(plan, plan.solution, candidate, run_dir / "candidate", seeds, timing_seeds, lease, step, first)
                    phase("candidate")
                    base_records: dict[int, dict[str, Any]] = {}
                    if base_first is not None and plan.baseline and baseline:
                        base_records = await self._run_solution(plan, plan.baseline, baseline, run_dir / "baseline", seeds, timing_seeds, lease, step, base_first)
                        phase("baseline")
                    verdicts = await self._judge(plan, run_dir, seeds, records, base_records, judge, ready)
                    phase("judge")
                progress(total, total, "judged")
            result = assemble(plan, records, base_records, verdicts, seeds, timing_seeds, clocks, lease.gpu)
            result.phase_seconds = phases
            return result
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)  # outputs are large; results live in the ledger

    # ---- children

    def _job_file(self, plan: Plan, solution: Solution, built: Built, out_dir: Path, nonce: str) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        candidate = solution is plan.solution  # the policy binds the candidate, not the dataset's baseline
        job = {
            "forbidden_calls": plan.policy.forbidden_calls if candidate else [],
            "nonce": nonce,
            "solution": solution.model_dump_json(),
            "definition": plan.definition.model_dump_json(),
            "workloads": [w.model_dump_json() for w in plan.workloads],
            "source_dir": str(built.source_dir),
            "library": built.library,
            "dataset_root": str(plan.dataset_root),
            "out_dir": str(out_dir),
            "config": plan.config.model_dump(),
        }
        path = out_dir / "job.json"
        path.write_text(json.dumps(job))
        return path

    def _child_env(self, lease: Lease) -> dict[str, str]:
        env = lease.child_env(scrubbed_env())
        env["PYTHONPATH"] = ":".join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def _run_solution(
        self,
        plan: Plan,
        solution: Solution,
        built: Built,
        out_dir: Path,
        seeds: dict[str, list[int]],
        timing_seeds: dict[str, int],
        lease: Lease,
        step: Callable[[str], None],
        first: Any,
    ) -> dict[int, dict[str, Any]]:
        """Per workload index: {"status": ..., "trials": {...}, "timing": {...}, "log": ...}."""
        records: dict[int, dict[str, Any]] = {}
        pending = list(range(len(plan.workloads)))
        timeout = plan.config.workload_timeout_s
        memory = int(plan.config.memory_limit_gb * 2**30) if plan.config.memory_limit_gb else default_memory_limit()
        proc, job = first, out_dir / "job.json"
        while pending:
            if proc is None:  # the previous child died: a fresh one takes the remaining workloads
                job = self._job_file(plan, solution, built, out_dir, new_nonce())
                proc = await self._start("solution", lease, job)
            async with session_for(proc, job, memory_limit=memory) as child:
                proc = None
                hello = await child.receive(LOAD_TIMEOUT_S)
                if not hello.ok or hello.message.get("event") != "ready":
                    status = "COMPILE_ERROR" if hello.ok else ("TIMEOUT" if hello.failure == "timeout" else "RUNTIME_ERROR")
                    why = hello.message.get("error") if hello.ok else f"the solution process {child.exit_description} while loading"
                    log = (hello.message.get("traceback") or "") + "\n" + child.tail()
                    for index in pending:
                        records[index] = {"status": status, "error": f"could not load the solution: {why}", "log": log.strip()}
                        step(f"{solution.name}: load failed")
                    return records
                while pending:
                    index = pending.pop(0)
                    workload = plan.workloads[index]
                    record: dict[str, Any] = {}
                    records[index] = record
                    trials = await child.request({"cmd": "trials", "index": index, "seeds": seeds[workload.uuid]}, timeout)
                    if not self._take(record, trials, child, "correctness trials", timeout):
                        step(f"{solution.name}: workload {index + 1} {record['status']}")
                        break
                    record["trials"] = trials.message
                    timed = await child.request({"cmd": "time", "index": index, "seed": timing_seeds[workload.uuid]}, timeout)
                    if not self._take(record, timed, child, "timing", timeout):
                        step(f"{solution.name}: workload {index + 1} {record['status']}")
                        break
                    record["timing"] = timed.message
                    # Wall time of the whole timed batch, measured here, outside the solution's process.
                    record["timing"]["outside_wall_s"] = timed.wall_s
                    saved = await child.request({"cmd": "save", "index": index}, timeout)
                    if not self._take(record, saved, child, "saving outputs", timeout):
                        step(f"{solution.name}: workload {index + 1} {record['status']}")
                        break
                    record["timing"]["checked"] = saved.message["checked"]
                    record["integrity"] = _merge_integrity(trials.message, timed.message, saved.message)
                    record["status"] = "ok"
                    step(f"{solution.name}: workload {index + 1}/{len(plan.workloads)} timed")
                else:
                    await child.request({"cmd": "exit"}, 10)
        return records

    @staticmethod
    def _take(record: dict[str, Any], reply: Any, child: Any, what: str, timeout: float) -> bool:
        """Fill `record` from a reply; False (and a failure status) unless the step succeeded."""
        if reply.ok and reply.message.get("status") == "ok":
            return True
        if reply.ok:  # the child reported a failure and left (or will)
            record["status"] = reply.message.get("status", "RUNTIME_ERROR")
            record["error"] = reply.message.get("error", "unknown error")
            record["finding"] = reply.message.get("finding")
            record["log"] = ((reply.message.get("traceback") or "") + "\n" + child.tail()).strip()
        elif reply.failure == "timeout":
            record["status"] = "TIMEOUT"
            record["error"] = f"{what} ran past {timeout:.0f} s; the process was killed"
            record["log"] = child.tail()
        else:
            record["status"] = "RUNTIME_ERROR"
            record["error"] = f"during {what} the solution process {child.exit_description}"
            record["log"] = child.tail()
        return False

    def _judge_job(self, plan: Plan, run_dir: Path) -> Path:
        job = {
            "nonce": new_nonce(),
            "definition": plan.definition.model_dump_json(),
            "tolerance": plan.tolerance.model_dump(),
            "mutable_inputs": plan.mutable_inputs,
            "dataset_root": str(plan.dataset_root),
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "judge_job.json"
        path.write_text(json.dumps(job))
        return path

    async def _judge(
        self,
        plan: Plan,
        run_dir: Path,
        seeds: dict[str, list[int]],
        records: dict[int, dict[str, Any]],
        base_records: dict[int, dict[str, Any]],
        judge: ChildSession,
        ready: Reply,
    ) -> dict[str, Any]:
        verdicts: dict[str, Any] = {"workloads": {}}
        if not ready.ok or ready.message.get("event") != "ready":
            reason = ready.message.get("error") if ready.ok else f"the judge process {judge.exit_description}"
            verdicts["error"] = f"the judge could not start: {reason}"
            verdicts["log"] = judge.tail()
            return verdicts
        verdicts["bandwidth_bytes_per_s"] = ready.message.get("bandwidth_bytes_per_s")
        verdicts["device"] = ready.message.get("device")
        for role, recs in (("candidate", records), ("baseline", base_records)):
            for index, record in sorted(recs.items()):
                if record.get("status") != "ok":
                    continue
                workload = plan.workloads[index]
                task = {
                    "workload": workload.model_dump_json(),
                    "folder": str(run_dir / role / str(index)),
                    "trial_seeds": seeds[workload.uuid],
                    # The last timed outputs of three sets, chosen here where the solution cannot see.
                    "checked": _pick(record["timing"].get("checked", []), 3),
                    "time_reference": role == "candidate",
                }
                if role == "candidate":
                    timing = record["timing"]
                    task["calibrate"] = {"iterations": timing["iterations"], "warmup": timing["warmup"], "seed": secrets.randbits(31), "config": plan.config.model_dump()}
                reply = await judge.request({"cmd": "judge", "task": task}, 120 + 30 * len(task["checked"]))
                if not reply.ok:
                    verdicts["error"] = f"the judge {judge.exit_description} while checking {role} workload {index + 1}"
                    verdicts["log"] = judge.tail()
                    return verdicts
                verdicts["workloads"][f"{role}:{index}"] = reply.message
        await judge.request({"cmd": "exit"}, 10)
        return verdicts

    # ---- assembling


def _merge_integrity(*replies: dict[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {"harness_tampered": [], "forbidden_calls": {}}
    for reply in replies:
        merged["harness_tampered"] += [n for n in reply.get("harness_tampered", []) if n not in merged["harness_tampered"]]
        for name, count in reply.get("forbidden_calls", {}).items():
            merged["forbidden_calls"][name] = merged["forbidden_calls"].get(name, 0) + count
    return merged


def _pick(items: list[Any], count: int) -> list[Any]:
    return secrets.SystemRandom().sample(items, min(count, len(items)))


