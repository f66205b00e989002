"""profile_solution end to end on a GPU (skipped without one).

With KDA_TEST_ARTIFACTS set, the reports are copied there: that is how the CPU suite's
fixtures in tests/fixtures/ncu/ were captured (on an H100).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import anyio
import pytest
from mcp import Client

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

SPILL_CU = r"""
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>

// A correct vector add that also keeps 48 values live per thread under a 32-register cap
// (1024 threads x 2 blocks per SM): ptxas has to spill, which is the point of this fixture.
__global__ void __launch_bounds__(1024, 2) spill_add(const float* x, const float* y, float* out, long n) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  float v[48];
#pragma unroll
  for (int k = 0; k < 48; ++k) v[k] = x[(i + k * 4099) % n];
  float acc = 0.f;
#pragma unroll
  for (int a = 0; a < 48; ++a)
#pragma unroll
    for (int b = a; b < 48; ++b) acc += v[a] * v[b];
  out[i] = x[i] + y[i] + acc * 0.0f;
}

void run(tvm::ffi::TensorView x, tvm::ffi::TensorView y, tvm::ffi::TensorView out) {
  long n = x.size(0);
  spill_add<<<(n + 1023) / 1024, 1024>>>(static_cast<const float*>(x.data_ptr()), static_cast<const float*>(y.data_ptr()),
                                         static_cast<float*>(out.data_ptr()), n);
}
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);
"""


def example(path: str) -> dict:
    return {"solution_json": json.loads(Path("resources/dataset/solutions/kda-examples", path).read_text())}


def call(mcp_server, tool: str, args: dict):
    async def main():
        async with Client(mcp_server, mode="legacy", read_timeout_seconds=900) as client:
            return await client.call_tool(tool, args)

    return anyio.run(main)


def profile(mcp_server, solution: dict, fixture: str, **args) -> dict:
    result = call(mcp_server, "profile_solution", {"solution": solution, "wait_seconds": 600, **args})
    assert not result.is_error, result.content[0].text
    job = result.structured_content
    assert job["status"] == "succeeded", job
    summary = job["result"]
    out = os.environ.get("KDA_TEST_ARTIFACTS")
    if out:
        shutil.copy(summary["report_path"], Path(out, f"{fixture}.ncu-rep"))
        Path(out, f"{fixture}.json").write_text(json.dumps(summary, indent=1))
    return summary


def test_memory_bound_vector_add(mcp_server):
    summary = profile(mcp_server, example("elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json"), "memory_bound", set="quick")
    [kernel] = summary["kernels"]
    assert 100 < kernel["duration_us"] < 400  # 805 MB at 3 TB/s (H100) to 4.3 TB/s (H200)
    assert kernel["bottleneck"]["label"] == "memory-bound", kernel["bottleneck"]
    assert kernel["dram_throughput_pct"] > 70
    assert kernel["bottleneck"]["wiki"][0]["id"] == "pattern-memory-bound"
    assert summary["capture_seconds"] > 0


def test_compute_bound_gemm(mcp_server):
    summary = profile(mcp_server, example("gemm/gemm_n4096_k4096_bf16/gemm_n4096_k4096_bf16_triton_tiled.json"), "compute_bound", set="full")
    [kernel] = summary["kernels"]
    assert kernel["bottleneck"]["label"] == "compute-bound", kernel["bottleneck"]
    assert kernel["tensor_pipe_pct"] > 30 and kernel["findings"]


def test_spilling_cuda_kernel_with_source_lines(mcp_server, server_and_app):
    _, app = server_and_app
    small = app.dataset().dev_set("vector_add_fp32")[1].uuid  # 2^16 floats: a small report to keep as a fixture
    solution = {"files": {"kernel.cu": SPILL_CU}, "spec": {"language": "cuda", "entry_point": "kernel.cu::run"}, "definition": "vector_add_fp32", "name": "spill_add"}
    summary = profile(mcp_server, solution, "spills", set="source", workload=small)
    [kernel] = summary["kernels"]
    assert kernel["local_memory_bytes"] > 0 and "register-spills" in kernel["bottleneck"]["secondary"]
    assert kernel["source_lines"] and kernel["source_lines"][0]["file"] == "kernel.cu"
    first = summary["profile_id"]
    again = profile(mcp_server, example("elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json"), "memory_bound_small", set="quick", workload=small)
    comparison = call(mcp_server, "compare_profiles", {"a": first, "b": again["profile_id"]}).structured_content
    assert comparison["speedup"] > 1  # the plain vector add beats the spilling one
    assert comparison["kernels"][0]["changes"]["local_memory_bytes"][1] in (None, 0)
