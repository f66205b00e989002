"""What compile_solution answers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kda_mcp.tools.compile.models import Diagnostic, KernelResources
from kda_mcp.tools.models import Result


class CompileResult(Result):
    status: Literal["ok", "failed", "needs_gpu"] = Field(
        description="ok: built (and, for Python-side code, ran once); failed: see diagnostics; needs_gpu: checked what a CPU can, the JIT needs a GPU."
    )
    solution: str
    definition: str
    language: str
    target: str | None = Field(default=None, description="Compute target built for, e.g. sm_90a.")
    build_seconds: float = Field(description="Wall time of the build itself (of the original build on a cache hit).")
    cache_hit: bool
    build_key: str = Field(description="Content hash of sources + spec + target + flags + toolchain.")
    artifact_hash: str | None = Field(default=None, description="sha256 of the built library or kernel binaries.")
    message: str = Field(description="One line: what happened and what to do next.")
    diagnostics: list[Diagnostic] | None = Field(
        default=None, description="Every error, and the warnings and notes of the solution's own files; errors first."
    )
    diagnostics_omitted: int | None = None
    diagnostics_outside_solution: int | None = Field(
        default=None, description="Warnings and notes from files that are not the solution's (torch's or CUDA's headers): counted, not listed."
    )
    kernels: list[KernelResources] | None = None
    libraries: list[str] | None = Field(default=None, description="What spec.dependencies brought in (CUTLASS/CuTe headers, cuBLAS): where from, with the version.")
    warnings: list[str] | None = None
    log: str | None = Field(default=None, description="Raw build log (tail), when include_log is set.")
