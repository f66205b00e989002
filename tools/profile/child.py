"""The process Nsight Compute or compute-sanitizer watches: one warmed-up call of the solution,
inside an NVTX range.

    python -m kda_mcp.tools.profile.child --spec SPEC.json   (a CallSpec; runs as a sandbox user)

Inputs are made and the solution is called before the range (JIT compiles and autotuning happen
there), so `--nvtx-include kda/` captures exactly the kernels of one real call.
"""

from __future__ import annotations

import sys
from pathlib import Path

RANGE = "kda"
DONE = "kda-profile: call done"


def main(argv: list[str]) -> int:
    import torch
    from flashinfer_bench.data import Definition, Solution, Workload

    from kda_mcp.tools.harness.inputs import allocate_outputs, make_inputs
    from kda_mcp.tools.harness.loading import load_entry
    from kda_mcp.tools.sandbox.specs import CallSpec, read_spec

    spec = read_spec(CallSpec, argv)
    solution = Solution.model_validate_json(spec.solution)
    definition = Definition.model_validate_json(spec.definition)
    workload = Workload.model_validate_json(spec.workload)
    entry = load_entry(solution, Path(spec.source_dir), spec.library)
    inputs = make_inputs(definition, workload, seed=spec.seed, device="cuda:0", dataset_root=Path(spec.dataset_root))
    outputs = allocate_outputs(definition, inputs, device="cuda:0")

    def call() -> None:
        with torch.no_grad():
            if solution.spec.destination_passing_style:
                entry(*inputs, *outputs)
            else:
                entry(*inputs)

    for _ in range(spec.warmup):
        call()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push(RANGE)
    call()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()
    print(DONE, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
