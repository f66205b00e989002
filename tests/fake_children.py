"""Stand-ins for the solution child and the judge that need no GPU.

They speak the real protocol, so the orchestrator's crash, hang and memory handling is tested
on any machine. Usage: python -m tests.fake_children solution MODE JOB.json | judge JOB.json.
MODE: ok, crash_on_1 (exits during workload 1), segv_on_1, hang_on_1, memory_on_1, load_fail,
tamper (reports a patched harness), slow_time (takes far longer than the times it reports).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from pathlib import Path

from kda_mcp.tools.evaluation.protocol import encode


def send(nonce: str, message: dict) -> None:
    sys.stdout.write(encode(nonce, message))
    sys.stdout.flush()


def solution(mode: str, job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    nonce = job["nonce"]
    print("solution chatter that is not protocol", flush=True)
    if mode == "load_fail":
        send(nonce, {"event": "load_failed", "error": "ImportError: no module named 'missing'", "traceback": "Traceback ..."})
        return
    send(nonce, {"event": "ready", "pid": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            return
        if command.get("index") == 1 and command["cmd"] == "trials":
            if mode == "crash_on_1":
                os._exit(7)
            if mode == "segv_on_1":
                ctypes.string_at(0)
            if mode == "hang_on_1":
                time.sleep(3600)
            if mode == "memory_on_1":
                hog = bytearray(1 << 30)  # 1 GiB, touched so it is resident
                for i in range(0, len(hog), 4096):
                    hog[i] = 1
                time.sleep(60)
        if command["cmd"] == "trials":
            extra = {"harness_tampered": ["torch.cuda.synchronize"]} if mode == "tamper" else {}
            send(nonce, {"event": "reply", "status": "ok", "trials": len(command["seeds"]), **extra})
        elif command["cmd"] == "save":
            send(nonce, {"event": "reply", "status": "ok", "checked": []})
        else:
            if mode == "slow_time":
                time.sleep(1.5)  # the real calls took this long; the report below claims microseconds
            send(
                nonce,
                {
                    "event": "reply",
                    "status": "ok",
                    "method": "fake timer",
                    "gpu_us": [10.0, 11.0, 12.0],
                    "host_call_us": [5.0, 5.0, 5.0],
                    "wall_us": [20.0, 20.0, 20.0],
                    "activities_per_call": [1, 1, 1],
                    "stray_gpu_work": [],
                    "new_threads": [],
                    "rotation_sets": 3,
                    "regenerated_inputs": True,
                    "flush_bytes": 256 * 2**20,
                    "checked": [],
                    "iterations": 3,
                    "warmup": 1,
                },
            )


def judge(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    nonce = job["nonce"]
    send(nonce, {"event": "ready", "bandwidth_bytes_per_s": 3.0e12, "device": {"name": "Fake GPU", "sm_count": 1}})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "exit":
            return
        task = command["task"]
        verdict = {
            "status": "PASSED",
            "max_abs_error": 0.0,
            "max_rel_error": 0.0,
            "matched_ratio": 1.0,
            "message": "",
            "findings": [],
            "bytes_moved": 1200,
        }
        if task["time_reference"]:
            verdict["reference"] = {"method": "fake", "gpu_us": [20.0, 20.0, 20.0]}
        if task.get("calibrate"):
            verdict["harness_seconds"] = 0.01
        send(nonce, {"event": "reply", **verdict})


if __name__ == "__main__":
    if sys.argv[1] == "solution":
        solution(sys.argv[2], sys.argv[3])
    else:
        judge(sys.argv[2])
