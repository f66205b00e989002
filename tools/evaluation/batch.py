"""One timed batch: warm-up, then timed calls over rotating input sets refilled with fresh data.

Shared by the solution child (timing a candidate) and the judge (timing the same routine around
a call that does nothing, which measures what the harness itself costs for this workload).
Runs inside a child process; imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from kda_mcp.tools.evaluation.timing import CuptiTimer, L2Flusher, TimedRun, time_calls


@dataclass
class Batch:
    run: TimedRun
    sets: int
    regenerate: bool
    set_inputs: list[list[Any]]
    set_outputs: list[list[Any]]
    last_seed: list[int]
    warmup: int
    iterations: int
    seconds: float  # warm-up plus timed calls, measured in this process


def input_bytes(inputs: list[Any]) -> int:
    return sum(t.numel() * t.element_size() for t in inputs if isinstance(t, torch.Tensor))


def timed_batch(
    call: Callable[[list[Any], list[Any]], Any],
    make_inputs: Callable[[int], list[Any]],
    make_outputs: Callable[[list[Any]], list[Any]],
    *,
    config: dict[str, Any],
    seed: int,
    flusher: L2Flusher,
    timer: CuptiTimer | None,
    iterations: int | None = None,
) -> Batch:
    first = make_inputs(seed)
    size = input_bytes(first)
    # Several input sets with distinct storage, each refilled with fresh data before its call:
    # a cache keyed on pointers or on input contents misses, and its stale outputs are caught.
    # (L2 is flushed before every call anyway, so more sets would only cost memory.)
    sets = config["rotation_sets"]
    while sets > 2 and sets * size > config["rotation_budget_bytes"]:
        sets -= 1
    regenerate = size <= config["regenerate_limit_bytes"]
    set_inputs = [first] + [make_inputs(seed + 1000 * k) for k in range(1, sets)]
    set_outputs = [make_outputs(inputs) for inputs in set_inputs]
    last_seed = [seed + 1000 * k for k in range(sets)]

    def one(i: int) -> None:
        call(set_inputs[i % sets], set_outputs[i % sets])

    def refill(i: int) -> None:
        k = i % sets
        if not regenerate or i < sets:
            return
        last_seed[k] = seed + 7919 * (i + 1)
        for dst, src in zip(set_inputs[k], make_inputs(last_seed[k])):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)

    started = time.perf_counter()
    warmup = config["warmup"]
    for i in range(warmup):
        one(i)
    torch.cuda.synchronize()
    estimate = max((time.perf_counter() - started) / max(warmup, 1), 1e-6)
    if iterations is None:
        iterations = config["iterations"] or int(min(config["max_iterations"], max(config["min_iterations"], config["target_seconds"] / estimate)))
    run = time_calls(one, refill, iterations=iterations, flusher=flusher, timer=timer)
    torch.cuda.synchronize()
    return Batch(run, sets, regenerate, set_inputs, set_outputs, last_seed, warmup, iterations, time.perf_counter() - started)
