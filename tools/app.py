"""The shared resources of one server process, each opened on first use.

KdaApp holds no operations: each feature's module (compile, evaluation, profile, sanitize,
solution, ledger) takes the container and does its work there.
"""

from __future__ import annotations

import logging
import os
import threading
from functools import cached_property

from kda_mcp import resources
from kda_mcp.tools.capabilities import Capabilities, CapabilityCache
from kda_mcp.tools.compile.cache import BuildCache
from kda_mcp.tools.compile.compiler import Compiler
from kda_mcp.tools.compile.targets import Target, default_target, parse_target
from kda_mcp.tools.dataset import Dataset
from kda_mcp.tools.evaluation.runner import Evaluator
from kda_mcp.tools.executors import Executor, make_executor
from kda_mcp.tools.gpus import GpuPool
from kda_mcp.tools.jobs import JobRunner
from kda_mcp.tools.ledger import Ledger
from kda_mcp.tools.paths import Roots
from kda_mcp.tools.phases import PhasePrompt, load_phase_prompts
from kda_mcp.tools.profile.records import ProfileRecords
from kda_mcp.tools.sandbox.sandbox import Sandbox
from kda_mcp.tools.settings import Settings
from kda_mcp.tools.store import Store
from kda_mcp.wiki_index import WikiIndex, default_roots

log = logging.getLogger(__name__)


class KdaApp:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._dataset: Dataset | None = None
        self._wiki: WikiIndex | None = None

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
            executor=self.settings.executor,
        )

    def capabilities(self, *, refresh: bool = False) -> Capabilities:
        found = self._capabilities.get(refresh=refresh)
        update = {"isolation": self.sandbox.describe(), "workspaces": [str(p) for p in self.settings.workspaces]}
        if self.settings.executor != "local":
            update["cluster"] = self.executor.describe()  # live: nodes come and go, queues move
        return found.model_copy(update=update)

    def target(self, arch: str | None, kind: str | None = None) -> Target:
        """The build target the caller named, else that of the GPUs the job will run on (the
        executor's, for a kind of a cluster), else this machine's first GPU's (sm_90a without one)."""
        if arch:
            return parse_target(arch)
        if self.settings.executor != "local":
            found = self.executor.target(kind)
            if found is not None:
                return found
        gpus = self.capabilities().gpus
        return default_target(gpus[0].compute_capability if gpus else None)

    @cached_property
    def roots(self) -> Roots:
        return Roots.from_settings(self.settings)

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
    def ledger(self) -> Ledger:
        return Ledger(self.store)

    @cached_property
    def profiles(self) -> ProfileRecords:
        return ProfileRecords(self.store)

    @cached_property
    def compiler(self) -> Compiler:
        return Compiler(cache=BuildCache(self.settings.cache_dir / "builds"), gpus=self.gpus, sandbox=self.sandbox)

    @cached_property
    def sandbox(self) -> Sandbox:
        return Sandbox.configure(self.settings.sandbox, self.settings.runtime_dir, self.settings.sandbox_user)

    @cached_property
    def executor(self) -> Executor:
        """Where GPU work runs (tools/executors): this machine's GPUs, or a Ray cluster's."""
        executor = make_executor(self)
        self.jobs.on_close(executor.aclose)
        return executor

    @cached_property
    def evaluator(self) -> Evaluator:
        evaluator = Evaluator(self.compiler, self.gpus, self.sandbox)
        self.jobs.on_close(evaluator.aclose)  # spare processes must not outlive the server
        return evaluator

    @cached_property
    def phase_prompts(self) -> list[PhasePrompt]:
        return load_phase_prompts(resources.prompts_path())
