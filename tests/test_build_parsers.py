"""The build-output parsers: diagnostics, ptxas resource usage and SASS facts.

Facts about real kernels come from real nvcc compiles (cubins for sm_90a, no GPU needed); the
log formats of other tools (gcc, ld, Python, Triton) are checked on literal text.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kda_mcp.tools.compile import sass as sass_module
from kda_mcp.tools.compile.diagnostics import parse_diagnostics
from kda_mcp.tools.compile.models import KernelResources, SassFacts
from kda_mcp.tools.compile.ptxas import parse_ptxas_info
from kda_mcp.tools.compile.sass import disassemble, find_disassembler, summarize_sass
from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.errors import InvalidArgumentError, UnavailableError

NVCC = find_cuda_tool("nvcc")
HAS_CUOBJDUMP = find_disassembler("cuobjdump") is not None
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not found (no CUDA toolkit)")
needs_cuobjdump = pytest.mark.skipif(
    not HAS_CUOBJDUMP, reason="cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)"
)

SM90A = ["-gencode=arch=compute_90a,code=sm_90a"]
FLAGS = ["-cubin", "-lineinfo", "-Xptxas", "-v"]

# A small kernel, a spilling one (a runtime-indexed per-thread array) and a register-hungry one
# (48 live values, all pairs multiplied): compiled once capped at 32 registers, once free.
CAPPED = """
__global__ void small_kernel(const float* a, float* b, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) b[i] = a[i] * 2.0f + 1.0f;
}

__global__ void local_array(const float* a, float* out, const int* idx, int n) {
  float buf[64];
  int t = blockIdx.x * blockDim.x + threadIdx.x;
#pragma unroll
  for (int k = 0; k < 64; ++k) buf[k] = a[t * 64 + k] * (k + 1);
  float acc = 0.f;
  for (int k = 0; k < n; ++k) acc += buf[idx[k] & 63];
  out[t] = acc;
}
"""

HUNGRY = """
__global__ void hungry(const float* a, float* out) {
  float v[48];
  int t = blockIdx.x * blockDim.x + threadIdx.x;
#pragma unroll
  for (int k = 0; k < 48; ++k) v[k] = a[t + k * 1024];
  float acc = 0.f;
#pragma unroll
  for (int i = 0; i < 48; ++i)
#pragma unroll
    for (int j = i; j < 48; ++j) acc += v[i] * v[j];
  out[t] = acc;
}
"""

MEMORY = """
#include <cuda_pipeline.h>

__global__ void copy_float4(const float4* in, float4* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i];
}

__global__ void copy_float(const float* in, float* out, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = in[i];
}

__global__ void staged_copy(const float4* in, float4* out) {
  __shared__ float4 stage[256];
  __pipeline_memcpy_async(&stage[threadIdx.x], &in[blockIdx.x * 256 + threadIdx.x], sizeof(float4));
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
  out[blockIdx.x * 256 + threadIdx.x] = stage[255 - threadIdx.x];
}
"""

# One warpgroup MMA from shared-memory descriptors: valid PTX for sm_90a, never run.
WGMMA = r"""
#include <cstdint>

__global__ void wgmma_tile(float* out, uint64_t layout_a, uint64_t layout_b) {
  __shared__ __align__(128) unsigned short tiles[64 * 16 + 8 * 16];
  tiles[threadIdx.x] = 0;
  __syncthreads();
  float d0 = 0.f, d1 = 0.f, d2 = 0.f, d3 = 0.f;
  uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(tiles));
  uint64_t desc_a = layout_a | ((base >> 4) & 0x3FFF);
  uint64_t desc_b = layout_b | (((base + 2048) >> 4) & 0x3FFF);
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %6, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n8k16.f32.bf16.bf16 {%0, %1, %2, %3}, %4, %5, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d0), "+f"(d1), "+f"(d2), "+f"(d3)
      : "l"(desc_a), "l"(desc_b), "r"(1));
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
  int t = threadIdx.x;
  out[t * 4 + 0] = d0;
  out[t * 4 + 1] = d1;
  out[t * 4 + 2] = d2;
  out[t * 4 + 3] = d3;
}
"""

# Line 4: an undefined name; line 6: a missing ';' (reported where the '}' is); line 3: unused.
BAD = """__global__ void broken(float* x) {
  x[1] = 2.0f;
  int unused = 3;
  x[0] = undefined_name;
  x[2] = 1.0f
}
"""


class Build:
    def __init__(self, log: str, cubin: Path, returncode: int, source_root: Path) -> None:
        self.log, self.cubin, self.returncode, self.source_root = log, cubin, returncode, source_root

    def kernel(self, name: str) -> KernelResources:
        [hit] = [k for k in parse_ptxas_info(self.log) if _names(k.name, name)]
        return hit

    @functools.cached_property
    def listing(self) -> dict[str, SassFacts]:
        return disassemble(self.cubin)

    def sass(self, name: str) -> SassFacts:
        [key] = [key for key in self.listing if _names(key, name)]
        return self.listing[key]


def _names(symbol: str, name: str) -> bool:
    """Whether a (mangled) symbol is the free function `name`."""
    return symbol == name or symbol.startswith(f"_Z{len(name)}{name}")


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Build]:
    """Every source compiled once, the compiles in parallel."""
    if NVCC is None:
        pytest.skip("nvcc not found")
    src = tmp_path_factory.mktemp("src")
    out = tmp_path_factory.mktemp("out")
    jobs = {
        "capped": (CAPPED + HUNGRY, [*SM90A, "-maxrregcount=32"]),
        "free": (HUNGRY, SM90A),
        "memory": (MEMORY, ["-arch=sm_90"]),
        "wgmma": (WGMMA, SM90A),
        "bad": (BAD, SM90A),
    }

    def compile_one(name: str) -> tuple[str, Build]:
        source, flags = jobs[name]
        path = src / f"{name}.cu"
        path.write_text(source)
        cubin = out / f"{name}.cubin"
        # An absolute source path, as a build folder would pass it: parse_diagnostics must relativize.
        done = subprocess.run(
            [NVCC, *FLAGS, *flags, str(path), "-o", str(cubin)], capture_output=True, text=True, timeout=240
        )
        return name, Build(done.stdout + done.stderr, cubin, done.returncode, src)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = dict(pool.map(compile_one, jobs))
    for name, build in results.items():
        if name != "bad":
            assert build.returncode == 0, f"{name}.cu failed to compile:\n{build.log}"
    return results


# --- real compiles: ptxas resource usage ---------------------------------------------------------


@needs_nvcc
def test_register_cap_and_footprint(builds: dict[str, Build]) -> None:
    small = builds["capped"].kernel("small_kernel")
    capped = builds["capped"].kernel("hungry")
    free = builds["free"].kernel("hungry")
    for kernel in (small, capped, free):
        assert kernel.registers is not None and kernel.registers > 0
        assert kernel.arch == "sm_90a"
    assert small.registers <= 32 and capped.registers <= 32
    assert free.registers > 32 and free.registers != small.registers
    # The cap costs the hungry kernel spills that the free build does not have.
    assert (capped.spill_store_bytes or 0) > 0 and free.spill_store_bytes == 0
    assert small.demangled in (None, "small_kernel(float const*, float*, int)")
    if shutil.which("c++filt") or find_cuda_tool("cu++filt"):
        assert small.demangled == "small_kernel(float const*, float*, int)"


@needs_nvcc
def test_shared_memory_and_barriers_from_ptxas(builds: dict[str, Build]) -> None:
    staged = builds["memory"].kernel("staged_copy")
    assert staged.arch == "sm_90"
    assert staged.shared_static_bytes == 256 * 16
    assert staged.barriers == 1
    assert builds["memory"].kernel("copy_float4").shared_static_bytes is None


@needs_nvcc
def test_spilling_kernel_has_stack_and_local_traffic(builds: dict[str, Build]) -> None:
    kernel = builds["capped"].kernel("local_array")
    assert kernel.registers is not None and kernel.registers <= 32
    assert (kernel.stack_frame_bytes or 0) + (kernel.spill_store_bytes or 0) > 0
    if HAS_CUOBJDUMP:
        facts = builds["capped"].sass("local_array")
        assert facts.local_loads > 0 and facts.local_stores > 0
        assert any("local memory traffic" in note for note in facts.notes or [])


# --- real compiles: SASS facts -------------------------------------------------------------------


@needs_nvcc
@needs_cuobjdump
def test_wgmma_shows_as_hgmma(builds: dict[str, Build]) -> None:
    facts = builds["wgmma"].sass("wgmma_tile")
    assert facts.arch == "sm_90a"
    assert (facts.tensor_core or {}).get("HGMMA", 0) > 0
    assert any(note.startswith("uses wgmma (HGMMA x") for note in facts.notes or [])
    plain = builds["capped"].sass("small_kernel")
    assert plain.tensor_core is None and "no tensor-core instructions" in (plain.notes or [])


@needs_nvcc
@needs_cuobjdump
def test_vector_and_scalar_global_loads(builds: dict[str, Build]) -> None:
    vec = builds["memory"].sass("copy_float4")
    scalar = builds["memory"].sass("copy_float")
    assert (vec.global_loads_by_width or {}).get("128", 0) > 0
    assert (vec.global_stores_by_width or {}).get("128", 0) > 0
    assert "global loads are 128-bit (16 bytes/thread)" in (vec.notes or [])
    assert scalar.global_loads_by_width == {"32": 1}
    assert scalar.local_loads == 0 and scalar.cp_async == 0


@needs_nvcc
@needs_cuobjdump
def test_cp_async_counts_ldgsts(builds: dict[str, Build]) -> None:
    facts = builds["memory"].sass("staged_copy")
    assert facts.cp_async > 0
    assert facts.barriers >= 1 and facts.shared_loads >= 1
    assert facts.global_loads_by_width is None  # the global reads are the LDGSTS themselves


@needs_nvcc
@needs_cuobjdump
def test_disassemble_object_without_device_code(tmp_path: Path) -> None:
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no host C compiler")
    (tmp_path / "host.c").write_text("int host_only(void) { return 1; }\n")
    subprocess.run([compiler, "-c", str(tmp_path / "host.c"), "-o", str(tmp_path / "host.o")], check=True)
    assert disassemble(tmp_path / "host.o") == {}


def test_disassemble_without_cuobjdump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "k.cubin"
    binary.write_bytes(b"\x7fELF")
    monkeypatch.setattr(sass_module, "find_disassembler", lambda name="cuobjdump": None)
    with pytest.raises(UnavailableError, match="cuobjdump was not found"):
        disassemble(binary)
    with pytest.raises(InvalidArgumentError):
        disassemble(tmp_path / "missing.cubin")


# --- real compiles: diagnostics ------------------------------------------------------------------


@needs_nvcc
def test_syntax_error_points_at_file_and_line(builds: dict[str, Build]) -> None:
    build = builds["bad"]
    assert build.returncode != 0
    diags = parse_diagnostics(build.log, source_root=build.source_root)
    errors = [d for d in diags if d.severity == "error"]
    assert [(d.file, d.line, d.tool) for d in errors] == [("bad.cu", 4, "nvcc"), ("bad.cu", 6, "nvcc")]
    assert 'identifier "undefined_name" is undefined' in errors[0].message
    assert errors[0].column == 10
    # The unused variable warning comes after the errors, though nvcc printed it last anyway.
    assert diags[-1].severity == "warning" and diags[-1].line == 3
    assert "detected in the compilation" not in " ".join(d.message for d in diags)


# --- literal logs: diagnostics -------------------------------------------------------------------


def test_nvcc_front_end_context_lines() -> None:
    log = textwrap.dedent(
        """\
        /build/src/tmpl.cu(3): error: name followed by "::" must be a class or namespace name
            x[0] = T::nothing;
                   ^
                  detected during instantiation of "void k(T *) [with T=float]" at line 7

        /build/src/tmpl.cu(9): error: no instance of overloaded function "f" matches the argument list
                    argument types are: (float)
            f(1.0f);
            ^

        /usr/local/cuda/include/cuda_fp16.hpp(120): remark #1234-D: something minor

        2 errors detected in the compilation of "/build/src/tmpl.cu".
        """
    )
    first, second, remark = parse_diagnostics(log, source_root="/build/src")
    assert (first.file, first.line, first.column) == ("tmpl.cu", 3, 10)
    assert first.message.endswith('; detected during instantiation of "void k(T *) [with T=float]" at line 7')
    assert second.message == 'no instance of overloaded function "f" matches the argument list argument types are: (float)'
    assert (remark.severity, remark.file) == ("note", "/usr/local/cuda/include/cuda_fp16.hpp")


def test_gcc_errors_and_include_chain() -> None:
    log = textwrap.dedent(
        """\
        In file included from /work/sol/host.cpp:1:
        /work/sol/inc.h: In function 'int helper(int)':
        /work/sol/inc.h:1:45: error: expected primary-expression before ';' token
            1 | static inline int helper(int v) { return v +; }
              |                                             ^
        /work/sol/host.cpp: In function 'int main()':
        /work/sol/host.cpp:3:11: warning: unused variable 'y' [-Wunused-variable]
        /work/sol/host.cpp:3:11: note: declared here
        /work/sol/host.cpp:5:3: error: 'undefined_thing' was not declared in this scope
        cc1plus: fatal error: other.cpp: No such file or directory
        """
    )
    diags = parse_diagnostics(log, source_root="/work/sol")
    assert [(d.severity, d.file, d.line, d.column, d.tool) for d in diags] == [
        ("error", "inc.h", 1, 45, "gcc"),
        ("error", "host.cpp", 5, 3, "gcc"),
        ("error", None, None, None, "gcc"),
        ("warning", "host.cpp", 3, 11, "gcc"),
        ("note", "host.cpp", 3, 11, "gcc"),
    ]


def test_ptxas_nvlink_and_linker_errors() -> None:
    log = textwrap.dedent(
        """\
        ptxas /tmp/tmpxft_00002ee7_00000000-6_kernel.ptx, line 26; error   : Arguments mismatch for instruction 'mov'
        ptxas /tmp/tmpxft_00002ee7_00000000-6_kernel.ptx, line 30; warning : Instruction 'shfl' without '.sync' is deprecated
        ptxas fatal   : Ptx assembly aborted due to errors
        ptxas error   : Entry function '_Z1kPf' uses too much shared data (0x40000 bytes, 0xc000 max)
        nvlink error   : Undefined reference to '_Z6ext_fnf' in '/tmp/tmpxft_00002ef2_00000000-11_ext.o'
        /usr/bin/ld: /tmp/cch8i8RX.o: in function `main':
        link.cpp:(.text+0x5): undefined reference to `g()'
        collect2: error: ld returned 1 exit status
        /usr/bin/ld: cannot find -lmissing: No such file or directory
        nvcc fatal   : Unsupported gpu architecture 'compute_99'
        """
    )
    diags = parse_diagnostics(log)
    assert [(d.tool, d.severity, d.file, d.line) for d in diags] == [
        ("ptxas", "error", "kernel.ptx", 26),
        ("ptxas", "error", None, None),
        ("nvlink", "error", None, None),
        ("ld", "error", "link.cpp", None),
        ("ld", "error", None, None),
        ("nvcc", "error", None, None),
        ("ptxas", "warning", "kernel.ptx", 30),
    ]
    assert diags[2].message == "Undefined reference to '_Z6ext_fnf' in 'ext.o'"
    assert diags[3].message == "undefined reference to `g()'"


def test_ninja_lines_are_context() -> None:
    log = textwrap.dedent(
        """\
        [1/2] /usr/local/cuda/bin/nvcc -c /tmp/b/sol/k.cu -o k.cuda.o
        FAILED: k.cuda.o
        /usr/local/cuda/bin/nvcc -c /tmp/b/sol/k.cu -o k.cuda.o
        /tmp/b/sol/k.cu(7): error: expected a ";"
        ninja: build stopped: subcommand failed.
        ninja: error: loading 'build.ninja': No such file or directory
        """
    )
    diags = parse_diagnostics(log, source_root="/tmp/b/sol")
    assert [(d.tool, d.file, d.line) for d in diags] == [("nvcc", "k.cu", 7), ("ninja", None, None)]


def test_python_traceback_uses_innermost_solution_frame() -> None:
    log = textwrap.dedent(
        """\
        Traceback (most recent call last):
          File "/srv/runner/harness.py", line 40, in <module>
            main()
          File "/work/sol/kernel.py", line 12, in run
            out = helper(x)
                  ^^^^^^^^^
          File "/work/sol/kernel.py", line 30, in helper
            return x.view(3, -1)
          File "/venv/lib/python3.11/site-packages/torch/_tensor.py", line 99, in view
            raise RuntimeError("bad")
        RuntimeError: shape '[3, -1]' is invalid for input of size 10
        """
    )
    [diag] = parse_diagnostics(log, source_root="/work/sol")
    assert (diag.tool, diag.severity, diag.file, diag.line) == ("python", "error", "kernel.py", 30)
    assert diag.message == "RuntimeError: shape '[3, -1]' is invalid for input of size 10"
    [outside] = parse_diagnostics(log, source_root="/elsewhere")
    assert outside.file is None and outside.line is None


TRITON_SOURCE = """\
import triton
import triton.language as tl


@triton.jit
def add_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    y = x + undefined_name
    tl.store(y_ptr + offs, y, mask=offs < n)
"""

TRITON_LOG = """\
Traceback (most recent call last):
  File "{root}/main.py", line 21, in <module>
    build()
  File "/venv/lib/python3.11/site-packages/triton/compiler/compiler.py", line 80, in make_ir
    return ast_to_ttir(self.fn, self, context=context, options=options, codegen_fns=codegen_fns,
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
triton.compiler.errors.CompilationError: at 5:12:
def add_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    y = x + undefined_name
            ^
NameError('undefined_name is not defined')
"""


def test_triton_compilation_error_placed_in_source(tmp_path: Path) -> None:
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "add.py").write_text(TRITON_SOURCE)
    [diag] = parse_diagnostics(TRITON_LOG.format(root=tmp_path), source_root=tmp_path)
    assert (diag.tool, diag.severity) == ("triton", "error")
    assert (diag.file, diag.line, diag.column) == ("kernels/add.py", 10, 13)
    assert diag.message == "NameError('undefined_name is not defined')"


def test_triton_compilation_error_without_source() -> None:
    [diag] = parse_diagnostics(TRITON_LOG.format(root="/gone"), source_root="/gone")
    assert diag.tool == "triton" and diag.file is None
    assert diag.message == "NameError('undefined_name is not defined') (line 5, column 13 of the @triton.jit function)"


def test_triton_error_is_placed_in_the_submitted_sources_after_the_room_is_gone() -> None:
    """compile_solution parses after the room the JIT ran in is cleared (and its files were the
    solution's to swap): the excerpt is found in the sources as submitted."""
    from kda_mcp.tools.compile.diagnostics import solution_diagnostics

    sources = {"kernels/add.py": TRITON_SOURCE, "main.py": "import kernels.add\n"}
    parsed = solution_diagnostics(TRITON_LOG.format(root="/gone/room/src"), source_root="/gone/room/src", sources=sources)
    [diag] = parsed.diagnostics
    assert (diag.tool, diag.file, diag.line, diag.column) == ("triton", "kernels/add.py", 10, 13)


def test_order_dedupe_and_limit() -> None:
    log = "\n".join(
        [
            "k.cu(3): warning #177-D: variable \"a\" was declared but never referenced",
            "k.cu(5): error: expected a \";\"",
            "k.cu(5): error: expected a \";\"",
            "k.cu(9): error: identifier \"b\" is undefined",
        ]
    )
    diags = parse_diagnostics(log)
    assert [(d.severity, d.line) for d in diags] == [("error", 5), ("error", 9), ("warning", 3)]
    assert diags[2].message.endswith("[#177-D]")
    assert len(parse_diagnostics(log, limit=1)) == 1
    with pytest.raises(InvalidArgumentError):
        parse_diagnostics(log, limit=-1)
    assert parse_diagnostics("") == []


# --- literal logs: ptxas resource usage ----------------------------------------------------------

PTXAS_LOG = """\
ptxas info    : 0 bytes gmem, 64 bytes cmem[3]
ptxas info    : Compiling entry function '_Z6kernelPfS_i' for 'sm_80'
ptxas info    : Function properties for _Z6kernelPfS_i
    16 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads
ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem, 368 bytes cmem[0], 8 bytes cmem[2]
ptxas info    : Compile time = 2.730 ms
ptxas info    : Function properties for _Z6helperf
    24 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Compiling entry function 'plain_c' for 'sm_90a'
ptxas info    : Function properties for plain_c
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 12 registers
ptxas info    : Overriding maximum register limit 256 for 'old' with  32 of maxrregcount option
ptxas info    : Compiling entry function 'old' for 'sm_70'
ptxas info    : Function properties for old
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 8 registers, 2048+0 bytes smem, 352 bytes cmem[0]
"""


def test_parse_ptxas_info_literal() -> None:
    kernels = parse_ptxas_info(PTXAS_LOG)
    assert [k.name for k in kernels] == ["_Z6kernelPfS_i", "plain_c", "old"]  # _Z6helperf is no kernel
    first, plain, old = kernels
    assert (first.arch, first.registers, first.barriers) == ("sm_80", 40, 1)
    assert (first.shared_static_bytes, first.constant_bytes) == (1024, 376)
    assert (first.stack_frame_bytes, first.spill_store_bytes, first.spill_load_bytes) == (16, 8, 12)
    assert (plain.registers, plain.barriers, plain.shared_static_bytes, plain.constant_bytes) == (12, None, None, None)
    assert plain.demangled is None
    assert (old.registers, old.shared_static_bytes, old.constant_bytes) == (8, 2048, 352)


# --- literal listings: SASS ----------------------------------------------------------------------

SASS_LISTING = """\
Fatbin elf code:
================
arch = sm_90a

\tcode for sm_90a
\t\tFunction : _Z3twoPf
        /*0000*/                   LDC R1, c[0x0][0x28] ;          /* 0x00000a00ff017b82 */
        /*0010*/              @!PT LDS RZ, [RZ] ;                  /* 0x000fc00000000000 */
        /*0020*/                   LDG.E R2, desc[UR4][R2.64] ;     /* 0x0000000402027981 */
        /*0030*/               @P0 LDG.E.64 R4, desc[UR4][R6.64] ;  /* 0x0000000406047981 */
        /*0040*/                   LDG.E.U8 R8, desc[UR4][R6.64] ;  /* 0x0000000406087981 */
        /*0050*/                   STG.E.128 desc[UR4][R2.64], R8 ; /* 0x0000000802007986 */
        /*0060*/                   LDSM.16.M88.4 R8, [R6+UR4] ;     /* 0x000000040608783b */
        /*0070*/                   HMMA.16816.F32.BF16 R8, R8, R12, RZ ;
        /*0080*/                   UTMALDG.2D [UR8], [UR4] ;
        /*0090*/                   SYNCS.ARRIVE.TRANS64 RZ, [UR9], R0 ;
        /*00a0*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;
        /*00b0*/                   STL [R1+0x4], R3 ;
        /*00c0*/                   EXIT ;
        /*00d0*/                   BRA 0xd0;
        /*00e0*/                   NOP;
\t\t..........

\tcode for sm_80
\t\tFunction : _Z3twoPf
        /*0000*/                   EXIT ;
"""


def test_summarize_sass_literal() -> None:
    facts = summarize_sass(SASS_LISTING)
    assert set(facts) == {"_Z3twoPf@sm_90a", "_Z3twoPf@sm_80"}
    hopper = facts["_Z3twoPf@sm_90a"]
    assert hopper.arch == "sm_90a"
    assert hopper.instructions == 13  # no NOP, no @!PT padding
    assert hopper.global_loads_by_width == {"8": 1, "32": 1, "64": 1}
    assert hopper.global_stores_by_width == {"128": 1}
    assert hopper.tensor_core == {"HMMA": 1} and hopper.tma == {"UTMALDG": 1}
    assert (hopper.shared_loads, hopper.local_stores, hopper.barriers) == (1, 1, 2)
    assert "uses mma.sync (HMMA x1)" in (hopper.notes or [])
    assert "TMA loads present" in (hopper.notes or [])
    assert facts["_Z3twoPf@sm_80"].instructions == 1
    assert summarize_sass("") == {}
