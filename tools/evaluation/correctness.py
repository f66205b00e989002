"""Correctness of one call: the solution's outputs against the reference's, elementwise.

Pure torch on whatever device the tensors live on, so the CPU suite tests it directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from flashinfer_bench.data import Definition, Workload


@dataclass
class Check:
    status: str  # a flashinfer-bench EvaluationStatus value
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    matched_ratio: float | None = None
    message: str = ""


def _worse(a: Check, b: Check) -> Check:
    rank = {"PASSED": 0, "INCORRECT_NUMERICAL": 1, "INCORRECT_DTYPE": 2, "INCORRECT_SHAPE": 3}
    return b if rank.get(b.status, 4) > rank.get(a.status, 4) else a


def compare_tensor(
    name: str, out: torch.Tensor, ref: torch.Tensor, *, atol: float, rtol: float, required_matched_ratio: float | None
) -> Check:
    """|out - ref| <= atol + rtol * |ref| everywhere (or on the required share of elements).

    A non-finite output where the reference is finite always counts as a mismatch; NaN matches
    NaN and an infinity matches the same infinity.
    """
    if tuple(out.shape) != tuple(ref.shape):
        return Check("INCORRECT_SHAPE", message=f"{name}: shape {tuple(out.shape)}, expected {tuple(ref.shape)}")
    if out.dtype != ref.dtype:
        return Check("INCORRECT_DTYPE", message=f"{name}: dtype {out.dtype}, expected {ref.dtype}")
    if out.numel() == 0:
        return Check("PASSED", 0.0, 0.0, 1.0)
    wide = torch.float64 if ref.dtype in (torch.float64, torch.float32) else torch.float32
    x, y = out.to(wide), ref.to(wide)
    if not ref.dtype.is_floating_point:
        mismatch = x != y
        diff = (x - y).abs()
        finite_ref = torch.ones_like(mismatch)
    else:
        finite_ref = torch.isfinite(y)
        diff = (x - y).abs()
        within = finite_ref & (diff <= atol + rtol * y.abs())
        same_special = (~finite_ref) & ((torch.isnan(x) & torch.isnan(y)) | (x == y))
        mismatch = ~(within | same_special)
        mismatch |= finite_ref & ~torch.isfinite(x)  # NaN/Inf where the reference is finite
    mismatches = int(mismatch.sum().item())
    matched = 1.0 - mismatches / out.numel()
    valid = finite_ref & torch.isfinite(x) if ref.dtype.is_floating_point else finite_ref
    max_abs = float(diff[valid].max().item()) if bool(valid.any()) else 0.0
    # Relative error means something only where the reference is not tiny: measure it where |ref| >= atol.
    significant = valid & (y.abs() >= atol)
    max_rel = float((diff[significant] / y[significant].abs()).max().item()) if bool(significant.any()) else 0.0
    nonfinite = int((finite_ref & ~torch.isfinite(x)).sum().item()) if ref.dtype.is_floating_point else 0
    needed = 1.0 if required_matched_ratio is None else required_matched_ratio
    if matched >= needed:
        return Check("PASSED", max_abs, max_rel, matched)
    detail = f"{name}: {mismatches} of {out.numel()} elements outside atol={atol:g} + rtol={rtol:g}*|ref|"
    if nonfinite:
        detail += f" ({nonfinite} NaN/Inf where the reference is finite)"
    if required_matched_ratio is not None:
        detail += f"; matched {matched:.4%} < required {needed:.4%}"
    return Check("INCORRECT_NUMERICAL", max_abs, max_rel, matched, detail)


def compare_outputs(
    outputs: list[torch.Tensor], references: list[torch.Tensor], names: list[str], *, atol: float, rtol: float, required_matched_ratio: float | None
) -> Check:
    if len(outputs) != len(references):
        return Check("INCORRECT_SHAPE", message=f"{len(outputs)} outputs, expected {len(references)} ({', '.join(names)})")
    verdict = Check("PASSED", 0.0, 0.0, 1.0)
    for name, out, ref in zip(names, outputs, references):
        one = compare_tensor(name, out, ref, atol=atol, rtol=rtol, required_matched_ratio=required_matched_ratio)
        if one.status == "PASSED":
            verdict.max_abs_error = max(verdict.max_abs_error or 0.0, one.max_abs_error or 0.0)
            verdict.max_rel_error = max(verdict.max_rel_error or 0.0, one.max_rel_error or 0.0)
            verdict.matched_ratio = min(verdict.matched_ratio or 1.0, one.matched_ratio or 1.0)
        else:
            verdict = _worse(verdict, one) if verdict.status != "PASSED" else one
    return verdict


def unchanged(before: torch.Tensor, after: torch.Tensor) -> bool:
    """Bitwise equality (NaN-safe): inputs that are not outputs must come back untouched."""
    if before.shape != after.shape or before.dtype != after.dtype:
        return False
    if before.dtype.is_floating_point:
        same = (before == after) | (torch.isnan(before) & torch.isnan(after))
        return bool(same.all().item())
    return bool(torch.equal(before, after))


def bytes_moved(definition: "Definition", workload: "Workload") -> int:
    """Fewest bytes a kernel must move through memory: every input read once, every output written once."""
    from flashinfer_bench.utils import dtype_str_to_torch_dtype

    total = 0
    specs = list(definition.inputs.values()) + list(definition.outputs.values())
    shapes = definition.get_input_shapes(workload.axes) + definition.get_output_shapes(workload.axes)
    for spec, shape in zip(specs, shapes):
        if shape is None:
            continue
        count = 1
        for dim in shape:
            count *= dim
        total += count * dtype_str_to_torch_dtype(spec.dtype).itemsize
    return total
