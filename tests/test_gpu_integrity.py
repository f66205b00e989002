"""The red-team suite: one cheating solution per integrity check, each caught on the GPU, and
honest solutions (the sample examples, baselines, honest multi-stream code) that must not be
flagged. Also compute-sanitizer and the interleaved A/B. Skipped without a GPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from mcp import Client

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

FAST = {"warmup": 3, "min_iterations": 10, "max_iterations": 20, "target_seconds": 0.05}
RESULTS: dict[str, dict] = {}  # name -> what the cheat got (written to KDA_TEST_ARTIFACTS)


def call(mcp_server, tool: str, args: dict):
    async def main():
        async with Client(mcp_server, mode="legacy", read_timeout_seconds=900) as client:
            return await client.call_tool(tool, args)

    return anyio.run(main)


def finish(mcp_server, tool: str, args: dict) -> dict:
    result = call(mcp_server, tool, {"wait_seconds": 600, **args})
    assert not result.is_error, result.content[0].text
    assert result.structured_content["status"] == "succeeded", result.structured_content
    return result.structured_content["result"]


def small(app, definition: str = "vector_add_fp32", count: int = 2) -> list[str]:
    return [w.uuid for w in app.dataset().dev_set(definition)[:count]]


def python(body: str, name: str, *, definition: str = "vector_add_fp32", dps: bool = True) -> dict:
    return {
        "files": {"main.py": body},
        "spec": {"language": "python", "entry_point": "main.py::run", "destination_passing_style": dps},
        "definition": definition,
        "name": name,
    }


def bench(mcp_server, solution: dict, workloads, **config) -> dict:
    return finish(mcp_server, "run_benchmark", {"solution": solution, "workloads": workloads, "baseline": "none", "config": {**FAST, **config}})


def checks(result: dict) -> set[str]:
    return {f["check"] for w in result.get("workloads", []) for f in w.get("findings", [])}


def record(name: str, result: dict) -> None:
    rows = result.get("workloads", [])
    RESULTS[name] = {
        "statuses": [w.get("status") or f"{w.get('a_status')}/{w.get('b_status')}" for w in rows],
        "checks": sorted(checks(result)),
        "suspect": any(w.get("suspect") for w in rows),
        **{k: result[k] for k in ("verdict", "geomean_speedup_b_over_a", "clean", "message") if k in result},
    }
    out = os.environ.get("KDA_TEST_ARTIFACTS")
    if out:
        Path(out, "redteam.json").write_text(json.dumps(RESULTS, indent=1))


CHEATS = {
    # name: (source, dps, what must be seen: a status other than PASSED and/or a finding)
    "pointer_cache": (
        "_cache = {}\ndef run(x, y, out):\n    key = (x.data_ptr(), y.data_ptr())\n    if key in _cache:\n        out.copy_(_cache[key])\n        return\n"
        "    out.copy_(x + y)\n    _cache[key] = out.clone()\n",
        True,
        "timed_outputs_wrong",
    ),
    "replay_first_result": (
        "_first = []\ndef run(x, y, out):\n    if not _first:\n        _first.append(x + y)\n    out.copy_(_first[0])\n",
        True,
        "identical_outputs",
    ),
    "background_thread": (
        "import threading, torch\n_started = []\n"
        "def _busy(x):\n    s = torch.cuda.Stream()\n    with torch.cuda.stream(s):\n        for _ in range(200000):\n            x.mul_(1.0)\n"
        "def run(x, y, out):\n    if not _started:\n        _started.append(threading.Thread(target=_busy, args=(torch.ones(1 << 20, device=x.device),), daemon=True))\n        _started[0].start()\n"
        "    out.copy_(x + y)\n",
        True,
        "background_threads",
    ),
    "timer_patch": (
        "import torch\nimport tools.evaluation.timing as t\n_orig = t._attribute\n"
        "def _fast(*a, **k):\n    run = _orig(*a, **k)\n    run.gpu_us = [g / 100 for g in run.gpu_us]\n    return run\n"
        "t._attribute = _fast\n"
        "def run(x, y, out):\n    torch.add(x, y, out=out)\n",
        True,
        "harness_tampered",
    ),
    "fake_timing_batch": (
        "import torch\nimport tools.evaluation.batch as b\nfrom tools.evaluation.timing import TimedRun\n_orig = b.time_calls\n"
        "def _fake(call, prepare, *, iterations, flusher, timer):\n    real = _orig(call, prepare, iterations=iterations, flusher=flusher, timer=timer)\n"
        "    return TimedRun('cupti activity records (all streams)', [1.0] * iterations, [1.0] * iterations, [2.0] * iterations, [1] * iterations)\n"
        "b.time_calls = _fake\n"
        "def run(x, y, out):\n    torch.add(x, y, out=out)\n    torch.cuda._sleep(200_000_000)\n",
        True,
        "timing_inconsistent",
    ),
    "lazy_output": (
        "import torch\nclass Lazy(torch.Tensor):\n    pass\ndef run(x, y):\n    return (x + y).as_subclass(Lazy)\n",
        False,
        "non_tensor_output",
    ),
    "mutates_input": ("def run(x, y, out):\n    out.copy_(x + y)\n    x.zero_()\n", True, "inputs_modified"),
    "output_aliases_input": ("def run(x, y):\n    return x.add_(y)\n", False, "output_aliases_input"),
    "writes_half": ("def run(x, y, out):\n    n = out.numel() // 2\n    out[:n].copy_(x[:n] + y[:n])\n", True, None),
    "racy_results": (
        "_n = [0]\ndef run(x, y, out):\n    _n[0] += 1\n    out.copy_(x + y)\n    if _n[0] % 2 == 0:\n        out[:17] += 1.0\n",
        True,
        "nondeterministic",
    ),
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheat_is_caught(mcp_server, server_and_app, name):
    _, app = server_and_app
    source, dps, expected = CHEATS[name]
    result = bench(mcp_server, python(source, name, dps=dps), small(app))
    record(name, result)
    caught = any(w["status"] != "PASSED" or w.get("suspect") for w in result["workloads"])
    assert caught, result
    assert all(not w.get("speedup") for w in result["workloads"]), "a suspect or failed result must not score"
    if expected:
        assert expected in checks(result), (name, checks(result), [w.get("log") for w in result["workloads"]])


def test_below_floor_and_above_ceiling_are_flagged(mcp_server, server_and_app):
    _, app = server_and_app
    source = CHEATS["timer_patch"][0]
    big = [w.uuid for w in app.dataset().dev_set("vector_add_fp32")][-1:]
    result = bench(mcp_server, python(source, "timer_patch_big"), big, speedup_ceiling=10)
    record("timer_patch_big", result)
    assert {"below_physical_floor", "harness_tampered"} <= checks(result)


def test_forbidden_library_op_is_caught(mcp_server, server_and_app):
    _, app = server_and_app
    source = "import torch\ndef run(A, B, C):\n    torch.matmul(A, B.T, out=C)\n"
    result = bench(mcp_server, python(source, "uses_matmul", definition="gemm_n4096_k4096_bf16"), small(app, "gemm_n4096_k4096_bf16", 1))
    record("uses_matmul", result)
    assert "forbidden_call" in checks(result)
    assert result["workloads"][0]["suspect"] and not result["workloads"][0].get("speedup")


HONEST_MULTISTREAM = """
import torch

def run(x, y, out):
    # Two halves on two streams, joined before returning: honest concurrency.
    n = x.numel() // 2
    main = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(main)
    with torch.cuda.stream(side):
        torch.add(x[n:], y[n:], out=out[n:])
    torch.add(x[:n], y[:n], out=out[:n])
    main.wait_stream(side)
"""


def test_honest_solutions_are_not_flagged(mcp_server, server_and_app):
    _, app = server_and_app
    root = Path("resources/dataset/solutions")
    honest = {path.stem: {"solution_json": json.loads(path.read_text())} for path in root.glob("kda-examples/*/*/*.json")}
    for definition in ("vector_add_fp32", "rmsnorm_h4096_bf16"):  # the GEMM baseline calls torch.matmul, which its policy forbids
        [path] = root.glob(f"baseline/*/{definition}/*.json")
        honest[path.stem] = {"solution_json": json.loads(path.read_text())}
    honest["multistream"] = python(HONEST_MULTISTREAM, "multistream")
    flagged = {}
    for name, solution in honest.items():
        definition = solution.get("definition") or solution["solution_json"]["definition"]
        result = finish(mcp_server, "run_benchmark", {"solution": solution, "workloads": "dev", "config": FAST})
        record(f"honest:{name}", result)
        statuses = [w["status"] for w in result["workloads"]]
        assert statuses == ["PASSED"] * len(statuses), (name, definition, statuses)
        if checks(result):
            flagged[name] = sorted(checks(result))
    assert flagged == {}, flagged


OOB_CU = r"""
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/function.h>
__global__ void oob_add(const float* x, const float* y, float* out, long n) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  out[i] = x[i % n] + y[i % n];  // no bounds check on the store: the last block writes past the end
}
void run(tvm::ffi::TensorView x, tvm::ffi::TensorView y, tvm::ffi::TensorView out) {
  long n = x.size(0);
  oob_add<<<(n + 1000) / 1000, 1024>>>(static_cast<const float*>(x.data_ptr()), static_cast<const float*>(y.data_ptr()), static_cast<float*>(out.data_ptr()), n);
}
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);
"""


def test_memcheck_finds_the_out_of_bounds_write(mcp_server):
    solution = {"files": {"kernel.cu": OOB_CU}, "spec": {"language": "cuda", "entry_point": "kernel.cu::run"}, "definition": "vector_add_fp32", "name": "oob"}
    report = finish(mcp_server, "sanitize_solution", {"solution": solution, "tool": "memcheck"})
    record("sanitize:oob", report)
    assert not report["clean"], report
    issue = report["issues"][0]
    assert "write" in issue["kind"].lower() and "oob_add" in issue["kernel"]
    assert issue["file"] == "kernel.cu" and issue["line"] == 6
    example = json.loads(Path("resources/dataset/solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json").read_text())
    clean = finish(mcp_server, "sanitize_solution", {"solution": {"solution_json": example}, "tool": "memcheck"})
    assert clean["clean"], clean


def test_compare_solutions_tells_faster_from_the_same(mcp_server, server_and_app):
    _, app = server_and_app
    example = {"solution_json": json.loads(Path("resources/dataset/solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json").read_text())}
    slow = python("import torch\ndef run(x, y, out):\n    t = x + y\n    out.copy_(t * 1.0)\n", "three_passes")
    wanted = [w.uuid for w in app.dataset().dev_set("vector_add_fp32")][-1:]  # 2^26 floats: bandwidth shows
    faster = finish(mcp_server, "compare_solutions", {"a": slow, "b": example, "workloads": wanted, "rounds": 6})
    record("ab:slow_vs_example", faster)
    assert faster["verdict"] == "b_faster" and faster["geomean_speedup_b_over_a"] > 1.5, faster
    same = finish(mcp_server, "compare_solutions", {"a": example, "b": example, "workloads": wanted, "rounds": 6})
    record("ab:example_vs_itself", same)
    assert same["verdict"] == "no_significant_difference", same
    assert 0.97 < same["geomean_speedup_b_over_a"] < 1.03
