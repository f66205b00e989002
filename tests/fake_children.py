"""Stand-ins for the judge and the executor that need no GPU, speaking the real protocols over the
real sockets, so the orchestrator's process handling (sandbox users, crashes, hangs, memory,
respawns, cleanup) and the report's checks are tested on any machine.

    python tests/fake_children.py judge [--warm]
    python tests/fake_children.py executor MODE [--warm]

A fake call "takes" TRUE_US of GPU time. The fake judge stands in for the GPU events: its bracket of
a call is the executor's true time plus a fixed handshake (HANDSHAKE_US). MODE decides how the
executor misbehaves: ok, load_fail, crash_on_2 (exits during its second workload), segv_on_2,
hang_on_2, memory_on_2, hide (reports half its true time), escape (leaves a daemon behind),
contend (the judge sees its flushes slowed, as when other GPU work overlaps). The reference side
is always honest.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

from kda_mcp.tools.evaluation.wire import Wire, WireClosed
from kda_mcp.tools.sandbox.specs import ExecutorSpec, JudgeSpec, announce_warm, read_spec

TRUE_US = 50.0
HANDSHAKE_US = 290.0
FLUSH_US = 80.0


def executor(mode: str, warm: bool) -> int:
    if warm:
        announce_warm()
    spec = read_spec(ExecutorSpec, [])
    if json.loads(spec.solution)["name"].endswith("__reference"):
        mode = "ok"  # the misbehaviour is the candidate's; the reference is honest
    wire = Wire.from_fd(int(os.environ["KDA_JUDGE_FD"]))
    print("executor chatter that is not protocol", file=sys.stderr, flush=True)
    try:
        message, _ = wire.recv()
    except WireClosed:
        return 0
    if mode == "load_fail":
        wire.send({"event": "load_failed", "error": "ImportError: no module named 'missing'", "traceback": "Traceback ..."})
        return 0
    wire.send({"event": "ready", "method": "fake timer", "pid": os.getpid()})
    batches = workloads = 0
    while True:
        try:
            message, _ = wire.recv()
        except WireClosed:
            return 0
        if message["cmd"] == "exit":
            return 0
        if message["cmd"] == "map":
            workloads += 1
            wire.send({"event": "mapped"})
            continue
        batches += 1
        if workloads == 2 and mode.endswith("_on_2"):
            if mode == "crash_on_2":
                os._exit(7)
            if mode == "segv_on_2":
                ctypes.string_at(0)
            if mode == "hang_on_2":
                time.sleep(3600)
            if mode == "memory_on_2":
                hog = bytearray(1 << 30)
                for i in range(0, len(hog), 4096):
                    hog[i] = 1
                time.sleep(60)
        if mode == "escape" and batches == 1:
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    nul = os.open("/dev/null", os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(nul, fd)
                    time.sleep(600)
                os._exit(0)
        count = len(message["calls"])
        for seq, _ in message["calls"]:
            wire.send({"event": "enqueued", "seq": seq})
        reported = TRUE_US / 2 if mode == "hide" else TRUE_US
        wire.send(
            {
                "event": "calls_done",
                "span_us": [reported] * count,
                "busy_us": [reported] * count,
                "activities": [1] * count,
                "host_us": [5.0] * count,
                "names": ["fake_kernel"],
                "true_us": [TRUE_US] * count,
                "contend": mode == "contend",
            }
        )


def judge(warm: bool) -> int:
    if warm:
        announce_warm()
    spec = read_spec(JudgeSpec, [])
    control = Wire.from_fd(int(os.environ["KDA_CONTROL_FD"]))
    timeout = float(spec.config.get("workload_timeout_s", 120))
    control.send({"event": "ready", "device": {"name": "Fake GPU", "sm_count": 1}, "bandwidth_bytes_per_s": 3.0e12, "flush_us": FLUSH_US, "flush_bytes": 256 * 2**20})
    sides: dict[str, Wire] = {}
    while True:
        try:
            message, fds = control.recv()
        except WireClosed:
            return 0
        if message["cmd"] == "exit":
            return 0
        if message["cmd"] == "attach":
            wire = Wire.from_fd(fds[0])
            wire.send({"cmd": "load"})
            try:
                reply, _ = wire.recv(60)
            except (WireClosed, TimeoutError):
                control.send({"event": "attached", "side": message["side"], "ok": False, "status": "RUNTIME_ERROR", "error": "the solution process exited while loading"})
                continue
            if reply.get("event") != "ready":
                control.send({"event": "attached", "side": message["side"], "ok": False, "status": "COMPILE_ERROR", "error": f"could not load the solution: {reply.get('error')}"})
                continue
            sides[message["side"]] = wire
            control.send({"event": "attached", "side": message["side"], "ok": True, "method": reply["method"]})
        elif message["cmd"] == "detach":
            sides.pop(message["side"], None)
            control.send({"event": "detached"})
        elif message["cmd"] == "workload":
            control.send(_workload(message, sides, timeout))


def _workload(message: dict, sides: dict[str, Wire], timeout: float) -> dict:
    out = {}
    rounds = message["timing"]["rounds"]
    per_round = message["timing"].get("calls") or 4
    for name in message["sides"]:
        wire = sides.get(name)
        if wire is None:
            out[name] = {"status": "RUNTIME_ERROR", "error": "the solution process is not running"}
            continue
        try:
            wire.send({"cmd": "map", "layout": {}})
            wire.recv(timeout)
            timing = {"span_us": [], "busy_us": [], "activities": [], "host_us": [], "bracket_us": [], "flush_us": [], "round_span": [], "round_bracket": [], "names": []}
            seq = 0
            for _ in range(rounds):
                calls = [[seq + i, 0] for i in range(per_round)]
                seq += per_round
                wire.send({"cmd": "calls", "calls": calls, "scalars": {}})
                while True:
                    reply, _ = wire.recv(timeout)
                    if reply.get("event") == "calls_done":
                        break
                timing["span_us"] += reply["span_us"]
                timing["busy_us"] += reply["busy_us"]
                timing["activities"] += reply["activities"]
                timing["host_us"] += reply["host_us"]
                timing["bracket_us"] += [t + HANDSHAKE_US for t in reply["true_us"]]
                timing["flush_us"] += [FLUSH_US * (20 if reply.get("contend") else 1)] * per_round
                timing["prep_us"] = timing.get("prep_us", []) + [FLUSH_US + 20] * per_round
                timing["round_span"].append(reply["span_us"][0])
                timing["round_bracket"].append(reply["true_us"][0] + HANDSHAKE_US)
                timing["names"] = reply["names"]
            timing.update(method="fake timer", checked=2, calls_per_round=per_round, rounds=rounds)
            out[name] = {"status": "PASSED", "message": "", "max_abs_error": 0.0, "max_rel_error": 0.0, "matched_ratio": 1.0, "findings": [], "timing": timing}
        except TimeoutError:
            out[name] = {"status": "TIMEOUT", "error": f"a call ran past {timeout:.0f} s; the process was stopped", "dead": True}
            sides.pop(name, None)
        except (WireClosed, OSError):
            out[name] = {"status": "RUNTIME_ERROR", "error": "the solution process exited during a call", "dead": True}
            sides.pop(name, None)
    return {"event": "workload", "index": message["index"], "sides": out, "bytes_moved": 1200, "scalars": {}}


if __name__ == "__main__":
    warm_flag = "--warm" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--warm"]
    sys.exit(judge(warm_flag) if args[0] == "judge" else executor(args[1], warm_flag))
