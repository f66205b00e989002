"""The red team: one cheating solution per way to attack the evaluator, each aimed at this design
(a trusted judge owning inputs, outputs and the clock; the solution in a sandboxed executor), each
caught with the finding that names it; and honest solutions that must not be flagged. GPU only.

With KDA_TEST_ARTIFACTS set, a table of what each solution got is written there (redteam.json).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from mcp import Client

pytestmark = [pytest.mark.gpu, pytest.mark.slow]

FAST = {"warmup": 3, "min_iterations": 24, "max_iterations": 48, "target_seconds": 0.05, "rounds": 6}
RESULTS: dict[str, dict] = {}


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


def python(body: str, name: str, *, definition: str = "vector_add_fp32", dps: bool = True) -> dict:
    return {"files": {"main.py": body}, "spec": {"language": "python", "entry_point": "main.py::run", "destination_passing_style": dps}, "definition": definition, "name": name}


def dev(app, definition: str = "vector_add_fp32") -> list[str]:
    return [w.uuid for w in app.dataset().dev_set(definition)]


def bench(mcp_server, solution: dict, workloads, **config) -> dict:
    return finish(mcp_server, "run_benchmark", {"solution": solution, "workloads": workloads, "baseline": "none", "config": {**FAST, **config}})


def checks(result: dict) -> set[str]:
    return {f["check"] for w in result.get("workloads", []) for f in w.get("findings", [])}


def record(name: str, result: dict) -> None:
    rows = result.get("workloads", [])
    RESULTS[name] = {
        "statuses": [w["status"] for w in rows],
        "checks": sorted(checks(result)),
        "speedups": [(w.get("speedup") or {}).get("vs_reference") for w in rows],
        "latency_us": [(w.get("latency") or {}).get("median_us") for w in rows],
        "outside_us": [w.get("outside_us") for w in rows],
        "reference_us": [w.get("reference_us") for w in rows],
    }
    dump()


def dump() -> None:
    if os.environ.get("KDA_TEST_ARTIFACTS"):
        Path(os.environ["KDA_TEST_ARTIFACTS"], "redteam.json").write_text(json.dumps(RESULTS, indent=1, default=str))


# ---- cheats: the body of a vector add (out = x + y) that tries to look faster than it is

CHEATS = {
    # Switch CUPTI's kernel recording off (cupti-python, in its own process) around the real work.
    "cupti_off": (
        """
import torch
from cupti import cupti
KIND = cupti.ActivityKind.CONCURRENT_KERNEL

def run(x, y, out):
    cupti.activity_disable(KIND)
    torch.add(x, y, out=out)
    cupti.activity_enable(KIND)
    out[:1].add_(0)  # a tiny kernel is all the recorder sees
""",
        {"timing_unverified"},
    ),
    # Replace the executor's timing code at run time: every span it reports is a tenth.
    "patched_recorder": (
        """
import sys, torch
timing = sys.modules["kda_mcp.tools.evaluation.timing"]
_finish = timing.CuptiRecorder.finish
def _fake(self, windows, copies):
    work = _finish(self, windows, copies)
    for w in work:
        w.span_us /= 10
    return work
timing.CuptiRecorder.finish = _fake
timing.EventRecorder.finish = lambda self, w, c: [timing.CallWork(0.5, 0.5, 1) for _ in w]

def run(x, y, out):
    torch.add(x, y, out=out)
""",
        {"timing_unverified"},
    ),
    # Skip the GPU-side wait for 'go' (patch the harness): the call runs before its inputs arrive.
    "skip_the_gate": (
        """
import sys, torch
channel = sys.modules["kda_mcp.tools.evaluation.channel"]
channel.wait_at_least = lambda stream, address, value: None

def run(x, y, out):
    torch.add(x, y, out=out)
""",
        {"timed_outputs_wrong", "INCORRECT_NUMERICAL"},
    ),
    # Honest through the correctness trials and warm-up of each workload (it counts calls since the
    # shapes changed), then full work only when the harness's frames hint that a call is checked.
    "skimp_after_trials": (
        """
import sys, torch
state = {"shape": None, "calls": 0}
def run(x, y, out):
    if x.shape != state["shape"]:
        state.update(shape=x.shape, calls=0)
    state["calls"] += 1
    hint = any("check" in name for frame in sys._current_frames().values() for name in frame.f_locals)
    if state["calls"] <= 12 or hint:
        torch.add(x, y, out=out)
    else:
        out.copy_(x)  # half the bytes, wrong answer
""",
        {"timed_outputs_wrong"},
    ),
    # Do the work in a background thread as soon as new inputs land, before 'go', off the gated stream.
    "precompute_before_go": (
        """
import threading, time, torch
state = {"x": None, "y": None, "out": None, "seen": None}
def worker():
    side = torch.cuda.Stream()
    while True:
        x, y, out = state["x"], state["y"], state["out"]
        if x is not None:
            with torch.cuda.stream(side):
                head = x[:4].clone()
                torch.cuda.current_stream().synchronize()
                if state["seen"] is None or not torch.equal(head, state["seen"]):
                    state["seen"] = head
                    torch.add(x, y, out=out)
                    torch.cuda.current_stream().synchronize()
        time.sleep(0.00002)
threading.Thread(target=worker, daemon=True).start()

def run(x, y, out):
    if state["x"] is None or state["x"].data_ptr() != x.data_ptr():
        state.update(x=x, y=y, out=out, seen=None)
        torch.add(x, y, out=out)
""",
        {"gpu_contention", "timed_outputs_wrong", "timing_unverified", "nondeterministic", "INCORRECT_NUMERICAL"},
    ),
    # Reach the judge: its /proc entries, its sockets, its memory. Anything reachable is a failure.
    "reach_the_judge": (
        """
import os, socket, torch
found = []
for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
    for what in ("environ", "mem", "fd"):
        path = f"/proc/{pid}/{what}"
        try:
            if what == "fd":
                for fd in os.listdir(path):
                    os.readlink(f"{path}/{fd}")
            else:
                open(path, "rb").read(16)
            if os.stat(f"/proc/{pid}").st_uid == 0:
                found.append(path)
        except OSError:
            pass
try:
    open("/root/.bash_history").read(1); found.append("/root")
except OSError:
    pass
try:
    socket.create_connection(("127.0.0.1", 8765), timeout=1); found.append("network")
except OSError:
    pass
if found:
    raise RuntimeError(f"ESCAPED: {found[:5]}")

def run(x, y, out):
    torch.add(x, y, out=out)
""",
        set(),
    ),
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_cheat_is_caught(mcp_server, server_and_app, name):
    _, app = server_and_app
    body, expected = CHEATS[name]
    result = bench(mcp_server, python(body, name), dev(app))
    record(name, result)
    if not expected:  # the attack reaches nothing: the solution measures like an honest one
        assert set(RESULTS[name]["statuses"]) == {"PASSED"}, result
        assert "ESCAPED" not in json.dumps(result)
        return
    from kda_mcp.tools.evaluation.report import VERIFY_ABS_US, VERIFY_REL

    rows = result["workloads"]
    caught = checks(result) | {w["status"] for w in rows if w["status"] != "PASSED"}
    assert caught & expected, (name, caught)
    # The largest workload, where hiding work pays most, is caught.
    largest = rows[-1]
    assert largest["status"] != "PASSED" or largest.get("suspect"), largest
    for row in rows:  # where a cheat is not caught, it gained no more than the tolerance allows
        if row["status"] == "PASSED" and not row.get("suspect"):
            latency, outside = row["latency"]["median_us"], row["outside_us"]
            assert outside - latency <= max(VERIFY_REL * latency, VERIFY_ABS_US) + 0.5, row
            gain = (row.get("speedup") or {}).get("vs_reference") or 1.0
            assert gain < 1.1 or row.get("too_small_to_verify"), row  # a gain it got stays out of the geomean


def test_a_process_that_escapes_and_hogs_the_gpu_is_seen_and_dies_with_the_job(mcp_server, server_and_app):
    _, app = server_and_app
    body = """
import os, subprocess, sys, time, torch
HOG = "import torch,time\\nx=torch.empty(2**26,device='cuda')\\nn=0\\nwhile True:\\n    x.mul_(1.0000001)\\n    n+=1\\n    if n % 1000 == 0:\\n        torch.cuda.synchronize(); open('/tmp/kda-hog-beat','w').write(str(n))\\n"
if os.environ.get("KDA_HOG") is None:
    subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True, env={**os.environ, "KDA_HOG": "1"},
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Load only once the hog is running (its CUDA start takes seconds), so every timed call has it.
    deadline = time.monotonic() + 60
    while not os.path.exists("/tmp/kda-hog-beat") and time.monotonic() < deadline:
        time.sleep(0.1)

def run(x, y, out):
    if not os.path.exists("/tmp/kda-hog-beat"):
        raise RuntimeError("the hog is not running")  # evidence for the test: PASSED means it ran
    torch.add(x, y, out=out)
"""
    Path("/tmp/kda-hog-beat").unlink(missing_ok=True)
    result = bench(mcp_server, python(body, "hog"), dev(app)[-2:])
    record("escaped_gpu_hog", result)
    assert {w["status"] for w in result["workloads"]} == {"PASSED"}, result  # so the hog was running
    assert not Path("/tmp/kda-hog-beat").exists()  # its file went with the job
    # Whatever the hog does, the candidate (the same code as the reference) gains nothing from it.
    for row in result["workloads"]:
        speedup = (row.get("speedup") or {}).get("vs_reference")
        assert speedup is None or 0.9 < speedup < 1.1, row
    from kda_mcp.tools.sandbox.sandbox import processes_of

    # The user may already run the next job's warm spare (it imported the harness only); the hog is gone.
    for identity in app.sandbox._users.values():
        for pid in processes_of(identity.uid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # it ended meanwhile
            assert b"kda-hog-beat" not in cmdline, (identity.name, pid)
    honest = bench(mcp_server, python("import torch\ndef run(x, y, out):\n    torch.add(x, y, out=out)\n", "after_hog"), dev(app)[-2:])
    assert not checks(honest), honest


def test_files_written_for_the_next_job_are_gone_and_the_project_is_untouched(mcp_server, server_and_app):
    _, app = server_and_app
    import kda_mcp

    package = Path(next(iter(kda_mcp.__path__)))
    body = f"""
import os, torch
wrote = []
for path in ("/tmp/kda-poison.py", "/var/tmp/kda-poison.py", "/dev/shm/kda-poison.py", {str(package / "tools" / "planted.py")!r}, "/root/.triton/poison"):
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write("raise SystemExit('poisoned')")
        wrote.append(path)
    except OSError:
        pass
print("wrote", wrote)

def run(x, y, out):
    torch.add(x, y, out=out)
"""
    result = bench(mcp_server, python(body, "poisoner"), dev(app)[:1])
    record("poison_next_job", result)
    for path in ("/tmp/kda-poison.py", "/var/tmp/kda-poison.py", "/dev/shm/kda-poison.py", str(package / "tools" / "planted.py"), "/root/.triton/poison"):
        assert not Path(path).exists(), path
    honest = bench(mcp_server, python("import torch\ndef run(x, y, out):\n    torch.add(x, y, out=out)\n", "after_poison"), dev(app)[:1])
    assert set(w["status"] for w in honest["workloads"]) == {"PASSED"} and not checks(honest)


def test_classic_cheats_still_fail(mcp_server, server_and_app):
    _, app = server_and_app
    cache = """
_cache = {}
def run(x, y, out):
    key = (x.data_ptr(), y.data_ptr())
    if key in _cache:
        out.copy_(_cache[key]); return
    out.copy_(x + y)
    _cache[key] = out.clone()
"""
    replay = """
_first = []
def run(x, y, out):
    if not _first:
        _first.append(x + y)
    out.copy_(_first[0])
"""
    modify = "def run(x, y, out):\n    out.copy_(x + y)\n    x.zero_()\n"
    cases = (("pointer_cache", cache, {"timed_outputs_wrong", "identical_outputs"}), ("replay", replay, {"identical_outputs"}), ("modify_input", modify, {"inputs_modified"}))
    for name, body, expect in cases:
        result = bench(mcp_server, python(body, name), dev(app)[:2])
        record(name, result)
        assert "PASSED" not in {w["status"] for w in result["workloads"]}, (name, result)
        assert expect & checks(result), (name, checks(result))


# ---- honest solutions: none of them may be flagged

HONEST = {
    "two_streams": """
import torch
def run(x, y, out):
    n = x.numel() // 2
    main = torch.cuda.current_stream()
    side = torch.cuda.Stream()
    side.wait_stream(main)
    torch.add(x[:n], y[:n], out=out[:n])
    with torch.cuda.stream(side):
        torch.add(x[n:], y[n:], out=out[n:])
    main.wait_stream(side)
""",
    "cuda_graph": """
import torch
_graphs = {}
def run(x, y, out):
    key = (x.data_ptr(), y.data_ptr(), out.data_ptr())
    graph = _graphs.get(key)
    if graph is None:
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            torch.add(x, y, out=out)
        _graphs[key] = graph
    graph.replay()
""",
    "multi_kernel_torch": """
import torch
def run(x, y, out):
    t = x * 1.0
    t = t + y
    t = t.clone()
    out.copy_(t)
""",
}


@pytest.mark.parametrize("name", sorted(HONEST))
def test_honest_solutions_are_not_flagged(mcp_server, server_and_app, name):
    _, app = server_and_app
    result = bench(mcp_server, python(HONEST[name], name), dev(app))
    record(f"honest_{name}", result)
    assert {w["status"] for w in result["workloads"]} == {"PASSED"}, result
    assert not checks(result), (name, [w.get("findings") for w in result["workloads"]])


@pytest.mark.parametrize("definition", ["vector_add_fp32", "rmsnorm_h4096_bf16"])
@pytest.mark.parametrize("dps", [False, True])
def test_the_reference_against_itself_reads_one(mcp_server, server_and_app, definition, dps):
    """Identical code on both sides: PASSED and no finding (the speedup and its interval are recorded)."""
    _, app = server_and_app
    reference = app.dataset().definition(definition).reference
    if dps:
        names = list(app.dataset().definition(definition).inputs)
        outs = list(app.dataset().definition(definition).outputs)
        body = reference + f"\n\ndef run_dps({', '.join(names + outs)}):\n    result = run({', '.join(names)})\n    {outs[0]}.copy_(result)\n"
        solution = python(body, f"reference_dps_{definition}", definition=definition) | {"spec": {"language": "python", "entry_point": "main.py::run_dps"}}
    else:
        solution = python(reference, f"reference_{definition}", definition=definition, dps=False)
    result = bench(mcp_server, solution, dev(app, definition))
    record(f"reference_{definition}_{'dps' if dps else 'returning'}", result)
    for row in result["workloads"]:
        assert row["status"] == "PASSED" and not row.get("findings"), row
        RESULTS[f"reference_{definition}_{'dps' if dps else 'returning'}"].setdefault("ci95", []).append(row["speedup"].get("vs_reference_ci95"))
    dump()


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
EXAMPLE = "resources/dataset/solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json"


def test_memcheck_finds_the_out_of_bounds_write_as_the_sandbox_user(mcp_server):
    solution = {"files": {"kernel.cu": OOB_CU}, "spec": {"language": "cuda", "entry_point": "kernel.cu::run"}, "definition": "vector_add_fp32", "name": "oob"}
    report = finish(mcp_server, "sanitize_solution", {"solution": solution, "tool": "memcheck"})
    RESULTS["sanitize_oob"] = {"clean": report["clean"], "issues": report.get("issues"), "seconds": report.get("seconds")}
    assert not report["clean"], report
    issue = report["issues"][0]
    assert "write" in issue["kind"].lower() and "oob_add" in issue["kernel"]
    assert issue["file"] == "kernel.cu" and issue["line"] == 6
    clean = finish(mcp_server, "sanitize_solution", {"solution": {"solution_json": json.loads(Path(EXAMPLE).read_text())}, "tool": "memcheck"})
    assert clean["clean"], clean


def test_compare_solutions_tells_faster_from_the_same(mcp_server, server_and_app):
    _, app = server_and_app
    example = {"solution_json": json.loads(Path(EXAMPLE).read_text())}
    slow = python("import torch\ndef run(x, y, out):\n    t = x + y\n    out.copy_(t * 1.0)\n", "three_passes")
    wanted = dev(app)[-1:]  # 2^26 floats: bandwidth shows
    faster = finish(mcp_server, "compare_solutions", {"a": slow, "b": example, "workloads": wanted, "rounds": 6})
    RESULTS["ab_slow_vs_example"] = {"verdict": faster["verdict"], "speedup": faster.get("geomean_speedup_b_over_a"), "rows": faster["workloads"]}
    assert faster["verdict"] == "b_faster" and faster["geomean_speedup_b_over_a"] > 1.5, faster
    same = finish(mcp_server, "compare_solutions", {"a": example, "b": example, "workloads": wanted, "rounds": 6})
    RESULTS["ab_example_vs_itself"] = {"verdict": same["verdict"], "speedup": same.get("geomean_speedup_b_over_a"), "rows": same["workloads"]}
    dump()
    assert 0.97 < same["geomean_speedup_b_over_a"] < 1.03, same
