"""The solution child: loads the candidate, runs correctness trials and times it, on command.

Untrusted code runs in this process. It never sees a reference output: it writes what the
candidate produced to files, and the judge (another process) decides. Any failure ends the
process after reporting it, so the next workload gets a clean CUDA context.

Run as `python -m tools.bench.solution_child JOB.json`; commands arrive on stdin (protocol.py).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

STDOUT = sys.stdout  # our channel; rebound in main() to a private copy of fd 1


def send(nonce: str, message: dict[str, Any]) -> None:
    from tools.bench.protocol import encode

    STDOUT.write(encode(nonce, message))
    STDOUT.flush()


class Candidate:
    """A loaded solution plus everything needed to call it on a workload."""

    def __init__(self, job: dict[str, Any]) -> None:
        import torch
        from flashinfer_bench.data import Definition, Solution, Workload

        from tools.harness.loading import load_entry

        self.torch = torch
        self.job = job
        self.device = "cuda:0"
        self.solution = Solution.model_validate_json(job["solution"])
        self.definition = Definition.model_validate_json(job["definition"])
        self.workloads = [Workload.model_validate_json(w) for w in job["workloads"]]
        self.dataset_root = Path(job["dataset_root"])
        self.out_dir = Path(job["out_dir"])
        self.dps = self.solution.spec.destination_passing_style
        self.entry = load_entry(self.solution, Path(job["source_dir"]), job.get("library"))
        self.output_names = list(self.definition.outputs)
        self.threads_at_load = {t.ident for t in threading.enumerate()}

    # ---- one call

    def inputs(self, workload: Any, seed: int) -> list[Any]:
        from tools.harness.inputs import make_inputs

        return make_inputs(self.definition, workload, seed=seed, device=self.device, dataset_root=self.dataset_root)

    def outputs_for(self, inputs: list[Any]) -> list[Any]:
        from tools.harness.inputs import allocate_outputs

        return allocate_outputs(self.definition, inputs, device=self.device)

    def call(self, inputs: list[Any], outputs: list[Any]) -> list[Any]:
        """One call; returns the output objects as the solution left them."""
        with self.torch.no_grad():
            if self.dps:
                self.entry(*inputs, *outputs)
                return outputs
            result = self.entry(*inputs)
        if isinstance(result, (tuple, list)):
            return list(result)
        return [result]

    def check_objects(self, produced: list[Any]) -> str | None:
        """Outputs must be plain dense CUDA tensors, not subclasses, proxies or lazy objects."""
        torch = self.torch
        if len(produced) != len(self.output_names):
            return f"returned {len(produced)} outputs, the definition has {len(self.output_names)}"
        for name, value in zip(self.output_names, produced):
            if type(value) is not torch.Tensor:
                return f"output {name!r} is a {type(value).__module__}.{type(value).__qualname__}, not a plain torch.Tensor"
            if value.layout != torch.strided or value.is_nested or value.is_sparse:
                return f"output {name!r} is not a dense strided tensor (layout {value.layout})"
            if value.device.type != "cuda":
                return f"output {name!r} lives on {value.device}, not on the GPU"
        return None

    def timing_tools(self) -> tuple[Any, Any]:
        """One L2 flusher and one CUPTI collector per process, reused by every workload."""
        from tools.bench.timing import CuptiTimer, L2Flusher, cupti_available

        if not hasattr(self, "_timing_tools"):
            timer = CuptiTimer() if cupti_available() and not self.job["config"].get("force_cuda_events") else None
            self._timing_tools = (L2Flusher(self.torch.device(self.device)), timer)
        return self._timing_tools

    # ---- commands

    def trials(self, index: int, seeds: list[int]) -> dict[str, Any]:
        from safetensors.torch import save_file

        torch = self.torch
        workload = self.workloads[index]
        folder = self.out_dir / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        for trial, seed in enumerate(seeds):
            inputs = self.inputs(workload, seed)
            outputs = self.outputs_for(inputs)
            produced = self.call(inputs, outputs)
            torch.cuda.synchronize()
            problem = self.check_objects(produced)
            if problem:
                return {"status": "RUNTIME_ERROR", "error": problem, "finding": "non_tensor_output"}
            save_file(
                {n: t.detach().contiguous().cpu() for n, t in zip(self.output_names, produced)},
                str(folder / f"trial{trial}.safetensors"),
            )
            if trial == 0:
                tensors = {n: v.detach().contiguous().cpu() for n, v in zip(self.definition.inputs, inputs) if isinstance(v, torch.Tensor)}
                if tensors:
                    save_file(tensors, str(folder / "inputs_after.safetensors"))
        return {"status": "ok", "trials": len(seeds)}

    def time(self, index: int, seed: int) -> dict[str, Any]:
        from safetensors.torch import save_file

        from tools.bench.timing import time_calls

        torch = self.torch
        config = self.job["config"]
        workload = self.workloads[index]
        folder = self.out_dir / str(index)
        first = self.inputs(workload, seed)
        input_bytes = sum(t.numel() * t.element_size() for t in first if isinstance(t, torch.Tensor))
        # Several input sets with distinct storage, each refilled with fresh data before its call:
        # a cache keyed on pointers or on input contents misses, and its stale outputs are caught.
        # (L2 is flushed before every call anyway, so more sets would only cost memory.)
        sets = config["rotation_sets"]
        while sets > 2 and sets * input_bytes > config["rotation_budget_bytes"]:
            sets -= 1
        regenerate = input_bytes <= config["regenerate_limit_bytes"]
        set_inputs = [first] + [self.inputs(workload, seed + 1000 * k) for k in range(1, sets)]
        set_outputs = [self.outputs_for(inp) for inp in set_inputs]
        last_seed = [seed + 1000 * k for k in range(sets)]

        def call(i: int) -> None:
            self.call(set_inputs[i % sets], set_outputs[i % sets])

        def refill(i: int) -> None:
            k = i % sets
            if not regenerate or i < sets:
                return
            last_seed[k] = seed + 7919 * (i + 1)
            for dst, src in zip(set_inputs[k], self.inputs(workload, last_seed[k])):
                if isinstance(dst, torch.Tensor):
                    dst.copy_(src)

        flusher, timer = self.timing_tools()
        # Warm up (JIT, autotuning, allocator), estimate the call time, then choose the count.
        start = time.perf_counter()
        for i in range(config["warmup"]):
            call(i)
        torch.cuda.synchronize()
        estimate = max((time.perf_counter() - start) / max(config["warmup"], 1), 1e-6)
        iterations = config["iterations"] or int(min(config["max_iterations"], max(config["min_iterations"], config["target_seconds"] / estimate)))
        threads_before = {t.ident for t in threading.enumerate()}
        run = time_calls(call, refill, iterations=iterations, flusher=flusher, timer=timer)
        torch.cuda.synchronize()
        new_threads = [t.name for t in threading.enumerate() if t.ident not in threads_before | self.threads_at_load]
        # Each set's outputs now come from its last timed call: the judge re-checks them. A
        # value-returning solution is called once more per set (untimed) on those same inputs.
        checked = []
        for k in range(sets):
            produced = set_outputs[k]
            if not self.dps:
                produced = self.call(set_inputs[k], set_outputs[k])
                torch.cuda.synchronize()
            name = f"timed{k}.safetensors"
            save_file({n: t.detach().contiguous().cpu() for n, t in zip(self.output_names, produced)}, str(folder / name))
            checked.append({"file": name, "seed": last_seed[k]})
        return {
            "status": "ok",
            "method": run.method,
            "gpu_us": run.gpu_us,
            "host_call_us": run.host_call_us,
            "wall_us": run.wall_us,
            "activities_per_call": run.activities_per_call,
            "stray_gpu_work": run.stray,
            "new_threads": new_threads,
            "rotation_sets": sets,
            "regenerated_inputs": regenerate,
            "flush_bytes": flusher.bytes,
            "checked": checked,
            "iterations": iterations,
            "warmup": config["warmup"],
        }


def warm_up() -> str:
    """Import the harness, then wait for a job: see tools/bench/pool.py. CPU work only: a spare
    warms while another process may be timing on the GPU, so it must not touch the GPU yet."""
    import torch  # noqa: F401
    from flashinfer_bench.data import Definition  # noqa: F401
    from safetensors.torch import save_file  # noqa: F401

    import tools.harness.inputs  # noqa: F401
    import tools.harness.loading  # noqa: F401
    from tools.bench import timing

    timing.cupti_available()
    sys.stdout.write("KDA-WARM\n")
    sys.stdout.flush()
    return sys.stdin.readline().strip()


def main(job_path: str) -> int:
    if job_path == "--warm":
        job_path = warm_up()
    job = json.loads(Path(job_path).read_text())
    nonce = job["nonce"]
    # The protocol keeps a private copy of fd 1; fd 1 itself (Python prints, printf from kernels'
    # host code, child processes) now goes to stderr, so nothing can interleave with our lines.
    global STDOUT
    STDOUT = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    try:
        candidate = Candidate(job)
    except BaseException as exc:
        send(nonce, {"event": "load_failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]})
        return 0
    send(nonce, {"event": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        try:
            if command["cmd"] == "trials":
                reply = candidate.trials(command["index"], command["seeds"])
            elif command["cmd"] == "time":
                reply = candidate.time(command["index"], command["seed"])
            else:
                reply = {"status": "RUNTIME_ERROR", "error": f"unknown command {command['cmd']!r}"}
        except BaseException as exc:  # CUDA errors poison the context: report, then leave
            send(nonce, {"event": "reply", "status": "RUNTIME_ERROR", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]})
            STDOUT.flush()
            os._exit(3)
        send(nonce, {"event": "reply", **reply})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
