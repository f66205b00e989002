"""The orchestrator of run_benchmark and compare_solutions (one runner for both): build each side,
lease a GPU, start the judge and one sandboxed executor per side, hand each executor to the
judge, walk the workloads, then end every process and file of the job.

Runs in the job loop. The judge measures and decides; this process only manages processes: an
executor that crashes, hangs or outgrows its memory costs its side that workload (the judge
reports RUNTIME_ERROR / TIMEOUT) and is replaced for the next; nothing waits forever.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from flashinfer_bench.data import BuildSpec, Definition, Solution, SourceFile, Workload

from kda_mcp.tools.capabilities import gpu_clocks
from kda_mcp.tools.compile.compiler import Compiler
from kda_mcp.tools.compile.targets import Target
from kda_mcp.tools.evaluation.models import BenchmarkConfig
from kda_mcp.tools.evaluation.policy import Policy
from kda_mcp.tools.evaluation.pool import Child, Commands, Pool
from kda_mcp.tools.evaluation.wire import WireClosed, WireError
from kda_mcp.tools.gpus import GpuPool, Lease
from kda_mcp.tools.harness.staging import Built, stage_solution
from kda_mcp.tools.models import Tolerance
from kda_mcp.tools.sandbox.sandbox import Room, Sandbox, kill_user, processes_of, terminate_group
from kda_mcp.tools.sandbox.specs import ExecutorSpec, JudgeSpec

log = logging.getLogger(__name__)
Progress = Callable[[int, int, str], None]
READY_TIMEOUT_S = 300
MEMORY_POLL_S = 0.25
MAX_LIBRARY_BYTES = 512 * 2**20


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
    input_rules: dict[str, Any] | None = None  # None: the judge resolves them from the dataset


@dataclass
class SidePlan:
    name: str  # candidate | reference | baseline | a | b
    built: Built
    policy_applies: bool = False


@dataclass
class Measurement:
    """Everything the judge reported, plus what only the orchestrator knows."""

    facts: dict[str, Any] = field(default_factory=dict)
    attached: dict[str, dict[str, Any]] = field(default_factory=dict)
    workloads: list[dict[str, Any]] = field(default_factory=list)
    logs: dict[str, str] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    gpu: int | None = None
    clocks: dict[str, Any] | None = None
    trial_seeds: dict[str, list[int]] = field(default_factory=dict)


def reference_solution(definition: Definition) -> Solution:
    """The definition's own reference, packaged as a value-returning Python solution."""
    return Solution(
        name=f"{definition.name}__reference",
        definition=definition.name,
        author="kda-mcp",
        spec=BuildSpec(language="python", target_hardware=["cuda"], entry_point="reference.py::run", destination_passing_style=False),
        sources=[SourceFile(path="reference.py", content=definition.reference)],
    )


class Evaluator:
    def __init__(self, compiler: Compiler, gpus: GpuPool, sandbox: Sandbox, commands: Commands | None = None) -> None:
        self.compiler = compiler
        self.gpus = gpus
        self.sandbox = sandbox
        self.commands = commands or Commands()
        self.pool = Pool(sandbox, self.commands)

    async def aclose(self) -> None:
        """Kill the spares and clear their rooms (the server is stopping)."""
        rooms = self.pool.rooms()
        await self.pool.aclose()
        await anyio.to_thread.run_sync(self.sandbox.clear, rooms)

    # ---- building

    async def build(self, solution: Solution, definition: Definition, target: Target, dataset_root: Path) -> Built:
        if solution.spec.language.value not in ("cuda", "cpp"):
            return Built(solution=solution)
        report = await self.compiler.compile(solution, definition, target=target, extra_flags=[], timeout_s=600, first_call_workload=None, dataset_root=dataset_root)
        if report.status != "ok":
            return Built(solution=solution, error=report.message, compile_report=report.model_dump(exclude_none=True))
        library = self.compiler.cache.artifacts(report.build_key).get("library", "")
        if not library.endswith(".so"):
            return Built(solution=solution, error="built for analysis only (this torch has no CUDA); cannot run it", compile_report=report.model_dump(exclude_none=True))
        return Built(solution=solution, library=Path(library))

    # ---- one measurement session: the judge and the sides on one leased GPU

    async def measure(
        self,
        sides: list[SidePlan],
        plan: Plan,
        timing: dict[str, Any],
        *,
        progress: Progress,
        on_gpu: Callable[[int], None],
        purpose: str,
    ) -> Measurement:
        result = Measurement()
        clock = [time.monotonic()]

        def phase(name: str) -> None:
            now = time.monotonic()
            result.phases[name] = round(now - clock[0], 2)
            clock[0] = now

        total = len(plan.workloads) + 1
        progress(0, total, "waiting for a GPU")
        async with self.gpus.lease(purpose) as lease:
            phase("wait_for_gpu")
            on_gpu(lease.gpu)
            result.gpu = lease.gpu
            sampler = ClockSampler(lease.gpu)
            slots = {side.name: f"g{lease.gpu}s{i}" for i, side in enumerate(sides)}
            rooms: list[Room] = []
            children: dict[str, Child] = {}
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(sampler.run)
                    try:
                        await self._session(sides, plan, timing, lease, slots, rooms, children, result, tg, progress, phase)
                    finally:
                        for child in children.values():
                            child.kill()
                        tg.cancel_scope.cancel()
                result.clocks = sampler.summary()
            finally:
                with anyio.CancelScope(shield=True):
                    rooms += [c.room for c in children.values() if c.room is not None and c.room not in rooms]
                    outcome = await anyio.to_thread.run_sync(self.sandbox.clear, rooms)
                    log.debug("cleared job rooms: %s", outcome)
                    try:
                        await self.pool.replenish(lease.gpu, {"judge": [f"j{lease.gpu}"], "executor": list(slots.values())})
                    except Exception:  # spares are an optimization; the next job starts fresh ones
                        log.warning("could not start spare processes", exc_info=True)
        return result

    async def _session(
        self,
        sides: list[SidePlan],
        plan: Plan,
        timing: dict[str, Any],
        lease: Lease,
        slots: dict[str, str],
        rooms: list[Room],
        children: dict[str, Child],
        result: Measurement,
        tg: anyio.abc.TaskGroup,
        progress: Progress,
        phase: Callable[[str], None],
    ) -> None:
        judge_spec = JudgeSpec(
            definition=plan.definition.model_dump_json(),
            tolerance=plan.tolerance.model_dump(),
            mutable_inputs=plan.mutable_inputs,
            dataset_root=str(plan.dataset_root),
            config=plan.config.model_dump(),
            input_rules=plan.input_rules,
        )

        async def start_judge() -> None:
            judge = await self.pool.take("judge", lease.gpu, f"j{lease.gpu}", tg)
            children["judge"] = judge
            await judge.send_spec(judge_spec.model_dump_json())

        async def start_side(side: SidePlan) -> None:
            children[side.name] = await self._executor(side, plan, lease.gpu, slots[side.name], tg)

        async with anyio.create_task_group() as starting:
            starting.start_soon(start_judge)
            for side in sides:
                starting.start_soon(start_side, side)
        judge = children["judge"]
        ready = await _recv(judge, READY_TIMEOUT_S)
        if ready is None or ready.get("event") != "ready":
            result.error = f"the judge could not start: {(ready or {}).get('error') or judge.exit_description}"
            result.logs["judge"] = judge.tail()
            return
        result.facts = ready
        phase("start_processes")
        tg.start_soon(self._watch_memory, children, plan.config)
        for side in sides:
            result.attached[side.name] = await self._attach(judge, children[side.name], side)
        phase("load")
        for index, workload in enumerate(plan.workloads):
            for side in sides:  # replace executors that died on the previous workload
                if result.attached[side.name].get("dead"):
                    if children[side.name].room is not None:
                        rooms.append(children[side.name].room)  # type: ignore[arg-type]
                    children[side.name].kill()
                    await anyio.to_thread.run_sync(self._end_side, children[side.name])
                    await _request(judge, {"cmd": "detach", "side": side.name}, 30)
                    children[side.name] = await self._executor(side, plan, lease.gpu, slots[side.name], tg)
                    result.attached[side.name] = await self._attach(judge, children[side.name], side)
            seeds = [secrets.randbits(31) for _ in range(plan.config.correctness_trials)]
            result.trial_seeds[workload.uuid] = seeds
            message = {
                "cmd": "workload",
                "index": index,
                "workload": workload.model_dump_json(),
                "sides": [s.name for s in sides if result.attached[s.name].get("ok")],
                "trial_seeds": seeds,
                "timing": timing,
            }
            deadline = max(900.0, 20 * plan.config.workload_timeout_s)
            reply = await _request(judge, message, deadline)
            if reply is None or reply.get("event") != "workload":
                result.error = f"the judge {judge.exit_description if reply is None else 'failed: ' + str(reply.get('error'))} on workload {index + 1}"
                result.logs["judge"] = judge.tail()
                return
            for name, outcome in reply["sides"].items():
                if outcome.get("dead"):
                    child = children[name]
                    with anyio.move_on_after(2):  # let it finish dying, so we can say how it died
                        await child.proc.wait()
                    how = child.killed_for or f"the process {child.exit_description}"
                    outcome["error"] = f"{outcome.get('error')} ({how})"
                    outcome["log"] = "\n".join(x for x in (outcome.get("log"), child.tail()) if x)[-3000:]
                    result.attached[name] = {**result.attached[name], "dead": True}
            result.workloads.append(reply)
            progress(index + 1, len(plan.workloads) + 1, f"workload {index + 1}/{len(plan.workloads)} measured")
        phase("measure")
        for name, child in children.items():
            result.logs[name] = child.tail()
        await _request(judge, {"cmd": "exit"}, 10, expect_reply=False)

    async def _executor(self, side: SidePlan, plan: Plan, gpu: int, slot: str, tg: anyio.abc.TaskGroup) -> Child:
        """An executor for `side`, with the solution's files in its room, given its spec."""
        child = await self.pool.take("executor", gpu, slot, tg)
        room = child.room
        base = room.path if room is not None else None
        if base is None:  # tests without a sandbox room: a private folder of ours
            base = Path(self.sandbox.runtime_dir) / f"nosandbox-{secrets.token_hex(4)}"
            base.mkdir(parents=True)
        source_dir, library = stage_solution(base, side.built.solution, side.built.library)
        spec = ExecutorSpec(
            solution=side.built.solution.model_dump_json(),
            definition=plan.definition.model_dump_json(),
            source_dir=str(source_dir),
            library=str(library) if library else None,
            dataset_root=str(plan.dataset_root),
            forbidden_calls=plan.policy.forbidden_calls if side.policy_applies else [],
            force_cuda_events=plan.config.force_cuda_events,
        )
        await child.send_spec(spec.model_dump_json())
        return child

    async def _attach(self, judge: Child, executor: Child, side: SidePlan) -> dict[str, Any]:
        """Hand the judge our end of the executor's socket (the judge talks to it from now on, and
        we close our copy); the judge has it load the solution. A side that fails to load stays
        out of this job: loading again would fail again."""
        value_returning = not side.built.solution.spec.destination_passing_style
        message = {"cmd": "attach", "side": side.name, "value_returning": value_returning}
        try:
            await anyio.to_thread.run_sync(lambda: judge.wire.send(message, [executor.wire.fileno()]))
        finally:
            executor.wire.close()
        reply = await _recv(judge, READY_TIMEOUT_S + 30)
        if reply is None:
            return {"ok": False, "status": "RUNTIME_ERROR", "error": f"the judge {judge.exit_description}", "log": judge.tail(10)}
        if not reply.get("ok"):
            reply = {**reply, "log": "\n".join(x for x in (reply.get("log"), executor.tail()) if x)[-3000:]}
        return reply

    def _end_side(self, child: Child) -> None:
        if child.room is not None and child.room.identity is not None:
            kill_user(child.room.identity)

    async def _watch_memory(self, children: dict[str, Child], config: BenchmarkConfig) -> None:
        """Kill an executor (and everything its user runs) once it holds more host memory than allowed."""
        limit = int(config.memory_limit_gb * 2**30) if config.memory_limit_gb else _default_memory_limit()
        while True:
            for name, child in list(children.items()):
                if child.kind != "executor" or child.proc.returncode is not None:
                    continue
                pids = processes_of(child.room.identity.uid) if child.room is not None and child.room.identity is not None else [child.proc.pid]
                if sum(_rss(pid) for pid in pids) > limit:
                    child.killed_for = f"killed: host memory above {limit / 2**30:.1f} GiB"
                    child.log.append(f"[kda-mcp] {child.killed_for}")
                    terminate_group(child.proc.pid)
                    await anyio.to_thread.run_sync(self._end_side, child)
            await anyio.sleep(MEMORY_POLL_S)


class ClockSampler:
    """The GPU's clocks while a job holds it (nvidia-smi once a second): the clocks an idle GPU
    shows when leased (345 MHz on an H200) say nothing about the clocks its kernels ran at."""

    INTERVAL_S = 1.0

    def __init__(self, gpu: int) -> None:
        self.gpu = gpu
        self.samples: list[dict[str, int]] = []

    async def run(self) -> None:
        while True:
            found = await anyio.to_thread.run_sync(gpu_clocks, self.gpu)
            if found:
                self.samples.append(found)
            await anyio.sleep(self.INTERVAL_S)

    def summary(self) -> dict[str, Any] | None:
        if not self.samples:
            return None
        busy = self.samples[1:] or self.samples  # the first sample is the idle GPU being leased
        sm = [s["sm"] for s in busy]
        memory = [s["memory"] for s in busy]
        return {
            "at_lease": self.samples[0],
            "sm_min": min(sm),
            "sm_max": max(sm),
            "memory_min": min(memory),
            "memory_max": max(memory),
            "max_sm": self.samples[0].get("max_sm"),
            "samples": len(self.samples),
            "moved": max(sm) - min(sm) > 0.05 * max(sm),
        }


async def _recv(child: Child, timeout: float) -> dict[str, Any] | None:
    """The child's next message, or None if it died, hung past `timeout` or sent garbage (the
    reason goes to the child's log, which failures quote)."""
    try:
        message, _ = await anyio.to_thread.run_sync(child.wire.recv, timeout, abandon_on_cancel=True)
        return message
    except (TimeoutError, WireClosed, WireError, OSError) as exc:
        child.log.append(f"[kda-mcp] no reply from the {child.kind}: {type(exc).__name__}: {exc}")
        log.warning("no reply from the %s (pid %s): %r", child.kind, child.proc.pid, exc)
        return None


async def _request(child: Child, message: dict[str, Any], timeout: float, *, expect_reply: bool = True) -> dict[str, Any] | None:
    try:
        await anyio.to_thread.run_sync(child.wire.send, message)
    except OSError:
        return None
    return await _recv(child, timeout) if expect_reply else None


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _default_memory_limit() -> int:
    """Half of physical RAM: a solution that wants more is broken, not ambitious."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError):
        return 64 * 2**30


