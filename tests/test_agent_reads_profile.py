"""Profile labels follow from the fields they cite, and compare_profiles shows stall shifts
(issue 17, items 4 and 5). On the H100 reports in tests/fixtures/ncu and synthetic profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from kda_mcp.tools.profile import summary as summary_module
from kda_mcp.tools.profile.compare import compare
from kda_mcp.tools.profile.models import KernelProfile, ProfileSummary, StallReason
from kda_mcp.tools.profile.summary import classify, summarize_report

FIXTURES = Path(__file__).parent / "fixtures" / "ncu"


@pytest.fixture(scope="module")
def fixture_kernels() -> dict[str, KernelProfile]:
    pytest.importorskip("ncu_report", reason="pip install ncu-report to read .ncu-rep files")
    return {name: summarize_report(FIXTURES / f"{name}.ncu-rep")[0][0] for name in ("memory_bound", "compute_bound", "spills")}


# ---- item 4: occupancy_limiter


def test_no_register_limiter_at_full_theoretical_occupancy(fixture_kernels):
    # The vector add: 16 blocks per SM by registers and by the SM's warp slots alike, 100% theoretical.
    kernel = fixture_kernels["memory_bound"]
    assert kernel.occupancy_theoretical_pct == 100.0
    assert kernel.occupancy_limiter == "none (theoretical occupancy is 100%)"  # today: "registers"
    assert kernel.occupancy_limits["registers"] == 16 and kernel.occupancy_limits["warps per SM"] == 16


def test_tied_limiters_are_both_named(fixture_kernels):
    # The GEMM: registers and shared memory each allow 2 blocks per SM (25% theoretical); cutting
    # registers alone would gain nothing.
    kernel = fixture_kernels["compute_bound"]
    assert kernel.occupancy_theoretical_pct == 25.0
    assert kernel.occupancy_limiter == "registers and shared memory"
    assert kernel.occupancy_limits["registers"] == kernel.occupancy_limits["shared memory"] == 2


def test_occupancy_limiter_rule():
    limiter = summary_module.occupancy_limiter
    assert limiter({"registers": 4.0, "shared memory": 8.0, "blocks per SM": 32.0, "warps per SM": 8.0}, 50.0) == "registers"
    assert limiter({"registers": 32.0, "shared memory": 32.0, "blocks per SM": 32.0, "warps per SM": 64.0}, 50.0) == "registers and shared memory and blocks per SM"
    assert limiter({"registers": 16.0, "warps per SM": 16.0}, 100.0) == "none (theoretical occupancy is 100%)"
    assert limiter({"registers": None}, None) is None


# ---- item 4: labels


def test_a_grid_smaller_than_the_gpu_is_small_grid_not_occupancy(fixture_kernels):
    # The spilling add: 64 blocks of 1024 threads on 132 SMs (0.24 waves). Today: "occupancy-limited,
    # limited by registers" at 100% theoretical occupancy.
    kernel = fixture_kernels["spills"]
    verdict = kernel.bottleneck
    assert verdict.label == "small-grid", verdict
    assert "64 blocks for 132 SMs" in verdict.reason and "68 SMs get no block" in verdict.reason
    cited = {e.metric: e.value for e in verdict.evidence}
    assert cited["grid_blocks"] == 64 and cited["sm_count"] == 132 and cited["waves_per_sm"] == pytest.approx(0.24)
    assert "register-spills" in verdict.secondary


def _kernel(**fields) -> KernelProfile:
    base = dict(name="k", duration_us=3.65, compute_throughput_pct=20.0, memory_throughput_pct=20.0, dram_throughput_pct=20.0)
    return KernelProfile(**{**base, **fields})


@pytest.mark.parametrize(
    "fields, label",
    [
        ({}, "latency-bound"),
        ({"grid": [32, 1, 1], "sm_count": 132, "waves_per_sm": 0.12}, "small-grid"),
        ({"grid": [264, 1, 1], "sm_count": 132, "waves_per_sm": 0.5}, "small-grid"),
        ({"grid": [1200, 1, 1], "sm_count": 132, "waves_per_sm": 1.14, "memory_throughput_pct": 45.0}, "tail-effect"),
        ({"dram_throughput_pct": 70.0, "memory_throughput_pct": 70.0}, "memory-bound"),
        ({"occupancy_achieved_pct": 12.0, "occupancy_theoretical_pct": 50.0, "occupancy_limiter": "registers"}, "occupancy-limited"),
    ],
)
def test_a_short_kernel_is_never_called_launch_bound(fields, label):
    """ncu's 3.65 us holds no host time: the label comes from the fields, and the reason says where
    launch overhead is measured instead. Today every one of these reads launch-bound."""
    verdict = classify(_kernel(**fields))
    assert verdict.label == label, verdict
    assert "launch and host overhead dominate" not in verdict.reason
    assert "short-kernel" in verdict.secondary and "no launch or host time" in verdict.reason and "host_call_us" in verdict.reason
    assert any(e.metric == "duration_us" and e.value == 3.65 for e in verdict.evidence)
    assert all(e.value is not None for e in verdict.evidence)


def test_small_grid_cites_the_grid_and_the_sms():
    verdict = classify(_kernel(grid=[32, 1, 1], sm_count=132, waves_per_sm=0.12, duration_us=40.0))
    assert verdict.label == "small-grid" and verdict.secondary is None
    assert "32 blocks for 132 SMs" in verdict.reason and "100 SMs get no block" in verdict.reason
    assert {e.metric for e in verdict.evidence} >= {"grid_blocks", "sm_count", "waves_per_sm"}


def test_occupancy_reason_does_not_blame_a_resource_at_full_theoretical_occupancy():
    verdict = classify(_kernel(duration_us=50.0, occupancy_achieved_pct=20.0, occupancy_theoretical_pct=100.0, occupancy_limiter="none (theoretical occupancy is 100%)"))
    assert verdict.label == "occupancy-limited" and "no resource caps it" in verdict.reason and "limited by" not in verdict.reason


# ---- item 5: stall shares in compare_profiles


def _summary(profile_id: str, kernel: KernelProfile) -> ProfileSummary:
    return ProfileSummary(
        profile_id=profile_id, report_path="r", solution="s", definition="d", workload="w", profile_set="full", kernels=[kernel], total_duration_us=kernel.duration_us, message=""
    )


def test_a_new_membar_stall_shows_first_in_the_diff(fixture_kernels):
    before = fixture_kernels["memory_bound"]
    # After: a fence in the loop; membar takes 21.7% of the stalls, the others shrink to make room.
    after_stalls = [
        StallReason(reason="long_scoreboard", warps_per_issue=150.0, share=0.52),
        StallReason(reason="membar", warps_per_issue=62.0, share=0.217),
        StallReason(reason="drain", warps_per_issue=35.0, share=0.13),
        StallReason(reason="short_scoreboard", warps_per_issue=20.0, share=0.07),
        StallReason(reason="mio_throttle", warps_per_issue=18.0, share=0.063),
    ]
    after = before.model_copy(update={"duration_us": before.duration_us * 1.25, "stalls": after_stalls})
    result = compare(_summary("p1", before), _summary("p2", after))
    [delta] = result.kernels
    shifts = delta.stall_shifts
    assert shifts[0].reason == "membar" and shifts[0].a_share is None and shifts[0].b_share == 0.217 and shifts[0].moved == 0.217
    assert shifts[1].reason == "long_scoreboard" and shifts[1].a_share == 0.679 and shifts[1].moved == pytest.approx(-0.159)
    assert [s.reason for s in shifts] == sorted((s.reason for s in shifts), key=lambda r: -abs(next(x.moved for x in shifts if x.reason == r)))
    assert all(abs(s.moved) >= 0.02 for s in shifts) and "short_scoreboard" not in {s.reason for s in shifts}
    assert "membar under 1% -> 21.7% of stalls" in delta.headline and "B slower" in delta.headline


def test_profiles_list_every_stall_reason_from_one_percent(fixture_kernels):
    # So that "absent from A" means "under 1% in A", not "sixth in A".
    stalls = fixture_kernels["compute_bound"].stalls
    assert len(stalls) > 5 and [s.reason for s in stalls][5:] == ["selected", "long_scoreboard", "mio_throttle", "gmma"]
    assert all(s.share >= 0.01 for s in stalls[5:])
