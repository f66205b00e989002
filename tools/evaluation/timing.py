"""Clocks of a benchmark: the L2 flush the judge runs before every call, and what the executor
reports about the GPU work of each call (from CUPTI activity records over every stream, or CUDA
events on its stream when CUPTI is missing).

The executor's report is detail, not evidence: the judge times every call with its own events
from outside the executor's process, and the report is checked against that (report.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

FLUSH_BYTES_MIN = 256 * 1024 * 1024
CUPTI = "cupti activity records (all streams)"
EVENTS = "cuda events (fallback: the executor's current stream only)"


class L2Flusher:
    """Writes a buffer larger than L2 so each call starts cold; also resets persisting L2 lines."""

    def __init__(self, device: torch.device) -> None:
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0
        self.bytes = max(FLUSH_BYTES_MIN, 4 * l2)
        self.buffer = torch.empty(self.bytes // 4, dtype=torch.int32, device=device)
        self._reset = _persisting_reset()

    def __call__(self) -> None:
        if self._reset is not None:
            self._reset()
        self.buffer.fill_(0)


def _persisting_reset() -> Callable[[], None] | None:
    """cudaCtxResetPersistingL2Cache through cuda-bindings, when installed."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        return None

    def reset() -> None:
        runtime.cudaCtxResetPersistingL2Cache()

    return reset


def cupti_available() -> bool:
    try:
        from cupti import cupti  # noqa: F401
    except Exception:
        return False
    return True


@dataclass
class Activity:
    start: int
    end: int
    name: str
    kind: str  # kernel | memcpy | memset
    nbytes: int = 0


@dataclass
class CallWork:
    """What ran on the GPU for one call, as the executor saw it."""

    span_us: float  # first activity start to last activity end
    busy_us: float  # union of activity intervals (overlaps merged)
    activities: int
    names: list[str] = field(default_factory=list)


def attribute(activities: list[Activity], windows: list[tuple[int, int]], harness_copies: list[list[int]]) -> list[CallWork]:
    """Split activity records into calls by the host windows that enclose each call, dropping the
    harness's own copies of returned values (the last memcpys of a call, of the outputs' sizes)."""
    ordered = sorted(activities, key=lambda a: a.start)
    out = []
    for (begin, finish), copies in zip(windows, harness_copies):
        inside = [a for a in ordered if begin <= a.start <= finish]
        remaining = list(copies)
        while inside and remaining and inside[-1].kind == "memcpy" and inside[-1].nbytes in remaining:
            remaining.remove(inside.pop().nbytes)
        if not inside:
            out.append(CallWork(0.0, 0.0, 0))
            continue
        span = (max(a.end for a in inside) - min(a.start for a in inside)) / 1e3
        busy, cursor = 0, None
        for a in inside:
            if cursor is None or a.start > cursor:
                busy += a.end - a.start
                cursor = a.end
            elif a.end > cursor:
                busy += a.end - cursor
                cursor = a.end
        out.append(CallWork(round(span, 3), round(busy / 1e3, 3), len(inside), sorted({a.name for a in inside})[:20]))
    return out


class CuptiRecorder:
    """Activity records of every stream while enabled; timestamps in CUPTI's clock."""

    method = CUPTI
    _KINDS = ("CONCURRENT_KERNEL", "MEMCPY", "MEMSET")

    def __init__(self) -> None:
        from cupti import cupti

        self.cupti = cupti
        self.records: list[Activity] = []
        self.kinds = [getattr(cupti.ActivityKind, name) for name in self._KINDS]
        cupti.activity_register_callbacks(self._requested, self._completed)

    @staticmethod
    def _requested() -> tuple[int, int]:
        return 8 * 1024 * 1024, 0

    def _completed(self, activities: list[Any]) -> None:
        for activity in activities:
            kind_name = type(activity).__name__
            kind = "memcpy" if "Memcpy" in kind_name else ("memset" if "Memset" in kind_name else "kernel")
            name = getattr(activity, "name", None) or kind_name
            self.records.append(Activity(int(activity.start), int(activity.end), str(name)[:200], kind, int(getattr(activity, "bytes", 0) or 0)))

    def now(self) -> int:
        return int(self.cupti.get_timestamp())

    def begin(self) -> None:
        self.records.clear()
        for kind in self.kinds:
            self.cupti.activity_enable(kind)

    def finish(self, windows: list[tuple[int, int]], harness_copies: list[list[int]]) -> list[CallWork]:
        self.cupti.activity_flush_all(1)
        for kind in self.kinds:
            self.cupti.activity_disable(kind)
        return attribute(self.records, windows, harness_copies)


class EventRecorder:
    """CUDA events right after the call may start and right after it was launched: the current
    stream only, so work the solution puts on other streams is missed (labelled as such)."""

    method = EVENTS

    def __init__(self) -> None:
        self.pairs: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._open: torch.cuda.Event | None = None

    def now(self) -> int:
        return 0

    def begin(self) -> None:
        self.pairs.clear()

    def mark_start(self) -> None:
        self._open = torch.cuda.Event(enable_timing=True)
        self._open.record()

    def mark_end(self) -> None:
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        assert self._open is not None
        self.pairs.append((self._open, end))

    def finish(self, windows: list[tuple[int, int]], harness_copies: list[list[int]]) -> list[CallWork]:
        torch.cuda.synchronize()
        out = []
        for start, end in self.pairs:
            us = start.elapsed_time(end) * 1e3
            out.append(CallWork(round(us, 3), round(us, 3), 1))
        return out
