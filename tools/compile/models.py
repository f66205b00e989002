"""What a build tells the agent: diagnostics with file:line, per-kernel resources, SASS facts.

Fields left as None are dropped from what the agent sees, so absent detail costs nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kda_mcp.tools.models import Result

Severity = Literal["error", "warning", "note"]
Tool = Literal["nvcc", "gcc", "ptxas", "nvlink", "ninja", "python", "triton", "ld"]


class Diagnostic(Result):
    file: str | None = Field(default=None, description="Relative to the solution folder when it lies inside it.")
    line: int | None = None
    column: int | None = None
    severity: Severity
    message: str
    tool: Tool = Field(description="Which stage reported it: nvcc front end, host compiler, ptxas, linker, ...")


class SassFacts(Result):
    arch: str | None = Field(default=None, description="The SASS target the listing is for, e.g. sm_90a.")
    instructions: int = Field(description="Instructions in the listing, without NOP padding.")
    tensor_core: dict[str, int] | None = Field(default=None, description="Tensor-core opcodes by family (HGMMA, HMMA, UTCHMMA, ...).")
    local_loads: int = Field(default=0, description="LDL: reads of thread-local memory (spills, runtime-indexed arrays).")
    local_stores: int = Field(default=0, description="STL: writes of thread-local memory.")
    global_loads_by_width: dict[str, int] | None = Field(default=None, description="LDG count by access width in bits.")
    global_stores_by_width: dict[str, int] | None = Field(default=None, description="STG count by access width in bits.")
    global_loads_by_kind: dict[str, int] | None = Field(
        default=None,
        description="LDG count by path: plain (L1 and L2), read-only (LDG...CONSTANT: ld.global.nc, __ldg), "
        "strong (LDG...STRONG.*: volatile/relaxed/acquire/.cg, skips L1), hinted (an eviction, allocation or prefetch hint).",
    )
    global_stores_by_kind: dict[str, int] | None = Field(default=None, description="STG count by path: plain, strong, hinted.")
    global_cache_hints: dict[str, int] | None = Field(
        default=None, description="Cache-hint modifiers on LDG/STG, e.g. LDG.EL (evict-last), STG.EF (evict-first), LDG.NA (no L1 allocation), LDG.LTC128B (L2 prefetch)."
    )
    tma: dict[str, int] | None = Field(default=None, description="Tensor Memory Accelerator and bulk-copy opcodes (UTMALDG, UBLKCP, ...).")
    cp_async: int = Field(default=0, description="LDGSTS: cp.async global->shared copies.")
    shared_loads: int = Field(default=0, description="LDS plus LDSM (ldmatrix).")
    shared_stores: int = Field(default=0, description="STS plus STSM (stmatrix).")
    barriers: int = Field(default=0, description="Barrier instructions: BAR.*, SYNCS.* (mbarrier), cluster barriers.")
    notes: list[str] | None = None


class KernelResources(Result):
    name: str = Field(description="The mangled symbol, as the binary names it.")
    demangled: str | None = None
    arch: str | None = None
    registers: int | None = None
    barriers: int | None = Field(default=None, description="Named barriers the kernel uses (ptxas 'used N barriers').")
    shared_static_bytes: int | None = None
    shared_dynamic_bytes: int | None = None
    constant_bytes: int | None = Field(default=None, description="All constant banks added up, as ptxas reports them.")
    stack_frame_bytes: int | None = None
    spill_store_bytes: int | None = None
    spill_load_bytes: int | None = None
    sass: SassFacts | None = None
