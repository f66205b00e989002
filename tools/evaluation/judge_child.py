"""The judge: trusted code only. Recomputes every input from its seed, runs the definition's
reference, and compares with what the solution child wrote. Also times the reference and
measures the copy bandwidth behind the physical floor.

Run as `python -m tools.evaluation.judge_child JOB.json` (or `--warm`, then the job path on stdin);
it answers one {"cmd": "judge", "task": ...} per line with a verdict (protocol.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from flashinfer_bench.data import Definition, Workload
from safetensors.torch import load_file

from kda_mcp.tools.evaluation.protocol import encode
from kda_mcp.tools.evaluation.compare import Verdict, bytes_moved, compare_outputs, unchanged
from kda_mcp.tools.evaluation.timing import CuptiTimer, L2Flusher, cupti_available, time_calls
from kda_mcp.tools.harness.inputs import make_inputs

DEVICE = "cuda:0"


def reference_function(definition: Definition) -> Any:
    namespace: dict[str, Any] = {"__name__": "kda_reference"}
    exec(compile(definition.reference, f"<reference of {definition.name}>", "exec"), namespace)
    return namespace["run"]


def as_list(result: Any, names: list[str]) -> list[torch.Tensor]:
    if isinstance(result, dict):
        return [result[n] for n in names]
    if isinstance(result, (tuple, list)):
        return list(result)
    return [result]


def copy_bandwidth() -> float:
    """Best of several 1 GiB device-to-device copies, in bytes/s (read + write counted)."""
    src = torch.empty(2**28, dtype=torch.float32, device=DEVICE)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(6):
        torch.cuda.synchronize()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        best = min(best, begin.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 2**30 / best


class Judge:
    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.definition = Definition.model_validate_json(job["definition"])
        self.reference = reference_function(self.definition)
        self.output_names = list(self.definition.outputs)
        self.tolerance = job["tolerance"]
        self.mutable = set(job.get("mutable_inputs", []))
        self.dataset_root = Path(job["dataset_root"])
        self.timer = CuptiTimer() if cupti_available() else None
        self.flusher = L2Flusher(torch.device(DEVICE))

    def expected(self, workload: Workload, seed: int) -> tuple[list[Any], list[torch.Tensor]]:
        inputs = make_inputs(self.definition, workload, seed=seed, device=DEVICE, dataset_root=self.dataset_root)
        with torch.no_grad():
            ref = as_list(self.reference(*inputs), self.output_names)
        return inputs, ref

    def check_file(self, path: Path, ref: list[torch.Tensor]) -> Verdict:
        if not path.is_file():
            return Verdict("RUNTIME_ERROR", message=f"the solution child wrote no {path.name}")
        saved = load_file(str(path), device=DEVICE)
        missing = [n for n in self.output_names if n not in saved]
        if missing:
            return Verdict("RUNTIME_ERROR", message=f"{path.name} lacks outputs {missing}")
        tol = self.tolerance
        return compare_outputs(
            [saved[n] for n in self.output_names],
            [r.to(DEVICE) if isinstance(r, torch.Tensor) else torch.tensor(r, device=DEVICE) for r in ref],
            self.output_names,
            atol=tol["atol"],
            rtol=tol["rtol"],
            required_matched_ratio=tol.get("required_matched_ratio"),
        )

    def judge(self, task: dict[str, Any]) -> dict[str, Any]:
        workload = Workload.model_validate_json(task["workload"])
        folder = Path(task["folder"])
        verdicts: list[Verdict] = []
        findings: list[dict[str, str]] = []
        for trial, seed in enumerate(task["trial_seeds"]):
            inputs, ref = self.expected(workload, seed)
            verdicts.append(self.check_file(folder / f"trial{trial}.safetensors", ref))
            if trial == 0 and (folder / "inputs_after.safetensors").is_file():
                after = load_file(str(folder / "inputs_after.safetensors"), device=DEVICE)
                for name, before in zip(self.definition.inputs, inputs):
                    if name in self.mutable or not isinstance(before, torch.Tensor) or name not in after:
                        continue
                    if not unchanged(before, after[name]):
                        findings.append({"check": "inputs_modified", "detail": f"input {name!r} changed during the call"})
        worst = next((v for v in verdicts if v.status != "PASSED"), verdicts[0] if verdicts else Verdict("RUNTIME_ERROR", message="no trials"))
        findings += self.consistency(workload, folder, task["trial_seeds"])
        timed_verdict = None
        for item in task.get("checked", []):
            _, ref = self.expected(workload, item["seed"])
            verdict = self.check_file(folder / item["file"], ref)
            if verdict.status != "PASSED":
                timed_verdict = verdict
                findings.append({"check": "timed_outputs_wrong", "detail": f"outputs of a timed call are wrong: {verdict.message}"})
                break
        out = {
            "status": worst.status,
            "max_abs_error": max((v.max_abs_error or 0.0) for v in verdicts) if verdicts else None,
            "max_rel_error": max((v.max_rel_error or 0.0) for v in verdicts) if verdicts else None,
            "matched_ratio": min((v.matched_ratio if v.matched_ratio is not None else 1.0) for v in verdicts) if verdicts else None,
            "message": worst.message,
            "findings": findings,
        }
        if worst.status == "PASSED" and timed_verdict is not None:
            out["status"] = "INCORRECT_NUMERICAL"
            out["message"] = "correct on the first calls but wrong on timed calls: " + timed_verdict.message
        if worst.status == "PASSED" and any(f["check"] == "inputs_modified" for f in findings):
            out["status"] = "INCORRECT_NUMERICAL"
            out["message"] = "; ".join(f["detail"] for f in findings if f["check"] == "inputs_modified")
        if task.get("time_reference"):
            out["reference"] = self.time_reference(workload, task["trial_seeds"][0])
        if task.get("calibrate"):
            out["harness_seconds"] = self.calibrate(workload, task["calibrate"])
        out["bytes_moved"] = self.bytes_moved(workload)
        return out

    def consistency(self, workload: Workload, folder: Path, seeds: list[int]) -> list[dict[str, str]]:
        """A race (the same inputs, different outputs) and a replay (different inputs, the same outputs)."""
        findings = []
        first, repeat = folder / "trial0.safetensors", folder / "repeat0.safetensors"
        if first.is_file() and repeat.is_file():
            a, b = load_file(str(first), device=DEVICE), load_file(str(repeat), device=DEVICE)
            tol = self.tolerance
            verdict = compare_outputs(
                [b[n] for n in self.output_names], [a[n] for n in self.output_names], self.output_names,
                atol=tol["atol"], rtol=tol["rtol"], required_matched_ratio=tol.get("required_matched_ratio"),
            )
            if verdict.status != "PASSED":
                findings.append({"check": "nondeterministic", "detail": f"two calls on the same inputs disagree beyond the tolerance: {verdict.message}"})
        digests = []
        for trial in range(len(seeds)):
            path = folder / f"trial{trial}.safetensors"
            if path.is_file():
                digests.append(hashlib.sha256(path.read_bytes()).hexdigest())
        if len(digests) >= 2 and len(set(digests)) == 1 and len(set(seeds)) > 1:
            refs = [as_list(self.reference(*self.expected_inputs(workload, seed)), self.output_names) for seed in seeds[:2]]
            if any(not torch.equal(x, y) for x, y in zip(refs[0], refs[1])):
                findings.append({"check": "identical_outputs", "detail": "bitwise identical outputs for different inputs (a replayed result)"})
        return findings

    def expected_inputs(self, workload: Workload, seed: int) -> list[Any]:
        return make_inputs(self.definition, workload, seed=seed, device=DEVICE, dataset_root=self.dataset_root)

    def calibrate(self, workload: Workload, spec: dict[str, Any]) -> float:
        """Wall time of the candidate's timed batch with a call that does nothing: what the harness
        itself costs for this workload (inputs, refills, L2 flushes, synchronizations)."""
        from kda_mcp.tools.evaluation.batch import timed_batch
        from kda_mcp.tools.harness.inputs import allocate_outputs

        batch = timed_batch(
            lambda inputs, outputs: None,
            lambda seed: self.expected_inputs(workload, seed),
            lambda inputs: allocate_outputs(self.definition, inputs, device=DEVICE),
            config={**spec["config"], "warmup": spec["warmup"]},
            seed=spec["seed"],
            flusher=self.flusher,
            timer=None,
            iterations=spec["iterations"],
        )
        return batch.seconds

    def bytes_moved(self, workload: Workload) -> int:
        """Fewest bytes a kernel must move: every input read once, every output written once."""
        return bytes_moved(self.definition, workload)

    def time_reference(self, workload: Workload, seed: int) -> dict[str, Any]:
        inputs = make_inputs(self.definition, workload, seed=seed, device=DEVICE, dataset_root=self.dataset_root)
        budget = self.job.get("reference_budget_s", 2.0)

        def call(_: int) -> None:
            with torch.no_grad():
                self.reference(*inputs)

        start = time.perf_counter()
        call(0)
        torch.cuda.synchronize()
        estimate = max(time.perf_counter() - start, 1e-6)
        iterations = int(max(3, min(50, budget / estimate)))
        run = time_calls(call, lambda i: None, iterations=iterations, flusher=self.flusher, timer=self.timer)
        return {"method": run.method, "gpu_us": run.gpu_us, "wall_us": run.wall_us}


def main(job_path: str) -> int:
    if job_path == "--warm":  # see tools/bench/pool.py: imports only, the GPU is touched once a job arrives
        sys.stdout.write("KDA-WARM\n")
        sys.stdout.flush()
        job_path = sys.stdin.readline().strip()
    job = json.loads(Path(job_path).read_text())
    nonce = job["nonce"]
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the reference may print; only protocol lines go to the orchestrator

    def send(message: dict[str, Any]) -> None:
        channel.write(encode(nonce, message))
        channel.flush()

    try:
        judge = Judge(job)
        props = torch.cuda.get_device_properties(0)
        send({"event": "ready", "bandwidth_bytes_per_s": copy_bandwidth(), "device": {"name": props.name, "sm_count": props.multi_processor_count}})
    except Exception as exc:
        send({"event": "load_failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]})
        return 0
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            break
        try:
            verdict = judge.judge(command["task"])
        except Exception as exc:
            traceback.print_exc()
            verdict = {"status": "RUNTIME_ERROR", "message": f"the reference or the check failed: {type(exc).__name__}: {exc}", "judge_error": True}
        send({"event": "reply", **verdict})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
