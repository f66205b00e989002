"""The contract with every child process: one typed spec per kind, sent as the first line on its
stdin (or, for a child started under ncu or compute-sanitizer, as a file named by --spec).

A child reads its spec with `read_spec(Kind)`; nothing else passes between the server and a child
at start, so following a job's settings through the code ends here, in one model per kind.
"""

from __future__ import annotations

import sys
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

WARM_MARKER = "KDA-WARM"  # a warm child prints this once its imports are done, then waits for its spec


class ChildSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExecutorSpec(ChildSpec):
    """An untrusted executor (tools.evaluation.executor): loads one solution and runs calls on command."""

    kind: Literal["executor"] = "executor"
    solution: str = Field(description="The Solution as JSON.")
    definition: str = Field(description="The Definition as JSON.")
    source_dir: str
    library: str | None = None
    dataset_root: str
    forbidden_calls: list[str] = Field(default_factory=list)
    force_cuda_events: bool = False


class JudgeSpec(ChildSpec):
    """The trusted judge (tools.evaluation.judge): owns inputs, outputs, clocks and verdicts."""

    kind: Literal["judge"] = "judge"
    definition: str
    tolerance: dict[str, Any]
    mutable_inputs: list[str] = Field(default_factory=list)
    dataset_root: str
    config: dict[str, Any]
    input_rules: dict[str, Any] | None = Field(default=None, description="Valid ranges of constrained inputs (tools/evaluation/input_rules.py); None: resolved from the dataset.")


class CudaBuildSpec(ChildSpec):
    """tools.compile.cuda_child: nvcc through tvm-ffi or torch's extension builder."""

    kind: Literal["cuda_build"] = "cuda_build"
    source_dir: str
    build_dir: str
    files: list[str]
    package: str
    binding: str
    arch_dotted: str
    gencode: str
    extra_flags: list[str]
    dependencies: list[str]
    result_path: str


class JitBuildSpec(ChildSpec):
    """tools.compile.jit_child: one first call, so Triton and friends compile."""

    kind: Literal["jit_build"] = "jit_build"
    source_dir: str
    solution: str
    definition: str
    workload: str
    dataset_root: str
    result_path: str
    seed: int = 0
    input_rules: dict[str, Any] | None = None  # None: make_inputs resolves them from the dataset


class CallSpec(ChildSpec):
    """tools.profile.child: one warmed-up call inside an NVTX range, for ncu or compute-sanitizer."""

    kind: Literal["call"] = "call"
    solution: str
    definition: str
    workload: str
    source_dir: str
    library: str | None = None
    dataset_root: str
    seed: int = 0
    warmup: int = 2
    input_rules: dict[str, Any] | None = None  # None: make_inputs resolves them from the dataset


S = TypeVar("S", bound=ChildSpec)


def read_spec(model: type[S], argv: list[str] | None = None) -> S:
    """The spec of this child: from the file after --spec, else the next line on stdin."""
    argv = sys.argv[1:] if argv is None else argv
    if "--spec" in argv:
        path = argv[argv.index("--spec") + 1]
        with open(path, encoding="utf-8") as handle:
            return model.model_validate_json(handle.read())
    line = sys.stdin.readline()
    if not line:
        raise SystemExit("no spec on stdin")
    return model.model_validate_json(line)


def announce_warm() -> None:
    """Tell the pool this process has finished importing and waits for its spec."""
    sys.stdout.write(WARM_MARKER + "\n")
    sys.stdout.flush()
