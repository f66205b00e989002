"""run_benchmark and compile_solution on a real GPU (skipped without one).

Each fault below must end its own job with a status, and the next job on the same GPU must
still measure correctly.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from mcp import Client

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

EXAMPLES = {
    "vector_add_fp32": "resources/dataset/solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json",
    "rmsnorm_h4096_bf16": "resources/dataset/solutions/kda-examples/rmsnorm/rmsnorm_h4096_bf16/rmsnorm_h4096_bf16_triton_row.json",
    "gemm_n4096_k4096_bf16": "resources/dataset/solutions/kda-examples/gemm/gemm_n4096_k4096_bf16/gemm_n4096_k4096_bf16_triton_tiled.json",
}
FAST = {"warmup": 3, "min_iterations": 10, "max_iterations": 30, "target_seconds": 0.05}


def example(name: str) -> dict:
    return json.loads(Path(EXAMPLES[name]).read_text())


def python_solution(body: str, *, definition: str = "vector_add_fp32", name: str = "probe") -> dict:
    return {
        "files": {"main.py": body},
        "spec": {"language": "python", "entry_point": "main.py::run"},
        "definition": definition,
        "name": name,
    }


def call(mcp_server, tool: str, args: dict, *, timeout: float = 600):
    async def main():
        async with Client(mcp_server, mode="legacy", read_timeout_seconds=timeout) as client:
            return await client.call_tool(tool, args)

    return anyio.run(main)


def bench(mcp_server, solution: dict, **args) -> dict:
    args.setdefault("config", FAST)
    args.setdefault("wait_seconds", 600)
    result = call(mcp_server, "run_benchmark", {"solution": solution, **args})
    assert not result.is_error, result.content[0].text
    job = result.structured_content
    assert job["status"] == "succeeded", job
    return job["result"]


def small_workloads(app, definition: str = "vector_add_fp32", count: int = 2) -> list[str]:
    return [w.uuid for w in app.dataset().dev_set(definition)[:count]]


def statuses(result: dict) -> list[str]:
    return [w["status"] for w in result["workloads"]]


def test_compile_triton_example_reports_kernels(mcp_server):
    r = call(mcp_server, "compile_solution", {"solution": {"solution_json": example("gemm_n4096_k4096_bf16")}}).structured_content
    assert r["status"] == "ok", r
    [kernel] = r["kernels"]
    assert kernel["registers"] > 0 and kernel["shared_dynamic_bytes"] > 0
    assert kernel["sass"]["tensor_core"], kernel["sass"]  # tl.dot on Hopper: HGMMA (or HMMA)


def test_jit_failure_is_a_compile_error(mcp_server):
    body = """
import triton
import triton.language as tl

@triton.jit
def bad_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(out_ptr + offs, x + undefined_thing, mask=offs < n)

def run(x, y, out):
    bad_kernel[(1,)](x, out, x.numel(), BLOCK=128)
"""
    solution = python_solution(body) | {"spec": {"language": "triton", "entry_point": "main.py::run"}}
    r = call(mcp_server, "compile_solution", {"solution": solution}).structured_content
    assert r["status"] == "failed", r
    assert "first call" in r["message"] and "undefined_thing" in json.dumps(r)


@pytest.mark.parametrize("definition", sorted(EXAMPLES))
def test_examples_pass_with_speedups_and_provenance(mcp_server, definition):
    result = bench(mcp_server, {"solution_json": example(definition)})
    if os.environ.get("KDA_TEST_ARTIFACTS"):  # keep the numbers of a GPU run
        Path(os.environ["KDA_TEST_ARTIFACTS"], f"bench_{definition}.json").write_text(json.dumps(result, indent=1))
    assert statuses(result) == ["PASSED"] * len(result["workloads"]), result
    assert result["attempt_id"].startswith("a")
    assert result["baseline"] and len(result["baseline_hash"]) == 16
    for row in result["workloads"]:
        assert row["latency"]["median_us"] > 0 and row["latency"]["p10_us"] <= row["latency"]["p90_us"]
        assert row["reference_us"] > 0 and row["baseline_us"] > 0
        assert row["speedup"]["vs_reference"] > 0
        assert row["host_call_us"] > 0
    prov = result["provenance"]
    assert "cupti" in prov["method"] and "cold L2" in prov["method"]
    assert prov["gpu"] and prov["copy_bandwidth_tb_s"] > 1
    assert result["aggregate"]["passed"] == len(result["workloads"])


def test_wrong_answer_is_incorrect_numerical(mcp_server):
    result = bench(mcp_server, python_solution("def run(x, y, out):\n    out.copy_(x - y)\n"))
    assert set(statuses(result)) == {"INCORRECT_NUMERICAL"}
    assert result["aggregate"]["passed"] == 0


def test_wrong_shape_and_dtype(mcp_server):
    solution = python_solution("def run(x, y):\n    return (x + y).double()\n", name="dtype")
    solution["spec"]["destination_passing_style"] = False
    dtype = bench(mcp_server, solution)
    assert set(statuses(dtype)) == {"INCORRECT_DTYPE"}
    solution = python_solution("def run(x, y):\n    return (x + y)[:-1]\n", name="shape")
    solution["spec"]["destination_passing_style"] = False
    assert set(statuses(bench(mcp_server, solution))) == {"INCORRECT_SHAPE"}


FAULTS = {
    "segfault": "import ctypes\ndef run(x, y, out):\n    ctypes.string_at(0)\n",
    "exit": "import os\ndef run(x, y, out):\n    os._exit(0)\n",
    "raise": "def run(x, y, out):\n    raise ValueError('boom')\n",
    "illegal_address": (
        "import torch\n"
        "def run(x, y, out):\n"
        "    idx = torch.full((4,), 1 << 40, device=x.device, dtype=torch.long)\n"
        "    out.copy_(x[idx].sum() + y)\n"
    ),
    "gpu_oom": "import torch\ndef run(x, y, out):\n    torch.empty(200 * 2**30, dtype=torch.uint8, device=x.device)\n",
    "host_memory": "def run(x, y, out):\n    blob = bytearray(8 * 2**30)\n    for i in range(0, len(blob), 4096):\n        blob[i] = 1\n",
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_faults_end_the_job_with_a_status_and_the_gpu_stays_usable(mcp_server, server_and_app, fault):
    _, app = server_and_app
    config = dict(FAST, workload_timeout_s=60)
    if fault == "host_memory":
        config["memory_limit_gb"] = 2
    wanted = small_workloads(app)
    result = bench(mcp_server, python_solution(FAULTS[fault], name=fault), workloads=wanted, config=config, baseline="none")
    assert statuses(result) == ["RUNTIME_ERROR"] * len(wanted), result
    assert all(w.get("log") for w in result["workloads"])
    # The next job on the same GPU measures correctly.
    healthy = bench(mcp_server, {"solution_json": example("vector_add_fp32")}, workloads=wanted, baseline="none")
    assert set(statuses(healthy)) == {"PASSED"}


def test_infinite_loop_times_out(mcp_server, server_and_app):
    _, app = server_and_app
    result = bench(
        mcp_server,
        python_solution("def run(x, y, out):\n    while True:\n        pass\n", name="hang"),
        workloads=small_workloads(app),
        config=dict(FAST, workload_timeout_s=10),
        baseline="none",
    )
    assert set(statuses(result)) == {"TIMEOUT"}


def test_cached_outputs_are_caught(mcp_server):
    body = """
_cache = {}

def run(x, y, out):
    key = (x.data_ptr(), y.data_ptr())
    if key in _cache:
        out.copy_(_cache[key])
        return
    out.copy_(x + y)
    _cache[key] = out.clone()
"""
    result = bench(mcp_server, python_solution(body, name="pointer_cache"))
    assert set(statuses(result)) == {"INCORRECT_NUMERICAL"}, result
    assert any(f["check"] == "timed_outputs_wrong" for w in result["workloads"] for f in w.get("findings", []))


def test_reference_outputs_never_exist_in_the_solution_process(mcp_server):
    body = """
import gc
import torch

def run(x, y, out):
    # Look for any tensor holding the right answer without computing it.
    want = None
    for obj in gc.get_objects():
        if type(obj) is torch.Tensor and obj.shape == out.shape and obj.data_ptr() not in (x.data_ptr(), y.data_ptr(), out.data_ptr()):
            if obj.device == out.device and obj.dtype == out.dtype:
                want = obj
    out.copy_(want if want is not None else torch.zeros_like(out))
"""
    result = bench(mcp_server, python_solution(body, name="snoop"))
    assert "PASSED" not in statuses(result), result


def test_progress_jobs_ledger_and_traces(mcp_server, server_and_app):
    _, app = server_and_app
    first = bench(mcp_server, {"solution_json": example("vector_add_fp32")})
    child = bench(mcp_server, {"solution_json": example("vector_add_fp32")}, parent_attempt=first["attempt_id"])
    page = call(mcp_server, "list_attempts", {"lineage_of": child["attempt_id"]}).structured_content
    assert page["lineage"] == [first["attempt_id"], child["attempt_id"]]
    note = call(mcp_server, "record_note", {"direction": "baseline check", "verdict": "keep", "attempts": [child["attempt_id"]]}).structured_content
    detail = call(mcp_server, "get_attempt", {"attempt_id": child["attempt_id"]}).structured_content
    assert detail["notes"][0]["note_id"] == note["note_id"]

    from flashinfer_bench.data import TraceSet

    traces = TraceSet.from_path(str(app.settings.state_dir / "traceset"))
    ours = [t for t in traces.traces["vector_add_fp32"] if t.solution.startswith(first["solution"] + "-")]
    assert len(ours) >= 2 * len(first["workloads"])
    assert all(t.evaluation.status.value == "PASSED" and t.evaluation.performance.latency_ms > 0 for t in ours)
    assert traces.get_solution(ours[0].solution) is not None

    quick = call(mcp_server, "run_benchmark", {"solution": {"solution_json": example("gemm_n4096_k4096_bf16")}, "wait_seconds": 0, "config": FAST})
    job_id = quick.structured_content["job_id"]
    assert quick.structured_content["status"] in ("queued", "running")
    cancelled = call(mcp_server, "cancel_job", {"job_id": job_id}).structured_content
    assert cancelled["status"] == "cancelled"
    after = bench(mcp_server, {"solution_json": example("vector_add_fp32")}, workloads="all")
    assert set(statuses(after)) == {"PASSED"}
