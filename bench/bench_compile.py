"""compile_solution wall time per language: a cold build, then the same sources again (cache hit).

  python bench/bench_compile.py

CUDA builds on any machine with nvcc; Triton and Python solutions compile on their first call, so
those rows need a GPU (without one they report needs_gpu, timed all the same).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CUDA_ADD = r"""
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>
__global__ void add_kernel(const float* x, const float* y, float* out, long n) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] + y[i];
}
void run(tvm::ffi::TensorView x, tvm::ffi::TensorView y, tvm::ffi::TensorView out) {
  long n = x.size(0);
  add_kernel<<<(n + 255) / 256, 256>>>(static_cast<const float*>(x.data_ptr()), static_cast<const float*>(y.data_ptr()), static_cast<float*>(out.data_ptr()), n);
}
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);
"""


def main() -> None:
    import anyio

    from kda_mcp.tools.app import KdaApp
    from kda_mcp.tools.compile.operation import compile_solution
    from kda_mcp.tools.settings import Settings
    from kda_mcp.tools.solution import SolutionInput

    state = Path(tempfile.mkdtemp())
    app = KdaApp(Settings.resolve(state_dir=state / "state", cache_dir=state / "cache"))
    examples = REPO / "resources/dataset/solutions"
    cases = {
        "cuda (tvm-ffi)": SolutionInput(files={"kernel.cu": CUDA_ADD}, spec={"language": "cuda", "entry_point": "kernel.cu::run"}, definition="vector_add_fp32"),
        "triton": SolutionInput(solution_json=json.loads((examples / "kda-examples/gemm/gemm_n4096_k4096_bf16/gemm_n4096_k4096_bf16_triton_tiled.json").read_text())),
        "python (torch)": SolutionInput(solution_json=json.loads((examples / "baseline/rmsnorm/rmsnorm_h4096_bf16/rmsnorm_h4096_bf16_torch_baseline.json").read_text())),
    }
    print(f"{'language':18} {'status':10} {'cold s':>8} {'cached s':>9} {'cold/cached':>12}")
    for name, solution in cases.items():
        started = time.perf_counter()
        cold = anyio.run(lambda: compile_solution(app, solution))
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        again = anyio.run(lambda: compile_solution(app, solution))
        cached_s = time.perf_counter() - started
        assert again.cache_hit or cold.status != "ok", again
        print(f"{name:18} {cold.status:10} {cold_s:8.2f} {cached_s:9.3f} {cold_s / cached_s:12.0f}")
    app.jobs.close()


if __name__ == "__main__":
    main()
