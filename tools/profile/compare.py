"""compare_profiles: what changed between two profiles, kernel by kernel."""

from __future__ import annotations

from kda_mcp.tools.profile.models import KernelDelta, KernelProfile, ProfileComparison, ProfileSummary, StallShift

KEY_METRICS = (
    "registers",
    "shared_dynamic_bytes",
    "waves_per_sm",
    "occupancy_theoretical_pct",
    "occupancy_achieved_pct",
    "compute_throughput_pct",
    "memory_throughput_pct",
    "dram_throughput_pct",
    "l2_hit_pct",
    "sectors_per_request",
    "tensor_pipe_pct",
    "local_memory_bytes",
)


def _changed(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a != b
    scale = max(abs(a), abs(b), 1e-9)
    return abs(a - b) / scale > 0.05


STALL_MOVE = 0.02  # two points of the stall total
MAX_STALL_SHIFTS = 6


def stall_shifts(a: KernelProfile | None, b: KernelProfile | None) -> list[StallShift]:
    """Stall reasons whose share moved by at least STALL_MOVE, largest move first. A reason missing
    from one side's list had under 1% there (profiles list every reason from 1%) and counts as 0."""
    shares_a = {s.reason: s.share for s in (a.stalls or [])} if a else {}
    shares_b = {s.reason: s.share for s in (b.stalls or [])} if b else {}
    shifts = []
    for reason in dict.fromkeys([*shares_b, *shares_a]):
        va, vb = shares_a.get(reason), shares_b.get(reason)
        moved = round((vb or 0.0) - (va or 0.0), 3)
        if abs(moved) >= STALL_MOVE:
            shifts.append(StallShift(reason=reason, a_share=va, b_share=vb, moved=moved))
    shifts.sort(key=lambda s: -abs(s.moved))
    return shifts[:MAX_STALL_SHIFTS]


def _headline(a_us: float | None, b_us: float | None, shifts: list[StallShift]) -> str | None:
    parts = []
    if a_us and b_us:
        parts.append(f"{a_us:.2f} us -> {b_us:.2f} us ({'B faster' if b_us < a_us else 'B slower' if b_us > a_us else 'same'}, {a_us / b_us:.3f}x)")
    if shifts:
        top = shifts[0]
        was = f"{top.a_share:.1%}" if top.a_share is not None else "under 1%"
        now = f"{top.b_share:.1%}" if top.b_share is not None else "under 1%"
        parts.append(f"largest stall shift: {top.reason} {was} -> {now} of stalls")
    return "; ".join(parts) or None


def _delta(name: str, a: KernelProfile | None, b: KernelProfile | None) -> KernelDelta:
    changes = {}
    for metric in KEY_METRICS:
        va, vb = (getattr(a, metric) if a else None), (getattr(b, metric) if b else None)
        if _changed(va, vb):
            changes[metric] = [va, vb]
    a_us, b_us = (a.duration_us if a else None), (b.duration_us if b else None)
    shifts = stall_shifts(a, b)
    return KernelDelta(
        name=name,
        a_us=a_us,
        b_us=b_us,
        speedup=round(a_us / b_us, 4) if a_us and b_us else None,
        changes=changes or None,
        stall_shifts=shifts or None,
        headline=_headline(a_us, b_us, shifts),
        bottleneck=[a.bottleneck.label if a and a.bottleneck else None, b.bottleneck.label if b and b.bottleneck else None],
    )


def compare(a: ProfileSummary, b: ProfileSummary) -> ProfileComparison:
    """Kernels are matched by name (in launch order for repeated names)."""

    def keyed(summary: ProfileSummary) -> dict[str, KernelProfile]:
        seen: dict[str, int] = {}
        out = {}
        for kernel in summary.kernels:
            seen[kernel.name] = seen.get(kernel.name, 0) + 1
            out[kernel.name if seen[kernel.name] == 1 else f"{kernel.name}#{seen[kernel.name]}"] = kernel
        return out

    ka, kb = keyed(a), keyed(b)
    common = [n for n in ka if n in kb]
    deltas = [_delta(n, ka[n], kb[n]) for n in common]
    # A renamed kernel (new version of the same solution) is still worth comparing: pair the
    # leftovers in launch order when both sides have exactly one.
    only_a, only_b = [n for n in ka if n not in kb], [n for n in kb if n not in ka]
    if len(only_a) == 1 and len(only_b) == 1:
        deltas.append(_delta(f"{only_a[0]} -> {only_b[0]}", ka[only_a[0]], kb[only_b[0]]))
        only_a, only_b = [], []
    total_a, total_b = a.total_duration_us, b.total_duration_us
    return ProfileComparison(
        a=a.profile_id,
        b=b.profile_id,
        total_a_us=total_a,
        total_b_us=total_b,
        speedup=round(total_a / total_b, 4) if total_a and total_b else None,
        kernels=deltas,
        only_in_a=only_a or None,
        only_in_b=only_b or None,
    )
