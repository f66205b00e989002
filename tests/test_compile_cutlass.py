"""compile_solution with spec.dependencies = ["cutlass"]: a CuTe kernel builds against the CUTLASS
headers of the nvidia-cutlass wheel (the `contest` extra) or CUTLASS_HOME, and the result says which
headers and version it used. Real nvcc on the CPU; on a GPU the same kernel is benchmarked too."""

from __future__ import annotations

import pytest

from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.compile import dependencies
from tests.test_compile import call

CUTE_ADD = r"""
#include <cute/tensor.hpp>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>

using namespace cute;

// One 1024-element tile per block, through CuTe tensors and local_tile.
__global__ void add_cute(const float* x, const float* y, float* out, int n) {
  auto shape = make_shape(n);
  Tensor gx = make_tensor(make_gmem_ptr(x), shape);
  Tensor gy = make_tensor(make_gmem_ptr(y), shape);
  Tensor go = make_tensor(make_gmem_ptr(out), shape);
  auto tile = make_shape(Int<1024>{});
  Tensor tx = local_tile(gx, tile, make_coord(blockIdx.x));
  Tensor ty = local_tile(gy, tile, make_coord(blockIdx.x));
  Tensor to = local_tile(go, tile, make_coord(blockIdx.x));
  int base = blockIdx.x * 1024;
  for (int i = threadIdx.x; i < size(to); i += blockDim.x) {
    if (base + i < n) to(i) = tx(i) + ty(i);
  }
}

void run(tvm::ffi::TensorView x, tvm::ffi::TensorView y, tvm::ffi::TensorView out) {
  int n = static_cast<int>(x.size(0));
  add_cute<<<(n + 1023) / 1024, 256>>>(static_cast<const float*>(x.data_ptr()), static_cast<const float*>(y.data_ptr()),
                                       static_cast<float*>(out.data_ptr()), n);
}
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);
"""

needs_cutlass = pytest.mark.skipif(
    find_cuda_tool("nvcc") is None or not dependencies.cutlass().ok, reason="needs nvcc and CUTLASS headers (pip install 'kda-mcp[contest]')"
)


def _solution(deps: list[str]) -> dict:
    spec = {"language": "cuda", "entry_point": "kernel.cu::run", "dependencies": deps}
    return {"files": {"kernel.cu": CUTE_ADD}, "spec": spec, "definition": "vector_add_fp32"}


@needs_cutlass
@pytest.mark.slow
def test_a_cute_kernel_builds_and_says_which_cutlass_it_used(mcp_server):
    r = call(mcp_server, "compile_solution", {"solution": _solution(["cutlass"]), "arch": "sm_90a"}).structured_content
    assert r["status"] == "ok", r
    [library] = r["libraries"]
    assert library.startswith("CUTLASS ") and "headers from" in library
    assert "unknown version" not in library
    assert any("add_cute" in (k.get("demangled") or k["name"]) for k in r["kernels"])


@pytest.mark.skipif(find_cuda_tool("nvcc") is None, reason="nvcc not installed")
@pytest.mark.slow
def test_without_the_dependency_cute_is_not_on_the_include_path(mcp_server):
    r = call(mcp_server, "compile_solution", {"solution": _solution([]), "arch": "sm_90a"}).structured_content
    assert r["status"] == "failed"
    assert any("cute/tensor.hpp" in d["message"] for d in r["diagnostics"]), r["diagnostics"]


def test_cutlass_home_wins_and_a_bad_one_says_what_to_do(tmp_path, monkeypatch):
    include = tmp_path / "include" / "cutlass"
    include.mkdir(parents=True)
    (include / "cutlass.h").write_text("")
    (include / "version.h").write_text("#define CUTLASS_MAJOR 9\n#define CUTLASS_MINOR 8\n#define CUTLASS_PATCH 7\n")
    monkeypatch.setenv("CUTLASS_HOME", str(tmp_path))
    library = dependencies.cutlass()
    assert library.includes == [str(tmp_path / "include")] and "CUTLASS 9.8.7 headers from CUTLASS_HOME" in library.found
    monkeypatch.setenv("CUTLASS_HOME", str(tmp_path / "nowhere"))
    if dependencies._wheel_root() is None:
        library = dependencies.cutlass()
        assert not library.ok and "CUTLASS_HOME=" in library.found and "kda-mcp[contest]" in library.found
    libraries, warnings = dependencies.resolve(["cutlass", "cutlass", "magic"], None)
    assert "unknown dependency 'magic'" in warnings[-1] and len(libraries) + len(warnings) == 2


@needs_cutlass
@pytest.mark.gpu
@pytest.mark.slow
def test_a_cute_kernel_benchmarks_passed_on_the_gpu(mcp_server, server_and_app):
    """Issue 16: the CUTLASS include path holds at run time, not only at build time."""
    from tests.test_gpu_benchmark import bench, small_workloads

    _, app = server_and_app
    result = bench(mcp_server, _solution(["cutlass"]), workloads=small_workloads(app, count=3), baseline="none")
    assert [w["status"] for w in result["workloads"]] == ["PASSED"] * 3, result["workloads"]
    assert all(not w.get("findings") for w in result["workloads"]), result["workloads"]
