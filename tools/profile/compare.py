"""compare_profiles: what changed between two profiles, kernel by kernel."""

from __future__ import annotations

from kda_mcp.tools.profile.models import KernelDelta, KernelProfile, ProfileComparison, ProfileSummary

KEY_METRICS = (
    "registers",
    "shared_dynamic_bytes",
    "waves_per_sm",
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


def _delta(name: str, a: KernelProfile | None, b: KernelProfile | None) -> KernelDelta:
    changes = {}
    for metric in KEY_METRICS:
        va, vb = (getattr(a, metric) if a else None), (getattr(b, metric) if b else None)
        if _changed(va, vb):
            changes[metric] = [va, vb]
    a_us, b_us = (a.duration_us if a else None), (b.duration_us if b else None)
    return KernelDelta(
        name=name,
        a_us=a_us,
        b_us=b_us,
        speedup=round(a_us / b_us, 4) if a_us and b_us else None,
        changes=changes or None,
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
