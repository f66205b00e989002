"""Inputs and outputs for one call, generated the same way in every process that needs them.

Generation is seeded, so the reference process and the solution process can each make the
same inputs without ever sharing memory. Inputs a definition constrains (indices, lengths, block
tables, offsets; see tools/evaluation/input_rules.py) are drawn valid, and scalars come as their
declared dtype, the same way the judge makes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from flashinfer_bench.bench.utils import gen_inputs, load_safetensors
from flashinfer_bench.data import Definition, Workload
from flashinfer_bench.utils import dtype_str_to_torch_dtype


def make_inputs(
    definition: Definition,
    workload: Workload,
    *,
    seed: int,
    device: str,
    dataset_root: Path | None,
    rules: dict[str, Any] | None = None,
) -> list[Any]:
    """Inputs in definition order: random ones from `seed`, scalars and blobs from the workload,
    ruled inputs valid. `rules` are the definition's input rules; None resolves them from the
    dataset at `dataset_root` (the definition's own, else the embedded definition's of that name)."""
    from kda_mcp.tools.evaluation import input_rules

    if rules is None:
        rules = input_rules.resolve(definition, dataset_root=dataset_root)
    blobs = None
    if any(spec.type == "safetensors" for spec in workload.inputs.values()):
        blobs = load_safetensors(definition, workload, dataset_root)
    torch.manual_seed(seed)
    values = gen_inputs(definition, workload, device, safe_tensors=blobs)
    return input_rules.apply(definition, workload, values, rules, seed=seed, device=device)


def poison_value(dtype: torch.dtype) -> float | int | bool:
    """A value no honest kernel writes by accident: NaN for floats, an extreme for integers."""
    if dtype.is_floating_point:
        return float("nan")
    if dtype == torch.bool:
        return True
    return torch.iinfo(dtype).min


def allocate_outputs(definition: Definition, inputs: list[Any], *, device: str) -> list[torch.Tensor]:
    """Fresh output tensors filled with poison, so an element the solution never writes shows."""
    axes = definition.get_axes_values_from_inputs(inputs)
    shapes = definition.get_output_shapes(axes)
    outputs = []
    for shape, spec in zip(shapes, definition.outputs.values()):
        dtype = dtype_str_to_torch_dtype(spec.dtype)
        tensor = torch.empty(shape or [], dtype=dtype, device=device)
        tensor.fill_(poison_value(dtype))
        outputs.append(tensor)
    return outputs
