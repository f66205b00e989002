"""Child process that compiles a Python-side solution the only way it can be: by calling it once.

Triton (and other JIT DSLs) compile on the first call, with the argument types that call brings,
so `compile_solution` runs the entry point once on the smallest dev workload and reports a JIT
failure as a compile error. Run as `python -m kda_mcp.tools.compile.jit_child --spec SPEC.json` (as a sandbox user) with
TRITON_CACHE_DIR pointing at a fresh folder: every kernel compiled lands there for inspection.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any


def main(argv: list[str]) -> int:
    from kda_mcp.tools.sandbox.specs import JitBuildSpec, read_spec

    job = read_spec(JitBuildSpec, argv).model_dump()
    result: dict[str, Any] = {"ok": False, "phase": "setup"}
    try:
        import torch
        from flashinfer_bench.data import Definition, Solution, Workload

        from kda_mcp.tools.harness.inputs import allocate_outputs, make_inputs
        from kda_mcp.tools.harness.loading import load_entry

        if not torch.cuda.is_available():
            raise RuntimeError("no CUDA device visible to the compile child")
        solution = Solution.model_validate_json(job["solution"])
        definition = Definition.model_validate_json(job["definition"])
        workload = Workload.model_validate_json(job["workload"])
        device = "cuda:0"

        result["phase"] = "import"
        entry = load_entry(solution, Path(job["source_dir"]))

        result["phase"] = "inputs"
        inputs = make_inputs(definition, workload, seed=job.get("seed", 0), device=device, dataset_root=Path(job["dataset_root"]))
        outputs = allocate_outputs(definition, inputs, device=device)

        result["phase"] = "first call"
        with torch.no_grad():
            if solution.spec.destination_passing_style:
                entry(*inputs, *outputs)
            else:
                entry(*inputs)
        torch.cuda.synchronize()
        result = {"ok": True, "phase": "done"}
    except BaseException as exc:  # the JIT's own message is the diagnosis
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stdout)
    sys.stdout.flush()
    Path(job["result_path"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
