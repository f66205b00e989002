"""The Ray executor on a real local Ray cluster, on CPU: a head node with two fake GPUs of kind
h200 and a second node (`ray start --address`) with one of kind b200, on the loopback.

The GPU work is the real thing with GPU-free stand-ins at the edges: Evaluator.measure runs on
the Ray worker with the fake judge and executor of tests/fake_children.py (real processes, real
sockets, the real sandbox when root); profile and sanitize run the real capture() and sanitize()
with fake `ncu` and `compute-sanitizer` on the nodes' PATH (ncu "captures" a report recorded on an
H100). Jobs go through the MCP tools (the SDK Client, in-process), as an agent's would.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
from mcp import Client

pytest.importorskip("ray", reason="pip install 'kda-mcp[ray]' for the Ray executor")

from kda_mcp.server.app import build_server  # noqa: E402
from kda_mcp.tools.app import KdaApp  # noqa: E402
from kda_mcp.tools.errors import UnavailableError  # noqa: E402
from kda_mcp.tools.evaluation.benchmark import plan_benchmark, submit_benchmark  # noqa: E402
from kda_mcp.tools.evaluation.pool import Commands  # noqa: E402
from kda_mcp.tools.executors.local_cluster import LocalCluster  # noqa: E402
from kda_mcp.tools.executors.ray import RayExecutor  # noqa: E402
from kda_mcp.tools.settings import Settings  # noqa: E402
from kda_mcp.tools.solution import SolutionInput  # noqa: E402

from conftest import REPO, kda_mcp_command  # noqa: E402

pytestmark = pytest.mark.slow
FAKES = Path(__file__).with_name("fake_children.py")
NCU_FIXTURE = Path(__file__).parent / "fixtures" / "ncu" / "memory_bound.ncu-rep"
SOLUTION = {
    "files": {"main.py": "def run(x, y, out):\n    out.copy_(x + y)\n"},
    "spec": {"language": "python", "entry_point": "main.py::run"},
    "definition": "vector_add_fp32",
}
FAKE_NCU = """#!/bin/sh
# Stands in for Nsight Compute: "captures" a report recorded on an H100 where --export says.
out=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--export" ]; then out="$2"; shift 2; else shift; fi
done
cp {fixture} "$out.ncu-rep"
echo "==PROF== Connected to process (fake ncu on $(hostname))"
echo "==PROF== Disconnected"
"""
FAKE_SANITIZER = """#!/bin/sh
echo "========= COMPUTE-SANITIZER"
echo "========= Invalid __global__ write of size 4 bytes"
echo "=========     at vector_add_kernel+0x90 in /room/src/kernel.cu:12"
echo "=========     by thread (3,0,0) in block (0,0,0)"
echo "========= "
echo "========= ERROR SUMMARY: 1 error"
"""


@pytest.fixture(scope="module")
def cluster():
    base = Path(tempfile.mkdtemp(prefix="kda-ray-tests-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    os.chmod(base, 0o755)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    shutil.copy(NCU_FIXTURE, bin_dir / "report.ncu-rep")
    for name, text in (("ncu", FAKE_NCU.format(fixture=bin_dir / "report.ncu-rep")), ("compute-sanitizer", FAKE_SANITIZER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "report.ncu-rep").chmod(0o644)
    os.chmod(bin_dir, 0o755)
    # Node-local settings come from each node's environment: rooms, sandbox users and GPU locks
    # of its own (two fake nodes on one machine must not share users or the lock of "GPU 0").
    fast_health = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}

    def node_env(tag: str) -> dict[str, str]:
        (base / tag).mkdir()
        return {
            "KDA_RUNTIME_DIR": str(base / tag / "rt"),
            "KDA_SANDBOX_USER": f"kda-sbx-r{tag}",
            "KDA_LOCK_DIR": str(base / tag / "locks"),
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            **fast_health,
        }

    c = LocalCluster()
    c.node_env = node_env  # type: ignore[attr-defined]
    try:
        c.head = c.start_head(kind="h200", gpus=2, cpus=2, env=node_env("h"))  # type: ignore[attr-defined]
        c.b200 = c.add_node(kind="b200", gpus=1, cpus=1, env=node_env("b"))  # type: ignore[attr-defined]
        c.connect()
        c.wait_for_nodes(2)
        yield c
    finally:
        c.stop()
        _kill_marked("kda-ray-test-")
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(c.base, ignore_errors=True)


def _kill_marked(marker: str) -> list[int]:
    """Processes of ours whose command line carries `marker` (fake children a killed node left)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    for pid in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return found


def _alive_marked(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmd and state not in ("Z", "X"):
                found.append(int(entry.name))
    return found


def use_children(app: KdaApp, mode: str = "ok") -> str:
    """From the next job on, the fake judge and executors run in `mode`; returns the marker their
    command lines carry (fake_children.py ignores extra arguments)."""
    marker = f"kda-ray-test-{secrets.token_hex(4)}"
    commands = Commands(judge=[sys.executable, str(FAKES), "judge", marker], executor=[sys.executable, str(FAKES), "executor", mode, marker])
    app.executor.node = replace(app.executor.node, commands=commands)  # type: ignore[attr-defined]
    return marker


def make_app(cluster: LocalCluster, tmp_path: Path, kind: str | None) -> KdaApp:
    settings = Settings.resolve(
        state_dir=tmp_path / "state",
        cache_dir=tmp_path / "cache",
        workspaces=[str(tmp_path)],
        runtime_dir=tempfile.mkdtemp(prefix="kda-ray-srv-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None),
        executor="ray",
        ray_address=cluster.address,
        gpu_kind=kind,
    )
    app = KdaApp(settings)
    app.executor = RayExecutor(settings, poll_s=0.1)  # type: ignore[misc]
    use_children(app)
    return app


@pytest.fixture()
def apps(cluster, tmp_path: Path):
    made: list[KdaApp] = []

    def make(kind: str | None = "h200") -> tuple[object, KdaApp]:
        app = make_app(cluster, tmp_path / f"app{len(made)}", kind)
        made.append(app)
        return build_server(app), app

    yield make
    for app in made:
        app.jobs.close()
        shutil.rmtree(app.settings.runtime_dir, ignore_errors=True)


def session(mcp_server, body):
    async def main():
        async with Client(mcp_server, mode="legacy") as client:
            return await body(client)

    return anyio.run(main)


async def _call(client: Client, tool: str, args: dict) -> dict:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return result.structured_content


def _ray_node(result: dict) -> str:
    return result["provenance"]["isolation"]["ray_node"]


# ---- jobs through the server


def test_benchmark_and_compare_run_on_the_cluster(cluster, apps):
    server, app = apps("h200")

    async def body(client: Client):
        bench = await _call(client, "run_benchmark", {"solution": SOLUTION, "wait_seconds": 120})
        compare = await _call(client, "compare_solutions", {"a": SOLUTION, "b": SOLUTION, "rounds": 4, "calls_per_round": 5, "wait_seconds": 120})
        attempts = await _call(client, "list_attempts", {})
        job = await _call(client, "get_job", {"job_id": bench["job_id"]})
        return bench, compare, attempts, job

    bench, compare, attempts, job = session(server, body)
    assert bench["status"] == "succeeded", bench
    result = bench["result"]
    assert result["status"] == "complete" and {w["status"] for w in result["workloads"]} == {"PASSED"}
    assert result["workloads"][0]["latency"]["median_us"] == 50.0  # the fake's 50 us call, verified by the fake judge's bracket
    head_id = cluster.head_id
    assert head_id[:12] in _ray_node(result) and "h200 GPU" in _ray_node(result)
    assert result["provenance"]["isolation"]["isolation"] in ("user", "none")
    assert compare["status"] == "succeeded" and compare["result"]["verdict"], compare
    assert [a["attempt_id"] for a in attempts["attempts"]] == [result["attempt_id"]]
    assert job["progress"]["done"] == len(result["workloads"]), job  # the node's progress reached the server


@pytest.fixture(scope="module", autouse=True)
def _node_ids(cluster):
    import ray

    by_kind = {k: n["NodeID"] for n in ray.nodes() if n["Alive"] for k in n["Resources"] if k.startswith("gpu_")}
    cluster.head_id, cluster.b200_id = by_kind["gpu_h200"], by_kind["gpu_b200"]  # type: ignore[attr-defined]


def test_routing_by_kind(cluster, apps):
    server_b, app_b = apps("b200")  # this server's default kind
    _, app_h = apps("h200")

    async def body(client: Client):
        return await _call(client, "run_benchmark", {"solution": SOLUTION, "workloads": "dev", "wait_seconds": 120})

    on_b = session(server_b, body)
    assert on_b["status"] == "succeeded", on_b
    assert cluster.b200_id[:12] in _ray_node(on_b["result"]) and "b200 GPU" in _ray_node(on_b["result"])

    # the caller names the kind (submit_benchmark's gpu_kind) over the server's default
    plan = plan_benchmark(app_h, SolutionInput.model_validate(SOLUTION), workloads="dev", gpu_kind="b200")
    job_id = submit_benchmark(app_h, plan, gpu_kind="b200")
    view = anyio.run(app_h.jobs.wait, job_id, 120)
    assert view.status == "succeeded", view.error
    assert cluster.b200_id[:12] in _ray_node(view.result)

    # a kind the cluster lacks is refused up front, naming the kinds there
    with pytest.raises(UnavailableError, match="a100") as refused:
        submit_benchmark(app_h, plan, gpu_kind="a100")
    assert "h200 (2 GPUs)" in str(refused.value) and "b200 (1 GPU)" in str(refused.value)

    # with several kinds and no default, a job must name one: results compare only within a kind
    _, app_any = apps(None)
    with pytest.raises(UnavailableError, match="several kinds"):
        submit_benchmark(app_any, plan)


def test_capabilities_show_the_cluster(cluster, apps):
    server, app = apps("h200")
    hang = use_children(app, "hang_on_2")
    try:

        async def body(client: Client):
            # two jobs hold both h200 GPUs, a third waits in Ray's queue
            ids = []
            for _ in range(3):
                started = await _call(client, "run_benchmark", {"solution": SOLUTION, "config": {"workload_timeout_s": 60}, "wait_seconds": 0})
                ids.append(started["job_id"])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                caps = await _call(client, "capabilities", {})
                h200 = next(k for k in caps["cluster"]["kinds"] if k["kind"] == "h200")
                if h200["running"] == 2 and h200["queued"] == 1 and h200["free"] == 0:  # Ray's view of free GPUs lags a little
                    break
                await anyio.sleep(0.2)
            for job_id in ids:
                await _call(client, "cancel_job", {"job_id": job_id})
            return caps

        caps = session(server, body)
    finally:
        _kill_marked(hang)
    assert caps["executor"] == "ray" and "ray" in caps["packages"]
    cluster_info = caps["cluster"]
    assert cluster_info["connected"] and cluster_info["default_kind"] == "h200" and cluster_info["auth"] == "token"
    kinds = {k["kind"]: k for k in cluster_info["kinds"]}
    assert kinds["h200"]["gpus"] == 2 and kinds["h200"]["nodes"] == 1 and kinds["h200"]["free"] == 0
    assert kinds["h200"]["running"] == 2 and kinds["h200"]["queued"] == 1
    assert kinds["b200"]["gpus"] == 1 and kinds["b200"]["queued"] == 0
    alive = [n for n in cluster_info["nodes"] if n["alive"]]
    assert {tuple(n["kinds"].items()) for n in alive} >= {(("h200", 2),), (("b200", 1),)}


def test_cancel_ends_the_jobs_processes_on_the_node(cluster, apps):
    server, app = apps("h200")
    marker = use_children(app, "hang_on_2")

    async def body(client: Client):
        started = await _call(client, "run_benchmark", {"solution": SOLUTION, "config": {"workload_timeout_s": 120}, "wait_seconds": 0})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _alive_marked(marker):
            await anyio.sleep(0.2)
        while time.monotonic() < deadline:  # into workload 2, where the candidate hangs
            job = await _call(client, "get_job", {"job_id": started["job_id"]})
            if "workload 1/" in (job.get("progress") or {}).get("message", ""):
                break
            await anyio.sleep(0.2)
        assert _alive_marked(marker), "the fake children run on the node"
        return await _call(client, "cancel_job", {"job_id": started["job_id"]})

    try:
        cancelled = session(server, body)
        assert cancelled["status"] == "cancelled", cancelled
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive_marked(marker):
            time.sleep(0.2)
        assert _alive_marked(marker) == [], "the task's cleanup killed the judge and the executors on the node"
    finally:
        _kill_marked(marker)


def test_profile_and_sanitize_run_on_the_cluster(cluster, apps):
    pytest.importorskip("ncu_report", reason="pip install ncu-report to read .ncu-rep files")
    server, app = apps("b200")

    async def body(client: Client):
        profile = await _call(client, "profile_solution", {"solution": SOLUTION, "wait_seconds": 120})
        sanitize = await _call(client, "sanitize_solution", {"solution": SOLUTION, "wait_seconds": 120})
        return profile, sanitize

    profile, sanitize = session(server, body)
    assert profile["status"] == "succeeded", profile
    summary = profile["result"]
    assert summary["gpu"] == "NVIDIA H100 80GB HBM3" and "vector_add" in summary["kernels"][0]["name"]
    assert Path(summary["report_path"]).is_file() and Path(summary["report_path"]).read_bytes() == NCU_FIXTURE.read_bytes()
    assert Path(summary["report_path"]).is_relative_to(app.settings.state_dir)  # kept by the server, not the node
    assert sanitize["status"] == "succeeded", sanitize
    [issue] = sanitize["result"]["issues"]
    assert issue["kind"].startswith("Invalid __global__ write") and issue["file"] == "kernel.cu" and issue["line"] == 12


def test_a_lost_node_fails_its_job_retryably_and_loses_nothing(cluster, apps):
    """Kill the b200 node in the middle of a job: that job fails saying to submit it again, a job
    queued behind it waits and runs on the node that replaces it, the server keeps serving, and
    the ledger has every attempt that finished and none of the lost one."""
    server, app = apps("b200")
    markers: list[str] = []

    async def body(client: Client):
        before = await _call(client, "run_benchmark", {"solution": {**SOLUTION, "name": "finished_before"}, "wait_seconds": 120})
        markers.append(use_children(app, "hang_on_2"))  # marks the lost job's processes
        lost = await _call(client, "run_benchmark", {"solution": SOLUTION, "config": {"workload_timeout_s": 120}, "wait_seconds": 0})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = await _call(client, "get_job", {"job_id": lost["job_id"]})
            if "workload 1/" in (job.get("progress") or {}).get("message", ""):
                break
            await anyio.sleep(0.2)
        assert "workload 1/" in job["progress"]["message"], job
        markers.append(use_children(app, "ok"))
        queued = await _call(client, "run_benchmark", {"solution": {**SOLUTION, "name": "queued_behind"}, "wait_seconds": 0})
        await anyio.sleep(1.0)
        waiting = await _call(client, "get_job", {"job_id": queued["job_id"]})
        assert "queued on the Ray cluster for a b200 GPU" in waiting["progress"]["message"], waiting

        await anyio.to_thread.run_sync(cluster.kill, cluster.b200)
        failed = await _call(client, "get_job", {"job_id": lost["job_id"], "wait_seconds": 60})
        during = await _call(client, "list_jobs", {})  # the server keeps serving
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            caps = await _call(client, "capabilities", {})
            if not any(n["alive"] for n in caps["cluster"]["nodes"] if "b200" in n["kinds"]):
                break
            await anyio.sleep(0.5)
        still = await _call(client, "get_job", {"job_id": queued["job_id"]})

        cluster.b200 = await anyio.to_thread.run_sync(lambda: cluster.add_node(kind="b200", gpus=1, cpus=1, env=cluster.node_env("b2"), name="b200-again"))
        retried = await _call(client, "get_job", {"job_id": queued["job_id"], "wait_seconds": 120})
        attempts = await _call(client, "list_attempts", {})
        return before, failed, during, caps, still, retried, attempts

    try:
        before, failed, during, caps, still, retried, attempts = session(server, body)
    finally:
        for marker in markers:
            _kill_marked(marker)
    assert failed["status"] == "failed", failed
    assert "was lost" in failed["error"] and "submit the job again" in failed["error"], failed["error"]
    assert "nothing was measured or recorded" in failed["error"]
    assert any(j["job_id"] == failed["job_id"] for j in during["jobs"])
    assert not any(n["alive"] for n in caps["cluster"]["nodes"] if "b200" in n["kinds"]), "capabilities show the node gone"
    assert still["status"] == "running" and "queued" in still["progress"]["message"], still  # accepted, not lost
    assert retried["status"] == "succeeded", retried
    assert "b200 GPU" in _ray_node(retried["result"])
    recorded = {a["attempt_id"]: a for a in attempts["attempts"]}
    assert before["status"] == "succeeded", before
    assert set(recorded) == {before["result"]["attempt_id"], retried["result"]["attempt_id"]}, "the lost job recorded nothing, the others are all there"


# ---- the command line


def test_serve_executor_ray_over_stdio_with_ray_client(cluster, tmp_path: Path):
    """`kda-mcp serve --executor ray --ray-address ray://...` (Ray Client): stdout carries nothing but
    the protocol, capabilities show the cluster, and a benchmark runs the real judge on the node
    (which, on this CPU-only node, says it has no CUDA: the same code path a GPU node runs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDA_")}
    env.update(cluster.client_env, KDA_STATE_DIR=str(tmp_path / "state"), KDA_CACHE_DIR=str(tmp_path / "cache"))
    argv = [*kda_mcp_command(), "serve", "--executor", "ray", "--ray-address", f"ray://127.0.0.1:{cluster.client_port}", "--gpu-kind", "h200"]
    log = tmp_path / "server.stderr"
    with log.open("w") as sink:  # a file, not a pipe: nobody reads stderr while the test talks on stdout
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sink, text=True, env=env, cwd=tmp_path)

    def send(message: dict) -> None:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(message) + "\n")
        proc.stdin.flush()

    def answer(want: int) -> dict:
        assert proc.stdout is not None
        while True:
            line = proc.stdout.readline()
            if not line:
                ray_logs = "".join(f"\n== {f.name}\n{f.read_text()[-2000:]}" for f in sorted((cluster.base / "ray" / "session_latest" / "logs").glob("ray_client_server*.err")))
                pytest.fail(f"stdout closed; stderr: {log.read_text()[-3000:]}{ray_logs}")
            try:
                message = json.loads(line)
            except ValueError:
                pytest.fail(f"the server wrote something other than the protocol on stdout: {line!r}")
            if message.get("id") == want:
                return message

    try:
        send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        assert answer(1)["result"]["serverInfo"]["name"] == "kda-mcp"
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "capabilities", "arguments": {}}})
        caps = answer(2)["result"]["structuredContent"]
        send({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "run_benchmark", "arguments": {"solution": SOLUTION, "workloads": "dev", "wait_seconds": 120}}})
        bench = answer(3)["result"]["structuredContent"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    stderr = log.read_text()
    assert caps["executor"] == "ray" and caps["cluster"]["connected"] and caps["cluster"]["auth"] == "token"
    assert {k["kind"] for k in caps["cluster"]["kinds"]} >= {"h200", "b200"}
    assert bench["status"] == "succeeded", (bench, stderr[-3000:])
    assert "the judge could not start" in bench["result"]["message"] and "CUDA" in bench["result"]["message"], bench["result"]["message"]
    assert cluster.head_id[:12] in bench["result"]["provenance"]["isolation"]["ray_node"]


# ---- without Ray


def test_executor_ray_without_ray_says_how_to_install(tmp_path: Path, isolated_dirs):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "ray.py").write_text("raise ImportError(\"No module named 'ray' (hidden by the test)\")\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDA_")}
    env.update(PYTHONPATH=str(hide), KDA_STATE_DIR=str(isolated_dirs["state"]), KDA_CACHE_DIR=str(isolated_dirs["cache"]))
    done = subprocess.run([*kda_mcp_command(), "serve", "--executor", "ray"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stderr
    assert "pip install 'kda-mcp[ray]'" in done.stderr and "not installed" in done.stderr, done.stderr
    local = subprocess.run([*kda_mcp_command(), "serve", "--gpu-kind", "h200"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)
    assert local.returncode == 2 and "only apply with --executor ray" in local.stderr, local.stderr


def test_no_solution_runs_on_a_node_without_token_auth(tmp_path: Path):
    """Without Ray's token auth, code under ncu (host network) could reach the node's Ray ports and run
    as root: such a node refuses sandboxed work unless the server says the cluster is a throwaway one."""
    from kda_mcp.tools.errors import KdaError
    from kda_mcp.tools.executors.tasks import NodeContext, NodeSettings
    from kda_mcp.tools.sandbox.sandbox import Sandbox

    def context(auth: str, mode: str, allow: bool, asked: str = "auto") -> NodeContext:
        ctx = object.__new__(NodeContext)
        ctx.node = NodeSettings(sandbox=asked, allow_no_auth=allow)
        ctx.where = {"host": "gpu-7", "address": "10.0.0.7", "ray_auth": auth}
        ctx.__dict__["sandbox"] = Sandbox(mode=mode, runtime_dir=tmp_path)  # type: ignore[arg-type]
        return ctx

    with pytest.raises(KdaError, match="without Ray's token authentication") as refused:
        context("disabled", "user", False).check_boundary()
    assert "RAY_AUTH_MODE=token" in str(refused.value) and "KDA_RAY_NO_AUTH=1" in str(refused.value)
    for auth, mode, allow, asked in (("token", "user", False, "auto"), ("disabled", "user", True, "auto"), ("disabled", "none", False, "none")):
        context(auth, mode, allow, asked).check_boundary()
    # A node where --sandbox auto fell back to none (Ray not root) would run code as the Ray user, who
    # can read the token: refused even with token auth on, unless the operator chose --sandbox none.
    for auth in ("token", "disabled"):
        with pytest.raises(KdaError, match="cannot sandbox solutions"):
            context(auth, "none", False).check_boundary()


def test_an_address_nobody_answers_fails_in_seconds():
    from kda_mcp.tools.executors.ray import _check_reachable

    started = time.monotonic()
    for address in ("127.0.0.1:1", "ray://127.0.0.1:1"):
        with pytest.raises(UnavailableError, match="Nothing answers"):
            _check_reachable(address)
    with pytest.raises(UnavailableError, match="is not 'auto'"):
        _check_reachable("head-without-port")
    assert time.monotonic() - started < 10


def test_kind_names():
    from kda_mcp.tools.executors import kind_of, normalize_kind

    assert kind_of("NVIDIA H200") == "h200" and kind_of("NVIDIA H100 80GB HBM3") == "h100"
    assert kind_of("NVIDIA A100-SXM4-80GB") == "a100" and kind_of("NVIDIA GeForce RTX 4090") == "rtx4090"
    assert normalize_kind("GPU_H200") == "h200" and normalize_kind(" b200 ") == "b200" and normalize_kind(None) is None
    assert json.dumps({"gpu_h200": 2})  # the resource spelling nodes advertise
