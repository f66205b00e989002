"""The judge: trusted code only, and the side of a benchmark that decides.

    python -m kda_mcp.tools.evaluation.judge [--warm]

It reads a JudgeSpec on stdin and takes commands from the orchestrator over the socket in
KDA_CONTROL_FD. For every side of a benchmark (candidate, reference, baseline; or A and B) it
is handed a socket to that side's executor. It owns everything that decides a result:

- the inputs: generated here from seeds chosen here, written into GPU memory shared with the
  executor, fresh contents for every call at every size (scalars fixed per workload);
- the outputs: the executor writes them into buffers this process owns; this process reads them
  right after a call, and which timed calls are checked is drawn here after each call, so no
  call can safely be skimped;
- the clock: each call is bracketed on the GPU by this process's own events around the
  go/done handshake (channel.py), and the L2 flush before it is timed too, which shows GPU
  work from anywhere else overlapping the measurement;
- the verdicts: the reference runs here, the comparison runs here.

The executor's own report of its kernels comes back with each batch and is only compared.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import secrets
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kda_mcp.tools.evaluation.workload_inputs import InputMaker

ENQUEUE_WAIT_S = 0.002  # how long a call may take to launch before `go` is written anyway
CHECK_PROBABILITY = 0.15
MIN_CHECKS = 2
LOAD_TIMEOUT_S = 300
PR_SET_DUMPABLE = 4


class SideFailed(Exception):
    def __init__(self, status: str, error: str, log: str = "") -> None:
        super().__init__(error)
        self.status, self.error, self.log = status, error, log


@dataclass
class Side:
    """One executor and the memory it shares with the judge."""

    name: str
    wire: Any
    value_returning: bool
    judge_flags: Any  # the page only the judge writes (go, copy_go); mapped read-only there
    side_flags: Any  # the page the executor writes (done, copied)
    seq: int = 0
    alive: bool = True
    method: str = ""
    data: Any = None
    sets: list[dict[str, list[Any]]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq


class Judge:
    def __init__(self, spec: Any) -> None:
        import torch
        from flashinfer_bench.data import Definition

        from kda_mcp.tools.evaluation.timing import L2Flusher

        self.torch = torch
        self.spec = spec
        self.definition = Definition.model_validate_json(spec.definition)
        self.reference = _reference_function(self.definition)
        self.tolerance = spec.tolerance
        self.mutable = set(spec.mutable_inputs)
        self.dataset_root = Path(spec.dataset_root)
        self.config = spec.config
        self.device = torch.device("cuda", 0)
        torch.zeros(1, device=self.device)
        self.stream = torch.cuda.Stream(device=self.device)
        self.rescue = torch.cuda.Stream(device=self.device)
        torch.cuda.set_stream(self.stream)
        self.flusher = L2Flusher(self.device)
        self.rng = secrets.SystemRandom()
        self.sides: dict[str, Side] = {}

    # ---- machine facts, measured before any solution code has loaded

    def facts(self) -> dict[str, Any]:
        torch = self.torch
        props = torch.cuda.get_device_properties(self.device)
        return {
            "device": {"name": props.name, "sm_count": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None)},
            "bandwidth_bytes_per_s": _copy_bandwidth(torch, self.device),
            "flush_us": self._flush_baseline(),
            "flush_bytes": self.flusher.bytes,
        }

    def _flush_baseline(self) -> float:
        torch = self.torch
        times = []
        for _ in range(12):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            self.flusher()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e3)
        return round(statistics.median(times[2:]), 2)

    # ---- sides

    def attach(self, name: str, value_returning: bool, fd: int) -> dict[str, Any]:
        from kda_mcp.tools.evaluation import channel
        from kda_mcp.tools.evaluation.wire import Wire, WireClosed

        wire = Wire.from_fd(fd)
        judge_flags, side_flags = channel.allocate(channel.FLAG_PAGE), channel.allocate(channel.FLAG_PAGE)
        for page in (judge_flags, side_flags):
            channel.tensor_at(page.ptr, channel.FLAG_PAGE, self.torch.uint8, [channel.FLAG_PAGE]).zero_()
        self.torch.cuda.synchronize()
        side = Side(name=name, wire=wire, value_returning=value_returning, judge_flags=judge_flags, side_flags=side_flags)
        try:
            wire.send({"cmd": "load", "flag_size": judge_flags.size}, [judge_flags.fd, side_flags.fd])
            reply, _ = wire.recv(LOAD_TIMEOUT_S)
        except TimeoutError:
            return {"event": "attached", "side": name, "ok": False, "status": "TIMEOUT", "error": f"the solution did not load within {LOAD_TIMEOUT_S} s"}
        except WireClosed:
            return {"event": "attached", "side": name, "ok": False, "status": "RUNTIME_ERROR", "error": "the solution process exited while loading"}
        if reply.get("event") != "ready":
            return {
                "event": "attached", "side": name, "ok": False, "status": "COMPILE_ERROR",
                "error": f"could not load the solution: {_text(reply.get('error'))}", "log": _text(reply.get("traceback")),
            }  # fmt: skip
        side.method = _text(reply.get("method"), 120)
        self.sides[name] = side
        return {"event": "attached", "side": name, "ok": True, "method": side.method}

    def detach(self, name: str) -> None:
        side = self.sides.pop(name, None)
        if side is not None:
            side.wire.close()
            if side.data is not None:
                side.data.release()
            side.judge_flags.release()
            side.side_flags.release()

    # ---- one workload

    def workload(self, message: dict[str, Any]) -> dict[str, Any]:
        from flashinfer_bench.data import Workload

        from kda_mcp.tools.evaluation.correctness import bytes_moved

        workload = Workload.model_validate_json(message["workload"])
        inputs_of = InputMaker(self, workload)
        report: dict[str, Any] = {"event": "workload", "index": message["index"], "sides": {}, "bytes_moved": bytes_moved(self.definition, workload)}
        names = [n for n in message["sides"] if n in self.sides and self.sides[n].alive]
        results: dict[str, dict[str, Any]] = {n: {} for n in message["sides"]}
        for name in message["sides"]:
            if name not in names:
                results[name] = {"status": "RUNTIME_ERROR", "error": "the solution process is not running"}
        for name in names:
            try:
                self._map(self.sides[name], inputs_of)
                results[name] = self._trials(self.sides[name], inputs_of, message["trial_seeds"])
            except SideFailed as failure:
                results[name] = self._failed(self.sides[name], failure)
        passed = [n for n in names if results[n].get("status") == "PASSED"]
        if passed:
            self._time(passed, inputs_of, results, message)
        report["sides"] = results
        report["scalars"] = {k: v for k, v in inputs_of.scalars.items()}
        return report

    def _failed(self, side: Side, failure: SideFailed) -> dict[str, Any]:
        side.alive = False
        return {"status": failure.status, "error": failure.error, "log": failure.log, "dead": True}

    def _map(self, side: Side, inputs_of: InputMaker) -> None:
        from kda_mcp.tools.evaluation import channel
        from kda_mcp.tools.evaluation.wire import WireClosed

        if side.data is not None:
            side.data.release()
            side.data = None
        placed, size = inputs_of.layout(sets=2)
        side.data = channel.allocate(size)
        side.sets = inputs_of.views(side.data, placed)
        try:
            side.wire.send({"cmd": "map", "layout": {"size": side.data.size, "sets": placed}}, [side.data.fd])
            reply, _ = side.wire.recv(60)
        except (TimeoutError, WireClosed) as exc:
            raise SideFailed("RUNTIME_ERROR", f"the solution process did not map its buffers ({type(exc).__name__})") from exc
        if reply.get("event") != "mapped":
            raise SideFailed("RUNTIME_ERROR", f"mapping the buffers failed: {_text(reply.get('error'))}", _text(reply.get("traceback")))

    # ---- the handshake of one call

    def _call(self, side: Side, k: int, seq: int, load: Any) -> tuple[float, float, float]:
        """Run call `seq` of `side` on buffer set k. Once the executor has launched the call, our
        stream loads the fresh inputs (`load`, poisoning the outputs too), flushes L2, writes
        `go` and waits for `done`. Returns (the bracket of the call, the flush, the whole
        preparation from load to go), each in us, all on our own clock."""
        from kda_mcp.tools.evaluation import channel

        torch = self.torch
        js = self.stream.cuda_stream
        p0, f0, f1, e0, e1 = (torch.cuda.Event(enable_timing=True) for _ in range(5))
        self._await_launch(side, seq)
        p0.record(self.stream)
        load()
        f0.record(self.stream)
        self.flusher()
        f1.record(self.stream)
        e0.record(self.stream)
        channel.write_flag(js, side.judge_flags.ptr + channel.GO, seq)
        channel.wait_at_least(js, side.side_flags.ptr + channel.DONE, seq)
        e1.record(self.stream)
        if side.value_returning:
            channel.write_flag(js, side.judge_flags.ptr + channel.COPY_GO, seq)
            channel.wait_at_least(js, side.side_flags.ptr + channel.COPIED, seq)
        end = torch.cuda.Event()
        end.record(self.stream)
        self._await(end, side, seq)
        return e0.elapsed_time(e1) * 1e3, f0.elapsed_time(f1) * 1e3, p0.elapsed_time(e0) * 1e3

    def _await_launch(self, side: Side, seq: int) -> None:
        """Wait (briefly) until the executor has launched call `seq`, so the bracket measures GPU
        work and not the host's launch; a call that synchronizes inside gets `go` after 2 ms."""
        from kda_mcp.tools.evaluation.wire import WireClosed

        deadline = time.monotonic() + ENQUEUE_WAIT_S
        while True:
            try:
                message, _ = side.wire.recv(max(deadline - time.monotonic(), 0))
            except TimeoutError:
                return
            except WireClosed as exc:
                raise SideFailed("RUNTIME_ERROR", "the solution process exited") from exc
            if message.get("event") == "enqueued":
                if message.get("seq") == seq:
                    return
                continue  # a late acknowledgement of an earlier call
            if message.get("event") == "error":
                raise SideFailed(_status(message), f"the solution failed: {_text(message.get('error'))}", _text(message.get("traceback")))
            side.pending.append(message)

    def _await(self, end: Any, side: Side, seq: int) -> None:
        """Wait for the call to end on our stream, watching the executor meanwhile: an error it
        reports, its death, or the deadline releases our stream and fails the side."""
        from kda_mcp.tools.evaluation.wire import WireClosed

        timeout = float(self.config.get("workload_timeout_s", 120))
        deadline = time.monotonic() + timeout
        pause = 1e-5
        while not end.query():
            try:
                self._drain(side)
            except WireClosed:
                self._release(side, seq)
                raise SideFailed("RUNTIME_ERROR", "the solution process exited during a call") from None
            except SideFailed:
                self._release(side, seq)
                raise
            if time.monotonic() > deadline:
                self._release(side, seq)
                raise SideFailed("TIMEOUT", f"a call ran past {timeout:.0f} s; the process was stopped")
            time.sleep(pause)
            pause = min(pause * 2, 1e-3)

    def _drain(self, side: Side) -> None:
        """Take what the executor has sent so far without blocking: acknowledgements are dropped,
        a batch report is kept for later, an error fails the side."""
        while (message := side.wire.poll()) is not None:
            side.wire.recv(0)
            event = message.get("event")
            if event == "enqueued":
                continue
            if event == "error":
                raise SideFailed(_status(message), f"the solution failed: {_text(message.get('error'))}", _text(message.get("traceback")))
            side.pending.append(message)

    def _release(self, side: Side, seq: int) -> None:
        """Write the executor's flags ourselves (on a second stream) so our stream never waits forever."""
        from kda_mcp.tools.evaluation import channel

        side.alive = False
        rescue = self.rescue.cuda_stream
        channel.write_flag(rescue, side.side_flags.ptr + channel.DONE, seq)
        channel.write_flag(rescue, side.side_flags.ptr + channel.COPIED, seq)
        self.rescue.synchronize()

    def _batch(self, side: Side, calls: list[tuple[int, int]], scalars: dict[str, Any]) -> None:
        from kda_mcp.tools.evaluation.wire import WireClosed

        try:
            side.wire.send({"cmd": "calls", "calls": [list(c) for c in calls], "scalars": scalars})
        except OSError as exc:
            raise SideFailed("RUNTIME_ERROR", "the solution process is gone") from exc
        except WireClosed as exc:
            raise SideFailed("RUNTIME_ERROR", "the solution process is gone") from exc

    def _batch_report(self, side: Side, count: int) -> dict[str, Any]:
        from kda_mcp.tools.evaluation.wire import WireClosed

        deadline = time.monotonic() + 60
        while True:
            if side.pending:
                message = side.pending.pop(0)
            else:
                try:
                    message, _ = side.wire.recv(max(deadline - time.monotonic(), 0.01))
                except TimeoutError as exc:
                    raise SideFailed("TIMEOUT", "the solution process did not finish its batch") from exc
                except WireClosed as exc:
                    raise SideFailed("RUNTIME_ERROR", "the solution process exited") from exc
            if message.get("event") == "enqueued":
                continue
            if message.get("event") == "error":
                raise SideFailed(_status(message), f"the solution failed: {_text(message.get('error'))}", _text(message.get("traceback")))
            if message.get("event") == "calls_done":
                return _clean_batch(message, count)

    # ---- correctness

    def _trials(self, side: Side, inputs_of: InputMaker, seeds: list[int]) -> dict[str, Any]:
        from kda_mcp.tools.evaluation.correctness import Check, compare_outputs, unchanged

        torch = self.torch
        checks: list[Check] = []
        findings: list[dict[str, str]] = []
        digests = []
        first_outputs = None
        for trial, seed in enumerate(seeds):
            inputs = inputs_of.make(seed)
            outputs = self._run_untimed(side, 0, inputs, inputs_of)
            reference = inputs_of.reference(seed, inputs)
            checks.append(compare_outputs(outputs, reference, list(self.definition.outputs), **_tol(self.tolerance)))
            after = [t.clone() if isinstance(t, torch.Tensor) else None for t in side.sets[0]["inputs"]]
            for name, before, now in zip(self.definition.inputs, inputs, after):
                if name in self.mutable or now is None or not isinstance(before, torch.Tensor):
                    continue
                if not unchanged(before, now):
                    findings.append({"check": "inputs_modified", "detail": f"input {name!r} changed during the call"})
            digests.append(hashlib.sha256(b"".join(o.detach().reshape(-1).contiguous().view(torch.uint8).cpu().numpy().tobytes() for o in outputs)).hexdigest())
            if trial == 0:
                first_outputs = outputs
                again = self._run_untimed(side, 1, inputs_of.make(seed), inputs_of)
                repeat = compare_outputs(again, first_outputs, list(self.definition.outputs), **_tol(self.tolerance))
                if repeat.status != "PASSED":
                    findings.append({"check": "nondeterministic", "detail": f"two calls on the same inputs disagree beyond the tolerance: {repeat.message}"})
        if len(digests) >= 2 and len(set(digests)) == 1 and len(set(seeds)) > 1 and inputs_of.references_differ(seeds[:2]):
            findings.append({"check": "identical_outputs", "detail": "bitwise identical outputs for different inputs (a replayed result)"})
        worst = next((c for c in checks if c.status != "PASSED"), checks[0])
        status = worst.status
        message = worst.message
        modified = [f for f in findings if f["check"] == "inputs_modified"]
        if status == "PASSED" and modified:
            status, message = "INCORRECT_NUMERICAL", "; ".join(f["detail"] for f in modified[:3])
        return {
            "status": status,
            "message": message,
            "max_abs_error": max((c.max_abs_error or 0.0) for c in checks),
            "max_rel_error": max((c.max_rel_error or 0.0) for c in checks),
            "matched_ratio": min((c.matched_ratio if c.matched_ratio is not None else 1.0) for c in checks),
            "findings": _dedupe(findings),
        }

    def _run_untimed(self, side: Side, k: int, inputs: list[Any], inputs_of: InputMaker) -> list[Any]:
        seq = side.next_seq()
        self._batch(side, [(seq, k)], inputs_of.scalars)
        self._call(side, k, seq, lambda: inputs_of.load(side.sets[k], inputs))
        self._batch_report(side, 1)
        return [o.clone() for o in side.sets[k]["outputs"]]

    # ---- timing

    def _time(self, names: list[str], inputs_of: InputMaker, results: dict[str, dict[str, Any]], message: dict[str, Any]) -> None:
        torch = self.torch
        from kda_mcp.tools.evaluation.correctness import compare_outputs

        rounds = int(message["timing"]["rounds"])
        warmup = int(message["timing"]["warmup"])
        per_round = int(message["timing"].get("calls") or 0) or self._calls_per_round(names, inputs_of, message["timing"])
        series: dict[str, dict[str, list[Any]]] = {
            n: {"span_us": [], "busy_us": [], "activities": [], "host_us": [], "bracket_us": [], "flush_us": [], "prep_us": [], "round_span": [], "round_bracket": [], "names": set()}
            for n in names
        }
        checked = {n: 0 for n in names}
        # Which timed calls are checked at least: drawn here, secretly, anywhere in the run (a fixed
        # position such as the last call could be predicted and done honestly alone).
        forced = {n: forced_checks(self.rng, rounds * per_round) for n in names}
        timed = {n: 0 for n in names}
        live = list(names)
        for r in range(rounds):
            order = list(live)
            self.rng.shuffle(order)
            for name in order:
                side = self.sides[name]
                count = per_round + (warmup if r == 0 else 0)
                skip = warmup if r == 0 else 0
                seqs = [side.next_seq() for _ in range(count)]
                samples: list[tuple[int, list[Any]]] = []
                brackets, flushes, preps = [], [], []
                try:
                    self._batch(side, [(s, s % 2) for s in seqs], inputs_of.scalars)
                    for j, seq in enumerate(seqs):
                        k = seq % 2
                        seed = self.rng.randrange(1, 2**31)
                        inputs = inputs_of.make(seed)
                        bracket, flush, prep = self._call(side, k, seq, lambda: inputs_of.load(side.sets[k], inputs))
                        if j < skip:
                            continue
                        brackets.append(bracket)
                        flushes.append(flush)
                        preps.append(prep)
                        timed[name] += 1
                        if timed[name] - 1 in forced[name] or self.rng.random() < CHECK_PROBABILITY:
                            samples.append((seed, [o.clone() for o in side.sets[k]["outputs"]]))
                    batch = self._batch_report(side, count)
                except SideFailed as failure:
                    results[name] = {**results[name], **self._failed(side, failure)}
                    live.remove(name)
                    continue
                s = series[name]
                spans = batch["span_us"][skip:]
                s["span_us"] += spans
                s["busy_us"] += batch["busy_us"][skip:]
                s["activities"] += batch["activities"][skip:]
                s["host_us"] += batch["host_us"][skip:]
                s["bracket_us"] += brackets
                s["flush_us"] += flushes
                s["prep_us"] += preps
                s["names"].update(batch["names"])
                s["round_span"].append(statistics.median(spans) if spans else 0.0)
                s["round_bracket"].append(statistics.median(brackets) if brackets else 0.0)
                if batch.get("forbidden_calls"):
                    results[name].setdefault("forbidden_calls", {}).update(batch["forbidden_calls"])
                for seed, outputs in samples:
                    checked[name] += 1
                    verdict = compare_outputs(outputs, inputs_of.reference(seed), list(self.definition.outputs), **_tol(self.tolerance))
                    if verdict.status != "PASSED":
                        results[name]["findings"] = results[name].get("findings", []) + [{"check": "timed_outputs_wrong", "detail": f"outputs of a timed call are wrong: {verdict.message}"}]
                        results[name]["status"] = "INCORRECT_NUMERICAL"
                        results[name]["message"] = "correct on the trial calls but wrong on a timed call: " + verdict.message
                        break
        for name in names:
            s = series[name]
            s["names"] = sorted(s["names"])[:50]
            results[name]["timing"] = {**s, "method": self.sides[name].method, "checked": checked[name], "calls_per_round": per_round, "rounds": len(s["round_span"])}
            results[name]["findings"] = _dedupe(results[name].get("findings", []))
        del torch

    def _calls_per_round(self, names: list[str], inputs_of: InputMaker, timing: dict[str, Any]) -> int:
        """Enough calls for ~target_seconds of GPU time per side over all rounds, within bounds."""
        side = self.sides[names[0]]
        seq = side.next_seq()
        inputs = inputs_of.make(self.rng.randrange(1, 2**31))
        self._batch(side, [(seq, 0)], inputs_of.scalars)
        bracket, _, _ = self._call(side, 0, seq, lambda: inputs_of.load(side.sets[0], inputs))
        self._batch_report(side, 1)
        estimate_s = max(bracket / 1e6, 1e-6)
        total = int(min(timing["max_calls"], max(timing["min_calls"], timing["target_seconds"] / estimate_s)))
        return max(1, math.ceil(total / max(int(timing["rounds"]), 1)))


def forced_checks(rng: Any, timed_calls: int) -> set[int]:
    """MIN_CHECKS distinct positions among a side's timed calls (all of them when there are fewer)."""
    return set(rng.sample(range(timed_calls), min(MIN_CHECKS, timed_calls))) if timed_calls > 0 else set()


def _tol(tolerance: dict[str, Any]) -> dict[str, Any]:
    return {"atol": tolerance["atol"], "rtol": tolerance["rtol"], "required_matched_ratio": tolerance.get("required_matched_ratio")}


def _text(value: Any, limit: int = 4000) -> str:
    return str(value)[:limit] if value is not None else ""


def _status(message: dict[str, Any]) -> str:
    status = message.get("status")
    return status if status in ("INCORRECT_SHAPE", "INCORRECT_DTYPE", "INCORRECT_NUMERICAL", "RUNTIME_ERROR", "TIMEOUT") else "RUNTIME_ERROR"


def _dedupe(findings: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, out = set(), []
    for f in findings:
        key = (f["check"], f["detail"][:120])
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _numbers(values: Any, count: int) -> list[float]:
    """A list of `count` finite floats from untrusted data (anything else becomes 0)."""
    out = []
    for value in list(values or [])[:count]:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = 0.0
        out.append(number if math.isfinite(number) and number >= 0 else 0.0)
    return out + [0.0] * (count - len(out))


def _clean_batch(message: dict[str, Any], count: int) -> dict[str, Any]:
    """The executor's batch report, reduced to the fields and types the judge uses."""
    calls = message.get("forbidden_calls") or {}
    return {
        "span_us": _numbers(message.get("span_us"), count),
        "busy_us": _numbers(message.get("busy_us"), count),
        "activities": [int(x) for x in _numbers(message.get("activities"), count)],
        "host_us": _numbers(message.get("host_us"), count),
        "names": [str(n)[:200] for n in list(message.get("names") or [])[:50]],
        "forbidden_calls": {str(k)[:200]: int(v) for k, v in list(calls.items())[:20]} if isinstance(calls, dict) else {},
    }


def _reference_function(definition: Any) -> Any:
    namespace: dict[str, Any] = {"__name__": "kda_reference"}
    exec(compile(definition.reference, f"<reference of {definition.name}>", "exec"), namespace)
    return namespace["run"]


def _copy_bandwidth(torch: Any, device: Any) -> float:
    """Best of several 1 GiB device-to-device copies, in bytes/s (read + write counted)."""
    src = torch.empty(2**28, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(6):
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        best = min(best, begin.elapsed_time(end) / 1e3)
    del src, dst
    torch.cuda.empty_cache()
    return 2 * 2**30 / best


def warm_up() -> None:
    import torch  # noqa: F401
    from flashinfer_bench.bench.utils import gen_inputs  # noqa: F401

    import kda_mcp.tools.evaluation.channel  # noqa: F401
    import kda_mcp.tools.evaluation.correctness  # noqa: F401
    import kda_mcp.tools.evaluation.timing  # noqa: F401
    import kda_mcp.tools.evaluation.workload_inputs  # noqa: F401


def main(argv: list[str]) -> int:
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    from kda_mcp.tools.evaluation.wire import Wire, WireClosed
    from kda_mcp.tools.sandbox.specs import JudgeSpec, announce_warm, read_spec

    if "--warm" in argv:
        warm_up()
        announce_warm()
    spec = read_spec(JudgeSpec, [])
    control = Wire.from_fd(int(os.environ["KDA_CONTROL_FD"]))
    os.dup2(2, 1)  # the reference may print; the protocol has the socket to itself
    sys.stdout = sys.stderr
    try:
        judge = Judge(spec)
        control.send({"event": "ready", **judge.facts()})
    except Exception as exc:
        control.send({"event": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]})
        return 0
    while True:
        try:
            message, fds = control.recv()
        except WireClosed:
            return 0
        command = message.get("cmd")
        try:
            if command == "exit":
                return 0
            if command == "attach":
                reply = judge.attach(message["side"], bool(message["value_returning"]), fds[0])
            elif command == "detach":
                judge.detach(message["side"])
                reply = {"event": "detached", "side": message["side"]}
            elif command == "workload":
                reply = judge.workload(message)
            else:
                reply = {"event": "failed", "error": f"unknown command {command!r}"}
        except Exception as exc:
            traceback.print_exc()
            reply = {"event": "failed", "error": f"the judge failed: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        control.send(reply)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
