"""The process Nsight Compute profiles: one warmed-up call of the solution, inside an NVTX range.

Run as `python -m tools.profile.child JOB.json`. Inputs are made and the solution is called
once before the range (JIT compiles and autotuning happen there), so `--nvtx-include kda/`
captures exactly the kernels of one real call.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RANGE = "kda"


def main(job_path: str) -> int:
    import torch
    from flashinfer_bench.data import Definition, Solution, Workload

    from kda_mcp.tools.harness.inputs import allocate_outputs, make_inputs
    from kda_mcp.tools.harness.loading import load_entry

    job = json.loads(Path(job_path).read_text())
    solution = Solution.model_validate_json(job["solution"])
    definition = Definition.model_validate_json(job["definition"])
    workload = Workload.model_validate_json(job["workload"])
    entry = load_entry(solution, Path(job["source_dir"]), job.get("library"))
    inputs = make_inputs(definition, workload, seed=job.get("seed", 0), device="cuda:0", dataset_root=Path(job["dataset_root"]))
    outputs = allocate_outputs(definition, inputs, device="cuda:0")

    def call() -> None:
        with torch.no_grad():
            if solution.spec.destination_passing_style:
                entry(*inputs, *outputs)
            else:
                entry(*inputs)

    for _ in range(job.get("warmup", 2)):
        call()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_push(RANGE)
    call()
    torch.cuda.synchronize()
    torch.cuda.nvtx.range_pop()
    print("kda-profile: call done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
