"""The benchmark runner with fake children (no GPU): real processes, real sockets, the real sandbox
(when root), real crashes, hangs and memory hogs; and the report's checks on the numbers."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import anyio
import pytest
from flashinfer_bench.data import Solution

from kda_mcp.tools.compile.cache import BuildCache
from kda_mcp.tools.compile.compiler import Compiler
from kda_mcp.tools.compile.targets import Target
from kda_mcp.tools.dataset import Dataset
from kda_mcp.tools.evaluation.models import BenchmarkConfig
from kda_mcp.tools.evaluation.pool import Commands
from kda_mcp.tools.evaluation.report import VERIFY_ABS_US, assemble, handshake_offset, speedup_over, verification_findings
from kda_mcp.tools.evaluation.runner import Evaluator, Plan, SidePlan, reference_solution
from kda_mcp.tools.harness.staging import Built
from kda_mcp.tools.gpus import GpuPool
from kda_mcp.tools.sandbox.sandbox import Sandbox, processes_of
from kda_mcp.resources import sample_dataset_path

FAKES = Path(__file__).with_name("fake_children.py")


def _solution(name: str, content: str) -> Solution:
    return Solution.model_validate(
        {
            "name": name,
            "definition": "vector_add_fp32",
            "author": "t",
            "spec": {"language": "python", "target_hardware": ["cuda"], "entry_point": "main.py::run", "destination_passing_style": True},
            "sources": [{"path": "main.py", "content": content}],
        }
    )


@pytest.fixture()
def sandbox():
    runtime = Path(tempfile.mkdtemp(prefix="kda-test-eval-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    yield Sandbox.configure("auto", runtime, base_user="kda-sbx-eval")
    shutil.rmtree(runtime, ignore_errors=True)


def evaluate(sandbox: Sandbox, tmp_path: Path, mode: str, *, timeout: float = 20, memory_gb: float | None = None, warm: bool = False, workloads: int = 3):
    dataset = Dataset.load(sample_dataset_path())
    definition = dataset.definition("vector_add_fp32")
    commands = Commands(judge=[sys.executable, str(FAKES), "judge"], executor=[sys.executable, str(FAKES), "executor", mode], warm=warm)
    gpus = GpuPool([0])
    evaluator = Evaluator(Compiler(BuildCache(tmp_path / "builds"), gpus, sandbox), gpus, sandbox, commands)
    plan = Plan(
        solution=_solution("fake", "def run(x, y, out):\n    pass\n"),
        definition=definition,
        workloads=dataset.workloads("vector_add_fp32")[:workloads],
        tolerance=dataset.tolerance("vector_add_fp32"),
        baseline=None,
        config=BenchmarkConfig(workload_timeout_s=timeout, memory_limit_gb=memory_gb, rounds=4),
        dataset_root=sample_dataset_path(),
        target=Target(9, 0, "a"),
    )
    sides = [SidePlan("candidate", Built(solution=plan.solution), policy_applies=True), SidePlan("reference", Built(solution=reference_solution(definition)))]
    events: list[tuple[int, int, str]] = []

    async def go():
        try:
            return await evaluator.measure(sides, plan, plan.config.timing(), progress=lambda d, t, m: events.append((d, t, m)), on_gpu=lambda g: None, purpose="test")
        finally:
            await evaluator.aclose()

    measurement = anyio.run(go)
    return assemble(plan, measurement, sandbox.describe()), events


def _slot_users(sandbox: Sandbox) -> list[int]:
    return [i.uid for i in sandbox._users.values()]


def test_healthy_children_pass_and_leave_nothing_behind(sandbox: Sandbox, tmp_path: Path):
    result, events = evaluate(sandbox, tmp_path, "ok")
    assert [w.status for w in result.workloads] == ["PASSED"] * 3
    row = result.workloads[0]
    assert row.latency.median_us == 50.0 and row.reference_us == 50.0
    assert row.speedup.vs_reference == pytest.approx(1.0) and row.speedup.vs_reference_ci95[0] <= 1.0 <= row.speedup.vs_reference_ci95[1]
    assert row.outside_us == pytest.approx(50.0) and not row.findings
    assert result.provenance.isolation["isolation"] == sandbox.mode
    assert events[-1][0] == len(result.workloads)
    for uid in _slot_users(sandbox):
        assert processes_of(uid) == []
    assert not any(p.name.startswith("r") for p in sandbox.runtime_dir.glob("*/*")), "job rooms are removed"


@pytest.mark.parametrize(
    "mode, status, words",
    [
        ("crash_on_2", "RUNTIME_ERROR", "exited with status 7"),
        ("segv_on_2", "RUNTIME_ERROR", "signal 11"),
        ("hang_on_2", "TIMEOUT", "ran past 3 s"),
        ("memory_on_2", "RUNTIME_ERROR", "memory"),
    ],
)
def test_a_dead_executor_costs_one_workload_and_is_replaced(sandbox: Sandbox, tmp_path: Path, mode: str, status: str, words: str):
    result, _ = evaluate(sandbox, tmp_path, mode, timeout=3 if mode.startswith("hang") else 30, memory_gb=0.5)
    # batch 1 is workload 0; batch 2 is workload 1: it fails there, a fresh executor takes workload 2
    assert [w.status for w in result.workloads] == ["PASSED", status, "PASSED"], [w.log for w in result.workloads]
    assert words in result.workloads[1].log
    for uid in _slot_users(sandbox):
        assert processes_of(uid) == []


def test_a_load_failure_is_reported_for_every_workload(sandbox: Sandbox, tmp_path: Path):
    result, _ = evaluate(sandbox, tmp_path, "load_fail")
    assert [w.status for w in result.workloads] == ["COMPILE_ERROR"] * 3
    assert "no module named 'missing'" in result.workloads[0].log


def test_hidden_work_is_caught_by_the_judges_clock(sandbox: Sandbox, tmp_path: Path):
    result, _ = evaluate(sandbox, tmp_path, "hide", workloads=1)
    [row] = result.workloads
    assert row.status == "PASSED" and row.suspect and row.speedup is None
    [finding] = [f for f in row.findings if f.check == "timing_unverified"]
    assert "25.00 us per call" in finding.detail and "50.00 us from outside" in finding.detail


def test_other_gpu_work_during_the_measurement_is_flagged(sandbox: Sandbox, tmp_path: Path):
    result, _ = evaluate(sandbox, tmp_path, "contend", workloads=1)
    assert any(f.check == "gpu_contention" for f in result.workloads[0].findings)


@pytest.mark.skipif(os.geteuid() != 0, reason="killing an escaped process needs the user sandbox (root)")
def test_an_escaped_daemon_dies_with_the_job(sandbox: Sandbox, tmp_path: Path):
    assert sandbox.mode == "user"
    result, _ = evaluate(sandbox, tmp_path, "escape", workloads=1)
    assert result.workloads[0].status == "PASSED"
    for uid in _slot_users(sandbox):
        assert processes_of(uid) == []


def test_warm_spares_are_used_and_cleared(sandbox: Sandbox, tmp_path: Path):
    result, _ = evaluate(sandbox, tmp_path, "ok", warm=True, workloads=1)
    assert result.workloads[0].status == "PASSED"
    for uid in _slot_users(sandbox):
        assert processes_of(uid) == []  # aclose killed the spares started after the job


# ---- the report's arithmetic


def _timing(spans: list[float], brackets: list[float], rounds: list[float] | None = None) -> dict:
    return {"span_us": spans, "bracket_us": brackets, "round_span": rounds or spans[:4], "flush_us": [80.0] * len(spans)}


def test_verification_tolerance_is_max_of_relative_and_absolute():
    reference = {"timing": _timing([100.0] * 8, [390.0] * 8)}
    offset = handshake_offset({"reference": reference}, "reference")
    assert offset == 290.0
    honest, outside = verification_findings(_timing([10.0] * 8, [300.0 + VERIFY_ABS_US - 0.5] * 8), offset)
    assert honest == [] and outside == pytest.approx(10.0 + VERIFY_ABS_US - 0.5)
    caught, _ = verification_findings(_timing([10.0] * 8, [300.0 + VERIFY_ABS_US + 0.5] * 8), offset)
    assert [f.check for f in caught] == ["timing_unverified"]
    big_ok, _ = verification_findings(_timing([1000.0] * 8, [1290.0 + 25.0] * 8), offset)  # 2.5% of 1 ms: within 3%
    big_caught, _ = verification_findings(_timing([1000.0] * 8, [1290.0 + 35.0] * 8), offset)
    assert big_ok == [] and big_caught


def test_identical_code_reads_an_interval_containing_one():
    noisy = [100.0, 103.0, 98.0, 101.0, 99.0, 102.0, 97.0, 100.5]
    same = {"status": "PASSED", "timing": _timing(noisy, noisy, noisy)}
    drift = {"status": "PASSED", "timing": _timing([x * 1.002 for x in noisy], noisy, [x * 1.002 for x in noisy])}
    ratio, interval = speedup_over(same, drift, 0.0)
    assert ratio == pytest.approx(1 / 1.002, rel=1e-3) and interval[0] <= 1.0 <= interval[1] or interval[1] < 1.0
    ratio, interval = speedup_over(same, same, 0.03)
    assert ratio == 1.0 and interval[0] <= 1.0 <= interval[1]


# ---- the judge's inputs (CPU: the same code the judge runs on the GPU)


def test_scalars_are_fixed_per_workload_and_the_reference_sees_them():
    """A random scalar input (the gdn bug class): every call and the reference get the same value."""
    import torch
    from flashinfer_bench.data import Definition, Workload

    from kda_mcp.tools.evaluation.workload_inputs import InputMaker

    definition = Definition.model_validate(
        {
            "name": "scaled_add",
            "op_type": "elementwise",
            "axes": {"n": {"type": "var"}},
            "inputs": {"x": {"shape": ["n"], "dtype": "float32"}, "alpha": {"shape": None, "dtype": "float32"}},
            "outputs": {"out": {"shape": ["n"], "dtype": "float32"}},
            "reference": "def run(x, alpha):\n    return x * alpha\n",
        }
    )
    workload = Workload.model_validate({"axes": {"n": 1000}, "inputs": {"x": {"type": "random"}, "alpha": {"type": "random"}}, "uuid": "w"})

    class FakeJudge:
        device = torch.device("cpu")
        dataset_root = Path(".")

        def __init__(self) -> None:
            self.definition = definition
            namespace: dict = {}
            exec(definition.reference, namespace)
            self.reference = namespace["run"]

    maker = InputMaker(FakeJudge(), workload)
    assert set(maker.scalars) == {"alpha"}
    a, b = maker.make(1), maker.make(2)
    assert a[1] == b[1] == maker.scalars["alpha"] and not torch.equal(a[0], b[0])
    assert torch.equal(maker.make(1)[0], a[0])  # a seed gives the same inputs every time
    [expected] = maker.reference(2)
    assert torch.allclose(expected, b[0] * maker.scalars["alpha"])
    placed, total = maker.layout(sets=2)
    offsets = [item["offset"] for entry in placed for role in ("inputs", "outputs") for item in entry[role] if not item.get("scalar")]
    assert all(o % 256 == 0 for o in offsets) and len(set(offsets)) == len(offsets) == 4 and total >= offsets[-1] + 4000
    assert placed[0]["inputs"][1] == {"name": "alpha", "scalar": True, "nbytes": 0}


def test_clocks_are_sampled_while_the_job_holds_the_gpu(sandbox: Sandbox, tmp_path: Path, monkeypatch):
    """The idle clock at lease time (345 MHz on an H200) is not what the kernels ran at: sample during the job."""
    import kda_mcp.tools.evaluation.runner as runner

    readings = iter([{"sm": 345, "memory": 3201, "max_sm": 1980}] + [{"sm": 1980 - 15 * i, "memory": 3201, "max_sm": 1980} for i in range(1000)])
    monkeypatch.setattr(runner, "gpu_clocks", lambda gpu: next(readings))
    monkeypatch.setattr(runner.ClockSampler, "INTERVAL_S", 0.05)
    result, _ = evaluate(sandbox, tmp_path, "ok", workloads=1)
    clocks = result.provenance.clocks_mhz
    assert clocks["at_lease"]["sm"] == 345 and clocks["sm_max"] == 1980 and clocks["sm_min"] < 1980 and clocks["samples"] >= 2
