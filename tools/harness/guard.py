"""Defences inside the solution child: notice a solution patching the harness, and record calls
to operations the definition forbids.

A solution shares this process, so nothing here is a wall: a determined solution can defeat it.
That is why the orchestrator also checks what it can measure from outside (the wall time of each
timed batch) and the judge recomputes everything that decides correctness.
"""

from __future__ import annotations

import functools
import importlib
from collections import Counter
from typing import Any

# Functions the measurement relies on: replacing any of them (or their code) is tampering.
WATCHED = (
    "time.perf_counter",
    "time.perf_counter_ns",
    "time.monotonic",
    "torch.cuda.synchronize",
    "torch.cuda.Event",
    "torch.cuda.current_stream",
    "torch.Tensor.copy_",
    "torch.Tensor.fill_",
    "torch.Tensor.cpu",
    "torch.Tensor.contiguous",
    "torch.manual_seed",
    "torch.randn",
    "torch.empty",
    "safetensors.torch.save_file",
    "cupti.cupti.get_timestamp",
    "cupti.cupti.activity_enable",
    "cupti.cupti.activity_disable",
    "cupti.cupti.activity_flush_all",
    "flashinfer_bench.bench.utils.gen_inputs",
    "kda_mcp.tools.evaluation.timing.time_calls",
    "kda_mcp.tools.evaluation.timing._attribute",
    "kda_mcp.tools.evaluation.timing.CuptiTimer._completed",
    "kda_mcp.tools.evaluation.timing.CuptiTimer.stop",
    "kda_mcp.tools.evaluation.timing.L2Flusher.__call__",
    "kda_mcp.tools.evaluation.batch.timed_batch",
    "kda_mcp.tools.evaluation.batch.time_calls",
    "kda_mcp.tools.harness.inputs.make_inputs",
    "kda_mcp.tools.harness.inputs.allocate_outputs",
    "kda_mcp.tools.evaluation.solution_child.send",
    "kda_mcp.tools.evaluation.solution_child.Candidate.call",
    "kda_mcp.tools.evaluation.solution_child.Candidate.trials",
    "kda_mcp.tools.evaluation.solution_child.Candidate.time",
    "kda_mcp.tools.evaluation.solution_child.Candidate.check_objects",
)


def resolve(dotted: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, value) for 'package.module.Class.attr', or None if it does not exist."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:-1]:
                owner = getattr(owner, name)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            return None
    return None


def _fingerprint(value: Any) -> tuple[int, int]:
    code = getattr(value, "__code__", None) or getattr(getattr(value, "__func__", None), "__code__", None)
    return id(value), id(code) if code is not None else 0


class HarnessGuard:
    """Snapshot of the watched functions; `changed()` names those replaced since."""

    def __init__(self, names: tuple[str, ...] = WATCHED) -> None:
        self.snapshot: dict[str, tuple[int, int]] = {}
        for name in names:
            found = resolve(name)
            if found is not None:
                self.snapshot[name] = _fingerprint(found[2])

    def changed(self) -> list[str]:
        out = []
        for name, before in self.snapshot.items():
            found = resolve(name)
            if found is None or _fingerprint(found[2]) != before:
                out.append(name)
        return out


class ForbiddenCalls:
    """Wraps each forbidden callable so calls are counted (and still performed)."""

    def __init__(self, names: list[str]) -> None:
        self.calls: Counter[str] = Counter()
        self._originals: list[tuple[Any, str, Any]] = []
        for name in names:
            found = resolve(name)
            if found is None or not callable(found[2]):
                continue
            owner, attribute, original = found
            try:
                setattr(owner, attribute, self._wrap(name, original))
                self._originals.append((owner, attribute, original))
            except (AttributeError, TypeError):
                continue  # a C type that refuses new attributes; the static check still covers it

    def _wrap(self, name: str, original: Any) -> Any:
        @functools.wraps(original)
        def recorder(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return original(*args, **kwargs)

        return recorder

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._originals):
            setattr(owner, attribute, original)
        self._originals.clear()

    def take(self) -> dict[str, int]:
        seen = dict(self.calls)
        self.calls.clear()
        return seen
