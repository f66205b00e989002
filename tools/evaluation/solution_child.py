"""The solution child: loads the candidate, runs correctness trials and times it, on command.

Untrusted code runs in this process. It never sees a reference output: it writes what the
candidate produced to files, and the judge (another process) decides. Any failure ends the
process after reporting it, so the next workload gets a clean CUDA context.

Run as `python -m tools.evaluation.solution_child JOB.json` (or `--warm`, then the job path on stdin);
commands arrive on stdin (protocol.py): trials, time, save, exit.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

STDOUT = sys.stdout  # our channel; rebound in main() to a private copy of fd 1


def send(nonce: str, message: dict[str, Any]) -> None:
    from kda_mcp.tools.evaluation.protocol import encode

    STDOUT.write(encode(nonce, message))
    STDOUT.flush()


class Candidate:
    """A loaded solution plus everything needed to call it on a workload."""

    def __init__(self, job: dict[str, Any]) -> None:
        import torch
        from flashinfer_bench.data import Definition, Solution, Workload

        from kda_mcp.tools.harness.guard import ForbiddenCalls, HarnessGuard
        from kda_mcp.tools.harness.loading import load_entry

        self.torch = torch
        self.job = job
        self.device = "cuda:0"
        self.solution = Solution.model_validate_json(job["solution"])
        self.definition = Definition.model_validate_json(job["definition"])
        self.workloads = [Workload.model_validate_json(w) for w in job["workloads"]]
        self.dataset_root = Path(job["dataset_root"])
        self.out_dir = Path(job["out_dir"])
        self.dps = self.solution.spec.destination_passing_style
        self.output_names = list(self.definition.outputs)
        # Before any solution code runs: wrap what the definition forbids, then snapshot the harness.
        self.forbidden = ForbiddenCalls(job.get("forbidden_calls", []))
        self.guard = HarnessGuard()
        self.entry = load_entry(self.solution, Path(job["source_dir"]), job.get("library"))
        self.threads_at_load = {t.ident for t in threading.enumerate()}
        self.batch: Any = None

    # ---- one call

    def inputs(self, workload: Any, seed: int) -> list[Any]:
        from kda_mcp.tools.harness.inputs import make_inputs

        return make_inputs(self.definition, workload, seed=seed, device=self.device, dataset_root=self.dataset_root)

    def outputs_for(self, inputs: list[Any]) -> list[Any]:
        from kda_mcp.tools.harness.inputs import allocate_outputs

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

    def check_objects(self, produced: list[Any], inputs: list[Any]) -> tuple[str | None, str | None]:
        """(error, finding): outputs must be plain dense CUDA tensors that share no memory with inputs."""
        torch = self.torch
        if len(produced) != len(self.output_names):
            return f"returned {len(produced)} outputs, the definition has {len(self.output_names)}", None
        for name, value in zip(self.output_names, produced):
            if type(value) is not torch.Tensor:
                return f"output {name!r} is a {type(value).__module__}.{type(value).__qualname__}, not a plain torch.Tensor", "non_tensor_output"
            if value.layout != torch.strided or value.is_nested or value.is_sparse:
                return f"output {name!r} is not a dense strided tensor (layout {value.layout})", "non_tensor_output"
            if value.device.type != "cuda":
                return f"output {name!r} lives on {value.device}, not on the GPU", None
            for input_name, tensor in zip(self.definition.inputs, inputs):
                if isinstance(tensor, torch.Tensor) and _overlaps(value, tensor):
                    return f"output {name!r} shares memory with input {input_name!r}", "output_aliases_input"
        return None, None

    def save(self, path: Path, produced: list[Any]) -> None:
        from safetensors.torch import save_file

        save_file({n: t.detach().contiguous().cpu() for n, t in zip(self.output_names, produced)}, str(path))

    def integrity(self) -> dict[str, Any]:
        """What the in-process defences saw since the last report."""
        report: dict[str, Any] = {}
        tampered = self.guard.changed()
        if tampered:
            report["harness_tampered"] = tampered
        calls = self.forbidden.take()
        if calls:
            report["forbidden_calls"] = calls
        return report

    # ---- commands

    def trials(self, index: int, seeds: list[int]) -> dict[str, Any]:
        torch = self.torch
        workload = self.workloads[index]
        folder = self.out_dir / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        for trial, seed in enumerate(seeds):
            inputs = self.inputs(workload, seed)
            outputs = self.outputs_for(inputs)
            produced = self.call(inputs, outputs)
            torch.cuda.synchronize()
            problem, finding = self.check_objects(produced, inputs)
            if problem:
                return {"status": "RUNTIME_ERROR", "error": problem, "finding": finding, **self.integrity()}
            self.save(folder / f"trial{trial}.safetensors", produced)
            if trial == 0:
                tensors = {n: v.detach().contiguous().cpu() for n, v in zip(self.definition.inputs, inputs) if isinstance(v, torch.Tensor)}
                if tensors:
                    from safetensors.torch import save_file

                    save_file(tensors, str(folder / "inputs_after.safetensors"))
                # The same inputs again, into fresh outputs: a race shows as a difference.
                again = self.inputs(workload, seed)
                repeat = self.call(again, self.outputs_for(again))
                torch.cuda.synchronize()
                if self.check_objects(repeat, again)[0] is None:
                    self.save(folder / "repeat0.safetensors", repeat)
        return {"status": "ok", "trials": len(seeds), **self.integrity()}

    def timing_tools(self) -> tuple[Any, Any]:
        """One L2 flusher and one CUPTI collector per process, reused by every workload."""
        from kda_mcp.tools.evaluation.timing import CuptiTimer, L2Flusher, cupti_available

        if not hasattr(self, "_timing_tools"):
            timer = CuptiTimer() if cupti_available() and not self.job["config"].get("force_cuda_events") else None
            self._timing_tools = (L2Flusher(self.torch.device(self.device)), timer)
        return self._timing_tools

    def time(self, index: int, seed: int) -> dict[str, Any]:
        from kda_mcp.tools.evaluation.batch import timed_batch

        workload = self.workloads[index]
        flusher, timer = self.timing_tools()
        batch = timed_batch(
            self.call,
            lambda s: self.inputs(workload, s),
            self.outputs_for,
            config=self.job["config"],
            seed=seed,
            flusher=flusher,
            timer=timer,
        )
        self.batch = (index, batch)
        # Threads the solution started (since it was loaded) that are still alive after timing.
        new_threads = [
            t.name for t in threading.enumerate() if t.ident not in self.threads_at_load and not isinstance(t, threading._DummyThread)
        ]
        run = batch.run
        return {
            "status": "ok",
            "method": run.method,
            "gpu_us": run.gpu_us,
            "host_call_us": run.host_call_us,
            "wall_us": run.wall_us,
            "activities_per_call": run.activities_per_call,
            "kernel_names": run.kernel_names,
            "stray_gpu_work": run.stray,
            "new_threads": new_threads,
            "rotation_sets": batch.sets,
            "regenerated_inputs": batch.regenerate,
            "flush_bytes": flusher.bytes,
            "iterations": batch.iterations,
            "warmup": batch.warmup,
            "inside_seconds": batch.seconds,
            **self.integrity(),
        }

    def save_checked(self, index: int) -> dict[str, Any]:
        """Each set's outputs come from its last timed call; the judge re-checks them. A
        value-returning solution is called once more per set (untimed) on those same inputs."""
        batch_index, batch = self.batch
        assert batch_index == index
        folder = self.out_dir / str(index)
        checked = []
        for k in range(batch.sets):
            produced = batch.set_outputs[k]
            if not self.dps:
                produced = self.call(batch.set_inputs[k], batch.set_outputs[k])
                self.torch.cuda.synchronize()
            name = f"timed{k}.safetensors"
            self.save(folder / name, produced)
            checked.append({"file": name, "seed": batch.last_seed[k]})
        self.batch = None
        return {"status": "ok", "checked": checked, **self.integrity()}


def _overlaps(a: Any, b: Any) -> bool:
    if a.numel() == 0 or b.numel() == 0:
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    a1 = a0 + a.untyped_storage().nbytes()
    b1 = b0 + b.untyped_storage().nbytes()
    return a0 < b1 and b0 < a1


def warm_up() -> str:
    """Import the harness, then wait for a job: see tools/bench/pool.py. CPU work only: a spare
    warms while another process may be timing on the GPU, so it must not touch the GPU yet."""
    import torch  # noqa: F401
    from flashinfer_bench.data import Definition  # noqa: F401
    from safetensors.torch import save_file  # noqa: F401

    import kda_mcp.tools.evaluation.batch  # noqa: F401
    import kda_mcp.tools.harness.guard  # noqa: F401
    import kda_mcp.tools.harness.inputs  # noqa: F401
    import kda_mcp.tools.harness.loading  # noqa: F401
    from kda_mcp.tools.evaluation import timing

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
            elif command["cmd"] == "save":
                reply = candidate.save_checked(command["index"])
            else:
                reply = {"status": "RUNTIME_ERROR", "error": f"unknown command {command['cmd']!r}"}
        except BaseException as exc:  # CUDA errors poison the context: report, then leave
            send(nonce, {"event": "reply", "status": "RUNTIME_ERROR", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]})
            STDOUT.flush()
            os._exit(3)
        send(nonce, {"event": "reply", **reply})
    return 0


if __name__ == "__main__":
    # Run the importable module, not this __main__ copy, so the harness guard watches the very
    # functions in use (tools.evaluation.solution_child.Candidate.call and friends).
    from kda_mcp.tools.evaluation.solution_child import main as module_main

    sys.exit(module_main(sys.argv[1]))
