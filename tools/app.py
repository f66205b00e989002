"""The domain objects one server process shares across calls, opened lazily on first use.

KdaApp is the facade the MCP adapters call: each method is one tool's worth of domain work.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from functools import cached_property
from pathlib import Path

from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp import resources
from kda_mcp.tools.evaluation.ab_runner import ab_plans, compare_solutions
from kda_mcp.tools.evaluation.evaluate import Evaluator, Plan
from kda_mcp.tools.evaluation.models import BenchmarkConfig
from kda_mcp.tools.evaluation.policy import Policy
from kda_mcp.tools.compile.cache import BuildCache
from kda_mcp.tools.compile.compile import Compiler
from kda_mcp.tools.compile.result import CompileResult
from kda_mcp.tools.compile.targets import Target, default_target, parse_target
from kda_mcp.tools.capabilities import Capabilities, CapabilityCache
from kda_mcp.tools.dataset import Dataset
from kda_mcp.tools.errors import InvalidArgumentError, KdaError, UnavailableError, not_found
from kda_mcp.tools.gpus import GpuPool
from kda_mcp.tools.jobs import JobContext, JobRunner, await_future
from kda_mcp.tools.ledger import Ledger
from kda_mcp.tools.phases import PhasePrompt, load_phase_prompts
from kda_mcp.tools.profile.capture import CaptureRequest, capture, check_regex, preflight
from kda_mcp.tools.profile.compare import compare
from kda_mcp.tools.profile.models import ProfileComparison, ProfileSummary
from kda_mcp.tools.profile.summary import summarize_report
from kda_mcp.tools.sanitize.parse import SanitizeResult, build_job, sanitize
from kda_mcp.tools.settings import Settings
from kda_mcp.tools.solution import SolutionInput, check_signature, resolve_solution
from kda_mcp.tools.store import Store
from kda_mcp.tools.traces import write_traces
from kda_mcp.wiki_index import WikiIndex, default_roots

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
        """A validated solution and the definition it claims to solve (an attempt id works too)."""
        if given.attempt is not None and not any((given.files, given.path, given.solution_json)):
            solution = self.ledger.solution(given.attempt)
        else:
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
            policy=Policy.model_validate(extras.get("policy") or {}),
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

    # ---- profiling

    def _profile_workload(self, definition: Definition, workload: str | None) -> Workload:
        """Default: the largest dev workload, where the kernel's steady-state behaviour shows."""
        if workload in (None, "", "largest"):
            dev = self.dataset().dev_set(definition.name)
            if not dev:
                raise InvalidArgumentError(f"{definition.name} has no workloads to profile.")
            return dev[-1]
        if workload == "smallest":
            return self.dataset().dev_set(definition.name)[0]
        return self.dataset().select_workloads(definition.name, [workload])[0]

    def submit_profile(
        self,
        given: SolutionInput,
        *,
        workload: str | None = None,
        profile_set: str = "quick",
        kernels: str | None = None,
        launch_skip: int = 0,
        launch_count: int = 20,
        detail: str = "compact",
        timeout_s: float = 600,
    ) -> str:
        solution, definition = self.resolve(given)
        chosen = self._profile_workload(definition, workload)
        check_regex(kernels)
        if not self.gpus.gpus:
            raise UnavailableError("profile_solution needs an NVIDIA GPU and this server sees none.")
        ncu = preflight(self.capabilities().ncu_counters)
        profile_id = self.store.next_id("p")
        report = self.settings.state_dir / "profiles" / profile_id
        attempt = given.attempt

        async def work(job: JobContext) -> dict:
            built = await self.evaluator.build(solution, definition, self.target(None), self.settings.dataset_path, report.parent / f"{profile_id}_src", "profile")
            if built.error:
                raise KdaError(f"The solution did not build: {built.error} Call compile_solution for the diagnostics.")
            request = CaptureRequest(
                solution=solution,
                definition=definition,
                workload=chosen,
                built=built,
                dataset_root=self.settings.dataset_path,
                report=report,
                profile_set=profile_set,  # type: ignore[arg-type]
                kernels=kernels,
                launch_skip=launch_skip,
                launch_count=launch_count,
                timeout_s=timeout_s,
            )
            async with self.gpus.lease(f"profile_solution {solution.name}") as lease:
                job.on_gpu(lease.gpu)
                job.progress(0, 1, f"ncu --set {profile_set} on workload {chosen.uuid[:8]}")
                path, _, seconds = await capture(request, lease, ncu)
            summary = self.summarize_profile(path, profile_id=profile_id, solution=solution, definition=definition, workload=chosen.uuid, profile_set=profile_set, detail=detail, seconds=seconds, attempt=attempt)
            self.store.execute(
                "INSERT INTO profiles(id, created, attempt, definition, solution, report, summary) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (profile_id, time.time(), attempt, definition.name, solution.name, str(path), summary.model_dump_json(exclude_none=True)),
            )
            return summary.model_dump(mode="json", exclude_none=True)

        params = {"solution": solution.name, "definition": definition.name, "workload": chosen.uuid, "set": profile_set, "profile_id": profile_id}
        return self.jobs.submit("profile_solution", params, work)

    def _wiki_route(self, label: str) -> list[dict[str, str]]:
        try:
            return [{"id": hit.id, "title": hit.title, "path": hit.path} for hit in self.wiki().route(label, limit=4)]
        except KdaError:
            return []

    def summarize_profile(self, path: Path, *, profile_id: str, solution: Solution, definition: Definition, workload: str, profile_set: str, detail: str, seconds: float | None, attempt: str | None) -> ProfileSummary:
        kernels, gpu = summarize_report(path, detail=detail, wiki_route=self._wiki_route)
        total = sum(k.duration_us or 0 for k in kernels)
        labels = sorted({k.bottleneck.label for k in kernels if k.bottleneck})
        heaviest = max(kernels, key=lambda k: k.duration_us or 0) if kernels else None
        message = (
            f"{len(kernels)} kernel(s), {total:.1f} us in total; the longest, {heaviest.name[:60]}, is {heaviest.bottleneck.label}: {heaviest.bottleneck.reason}."
            if heaviest and heaviest.bottleneck
            else "No kernels in the report."
        )
        return ProfileSummary(
            profile_id=profile_id,
            report_path=str(path),
            attempt_id=attempt,
            solution=solution.name,
            definition=definition.name,
            workload=workload,
            profile_set=profile_set,
            capture_seconds=round(seconds, 1) if seconds is not None else None,
            gpu=gpu,
            kernels=kernels,
            total_duration_us=round(total, 3),
            message=message + (f" Labels across kernels: {', '.join(labels)}." if len(labels) > 1 else ""),
        )

    def profile(self, profile_id: str) -> ProfileSummary:
        rows = self.store.execute("SELECT summary FROM profiles WHERE id = ?", (profile_id,))
        if not rows:
            known = [r["id"] for r in self.store.execute("SELECT id FROM profiles ORDER BY created DESC LIMIT 20")]
            raise not_found("profile", profile_id, known)
        return ProfileSummary.model_validate_json(rows[0]["summary"])

    def compare_profiles(self, a: str, b: str) -> ProfileComparison:
        return compare(self.profile(a), self.profile(b))

    # ---- integrity tools

    def submit_compare(
        self, a: SolutionInput, b: SolutionInput, *, workloads: str | list[str] = "dev", rounds: int = 8, per_round: int = 20, arch: str | None = None
    ) -> str:
        plan_a = self.plan_benchmark(a, workloads=workloads, baseline="none", arch=arch)
        plan_b = self.plan_benchmark(b, workloads=workloads, baseline="none", arch=arch)
        if plan_a.definition.name != plan_b.definition.name:
            raise InvalidArgumentError(f"A solves {plan_a.definition.name} and B solves {plan_b.definition.name}; compare solutions of one definition.")
        if not self.gpus.gpus:
            raise UnavailableError("compare_solutions needs an NVIDIA GPU and this server sees none.")
        plan_a, plan_b = ab_plans(plan_a, plan_b, per_round)

        async def work(job: JobContext) -> dict:
            result = await compare_solutions(self.evaluator, plan_a, plan_b, rounds=rounds, progress=job.progress, on_gpu=job.on_gpu, run_id=job.job_id)
            return result.model_dump(mode="json", exclude_none=True)

        params = {"a": plan_a.solution.name, "b": plan_b.solution.name, "definition": plan_a.definition.name, "rounds": rounds}
        return self.jobs.submit("compare_solutions", params, work)

    def submit_sanitize(self, given: SolutionInput, *, tool: str = "memcheck", workload: str | None = None, include_log: bool = False, timeout_s: float = 600) -> str:
        solution, definition = self.resolve(given)
        chosen = self._profile_workload(definition, workload or "smallest")
        if not self.gpus.gpus:
            raise UnavailableError("sanitize_solution needs an NVIDIA GPU and this server sees none.")
        work_dir = self.settings.state_dir / "sanitize" / self.store.next_id("s")

        async def work(job: JobContext) -> dict:
            built = await self.evaluator.build(solution, definition, self.target(None), self.settings.dataset_path, work_dir, "sanitize")
            if built.error:
                raise KdaError(f"The solution did not build: {built.error} Call compile_solution for the diagnostics.")
            child_job = build_job(built, solution.model_dump_json(), definition.model_dump_json(), chosen.model_dump_json(), self.settings.dataset_path)
            async with self.gpus.lease(f"sanitize_solution {solution.name}") as lease:
                job.on_gpu(lease.gpu)
                job.progress(0, 1, f"compute-sanitizer --tool {tool}")
                issues, summary, output, seconds = await sanitize(tool=tool, job=child_job, work_dir=work_dir, lease=lease, timeout_s=timeout_s)  # type: ignore[arg-type]
            clean = not issues
            message = (
                f"{tool}: no problems found in one call on workload {chosen.uuid[:8]}."
                if clean
                else f"{tool}: {sum(i.count for i in issues)} report(s) in {len(issues)} group(s); first: {issues[0].kind}"
                + (f" in {issues[0].kernel}" if issues[0].kernel else "")
                + (f" at {issues[0].file}:{issues[0].line}" if issues[0].file else "")
                + "."
            )
            result = SanitizeResult(
                tool=tool,
                solution=solution.name,
                definition=definition.name,
                workload=chosen.uuid,
                clean=clean,
                error_summary=summary,
                issues=issues or None,
                message=message,
                seconds=round(seconds, 1),
                log=output[-20_000:] if include_log else None,
            )
            return result.model_dump(mode="json", exclude_none=True)

        return self.jobs.submit("sanitize_solution", {"solution": solution.name, "tool": tool, "workload": chosen.uuid}, work)
