"""GPU time of one call, from CUPTI activity records (every stream), with a cold L2.

Per timed call: make the inputs (outside the span), flush L2 and reset persisting lines,
synchronize, then bracket the call with CPU timestamps in CUPTI's clock and synchronize again.
Every kernel, memcpy and memset that runs inside the bracket belongs to the call; its GPU time is
last end minus first start. GPU work that runs outside every bracket and is not ours is reported:
that is work a solution tried to keep out of the measurement.
Runs inside a child process; imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

FLUSH_BYTES_MIN = 256 * 1024 * 1024


@dataclass
class Bracket:
    prep_ns: int  # our own work (inputs, L2 flush) runs from here to start_ns
    start_ns: int
    submitted_ns: int
    completed_ns: int


@dataclass
class TimedRun:
    method: str
    gpu_us: list[float]
    host_call_us: list[float]  # CPU time until the call returned (launch overhead and any host work)
    wall_us: list[float]  # start to completion, synchronize included
    activities_per_call: list[int]
    stray: list[dict[str, Any]] = field(default_factory=list)  # GPU work outside every bracket
    kernel_names: list[str] = field(default_factory=list)  # what ran inside the timed calls


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


class CuptiTimer:
    """Collects CONCURRENT_KERNEL, MEMCPY and MEMSET activity records."""

    KIND_NAMES = ("CONCURRENT_KERNEL", "MEMCPY", "MEMSET")

    def __init__(self) -> None:
        from cupti import cupti

        self.cupti = cupti
        self.records: list[tuple[int, int, str]] = []
        self.kinds = [getattr(cupti.ActivityKind, name) for name in self.KIND_NAMES]
        cupti.activity_register_callbacks(self._requested, self._completed)

    @staticmethod
    def _requested() -> tuple[int, int]:
        return 8 * 1024 * 1024, 0

    def _completed(self, activities: list[Any]) -> None:
        for activity in activities:
            name = getattr(activity, "name", None) or type(activity).__name__
            self.records.append((int(activity.start), int(activity.end), str(name)))

    def now(self) -> int:
        return int(self.cupti.get_timestamp())

    def start(self) -> None:
        self.records.clear()
        for kind in self.kinds:
            self.cupti.activity_enable(kind)

    def stop(self) -> list[tuple[int, int, str]]:
        self.cupti.activity_flush_all(1)
        for kind in self.kinds:
            self.cupti.activity_disable(kind)
        return sorted(self.records)


def cupti_available() -> bool:
    try:
        from cupti import cupti  # noqa: F401
    except Exception:
        return False
    return True


def time_calls(
    call: Callable[[int], None],
    prepare: Callable[[int], None],
    *,
    iterations: int,
    flusher: L2Flusher,
    timer: CuptiTimer | None,
) -> TimedRun:
    """Time `iterations` calls; prepare(i) runs outside the span before call(i)."""
    brackets: list[Bracket] = []
    host_call: list[float] = []
    events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
    clock = timer.now if timer else time.perf_counter_ns
    if timer:
        timer.start()
    try:
        for i in range(iterations):
            prep = clock()
            prepare(i)
            flusher()
            torch.cuda.synchronize()
            if timer is None:
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
            start = clock()
            call(i)
            submitted = clock()
            if timer is None:
                end.record()
                events.append((begin, end))
            torch.cuda.synchronize()
            completed = clock()
            brackets.append(Bracket(prep, start, submitted, completed))
            host_call.append((submitted - start) / 1e3)
    finally:
        records = timer.stop() if timer else []
    wall = [(b.completed_ns - b.start_ns) / 1e3 for b in brackets]
    if timer is None:
        gpu = [b.elapsed_time(e) * 1e3 for b, e in events]
        return TimedRun("cuda_events (fallback: current stream only)", gpu, host_call, wall, [1] * len(gpu))
    return _attribute(records, brackets, host_call, wall)


def _attribute(records: list[tuple[int, int, str]], brackets: list[Bracket], host_call: list[float], wall: list[float]) -> TimedRun:
    gpu: list[float] = []
    counts: list[int] = []
    stray: list[dict[str, Any]] = []
    index = 0
    for start, end, name in records:
        while index < len(brackets) and start > brackets[index].completed_ns:
            index += 1
        ours_or_timed = index < len(brackets) and start >= brackets[index].prep_ns
        if not ours_or_timed:
            # Not in a timed call, not in our own input/flush work: something ran on its own.
            stray.append({"name": name[:120], "duration_us": round((end - start) / 1e3, 2)})
    names: set[str] = set()
    for bracket in brackets:
        inside = [(s, e, n) for s, e, n in records if bracket.start_ns <= s <= bracket.completed_ns]
        counts.append(len(inside))
        names.update(n for _, _, n in inside)
        gpu.append((max(e for _, e, _ in inside) - min(s for s, _, _ in inside)) / 1e3 if inside else 0.0)
    return TimedRun("cupti activity records (all streams)", gpu, host_call, wall, counts, stray[:20], sorted(names)[:50])
