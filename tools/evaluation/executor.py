"""The executor: the only process where a solution's code runs. It executes, and decides nothing.

    python -m kda_mcp.tools.evaluation.executor [--warm]

It runs as a sandbox user, reads its ExecutorSpec on stdin and talks to the judge over the
socket it inherited (fd in KDA_JUDGE_FD). The judge owns the inputs and outputs (shared GPU
memory this process maps), their contents, the clock and every verdict. Here, per call: the
stream waits on the GPU until the judge's `go`, the solution runs, the stream writes `done`
(for a value-returning solution: then waits for `copy_go`, copies the returned tensors into
the judge's output buffers, writes `copied`). What this process reports (its own view of the
GPU work per call, from CUPTI) is only ever compared with the judge's measurement.

Any failure is reported and ends the process, so the next workload gets a clean CUDA context.
"""

from __future__ import annotations

import ctypes
import os
import sys
import traceback
from typing import Any

PR_SET_DUMPABLE = 4


def _harden() -> None:
    # First thing, before any solution code: other processes of this user may not trace this
    # one or read its memory (exec made it dumpable again).
    try:
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Executor:
    def __init__(self, spec: Any, wire: Any) -> None:
        import torch
        from flashinfer_bench.data import Definition, Solution

        self.torch = torch
        self.spec = spec
        self.wire = wire
        self.solution = Solution.model_validate_json(spec.solution)
        self.definition = Definition.model_validate_json(spec.definition)
        self.dps = self.solution.spec.destination_passing_style
        self.entry: Any = None
        self.forbidden: Any = None
        self.recorder: Any = None
        self.flags: dict[str, Any] = {}
        self.data: Any = None
        self.sets: list[dict[str, list[Any]]] = []
        self.stream = 0

    # ---- setup

    def load(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        from pathlib import Path

        from kda_mcp.tools.evaluation import channel
        from kda_mcp.tools.evaluation.timing import CuptiRecorder, EventRecorder, cupti_available
        from kda_mcp.tools.harness.loading import load_entry
        from kda_mcp.tools.harness.policy_hooks import ForbiddenCalls

        torch = self.torch
        torch.zeros(1, device="cuda")  # the CUDA context, before mapping anything
        self.stream = torch.cuda.current_stream().cuda_stream
        size = int(message["flag_size"])  # the allocation's real size (a multiple of the granularity)
        self.flags = {"judge": channel.import_fd(fds[0], size, readonly=True), "mine": channel.import_fd(fds[1], size)}
        self.recorder = CuptiRecorder() if cupti_available() and not self.spec.force_cuda_events else EventRecorder()
        self.forbidden = ForbiddenCalls(self.spec.forbidden_calls)
        self.entry = load_entry(self.solution, Path(self.spec.source_dir), self.spec.library)
        return {"event": "ready", "method": self.recorder.method, "pid": os.getpid()}

    def map(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        from flashinfer_bench.utils import dtype_str_to_torch_dtype

        from kda_mcp.tools.evaluation import channel

        if self.data is not None:
            self.sets = []
            self.data.release()
        layout = message["layout"]
        self.data = channel.import_fd(fds[0], int(layout["size"]))
        self.sets = []
        for placed in layout["sets"]:
            entry: dict[str, list[Any]] = {"inputs": [], "outputs": []}
            for role in ("inputs", "outputs"):
                for item in placed[role]:
                    if item.get("scalar"):
                        entry[role].append(None)
                        continue
                    dtype = dtype_str_to_torch_dtype(item["dtype"])
                    entry[role].append(channel.tensor_at(self.data.ptr + int(item["offset"]), int(item["nbytes"]), dtype, list(item["shape"])))
            self.sets.append(entry)
        return {"event": "mapped"}

    # ---- calls

    def calls(self, message: dict[str, Any]) -> dict[str, Any]:
        from kda_mcp.tools.evaluation import channel

        torch = self.torch
        go = self.flags["judge"].ptr + channel.GO
        copy_go = self.flags["judge"].ptr + channel.COPY_GO
        done = self.flags["mine"].ptr + channel.DONE
        copied = self.flags["mine"].ptr + channel.COPIED
        scalars = message.get("scalars", {})
        names = list(self.definition.inputs)
        windows: list[tuple[int, int]] = []
        host_us: list[float] = []
        copies: list[list[int]] = []
        recorder = self.recorder
        recorder.begin()
        for seq, k in message["calls"]:
            buffers = self.sets[int(k)]
            args = [scalars[name] if tensor is None else tensor for name, tensor in zip(names, buffers["inputs"])]
            outputs = buffers["outputs"]
            start = recorder.now()
            channel.wait_at_least(self.stream, go, seq)
            if hasattr(recorder, "mark_start"):
                recorder.mark_start()
            with torch.no_grad():
                result = self.entry(*args, *outputs) if self.dps else self.entry(*args)
            launched = recorder.now()
            if hasattr(recorder, "mark_end"):
                recorder.mark_end()
            self.wire.send({"event": "enqueued", "seq": seq})
            problem = None
            if self.dps:
                channel.write_flag(self.stream, done, seq)
                copies.append([])
            else:
                channel.write_flag(self.stream, done, seq)
                channel.wait_at_least(self.stream, copy_go, seq)
                problem = self._copy_result(result, outputs)
                channel.write_flag(self.stream, copied, seq)
                copies.append([o.numel() * o.element_size() for o in outputs])
            torch.cuda.synchronize()
            finish = recorder.now()
            if problem:
                return {"event": "error", "seq": seq, "status": problem[0], "error": problem[1]}
            windows.append((start, finish))
            host_us.append((launched - start) / 1e3)
        work = recorder.finish(windows, copies)
        return {
            "event": "calls_done",
            "span_us": [w.span_us for w in work],
            "busy_us": [w.busy_us for w in work],
            "activities": [w.activities for w in work],
            "names": sorted({n for w in work for n in w.names})[:50],
            "host_us": [round(h, 2) for h in host_us],
            "forbidden_calls": self.forbidden.take(),
        }

    def _copy_result(self, result: Any, outputs: list[Any]) -> tuple[str, str] | None:
        torch = self.torch
        produced = list(result) if isinstance(result, (tuple, list)) else [result]
        names = list(self.definition.outputs)
        if len(produced) != len(outputs):
            return "INCORRECT_SHAPE", f"returned {len(produced)} outputs, the definition has {len(outputs)} ({', '.join(names)})"
        for name, value, out in zip(names, produced, outputs):
            if not isinstance(value, torch.Tensor):
                return "RUNTIME_ERROR", f"output {name!r} is a {type(value).__name__}, not a torch.Tensor"
            if tuple(value.shape) != tuple(out.shape):
                return "INCORRECT_SHAPE", f"output {name!r} has shape {tuple(value.shape)}, expected {tuple(out.shape)}"
            if value.dtype != out.dtype:
                return "INCORRECT_DTYPE", f"output {name!r} has dtype {value.dtype}, expected {out.dtype}"
            if value.device.type != "cuda":
                return "RUNTIME_ERROR", f"output {name!r} lives on {value.device}, not on the GPU"
            out.copy_(value)
        return None


def warm_up() -> None:
    """Import what every job needs (CPU only: no CUDA context until a spec arrives), then say so."""
    import torch  # noqa: F401
    from flashinfer_bench.data import Definition  # noqa: F401

    import kda_mcp.tools.evaluation.channel  # noqa: F401
    import kda_mcp.tools.evaluation.timing as timing
    import kda_mcp.tools.harness.loading  # noqa: F401
    import kda_mcp.tools.harness.policy_hooks  # noqa: F401

    timing.cupti_available()


def main(argv: list[str]) -> int:
    _harden()
    from kda_mcp.tools.evaluation.wire import Wire, WireClosed
    from kda_mcp.tools.sandbox.specs import ExecutorSpec, announce_warm, read_spec

    if "--warm" in argv:
        warm_up()
        announce_warm()
    spec = read_spec(ExecutorSpec, [])
    wire = Wire.from_fd(int(os.environ["KDA_JUDGE_FD"]))
    # From here on, anything printed (by the solution, its libraries, printf in host code) goes
    # to stderr, the log; the protocol has the socket to itself.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    executor = Executor(spec, wire)
    try:
        message, fds = wire.recv()
        if message.get("cmd") != "load":
            return 2
        reply = executor.load(message, fds)
    except WireClosed:
        return 0
    except BaseException as exc:
        wire.send({"event": "load_failed", "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()[-4000:]})
        return 0
    wire.send(reply)
    while True:
        try:
            message, fds = wire.recv()
        except WireClosed:
            return 0
        command = message.get("cmd")
        if command == "exit":
            return 0
        try:
            if command == "map":
                reply = executor.map(message, fds)
            elif command == "calls":
                reply = executor.calls(message)
            else:
                reply = {"event": "error", "status": "RUNTIME_ERROR", "error": f"unknown command {command!r}"}
        except BaseException as exc:  # a CUDA error poisons the context: report, then leave
            try:
                wire.send({"event": "error", "status": "RUNTIME_ERROR", "error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()[-4000:]})
            finally:
                os._exit(3)
        wire.send(reply)
        if reply.get("event") == "error":
            os._exit(3)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
