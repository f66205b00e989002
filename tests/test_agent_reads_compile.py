"""compile_solution's facts an agent acts on (issue 17 items 6-7, issue 18 item 3): load paths in
the SASS facts, ptxas errors placed at .cu lines, and torch's header warnings counted apart from
the solution's own diagnostics. On literal listings and logs, no nvcc needed."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.compile import diagnostics as diagnostics_module
from kda_mcp.tools.compile.diagnostics import parse_diagnostics
from kda_mcp.tools.compile.result import CompileResult
from kda_mcp.tools.compile.sass import disassemble, summarize_sass

# ---- item 6: plain, read-only and cache-hinted global accesses

LISTING = """\
\tcode for sm_90a
\t\tFunction : _Z5mixedPKfS0_PfS1_
        /*0000*/                   LDC R1, c[0x0][0x28] ;                          /* 0x00000a00ff017b82 */
        /*0010*/                   LDG.E.128 R4, desc[UR4][R2.64] ;                /* 0x0000000402047981 */
        /*0020*/                   LDG.E.128 R8, desc[UR4][R2.64+0x1000] ;         /* 0x0010000402087981 */
        /*0030*/                   LDG.E.128.CONSTANT R12, desc[UR4][R6.64] ;      /* 0x00000004060c7981 */
        /*0040*/                   LDG.E.128.CONSTANT R16, desc[UR4][R6.64+0x10] ; /* 0x0000100406107981 */
        /*0050*/                   LDG.E.EL.128 R20, desc[UR4][R10.64] ;           /* 0x000000040a147981 */
        /*0060*/                   LDG.E.128.STRONG.GPU R24, desc[UR4][R14.64] ;   /* 0x000000040e187981 */
        /*0070*/                   LDG.E.NA.CONSTANT R28, desc[UR4][R6.64+0x20] ;  /* 0x00002004061c7981 */
        /*0080*/                   LDG.E.LTC128B.128 R32, desc[UR4][R2.64+0x2000] ;/* 0x0020000402207981 */
        /*0090*/                   STG.E.EF.128 desc[UR4][R18.64], R4 ;            /* 0x0000000412007986 */
        /*00a0*/                   STG.E.128 desc[UR4][R18.64+0x10], R8 ;          /* 0x0000100412007986 */
        /*00b0*/                   EXIT ;                                          /* 0x000000000000794d */
\t\t..........

\t\tFunction : _Z5plainPfS_
        /*0000*/                   LDG.E.128 R4, desc[UR4][R2.64] ;                /* 0x0000000402047981 */
        /*0010*/                   LDG.E.128 R8, desc[UR4][R6.64] ;                /* 0x0000000406087981 */
        /*0020*/                   STG.E.128 desc[UR4][R2.64], R4 ;                /* 0x0000000402007986 */
        /*0030*/                   EXIT ;                                          /* 0x000000000000794d */

\t\tFunction : _Z8readonlyPKfPf
        /*0000*/                   LDG.E.128.CONSTANT R4, desc[UR4][R2.64] ;       /* 0x0000000402047981 */
        /*0010*/                   STG.E.128 desc[UR4][R6.64], R4 ;                /* 0x0000000406007986 */
        /*0020*/                   EXIT ;                                          /* 0x000000000000794d */
"""


def test_sass_facts_tell_read_only_and_hinted_loads_from_plain_ones():
    facts = summarize_sass(LISTING)
    mixed = facts["_Z5mixedPKfS0_PfS1_"]
    assert mixed.global_loads_by_width == {"32": 1, "128": 7}  # unchanged: widths still counted
    assert mixed.global_loads_by_kind == {"plain": 2, "read-only": 3, "strong": 1, "hinted": 2}
    assert mixed.global_stores_by_kind == {"plain": 1, "hinted": 1}
    assert mixed.global_cache_hints == {"LDG.EL": 1, "LDG.LTC128B": 1, "LDG.NA": 1, "STG.EF": 1}
    notes = " | ".join(mixed.notes)
    assert "3 on the read-only path (LDG...CONSTANT)" in notes and "const __restrict__ or __ldg" in notes
    assert "1 strong global load(s)" in notes and "skip L1" in notes
    assert "LDG.EL x1 (evict-last)" in notes and "STG.EF x1 (evict-first)" in notes and "LDG.NA x1 (no L1 allocation)" in notes

    plain = facts["_Z5plainPfS_"]
    assert plain.global_loads_by_kind == {"plain": 2} and plain.global_cache_hints is None
    assert any(n.startswith("no global load takes the read-only path (2 plain LDG") and "compare_solutions" in n for n in plain.notes)

    readonly = facts["_Z8readonlyPKfPf"]
    assert readonly.global_loads_by_kind == {"read-only": 1}
    assert "global loads all take the read-only path (LDG...CONSTANT, ld.global.nc) x1" in readonly.notes
    assert not any("strong" in n or "cache hints" in n for n in readonly.notes)


PATHS_CU = """\
__global__ void paths(const float4* __restrict__ ro, const float4* plain, const float4* hint, float4* out, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float4 a = ro[i];                     // const __restrict__: read-only path
    float4 b = plain[i];                  // plain
    float4 c = __ldcs(hint + i);          // evict-first
    float4 d = __ldcg(hint + n + i);      // .cg: strong, skips L1
    float4 e = __ldg(plain + n + i);      // read-only path
    float4 f = __ldlu(hint + 2 * n + i);  // last use
    float4 r = make_float4(a.x + b.x + c.x + d.x + e.x + f.x, a.y + b.y, a.z + c.z, a.w + d.w);
    __stcs(out + i, r);                   // evict-first store
    out[n + i] = r;
}
"""


@pytest.mark.skipif(find_cuda_tool("nvcc") is None or find_cuda_tool("cuobjdump") is None, reason="needs nvcc and cuobjdump (no GPU)")
def test_sass_paths_on_a_real_cubin(tmp_path: Path):
    (tmp_path / "paths.cu").write_text(PATHS_CU)
    cubin = tmp_path / "paths.cubin"
    subprocess.run([find_cuda_tool("nvcc"), "-arch=sm_90a", "-cubin", "-O3", "-o", str(cubin), str(tmp_path / "paths.cu")], check=True, timeout=120)
    [facts] = disassemble(cubin).values()
    # nvcc 13.0 on sm_90a: ro[i] and __ldg -> LDG...CONSTANT, __ldcg -> LDG.E.STRONG.GPU, __ldcs -> LDG.E.EF, __ldlu -> LDG.E.LU
    kinds = facts.global_loads_by_kind
    assert kinds["read-only"] >= 2 and kinds["strong"] >= 1 and kinds["hinted"] >= 2 and kinds["plain"] >= 1
    assert {"LDG.EF", "LDG.LU", "STG.EF"} <= set(facts.global_cache_hints)
    assert facts.global_stores_by_kind == {"plain": 1, "hinted": 1}


# ---- item 7: a ptxas error in inline PTX, at the .cu line

KERNEL_CU = """\
#include <cstdint>

__global__ void scale(const float* __restrict__ x, float* y, float a) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    uint32_t bits;
    float v = x[i] * a;
    // the mistake: a 64-bit move into a 32-bit register
    asm volatile("mov.u64 %0, %1;" : "=r"(bits) : "l"(reinterpret_cast<uint64_t>(y)));
    y[i] = v + __uint_as_float(bits);
}
"""

# What nvcc -lineinfo generates for it (abridged, same directives; nvcc 12.4 puts .file at the end).
KERNEL_PTX = """\
//
// Generated by NVIDIA NVVM Compiler
//
// Compiler Build ID: CL-34097967
// Cuda compilation tools, release 12.4, V12.4.131
// Based on NVVM 7.0.1
//

.version 8.4
.target sm_90a
.address_size 64

	// .globl	_Z5scalePKfPff

.visible .entry _Z5scalePKfPff(
	.param .u64 _Z5scalePKfPff_param_0,
	.param .u64 _Z5scalePKfPff_param_1,
	.param .f32 _Z5scalePKfPff_param_2
)
{
	.reg .b32 	%r<6>;
	.reg .f32 	%f<5>;
	.reg .b64 	%rd<9>;
	.loc	1 3 0


	ld.param.u64 	%rd1, [_Z5scalePKfPff_param_0];
	ld.param.u64 	%rd2, [_Z5scalePKfPff_param_1];
	ld.param.f32 	%f1, [_Z5scalePKfPff_param_2];
	.loc	1 4 13
	mov.u32 	%r2, %ctaid.x;
	mov.u32 	%r3, %ntid.x;
	mov.u32 	%r4, %tid.x;
	mad.lo.s32 	%r5, %r2, %r3, %r4;
	.loc	1 6 15
	cvta.to.global.u64 	%rd4, %rd1;
	mul.wide.s32 	%rd5, %r5, 4;
	add.s64 	%rd6, %rd4, %rd5;
	ld.global.nc.f32 	%f2, [%rd6];
	mul.f32 	%f3, %f2, %f1;
	.loc	1 8 5
	// begin inline asm
	mov.u64 %r1, %rd2;
	// end inline asm
	.loc	1 9 12
	mov.b32 	%f4, %r1;
	add.f32 	%f4, %f3, %f4;
	cvta.to.global.u64 	%rd7, %rd2;
	add.s64 	%rd8, %rd7, %rd5;
	st.global.f32 	[%rd8], %f4;
	.loc	1 10 1
	ret;

}
	.file	1 "{src}/kernel.cu"
"""


def _ptx_line(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if needle in line)


def _ptxas_log(src: Path, ptx_line: int) -> str:
    # torch's extension builder (ninja) around nvcc around ptxas, as the build child's output has it.
    return textwrap.dedent(
        f"""\
        [1/2] /usr/local/cuda/bin/nvcc --generate-dependencies-with-compile -c {src}/kernel.cu -o kernel.cuda.o -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas=-v
        FAILED: kernel.cuda.o
        /usr/local/cuda/bin/nvcc --generate-dependencies-with-compile -c {src}/kernel.cu -o kernel.cuda.o -gencode=arch=compute_90a,code=sm_90a -lineinfo -Xptxas=-v
        ptxas /tmp/tmpxft_0001c2d4_00000000-6_kernel.ptx, line {ptx_line}; error   : Arguments mismatch for instruction 'mov'
        ptxas fatal   : Ptx assembly aborted due to errors
        ninja: build stopped: subcommand failed.
        """
    )


def _solution(tmp_path: Path) -> tuple[Path, Path, int, str]:
    src, keep = tmp_path / "src", tmp_path / "build" / "nvcc-keep"
    src.mkdir()
    keep.mkdir(parents=True)
    (src / "kernel.cu").write_text(KERNEL_CU)
    ptx = KERNEL_PTX.replace("{src}", str(src))
    return src, keep, _ptx_line(ptx, "mov.u64 %r1, %rd2;"), ptx


def test_a_ptxas_error_is_placed_at_the_cu_line_when_the_ptx_is_kept(tmp_path: Path):
    src, keep, line, ptx = _solution(tmp_path)
    (keep / "kernel.ptx").write_text(ptx)
    parsed = diagnostics_module.solution_diagnostics(_ptxas_log(src, line), source_root=src, ptx_dirs=[keep])
    [error] = parsed.diagnostics
    assert (error.tool, error.severity, error.file, error.line) == ("ptxas", "error", "kernel.cu", 8)
    assert error.message.startswith("Arguments mismatch for instruction 'mov'") and f"kernel.ptx line {line}" in error.message
    assert KERNEL_CU.splitlines()[7].lstrip().startswith("asm volatile(\"mov.u64")  # line 8 is the asm statement
    # A kept multi-arch name (kernel.compute_90a.ptx) is found too.
    (keep / "kernel.ptx").rename(keep / "kernel.compute_90a.ptx")
    [error] = parse_diagnostics(_ptxas_log(src, line), source_root=src, ptx_dirs=[keep])
    assert (error.file, error.line) == ("kernel.cu", 8)


def test_without_the_ptx_both_are_said_and_the_cu_line_is_unknown(tmp_path: Path):
    src, keep, line, _ = _solution(tmp_path)
    [error] = diagnostics_module.solution_diagnostics(_ptxas_log(src, line), source_root=src).diagnostics
    assert (error.file, error.line) == ("kernel.ptx", line)
    assert f"kernel.ptx line {line}" in error.message and "the .cu line is unknown" in error.message
    assert "inline asm in the solution using 'mov': kernel.cu:8" in error.message
    [error] = parse_diagnostics(_ptxas_log(src, line), source_root=src, ptx_dirs=[keep])  # kept folder, no PTX in it
    assert (error.file, error.line) == ("kernel.ptx", line) and "not among the build's kept files" in error.message


def test_a_ptx_reached_through_a_link_is_not_read(tmp_path: Path):
    src, keep, line, ptx = _solution(tmp_path)
    elsewhere = tmp_path / "elsewhere.ptx"
    elsewhere.write_text(ptx)
    (keep / "kernel.ptx").symlink_to(elsewhere)
    [error] = parse_diagnostics(_ptxas_log(src, line), source_root=src, ptx_dirs=[keep])
    assert error.file == "kernel.ptx" and "the .cu line is unknown" in error.message


# ---- issue 18 item 3: torch's header warnings are counted, not listed

TORCH = "/venv/lib/python3.11/site-packages/torch/include"


def _torch_log(src: Path) -> str:
    header_warnings = "".join(
        f"""{TORCH}/c10/core/AutogradState.h({n}): warning #2912-D: a default bit-field initializer is a C++20 feature
    bool {name} : 1 = {value};
{" " * (8 + len(name))}^

"""
        for n, name, value in ((76, "grad_mode_", "true"), (77, "inference_mode_", "false"), (78, "fw_grad_mode_", "true"))
    )
    return (
        f"[1/3] /usr/local/cuda/bin/nvcc -I{TORCH} -c {src}/kernel.cu -o kernel.cuda.o\n"
        + header_warnings
        + "Remark: The warnings can be suppressed with \"-diag-suppress <warning-number>\"\n\n"
        + f"""{src}/kernel.cu(5): warning #177-D: variable "bits" was declared but never referenced
      uint32_t bits;
               ^

"""
        # The same header warnings again for the second translation unit, and the host compiler's own.
        + header_warnings
        + f"[2/3] c++ -MMD -MF main.o.d -I{TORCH} -c {src}/main.cpp -o main.o\n"
        + f"In file included from {TORCH}/c10/core/TensorImpl.h:5,\n                 from {src}/main.cpp:1:\n"
        + f"{TORCH}/c10/util/Deprecated.h:12:3: warning: 'C10_DEPRECATED' is deprecated [-Wdeprecated-declarations]\n"
        + f"{TORCH}/c10/util/Deprecated.h:9:1: note: declared here\n"
        + "[3/3] c++ main.o kernel.cuda.o -shared -o kda_ext.so\n"
    )


def test_header_diagnostics_outside_the_solution_are_a_count(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    log = _torch_log(src)
    everything = parse_diagnostics(log, source_root=src)
    assert len(everything) == 6  # what compile_solution listed before: torch's five and the solution's one
    parsed = diagnostics_module.solution_diagnostics(log, source_root=src)
    [own] = parsed.diagnostics
    assert (own.file, own.line, own.severity) == ("kernel.cu", 5, "warning") and 'variable "bits"' in own.message
    assert parsed.outside_solution == 5  # three distinct AutogradState.h lines, the deprecation and its note
    assert "diagnostics_outside_solution" in CompileResult.model_fields


def test_errors_from_headers_are_still_listed(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    log = (
        f"{TORCH}/c10/util/Optional.h(212): error: no instance of constructor \"c10::optional<T>::optional\" matches the argument list\n"
        f"          detected during instantiation of \"void launch(T *) [with T=float]\" at line 14 of {src}/kernel.cu\n\n"
        f"{TORCH}/c10/core/AutogradState.h(76): warning #2912-D: a default bit-field initializer is a C++20 feature\n"
    )
    parsed = diagnostics_module.solution_diagnostics(log, source_root=src)
    [error] = parsed.diagnostics
    assert error.severity == "error" and error.file.endswith("c10/util/Optional.h") and "line 14 of kernel.cu" in error.message
    assert parsed.outside_solution == 1
    assert len(parse_diagnostics(log, source_root=src)) == 2  # parse_diagnostics still returns everything


# ---- the same, on output captured from nvcc 13.0 (V13.0.88) on this project's build machine
#
# tests/fixtures/compile/: inline_ptx_error.cu built with `nvcc -arch=sm_90a -cubin -O3 -lineinfo`
# (inline_ptx_error.log) and with `-keep -keep-dir KEEP` added (inline_ptx_error.keep.log, and the
# kept inline_ptx_error.ptx); torch_header_warnings.log is `nvcc -std=c++17 -arch=sm_90a -c` of a
# .cu including <torch/extension.h> (torch 2.x), with an unused variable at kernel.cu:2. Paths are
# {SRC}, {KEEP} and {TORCH} placeholders.

CAPTURED = Path(__file__).parent / "fixtures" / "compile"


def test_captured_nvcc_ptxas_error_maps_to_the_cu_line(tmp_path: Path):
    src, keep = tmp_path / "src", tmp_path / "keep"
    src.mkdir()
    keep.mkdir()
    (src / "kernel.cu").write_text((CAPTURED / "inline_ptx_error.cu").read_text())
    (keep / "kernel.ptx").write_text((CAPTURED / "inline_ptx_error.ptx").read_text().replace("{SRC}", str(src)))
    kept_log = (CAPTURED / "inline_ptx_error.keep.log").read_text().replace("{KEEP}", str(keep))
    [error] = diagnostics_module.solution_diagnostics(kept_log, source_root=src, ptx_dirs=[keep]).diagnostics
    assert (error.file, error.line, error.tool) == ("kernel.cu", 8, "ptxas") and "kernel.ptx line 43" in error.message
    plain_log = (CAPTURED / "inline_ptx_error.log").read_text()
    [error] = diagnostics_module.solution_diagnostics(plain_log, source_root=src, ptx_dirs=[keep]).diagnostics
    assert (error.file, error.line) == ("kernel.cu", 8)  # the kept PTX serves the temporary's name too
    [error] = diagnostics_module.solution_diagnostics(plain_log, source_root=src).diagnostics
    assert (error.file, error.line) == ("kernel.ptx", 43) and "kernel.cu:8" in error.message and "unknown" in error.message


def test_captured_torch_header_warnings_are_counted(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    log = (CAPTURED / "torch_header_warnings.log").read_text().replace("{SRC}", str(src)).replace("{TORCH}", TORCH)
    assert len(parse_diagnostics(log, source_root=src)) == 5
    parsed = diagnostics_module.solution_diagnostics(log, source_root=src)
    [own] = parsed.diagnostics
    assert (own.file, own.line) == ("kernel.cu", 2) and 'variable "unused_here"' in own.message
    assert parsed.outside_solution == 4  # AutogradState.h 89 and 90, from nvcc's front end and from the host compiler
