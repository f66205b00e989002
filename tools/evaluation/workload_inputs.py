"""The inputs of one workload, as the judge makes them: random ones from a seed, blobs loaded once,
scalars fixed for the workload (so a scalar drawn at random is the same in every call and in the
reference), constrained inputs (indices, lengths, block tables, offsets) valid by the definition's
input rules (input_rules.py), laid out in GPU memory shared with an executor, and the reference's
outputs for them.

Trusted code; imported by the judge only.
"""

from __future__ import annotations

import math
import secrets
from typing import Any


class InputMaker:
    """Inputs of one workload: random ones from a seed, blobs loaded once, scalars fixed for the
    workload (so a scalar drawn at random is the same in every call and in the reference), ruled
    inputs valid (per call, or once per workload where the rule says so).

    The rules are the judge spec's `input_rules` when the orchestrator sent them, else resolved
    from the dataset (the definition's own, or the embedded definition's of the same name)."""

    def __init__(self, judge: Any, workload: Any) -> None:
        import torch
        from flashinfer_bench.bench.utils import load_safetensors

        from kda_mcp.tools.evaluation import input_rules

        self.judge = judge
        self.torch = torch
        self.workload = workload
        definition = judge.definition
        sent = getattr(getattr(judge, "spec", None), "input_rules", None)
        self.rules = dict(sent) if sent is not None else input_rules.resolve(definition, dataset_root=judge.dataset_root)
        self.fixed: dict[str, Any] = {}  # per-workload values of ruled inputs
        self.blobs = None
        if any(spec.type == "safetensors" for spec in workload.inputs.values()):
            self.blobs = {k: v.to(judge.device) for k, v in load_safetensors(definition, workload, judge.dataset_root).items()}
        first = self._generate(secrets.randbits(31))
        self.scalars = {name: value for name, value in zip(definition.inputs, first) if not isinstance(value, torch.Tensor)}
        self.sample = first
        self._references: dict[int, list[Any]] = {}

    def _generate(self, seed: int) -> list[Any]:
        from flashinfer_bench.bench.utils import gen_inputs

        from kda_mcp.tools.evaluation import input_rules

        self.torch.manual_seed(seed)
        values = gen_inputs(self.judge.definition, self.workload, str(self.judge.device), safe_tensors=self.blobs)
        return input_rules.apply(self.judge.definition, self.workload, values, self.rules, seed=seed, device=self.judge.device, fixed=self.fixed)

    def make(self, seed: int) -> list[Any]:
        values = self._generate(seed)
        return [self.scalars.get(name, value) if not isinstance(value, self.torch.Tensor) else value for name, value in zip(self.judge.definition.inputs, values)]

    def reference(self, seed: int, inputs: list[Any] | None = None) -> list[Any]:
        if seed not in self._references:
            values = [v.clone() if isinstance(v, self.torch.Tensor) else v for v in (inputs or self.make(seed))]
            with self.torch.no_grad():
                result = self.judge.reference(*values)
            out = _as_list(result, list(self.judge.definition.outputs))
            self._references = {seed: [self.torch.as_tensor(o, device=self.judge.device) for o in out]} | dict(list(self._references.items())[-8:])
        return self._references[seed]

    def references_differ(self, seeds: list[int]) -> bool:
        a, b = (self.reference(s) for s in seeds)
        return any(not self.torch.equal(x, y) for x, y in zip(a, b))

    def output_specs(self) -> list[tuple[str, Any, list[int]]]:
        from flashinfer_bench.utils import dtype_str_to_torch_dtype

        definition = self.judge.definition
        axes = definition.get_axes_values_from_inputs(self.sample)
        shapes = definition.get_output_shapes(axes)
        return [(name, dtype_str_to_torch_dtype(spec.dtype), list(shape or [])) for (name, spec), shape in zip(definition.outputs.items(), shapes)]

    def layout(self, sets: int) -> tuple[list[dict[str, Any]], int]:
        from kda_mcp.tools.evaluation import channel

        torch = self.torch
        tensors: list[dict[str, Any]] = []
        for name, value in zip(self.judge.definition.inputs, self.sample):
            if isinstance(value, torch.Tensor):
                tensors.append({"role": "inputs", "name": name, "dtype": self.judge.definition.inputs[name].dtype, "shape": list(value.shape), "nbytes": value.numel() * value.element_size()})
            else:
                tensors.append({"role": "inputs", "name": name, "scalar": True, "nbytes": 0})
        for name, dtype, shape in self.output_specs():
            tensors.append({"role": "outputs", "name": name, "dtype": self.judge.definition.outputs[name].dtype, "shape": shape, "nbytes": math.prod(shape) * dtype.itemsize})
        every = [dict(t) for _ in range(sets) for t in tensors]
        placed, total = channel.layout_tensors([t for t in every if not t.get("scalar")])  # scalars take no memory
        placed_iter = iter(placed)
        every = [t if t.get("scalar") else next(placed_iter) for t in every]
        out = []
        per = len(tensors)
        for k in range(sets):
            chunk = every[k * per : (k + 1) * per]
            out.append({"inputs": [_strip(t) for t in chunk if t["role"] == "inputs"], "outputs": [_strip(t) for t in chunk if t["role"] == "outputs"]})
        return out, total

    def views(self, data: Any, placed: list[dict[str, Any]]) -> list[dict[str, list[Any]]]:
        from flashinfer_bench.utils import dtype_str_to_torch_dtype

        from kda_mcp.tools.evaluation import channel

        sets = []
        for entry in placed:
            views: dict[str, list[Any]] = {"inputs": [], "outputs": []}
            for role in ("inputs", "outputs"):
                for item in entry[role]:
                    if item.get("scalar"):
                        views[role].append(None)
                    else:
                        views[role].append(channel.tensor_at(data.ptr + item["offset"], item["nbytes"], dtype_str_to_torch_dtype(item["dtype"]), item["shape"]))
            sets.append(views)
        return sets

    def load(self, buffers: dict[str, list[Any]], inputs: list[Any]) -> None:
        """Fresh inputs into a buffer set, and poison in its outputs, so an unwritten element shows."""
        from kda_mcp.tools.harness.inputs import poison_value

        for target, value in zip(buffers["inputs"], inputs):
            if target is not None:
                target.copy_(value)
        for out in buffers["outputs"]:
            out.fill_(poison_value(out.dtype))


def _strip(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != "role"}


def _as_list(result: Any, names: list[str]) -> list[Any]:
    if isinstance(result, dict):
        return [result[n] for n in names]
    if isinstance(result, (tuple, list)):
        return list(result)
    return [result]
