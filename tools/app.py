"""The domain objects one server process shares across calls, opened lazily on first use.

KdaApp is the facade the MCP adapters call: each method is one tool's worth of domain work.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from functools import cached_property
from pathlib import Path

from flashinfer_bench.data import Definition, Solution

import resources
from tools.bench.evaluate import Evaluator, Plan
from tools.bench.models import BenchmarkConfig
from tools.build.cache import BuildCache
from tools.build.compile import Compiler
from tools.build.result import CompileResult
from tools.build.targets import Target, default_target, parse_target
from tools.capabilities import Capabilities, CapabilityCache
from tools.dataset import Dataset
from tools.errors import InvalidArgumentError, UnavailableError, not_found
from tools.gpus import GpuPool
from tools.jobs import JobContext, JobRunner, await_future
from tools.ledger import Ledger
from tools.phases import PhasePrompt, load_phase_prompts
from tools.settings import Settings
from tools.solution import SolutionInput, check_signature, resolve_solution
from tools.store import Store
from tools.traces import write_traces
from wiki_index import WikiIndex, default_roots

log = logging.getLogger(__name__)


class KdaApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._dataset: Dataset | None = None
        self._wiki: WikiIndex | None = None

    # ---- shared resources

    def dataset(self) -> Dataset:
        with self._lock:
            if self._dataset is None:
                self._dataset = Dataset.load(self.settings.dataset_path)
                for problem in self._dataset.problems:
                    log.warning("dataset: %s", problem)
            return self._dataset

    def wiki(self) -> WikiIndex:
        with self._lock:
            if self._wiki is None:
                extra = os.pathsep.join(str(p) for p in self.settings.wiki_paths)
                self._wiki = WikiIndex.open(default_roots(extra or None), cache_dir=self.settings.cache_dir / "wiki")
            return self._wiki

    @cached_property
    def _capabilities(self) -> CapabilityCache:
        return CapabilityCache(
            dataset=str(self.settings.dataset_path),
            dataset_embedded=self.settings.dataset_is_embedded,
            wiki_roots=["bundled", *(str(p) for p in self.settings.wiki_paths)],
        )

    def capabilities(self, *, refresh: bool = False) -> Capabilities:
        return self._capabilities.get(refresh=refresh)

    @cached_property
    def gpus(self) -> GpuPool:
        return GpuPool([gpu.index for gpu in self.capabilities().gpus])

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.state_dir / "kda.sqlite3")

    @cached_property
    def jobs(self) -> JobRunner:
        return JobRunner(self.store)

    @cached_property
    def compiler(self) -> Compiler:
        return Compiler(cache=BuildCache(self.settings.cache_dir / "builds"), gpus=self.gpus)

    @cached_property
    def phase_prompts(self) -> list[PhasePrompt]:
        return load_phase_prompts(resources.prompts_path())

    # ---- operations

    def resolve(self, given: SolutionInput) -> tuple[Solution, Definition]:
        """A validated solution and the definition it claims to solve."""
        solution = resolve_solution(given)
        return solution, self.dataset().definition(solution.definition)

    def target(self, arch: str | None) -> Target:
        if arch:
            return parse_target(arch)
        gpus = self.capabilities().gpus
        return default_target(gpus[0].compute_capability if gpus else None)

    async def compile(
        self,
        given: SolutionInput,
        *,
        arch: str | None = None,
        extra_nvcc_flags: list[str] | None = None,
        timeout_s: float = 300,
        include_log: bool = False,
    ) -> CompileResult:
        solution, definition = self.resolve(given)
        dev = self.dataset().dev_set(definition.name)
        work = functools.partial(
            self.compiler.compile,
            solution,
            definition,
            target=self.target(arch),
            extra_flags=list(extra_nvcc_flags or []),
            timeout_s=timeout_s,
            first_call_workload=dev[0] if dev else None,
            dataset_root=self.settings.dataset_path,
            include_log=include_log,
        )
        # Compiles run in the job loop: a first-call (JIT) compile takes a GPU lease from the same
        # pool as benchmarks and profiles, and cancelling this call kills the build.
        return await await_future(self.jobs.run_inline(work))

    # ---- benchmarking

    @cached_property
    def ledger(self) -> Ledger:
        return Ledger(self.store)

    @cached_property
    def evaluator(self) -> Evaluator:
        # Outputs pass between the solution child and the judge as files: keep them in memory.
        shm = Path("/dev/shm")
        runs = shm / f"kda-mcp-{os.getuid()}" if shm.is_dir() and os.access(shm, os.W_OK) else self.settings.state_dir / "runs"
        evaluator = Evaluator(self.compiler, self.gpus, runs)
        self.jobs.on_close(evaluator.pool.aclose)  # spare processes must not outlive the server
        return evaluator

    @property
    def traces_root(self) -> Path:
        return self.settings.state_dir / "traceset"

    def _baseline(self, definition: Definition, choice: str | None) -> Solution | None:
        """'dataset' (default): the dataset's baseline; 'none'; a dataset solution name; an attempt id."""
        if choice in (None, "", "dataset"):
            return self.dataset().baseline(definition.name)
        if choice == "none":
            return None
        named = [s for s in self.dataset().solutions(definition.name) if s.name == choice]
        if named:
            return named[0]
        if choice.startswith("a") and choice[1:].isdigit():
            return self.ledger.solution(choice)
        candidates = [s.name for s in self.dataset().solutions(definition.name)]
        raise not_found("baseline", choice, candidates + ["dataset", "none"])

    def plan_benchmark(
        self,
        given: SolutionInput,
        *,
        workloads: str | list[str] = "dev",
        baseline: str | None = None,
        config: BenchmarkConfig | None = None,
        arch: str | None = None,
    ) -> Plan:
        solution, definition = self.resolve(given)
        check_signature(solution, definition)
        dataset = self.dataset()
        extras = dataset.extras(definition.name)
        chosen = dataset.select_workloads(definition.name, workloads)
        if not chosen:
            raise InvalidArgumentError(f"{definition.name} has no workloads to run.")
        return Plan(
            solution=solution,
            definition=definition,
            workloads=chosen,
            tolerance=dataset.tolerance(definition.name),
            baseline=self._baseline(definition, baseline),
            config=config or BenchmarkConfig(),
            dataset_root=self.settings.dataset_path,
            target=self.target(arch),
            mutable_inputs=list(extras.get("mutable_inputs", [])),
            floor_check=bool(extras.get("floor_check", True)),
        )

    def submit_benchmark(self, plan: Plan, *, parent_attempt: str | None = None) -> str:
        self.ledger.check_parent(parent_attempt)
        if not self.gpus.gpus:
            raise UnavailableError(
                "run_benchmark needs an NVIDIA GPU and this server sees none.",
                hint="Run kda-mcp on a GPU machine (capabilities shows what this one has); compile_solution works here.",
            )

        async def work(job: JobContext) -> dict:
            result = await self.evaluator.run(plan, progress=job.progress, on_gpu=job.on_gpu, run_id=job.job_id)
            result.attempt_id = self.ledger.new_id()
            self.ledger.record(
                result.attempt_id, solution=plan.solution, parent=parent_attempt, job_id=job.job_id, result=result.model_dump(mode="json", exclude_none=True)
            )
            try:
                write_traces(self.traces_root, plan.definition, plan.solution, plan.workloads, result)
            except OSError as exc:
                log.warning("could not write traces: %s", exc)
            return result.model_dump(mode="json", exclude_none=True)

        params = {"solution": plan.solution.name, "definition": plan.definition.name, "workloads": [w.uuid for w in plan.workloads]}
        return self.jobs.submit("run_benchmark", params, work)
