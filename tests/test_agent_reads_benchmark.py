"""What run_benchmark and compare_solutions tell an agent must hold up (issue 17, items 1-3): the
speedup ceiling is decided on the interval, the physical floor on the best copy bandwidth recorded
for the GPU, and the A/B verdict states its practical threshold. Pure functions, no GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kda_mcp.resources import sample_dataset_path
from kda_mcp.tools.compile.targets import Target
from kda_mcp.tools.dataset import Dataset
from kda_mcp.tools.evaluation.abtest import PRACTICAL_THRESHOLD, WorkloadAB, summarize
from kda_mcp.tools.evaluation.models import BenchmarkConfig
from kda_mcp.tools.evaluation import report
from kda_mcp.tools.evaluation.report import workload_row
from kda_mcp.tools.evaluation.runner import Measurement, Plan, reference_solution


@pytest.fixture(scope="module")
def plan() -> Plan:
    dataset = Dataset.load(sample_dataset_path())
    definition = dataset.definition("vector_add_fp32")
    return Plan(
        solution=reference_solution(definition),
        definition=definition,
        workloads=dataset.workloads("vector_add_fp32")[:1],
        tolerance=dataset.tolerance("vector_add_fp32"),
        baseline=None,
        config=BenchmarkConfig(),
        dataset_root=sample_dataset_path(),
        target=Target(9, 0, "a"),
    )


def _side(spans: list[float], rounds: list[float]) -> dict:
    return {
        "status": "PASSED",
        "timing": {"span_us": spans, "bracket_us": [s + 5.0 for s in spans], "round_span": rounds, "flush_us": [80.0] * len(spans)},
    }


def _measurement(candidate: dict, reference: dict, *, bytes_moved: int = 0, facts: dict | None = None) -> Measurement:
    return Measurement(
        facts={"flush_us": 80.0, **(facts or {})},
        attached={"candidate": {"ok": True, "method": "cupti"}},
        workloads=[{"sides": {"candidate": candidate, "reference": reference}, "bytes_moved": bytes_moved}],
    )


# ---- item 1: the ceiling hinges on the interval, not on one slow reference run


def test_a_reference_that_ran_slow_in_a_few_rounds_does_not_raise_the_ceiling(plan: Plan):
    # The candidate is 1.82 us throughout; the reference ran 187 us in most calls (102.8x by the
    # medians, as in the issue) but 95 us in three of eight rounds: the interval reaches below 100x.
    candidate = _side([1.82] * 16, [1.82] * 8)
    reference = _side([187.0] * 12 + [95.0] * 4, [187.0, 95.0, 187.0, 95.0, 187.0, 95.0, 187.0, 187.0])
    row = workload_row(plan, 0, _measurement(candidate, reference), [])
    assert row.speedup is not None and row.speedup.vs_reference == pytest.approx(102.75, rel=1e-3)
    assert row.speedup.vs_reference_ci95[0] < 100 < row.speedup.vs_reference
    assert not any(f.check == "speedup_above_ceiling" for f in row.findings or [])


def test_a_speedup_whose_whole_interval_clears_the_ceiling_is_flagged_with_its_basis(plan: Plan):
    candidate = _side([1.0] * 16, [1.0] * 8)
    reference = _side([150.0] * 16, [150.0, 148.0, 152.0, 149.0, 151.0, 150.0, 147.0, 153.0])
    row = workload_row(plan, 0, _measurement(candidate, reference), [])
    [finding] = [f for f in row.findings if f.check == "speedup_above_ceiling"]
    assert row.suspect and row.speedup is None
    assert "150.0x over the reference" in finding.detail and "95% interval" in finding.detail and "100x ceiling" in finding.detail
    assert "1.00 us" in finding.detail and "150.00 us" in finding.detail


def test_without_an_interval_the_point_estimate_decides_and_says_so(plan: Plan):
    candidate = _side([1.0] * 4, [1.0, 1.0])
    reference = _side([150.0] * 4, [150.0, 150.0])  # two rounds: no interval
    row = workload_row(plan, 0, _measurement(candidate, reference), [])
    [finding] = [f for f in row.findings if f.check == "speedup_above_ceiling"]
    assert "no interval" in finding.detail and "point estimate" in finding.detail


# ---- item 2: the A/B verdict states its threshold, and opposite verdicts are not "no difference"


def test_ab_message_states_the_practical_threshold_and_mixed_verdicts():
    rows = [
        WorkloadAB(workload="w1", axes={}, a_status="PASSED", b_status="PASSED", speedup_b_over_a=0.9975, ci95=[0.9966, 0.9985], verdict="b_slower", meaningful=False),
        WorkloadAB(workload="w2", axes={}, a_status="PASSED", b_status="PASSED", speedup_b_over_a=1.035, ci95=[1.0045, 1.0659], verdict="b_faster", meaningful=False),
    ]
    verdict, _, message = summarize(rows)
    assert verdict == "mixed"  # today: no_significant_difference, though both intervals exclude 1
    assert f"{PRACTICAL_THRESHOLD:.0%}" in message and "practical threshold" in message and "0 of 2" in message
    clear = rows[1].model_copy(update={"ci95": [1.02, 1.06], "meaningful": True})
    verdict, _, message = summarize([clear])
    assert verdict == "b_faster" and "1 of 1" in message


# ---- item 3: the floor comes from the best copy bandwidth recorded for the GPU


def test_the_bandwidth_record_keeps_the_best_per_gpu_and_clock_state(tmp_path: Path):
    path = tmp_path / "copy_bandwidth.json"
    key = report.bandwidth_key("NVIDIA H200", {"memory_min": 3201, "memory_max": 3201, "sm_max": 1980})
    assert key == "NVIDIA H200 @ memory 3201 MHz"
    assert report.bandwidth_key("NVIDIA H200", None) == "NVIDIA H200" and report.bandwidth_key(None, {"memory": 2619}) == "unknown GPU @ memory 2619 MHz"
    assert report.update_bandwidth_record(path, key, 4.23e12)["bytes_per_s"] == 4.23e12
    second = report.update_bandwidth_record(path, key, 4.08e12)
    assert second == {"bytes_per_s": 4.23e12, "runs": 2, "key": key}
    assert report.update_bandwidth_record(path, "NVIDIA H100 80GB HBM3", 3.0e12)["bytes_per_s"] == 3.0e12  # its own entry
    assert report.update_bandwidth_record(path, key, None)["bytes_per_s"] == 4.23e12  # nothing measured: the record stands
    assert report.update_bandwidth_record(path, "never seen", None) is None
    assert json.loads(path.read_text())[key]["runs"] == 2
    path.write_text("{not json")  # a damaged record starts over rather than failing the benchmark
    assert report.update_bandwidth_record(path, key, 4.1e12)["bytes_per_s"] == 4.1e12


def test_record_copy_bandwidth_hands_the_best_to_the_floor(tmp_path: Path):
    path = tmp_path / "copy_bandwidth.json"
    for measured in (4.23e12, 4.08e12):
        m = Measurement(facts={"device": {"name": "NVIDIA H200"}, "bandwidth_bytes_per_s": measured}, clocks={"memory_max": 3201})
        report.record_copy_bandwidth(path, m)
    assert m.facts["best_copy_bandwidth"]["bytes_per_s"] == 4.23e12 and m.facts["best_copy_bandwidth"]["runs"] == 2


# The numbers: a median of 85.088 us for a workload whose bytes take 85.787 us at 4.23 TB/s.
BYTES = round(85.787e-6 * 4.23e12)
BEST = {"bytes_per_s": 4.23e12, "runs": 5, "key": "NVIDIA H200 @ memory 3201 MHz"}


def test_the_floor_is_taken_from_the_best_bandwidth_not_this_runs(plan: Plan):
    candidate = _side([85.088] * 16, [85.088] * 8)
    reference = _side([300.0] * 16, [300.0] * 8)
    facts = {"bandwidth_bytes_per_s": 4.08e12, "best_copy_bandwidth": BEST}
    row = workload_row(plan, 0, _measurement(candidate, reference, bytes_moved=BYTES, facts=facts), [])
    assert row.floor_us == pytest.approx(85.787, abs=1e-3)  # today: BYTES / 4.08 TB/s = 88.94 us
    # 0.8% under the floor: what a read-heavy mix can do against a copy; not flagged.
    assert not any(f.check == "below_physical_floor" for f in row.findings or [])


def test_below_the_factor_is_flagged_and_the_detail_says_what_was_compared(plan: Plan):
    facts = {"bandwidth_bytes_per_s": 4.08e12, "best_copy_bandwidth": BEST}
    floor_us, [finding] = report.floor_findings(60.0, BYTES, facts, 0.8)
    assert floor_us == pytest.approx(85.787, abs=1e-3)
    for words in ("median 60.00 us", "0.8 x floor_us 85.79 us", f"{BYTES} bytes", "every input read once", "4.23 TB/s",
                  "best device-to-device copy bandwidth recorded for NVIDIA H200 @ memory 3201 MHz (5 run(s)", "this run measured 4.08 TB/s", "1.25x"):
        assert words in finding.detail, (words, finding.detail)
    # Without a record the run's own copy is used, and the detail says so.
    floor_us, [finding] = report.floor_findings(60.0, BYTES, {"bandwidth_bytes_per_s": 4.08e12}, 0.8)
    assert floor_us == pytest.approx(BYTES / 4.08e12 * 1e6, abs=1e-3) and "this run's device-to-device copy bandwidth" in finding.detail
    assert report.floor_findings(60.0, BYTES, facts, 0.8, check=False)[1] == []
    assert report.floor_findings(60.0, BYTES, {}, 0.8) == (None, [])


# ---- issue 16 item 2: a weaker timing method is a named warning with its fix


@pytest.mark.parametrize(
    "method, forced, warned",
    [
        ("cuda events (fallback: the executor's current stream only)", False, True),
        ("cuda events (fallback: the executor's current stream only)", True, False),  # asked for
        ("cupti activity records (all streams)", False, False),
    ],
)
def test_a_timing_fallback_is_a_warning_that_says_how_to_fix_it(plan: Plan, method: str, forced: bool, warned: bool):
    candidate = _side([1.0] * 16, [1.0] * 8)
    measurement = _measurement(candidate, _side([1.2] * 16, [1.2] * 8))
    measurement.attached["candidate"]["method"] = method
    forced_plan = Plan(**{**plan.__dict__, "config": BenchmarkConfig(force_cuda_events=forced)})
    result = report.assemble(forced_plan, measurement, {"mode": "none"})
    assert result.provenance.method.startswith(method)
    if warned:
        [warning] = result.warnings
        assert warning.check == "timing_fallback" and "other streams" in warning.detail and ".ci/install --gpu" in warning.detail
    else:
        assert result.warnings is None


# ---- rows too small for the judge to verify stay out of the headline


def test_a_row_under_the_verifiable_size_keeps_its_speedup_but_leaves_the_geomean(plan: Plan):
    # A patched recorder on an H200 claimed 0.13 us for a 1.4 us vector add: within the judge's
    # 4 us tolerance, so not flagged; such a row must not carry the geomean.
    tiny = workload_row(plan, 0, _measurement(_side([0.14] * 16, [0.14] * 8), _side([1.4] * 16, [1.4] * 8)), [])
    assert tiny.too_small_to_verify and tiny.speedup.vs_reference == pytest.approx(10.0)
    large = workload_row(plan, 0, _measurement(_side([50.0] * 16, [50.0] * 8), _side([55.0] * 16, [55.0] * 8)), [])
    assert not large.too_small_to_verify
    aggregate = report._aggregate([tiny, large])
    assert aggregate.geomean_speedup_vs_reference == pytest.approx(1.1) and aggregate.left_out_of_geomeans == 1
    assert "left out of the geomeans" in report._message([tiny, large], None)


def test_without_a_timed_reference_the_candidates_time_is_unverified(plan: Plan):
    """A candidate that makes the reference fail (say, by taking the GPU's memory) must not be
    verified against its own handshake gap instead."""
    failed_reference = {"status": "RUNTIME_ERROR"}
    row = workload_row(plan, 0, _measurement(_side([0.5] * 16, [0.5] * 8), failed_reference), [])
    assert "timing_unverified" in {f.check for f in row.findings or []}
    assert row.suspect and row.speedup is None


def test_provenance_names_the_node_that_measured(plan: Plan):
    """A Ray task reports its node's driver and packages; the result must carry those, not the server's."""
    measurement = _measurement(_side([50.0] * 16, [50.0] * 8), _side([55.0] * 16, [55.0] * 8))
    node = {"driver": "999.1", "cuda": "13.9", "torch": "9.9.9", "triton": "9.9", "kda_mcp": "0.0.9"}
    measurement.facts["node_provenance"] = node
    provenance = report.assemble(plan, measurement, {"isolation": "user", "detail": "test"}).provenance
    assert (provenance.driver, provenance.cuda, provenance.torch, provenance.triton, provenance.kda_mcp) == tuple(node.values())
    here = report.assemble(plan, _measurement(_side([50.0] * 16, [50.0] * 8), _side([55.0] * 16, [55.0] * 8)), {"isolation": "user", "detail": "test"}).provenance
    assert here.torch == report.host_provenance()["torch"]
