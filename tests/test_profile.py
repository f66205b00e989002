"""Profile parsing and the bottleneck label, on real .ncu-rep files captured on an H100.

tests/fixtures/ncu/ holds reports made by tests/test_gpu_profile.py from this project's own
solutions: memory_bound (the Triton vector add, 2^26 floats, set quick), compute_bound (the
Triton GEMM, M=4096, set full) and spills (a CUDA vector add forced to spill, set source).
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp import Client

from kda_mcp.tools.capabilities import CounterAccess
from kda_mcp.tools.errors import InvalidArgumentError, UnavailableError
from kda_mcp.tools.profile import capture as capture_module
from kda_mcp.tools.profile.compare import compare
from kda_mcp.tools.profile.models import KernelProfile, ProfileSummary, StallReason
from kda_mcp.tools.profile.operation import wiki_route
from kda_mcp.tools.profile.summary import classify, summarize_report

FIXTURES = Path(__file__).parent / "fixtures" / "ncu"
pytest.importorskip("ncu_report", reason="pip install ncu-report to read .ncu-rep files")


@pytest.fixture(scope="module")
def reports(server_and_app):
    _, app = server_and_app
    out = {}
    for name in ("memory_bound", "compute_bound", "spills"):
        path = FIXTURES / f"{name}.ncu-rep"
        if path.exists():
            kernels, gpu = summarize_report(path, wiki_route=lambda label: wiki_route(app, label))
            out[name] = (kernels, gpu)
    return out


def test_memory_bound_vector_add(reports):
    [kernel], gpu = reports["memory_bound"]
    assert gpu == "NVIDIA H100 80GB HBM3"
    assert "vector_add" in kernel.name
    assert 250 < kernel.duration_us < 280
    assert kernel.bottleneck.label == "memory-bound"
    assert {e.metric for e in kernel.bottleneck.evidence} >= {"dram_throughput_pct", "compute_throughput_pct"}
    assert kernel.dram_throughput_pct > 85 and kernel.compute_throughput_pct < 10
    assert kernel.roofline.achieved_dram_tb_s == pytest.approx(3.0, abs=0.2)
    assert kernel.bottleneck.wiki[0]["id"] == "pattern-memory-bound"
    assert kernel.stalls[0].reason == "long_scoreboard"  # waiting on global loads
    assert kernel.occupancy_limiter and kernel.waves_per_sm > 10


def test_compute_bound_gemm_with_roofline_findings_and_lines(reports):
    [kernel], _ = reports["compute_bound"]
    assert kernel.bottleneck.label == "compute-bound"
    assert kernel.tensor_pipe_pct > 50 and kernel.dram_throughput_pct < 40
    roof = kernel.roofline
    assert roof.flops == pytest.approx(2 * 4096**3)  # exactly the GEMM's FLOPs, from the tensor-op counters
    assert 300 < roof.arithmetic_intensity < 2000
    assert 0.3 < roof.achieved_tflops / roof.peak_tflops_tensor < 1
    assert roof.peak_dram_tb_s == pytest.approx(3.35, abs=0.1)
    speedups = [f.estimated_speedup_pct or 0 for f in kernel.findings]
    assert speedups == sorted(speedups, reverse=True) and kernel.findings[0].message
    assert kernel.source_lines and kernel.source_lines[0].file == "main.py" and kernel.source_lines[0].samples > 0
    assert kernel.registers > 64 and kernel.shared_dynamic_bytes > 0
    assert kernel.occupancy_limiter == "registers and shared memory"  # tied at 2 blocks per SM each


def test_spilling_kernel_is_flagged(reports):
    if "spills" not in reports:
        pytest.skip("spills fixture not captured")
    [kernel], _ = reports["spills"]
    assert kernel.local_memory_bytes > 0
    assert "register-spills" in kernel.bottleneck.secondary
    assert any(e.metric == "local_memory_bytes" for e in kernel.bottleneck.evidence)
    assert kernel.source_lines[0].file == "kernel.cu"


def _kernel(**fields) -> KernelProfile:
    base = dict(name="k", duration_us=100.0, compute_throughput_pct=20.0, memory_throughput_pct=20.0, dram_throughput_pct=20.0)
    return KernelProfile(**{**base, **fields})


@pytest.mark.parametrize(
    "fields, label",
    [
        ({"duration_us": 2.0}, "latency-bound"),  # ncu's duration has no host time: never launch-bound
        ({"dram_throughput_pct": 85.0, "memory_throughput_pct": 85.0}, "memory-bound"),
        ({"compute_throughput_pct": 80.0, "memory_throughput_pct": 90.0, "dram_throughput_pct": 10.0}, "compute-bound"),
        ({"tensor_pipe_pct": 75.0}, "compute-bound"),
        ({"memory_throughput_pct": 80.0, "dram_throughput_pct": 5.0}, "memory-bound"),
        ({"waves_per_sm": 1.2, "compute_throughput_pct": 45.0}, "tail-effect"),
        ({"occupancy_achieved_pct": 12.0, "occupancy_theoretical_pct": 50.0, "occupancy_limiter": "registers"}, "occupancy-limited"),
        ({"occupancy_achieved_pct": 70.0, "stalls": [StallReason(reason="long_scoreboard", warps_per_issue=5.0, share=0.6)]}, "latency-bound"),
    ],
)
def test_classify_labels(fields, label):
    verdict = classify(_kernel(**fields))
    assert verdict.label == label, verdict
    assert verdict.evidence and all(e.value is not None for e in verdict.evidence)


def test_spills_are_a_secondary_label():
    verdict = classify(_kernel(dram_throughput_pct=85.0, local_memory_bytes=4096.0))
    assert verdict.label == "memory-bound" and verdict.secondary == ["register-spills"]


def test_compare_profiles_matches_kernels_and_reports_deltas(reports):
    (mem,), _ = reports["memory_bound"]
    slower = mem.model_copy(update={"duration_us": mem.duration_us * 2, "dram_throughput_pct": mem.dram_throughput_pct / 2})
    a = ProfileSummary(profile_id="p1", report_path="a", solution="s", definition="d", workload="w", profile_set="quick", kernels=[slower], total_duration_us=slower.duration_us, message="")
    b = ProfileSummary(profile_id="p2", report_path="b", solution="s", definition="d", workload="w", profile_set="quick", kernels=[mem], total_duration_us=mem.duration_us, message="")
    result = compare(a, b)
    assert result.speedup == pytest.approx(2.0)
    [delta] = result.kernels
    assert delta.speedup == pytest.approx(2.0) and "dram_throughput_pct" in delta.changes
    assert "registers" not in (delta.changes or {})


def test_preflight_says_how_to_fix(monkeypatch):
    monkeypatch.setattr(capture_module, "find_cuda_tool", lambda name: None)
    with pytest.raises(UnavailableError, match="ncu"):
        capture_module.preflight(CounterAccess(permitted=True, reason=""))
    monkeypatch.setattr(capture_module, "find_cuda_tool", lambda name: "/usr/bin/ncu")
    with pytest.raises(UnavailableError, match="NVreg_RestrictProfilingToAdminUsers=0"):
        capture_module.preflight(CounterAccess(permitted=False, reason="admin only"))
    assert capture_module.preflight(CounterAccess(permitted=None, reason="unknown")) == "/usr/bin/ncu"


def test_ncu_command_scopes_to_the_call(tmp_path):
    request = capture_module.CaptureRequest(
        solution=None, definition=None, workload=None, built=None, dataset_root=tmp_path, report=tmp_path / "p1", profile_set="full", kernels="gemm.*", launch_skip=2, launch_count=3  # type: ignore[arg-type]
    )
    cmd = capture_module.command("/usr/bin/ncu", request, tmp_path / "call_spec.json", tmp_path / "report")
    joined = " ".join(cmd)
    assert "--clock-control none" in joined and "--nvtx-include kda/" in joined and "--set full" in joined
    assert "--kernel-name regex:gemm.*" in joined and "--launch-skip 2" in joined and "--launch-count 3" in joined
    assert f"--export {tmp_path / 'report'}" in joined
    assert cmd[-5:] == ["-m", "kda_mcp.tools.profile.child", "--spec", str(tmp_path / "call_spec.json")][-5:] or cmd[-4:-2] == ["-m", "kda_mcp.tools.profile.child"]
    with pytest.raises(InvalidArgumentError, match="regular expression"):
        capture_module.check_regex("gemm(")


def test_profile_tool_refuses_clearly_without_a_gpu(mcp_server, server_and_app):
    _, app = server_and_app
    if app.gpus.gpus:
        pytest.skip("this machine has a GPU")

    async def main():
        async with Client(mcp_server, mode="legacy") as client:
            return await client.call_tool(
                "profile_solution", {"solution": {"path": "resources/dataset/solutions/baseline/elementwise/vector_add_fp32/vector_add_fp32_torch_baseline.json"}}
            )

    result = anyio.run(main)
    assert result.is_error and "needs an NVIDIA GPU" in result.content[0].text
