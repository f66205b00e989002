"""The correctness rule and the timing statistics, on CPU tensors."""

from __future__ import annotations

import math

import pytest
import torch

from kda_mcp.tools.evaluation.correctness import bytes_moved, compare_outputs, compare_tensor, unchanged
from kda_mcp.tools.evaluation.stats import geomean, quantile, summarize


def check(out, ref, atol=1e-2, rtol=1e-2, ratio=None):
    return compare_tensor("o", out, ref, atol=atol, rtol=rtol, required_matched_ratio=ratio)


def test_within_tolerance_passes_and_reports_errors():
    ref = torch.tensor([1.0, 2.0, -3.0, 0.0])
    out = ref + torch.tensor([0.0, 0.02, -0.03, 0.005])  # each within atol + rtol*|ref|
    verdict = check(out, ref)
    assert verdict.status == "PASSED"
    assert verdict.max_abs_error == pytest.approx(0.03, rel=1e-6)
    assert verdict.max_rel_error == pytest.approx(0.01, rel=1e-6)


def test_one_element_out_of_tolerance_fails_with_a_count():
    ref = torch.ones(1000)
    out = ref.clone()
    out[17] += 0.5
    verdict = check(out, ref)
    assert verdict.status == "INCORRECT_NUMERICAL" and "1 of 1000" in verdict.message


def test_matched_ratio_lets_a_share_of_elements_miss():
    ref = torch.ones(100)
    out = ref.clone()
    out[:3] += 1
    assert check(out, ref, ratio=0.95).status == "PASSED"
    assert check(out, ref, ratio=0.99).status == "INCORRECT_NUMERICAL"


def test_nan_or_inf_where_the_reference_is_finite_fails():
    ref = torch.ones(8)
    for bad in (float("nan"), float("inf")):
        out = ref.clone()
        out[3] = bad
        verdict = check(out, ref, atol=1e9, rtol=1e9)  # no tolerance hides it
        assert verdict.status == "INCORRECT_NUMERICAL" and "NaN/Inf" in verdict.message


def test_nan_matches_nan_and_inf_matches_the_same_inf():
    ref = torch.tensor([float("nan"), float("inf"), 1.0])
    assert check(ref.clone(), ref).status == "PASSED"
    assert check(torch.tensor([float("nan"), float("-inf"), 1.0]), ref).status == "INCORRECT_NUMERICAL"


def test_shape_and_dtype_are_exact():
    ref = torch.zeros(4, 4, dtype=torch.bfloat16)
    assert check(torch.zeros(4, 5, dtype=torch.bfloat16), ref).status == "INCORRECT_SHAPE"
    assert check(torch.zeros(4, 4, dtype=torch.float32), ref).status == "INCORRECT_DTYPE"
    assert compare_outputs([ref], [ref, ref], ["a", "b"], atol=1, rtol=1, required_matched_ratio=None).status == "INCORRECT_SHAPE"


def test_integer_outputs_compare_exactly():
    ref = torch.tensor([1, 2, 3], dtype=torch.int32)
    assert check(ref.clone(), ref, atol=10, rtol=10).status == "PASSED"
    assert check(torch.tensor([1, 2, 4], dtype=torch.int32), ref, atol=10, rtol=10).status == "INCORRECT_NUMERICAL"


def test_bf16_is_compared_after_widening():
    ref = torch.randn(1024, dtype=torch.float32)
    assert check(ref.to(torch.bfloat16), ref.to(torch.bfloat16).clone()).status == "PASSED"


def test_unchanged_is_bitwise_and_nan_safe():
    a = torch.tensor([1.0, float("nan")])
    assert unchanged(a, a.clone())
    b = a.clone()
    b[0] = 1.0000001
    assert not unchanged(a, b)


def test_bytes_moved_counts_inputs_and_outputs(server_and_app):
    _, app = server_and_app
    dataset = app.dataset()
    definition = dataset.definition("vector_add_fp32")
    workload = next(w for w in dataset.workloads("vector_add_fp32") if w.axes["n"] == 2**26)
    assert bytes_moved(definition, workload) == 3 * 4 * 2**26  # 805 MB: two inputs, one output


def test_statistics():
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    stats = summarize(values)
    assert stats["median"] == 3.0 and stats["min"] == 1.0 and stats["count"] == 5
    assert stats["p10"] == pytest.approx(1.4) and stats["p90"] == pytest.approx(4.6)
    assert quantile([1.0, 2.0], 0.5) == 1.5
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean([]) is None and geomean([0.0]) is None
    assert math.isclose(geomean([1.5]), 1.5)
