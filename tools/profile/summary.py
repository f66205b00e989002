"""From an .ncu-rep to facts an agent can act on.

Metric names differ between GPU architectures and ncu versions, so every fact is looked up
through a list of candidate names and left out when the report has none of them.
Reads reports with NVIDIA's `ncu_report` module (PyPI `ncu-report`, or the toolkit's copy).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from kda_mcp.tools.errors import UnavailableError
from kda_mcp.tools.profile.models import Bottleneck, Evidence, Finding, KernelProfile, Roofline, SourceLine, StallReason

# Candidate metric names, most specific first.
M = {
    "duration_ns": ["gpu__time_duration.sum"],
    "grid": ["launch__grid_size"],
    "block": ["launch__block_size"],
    "registers": ["launch__registers_per_thread"],
    "smem_static": ["launch__shared_mem_per_block_static"],
    "smem_dynamic": ["launch__shared_mem_per_block_dynamic"],
    "waves": ["launch__waves_per_multiprocessor"],
    "occ_theoretical": ["sm__maximum_warps_per_active_cycle_pct"],
    "occ_achieved": ["sm__warps_active.avg.pct_of_peak_sustained_active"],
    "compute_pct": ["sm__throughput.avg.pct_of_peak_sustained_elapsed"],
    "memory_pct": ["gpu__compute_memory_throughput.avg.pct_of_peak_sustained_elapsed"],
    "dram_pct": ["gpu__dram_throughput.avg.pct_of_peak_sustained_elapsed", "dram__throughput.avg.pct_of_peak_sustained_elapsed"],
    "l2_hit": ["lts__t_sector_hit_rate.pct"],
    "l1_hit": ["l1tex__t_sector_hit_rate.pct"],
    "ld_sectors": ["l1tex__t_sectors_pipe_lsu_mem_global_op_ld.sum"],
    "ld_requests": ["l1tex__t_requests_pipe_lsu_mem_global_op_ld.sum"],
    "tensor_pct": [
        "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
        "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
        "sm__pipe_tensor_cycles_active.avg.pct_of_peak_sustained_active",
        "sm__inst_executed_pipe_tensor.avg.pct_of_peak_sustained_active",
    ],
    "local_ld": ["l1tex__t_sectors_pipe_lsu_mem_local_op_ld.sum"],
    "local_st": ["l1tex__t_sectors_pipe_lsu_mem_local_op_st.sum"],
    "dram_bytes_per_s": ["dram__bytes.sum.per_second"],
    "dram_peak_bytes_per_cycle": ["dram__bytes.sum.peak_sustained"],
    "dram_cycles_per_s": ["dram__cycles_elapsed.avg.per_second"],
    "sm_cycles_per_s": ["sm__cycles_elapsed.avg.per_second", "gpc__cycles_elapsed.avg.per_second"],
    "sm_count": ["device__attribute_multiprocessor_count", "launch__sm_count"],
}
OCCUPANCY_LIMITS = {
    "registers": "launch__occupancy_limit_registers",
    "shared memory": "launch__occupancy_limit_shared_mem",
    "blocks per SM": "launch__occupancy_limit_blocks",
    "warps per SM": "launch__occupancy_limit_warps",
    "barriers": "launch__occupancy_limit_barriers",
}
FLOP_METRICS = {  # SASS thread instructions -> FLOPs each
    "sm__sass_thread_inst_executed_op_fadd_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_fmul_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_ffma_pred_on.sum": 2,
    "sm__sass_thread_inst_executed_op_hadd_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_hmul_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_hfma_pred_on.sum": 2,
    "sm__sass_thread_inst_executed_op_dadd_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_dmul_pred_on.sum": 1,
    "sm__sass_thread_inst_executed_op_dfma_pred_on.sum": 2,
}
STALL = re.compile(r"^smsp__average_warps_issue_stalled_(\w+?)_per_issue_active\.ratio$")
HIGH, LOW = 60.0, 40.0
STALL_MIN_SHARE, STALL_MAX = 0.01, 10


def load(report: Path) -> Any:
    try:
        import ncu_report  # type: ignore[import-not-found]
    except ImportError:
        ncu_report = _toolkit_ncu_report()
    return ncu_report.load_report(str(report))


def _toolkit_ncu_report() -> Any:
    import glob
    import importlib
    import sys

    for folder in sorted(glob.glob("/opt/nvidia/nsight-compute/*/extras/python")) + sorted(glob.glob("/usr/local/cuda*/nsight-compute*/extras/python")):
        sys.path.append(folder)
        try:
            return importlib.import_module("ncu_report")
        except ImportError:
            sys.path.remove(folder)
    raise UnavailableError("Reading .ncu-rep files needs NVIDIA's ncu_report module: pip install ncu-report.")


class _Metrics:
    """Metric lookups on one action (kernel), tolerant of absent names."""

    def __init__(self, action: Any) -> None:
        self.action = action
        self.names = set(action.metric_names())

    def get(self, key: str) -> float | None:
        for name in M.get(key, [key]):
            if name in self.names:
                value = self.action.metric_by_name(name).value()
                if isinstance(value, (int, float)):
                    return float(value)
        return None

    def raw(self, name: str) -> float | None:
        if name not in self.names:
            return None
        value = self.action.metric_by_name(name).value()
        return float(value) if isinstance(value, (int, float)) else None


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _stalls(metrics: _Metrics) -> list[StallReason]:
    values = {}
    for name in metrics.names:
        match = STALL.match(name)
        if match and match.group(1) not in ("not_issued",):
            value = metrics.raw(name)
            if value:
                values[match.group(1)] = value
    total = sum(values.values()) or 1.0
    # Every reason with at least STALL_MIN_SHARE of the total (at most STALL_MAX), so that
    # compare_profiles can tell a reason that appeared from one that was merely off a top five.
    ranked = sorted(values.items(), key=lambda kv: -kv[1])
    kept = [(k, v) for i, (k, v) in enumerate(ranked) if i < 5 or (v / total >= STALL_MIN_SHARE and i < STALL_MAX)]
    return [StallReason(reason=k, warps_per_issue=round(v, 3), share=round(v / total, 3)) for k, v in kept]


def _findings(action: Any) -> list[Finding]:
    findings = []
    for rule in action.rule_results_as_dicts():
        message = rule.get("rule_message") or {}
        text = message.get("message", "") if isinstance(message, dict) else str(message)
        kind = message.get("type") if isinstance(message, dict) else None
        if not text or str(kind).endswith("OK") or "NONE" in str(kind):
            continue
        speedup = (rule.get("speedup_estimation") or {}).get("speedup")
        findings.append(
            Finding(
                rule=rule.get("rule_identifier", ""),
                title=(message.get("title") if isinstance(message, dict) else None) or rule.get("name", ""),
                message=re.sub(r"@\w+:[^:@]*:([^@]*)@", r"\1", text)[:600],
                estimated_speedup_pct=_r(speedup),
            )
        )
    return sorted(findings, key=lambda f: -(f.estimated_speedup_pct or 0))


def _source_lines(action: Any, limit: int = 8) -> list[SourceLine]:
    """Sampled stall counts per source line, from the per-PC sampling metrics (source set)."""
    names = set(action.metric_names())
    sample_metric = next((n for n in ("smsp__pcsamp_sample_count", "smsp__pcsamp_warps_issue_stalled_total") if n in names), None)
    if sample_metric is None:
        return []
    metric = action.metric_by_name(sample_metric)
    if not metric.has_correlation_ids():
        return []
    pcs = metric.correlation_ids()
    per_line: dict[tuple[str, int], int] = defaultdict(int)
    reasons: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    stall_metrics = {n: action.metric_by_name(n) for n in names if n.startswith("smsp__pcsamp_warps_issue_stalled_") and not n.endswith(("_not_issued", "_total"))}
    for i in range(metric.num_instances()):
        pc = pcs.as_uint64(i)
        info = action.source_info(pc)
        if info is None or not info.file_name():
            continue
        key = (info.file_name(), int(info.line()))
        per_line[key] += int(metric.as_uint64(i))
        for name, stall in stall_metrics.items():
            if stall.has_correlation_ids() and i < stall.num_instances():
                count = int(stall.as_uint64(i))
                if count:
                    reasons[key][name.removeprefix("smsp__pcsamp_warps_issue_stalled_")] += count
    ranked = sorted(per_line.items(), key=lambda kv: -kv[1])[:limit]
    return [
        SourceLine(
            file=Path(file).name,
            line=line,
            samples=count,
            top_stalls=[r for r, _ in sorted(reasons[(file, line)].items(), key=lambda kv: -kv[1])[:3]] or None,
        )
        for (file, line), count in ranked
        if count > 0
    ]


TENSOR_OPS = re.compile(r"^sm__ops_path_tensor_src_(\w+)\.sum$")


def _roofline(metrics: _Metrics, duration_s: float | None) -> Roofline | None:
    """Achieved FLOP/s and DRAM bytes/s against the GPU's peaks, and the arithmetic intensity."""
    if not duration_s:
        return None
    scalar = sum((metrics.raw(name) or 0.0) * weight for name, weight in FLOP_METRICS.items())
    tensor = {}
    for name in metrics.names:
        match = TENSOR_OPS.match(name)
        if match and (metrics.raw(name) or 0) > 0:
            tensor[match.group(1)] = metrics.raw(name) or 0.0
    flops = scalar + sum(tensor.values())
    has_flops = bool(tensor) or any(name in metrics.names for name in FLOP_METRICS)
    bytes_per_s = metrics.get("dram_bytes_per_s")
    per_cycle, dram_hz = metrics.get("dram_peak_bytes_per_cycle"), metrics.get("dram_cycles_per_s")
    if bytes_per_s is None and not has_flops:
        return None
    dram = bytes_per_s * duration_s if bytes_per_s is not None else None
    sm_hz, sm_count = metrics.get("sm_cycles_per_s"), metrics.get("sm_count")
    peak_fp32 = sm_hz * sm_count * 128 * 2 if sm_hz and sm_count else None  # 128 FP32 lanes per SM, FMA = 2 FLOPs
    peak_tensor = None
    if tensor:
        dominant = max(tensor, key=tensor.get)
        dense = metrics.raw(f"sm__ops_path_tensor_op_hgmma_src_{dominant}_sparsity_off.sum.peak_sustained_elapsed.per_second")
        peak_tensor = dense or metrics.raw(f"sm__ops_path_tensor_src_{dominant}.sum.peak_sustained_elapsed.per_second")
    return Roofline(
        flops=flops if has_flops else None,
        dram_bytes=_r(dram, 0),
        arithmetic_intensity=_r(flops / dram, 3) if has_flops and dram else None,
        achieved_tflops=_r(flops / duration_s / 1e12, 3) if has_flops else None,
        achieved_dram_tb_s=_r(bytes_per_s / 1e12, 3) if bytes_per_s is not None else None,
        peak_dram_tb_s=_r(per_cycle * dram_hz / 1e12, 3) if per_cycle and dram_hz else None,
        peak_tflops_fp32=_r(peak_fp32 / 1e12, 1) if peak_fp32 else None,
        peak_tflops_tensor=_r(peak_tensor / 1e12, 1) if peak_tensor else None,
        note=(f"tensor-core FLOPs ({', '.join(sorted(tensor))}) included" if tensor else "FLOPs from FP32/FP16/FP64 SASS arithmetic")
        if has_flops
        else "FLOP counters not collected in this set (use set='full')",
    )


SHORT_US = 5.0


def occupancy_limiter(limits: dict[str, float | None], theoretical_pct: float | None) -> str | None:
    """What caps theoretical occupancy: the resource(s) allowing the fewest blocks per SM, joined
    with ' and ' when they tie (lowering one alone then gains nothing). At 100% theoretical
    occupancy nothing the kernel uses caps it; the SM's own warp slots are full."""
    known = {label: value for label, value in limits.items() if value is not None and value > 0}
    if not known:
        return None
    if theoretical_pct is not None and theoretical_pct >= 99.95:
        return "none (theoretical occupancy is 100%)"
    fewest = min(known.values())
    return " and ".join(label for label, value in known.items() if value == fewest)


def _blocks(k: KernelProfile) -> int | None:
    if not k.grid:
        return None
    total = 1
    for dim in k.grid:
        total *= dim
    return total


def classify(k: KernelProfile) -> Bottleneck:
    """The one label that best explains where the time goes, with the measured fields behind it.

    Every label follows from the fields it cites. ncu's duration is GPU time only (no launch, no
    host), so no label here speaks of launch or host overhead: a short kernel gets the secondary
    label short-kernel, and run_benchmark's host_call_us / launch_bound say whether launching it
    costs more than running it.
    """
    compute = max(k.compute_throughput_pct or 0.0, k.tensor_pipe_pct or 0.0)
    dram, memory = k.dram_throughput_pct or 0.0, max(k.memory_throughput_pct or 0.0, k.dram_throughput_pct or 0.0)
    evidence = lambda *pairs: [Evidence(metric=m, value=_r(v), unit=u) for m, v, u in pairs if v is not None]  # noqa: E731
    throughput = [("compute_throughput_pct", k.compute_throughput_pct, "%"), ("memory_throughput_pct", k.memory_throughput_pct, "%"), ("dram_throughput_pct", k.dram_throughput_pct, "%")]
    secondary = []
    if (k.local_memory_bytes or 0) > 0:
        secondary.append("register-spills")
    short = k.duration_us is not None and k.duration_us < SHORT_US
    if short:
        secondary.append("short-kernel")
    blocks = _blocks(k)
    if dram >= HIGH and dram >= compute:
        label, reason = "memory-bound", f"DRAM throughput is {dram:.0f}% of peak and above compute ({compute:.0f}%)"
        ev = evidence(*throughput, ("l2_hit_pct", k.l2_hit_pct, "%"), ("sectors_per_request", k.sectors_per_request, None))
    elif compute >= HIGH:
        # An on-chip memory unit (shared memory, L1, L2) can read busier than the math pipes in a
        # well-fed GEMM; the pipes near peak are what bound it.
        label, reason = "compute-bound", f"compute throughput is {compute:.0f}% of peak (tensor pipe {k.tensor_pipe_pct or 0:.0f}%); DRAM is at {dram:.0f}%"
        ev = evidence(*throughput, ("tensor_pipe_pct", k.tensor_pipe_pct, "%"))
    elif memory >= HIGH:
        label, reason = "memory-bound", f"on-chip memory (L1/shared/L2) throughput is {memory:.0f}% of peak while DRAM is at {dram:.0f}% and compute at {compute:.0f}%"
        ev = evidence(*throughput, ("l1_hit_pct", k.l1_hit_pct, "%"), ("l2_hit_pct", k.l2_hit_pct, "%"))
    elif k.waves_per_sm is not None and 0 < k.waves_per_sm < 1:
        label = "small-grid"
        if blocks is not None and k.sm_count and blocks < k.sm_count:
            reason = f"{blocks} blocks for {k.sm_count} SMs ({k.waves_per_sm:.2f} waves): {k.sm_count - blocks} SMs get no block, and neither compute ({compute:.0f}%) nor memory ({memory:.0f}%) is near peak"
        else:
            reason = f"{k.waves_per_sm:.2f} waves: the grid fills {k.waves_per_sm:.0%} of the block slots the GPU holds at once, too few warps to hide latency (compute {compute:.0f}%, memory {memory:.0f}%)"
        ev = evidence(("grid_blocks", blocks, None), ("sm_count", k.sm_count, None), ("waves_per_sm", k.waves_per_sm, None), *throughput)
    elif k.waves_per_sm is not None and 0 < k.waves_per_sm < 4 and (k.waves_per_sm % 1) and (k.waves_per_sm % 1) <= 0.5 and max(compute, memory) >= LOW:
        label = "tail-effect"
        reason = f"{k.waves_per_sm:.2f} waves per SM: the last partial wave leaves most SMs idle"
        ev = evidence(("waves_per_sm", k.waves_per_sm, None), *throughput)
    elif k.occupancy_achieved_pct is not None and (k.occupancy_achieved_pct < 25 or (k.occupancy_theoretical_pct and k.occupancy_achieved_pct < 0.5 * k.occupancy_theoretical_pct)):
        label = "occupancy-limited"
        limiter = k.occupancy_limiter or "unknown"
        cap = f"limited by {limiter}" if not limiter.startswith("none") else "no resource caps it"
        reason = f"achieved occupancy {k.occupancy_achieved_pct:.0f}% (theoretical {k.occupancy_theoretical_pct or 0:.0f}%, {cap}) with both throughputs low"
        ev = evidence(("occupancy_achieved_pct", k.occupancy_achieved_pct, "%"), ("occupancy_theoretical_pct", k.occupancy_theoretical_pct, "%"), ("registers", k.registers, None), *throughput)
        for resource, per_sm in (k.occupancy_limits or {}).items():
            ev.append(Evidence(metric=f"blocks_per_sm_by_{resource.replace(' ', '_')}", value=per_sm))
    else:
        label = "latency-bound"
        top = k.stalls[0].reason if k.stalls else "unknown"
        reason = f"neither compute ({compute:.0f}%) nor memory ({memory:.0f}%) is near peak; warps mostly wait ({top})"
        ev = evidence(*throughput, ("occupancy_achieved_pct", k.occupancy_achieved_pct, "%"))
        if k.stalls:
            ev.append(Evidence(metric=f"stall_{top}_share", value=k.stalls[0].share))
    if short:
        reason += (
            f"; the kernel runs {k.duration_us:.2f} us of GPU time, where ramp-up and the first loads' latency weigh heavily "
            "(ncu's duration holds no launch or host time: run_benchmark's host_call_us and launch_bound say whether launching dominates)"
        )
        ev.append(Evidence(metric="duration_us", value=k.duration_us, unit="us"))
    if "register-spills" in secondary:
        ev.append(Evidence(metric="local_memory_bytes", value=k.local_memory_bytes, unit="bytes"))
    return Bottleneck(label=label, reason=reason, evidence=ev, secondary=secondary or None)


def summarize_action(action: Any, *, detail: str = "compact", wiki_route: Callable[[str], list[dict[str, str]]] | None = None) -> KernelProfile:
    m = _Metrics(action)
    duration_ns = m.get("duration_ns")
    limits = {label: m.raw(name) for label, name in OCCUPANCY_LIMITS.items()}
    theoretical = m.get("occ_theoretical")
    sectors, requests = m.get("ld_sectors"), m.get("ld_requests")
    local = [v for v in (m.get("local_ld"), m.get("local_st")) if v is not None]
    kernel = KernelProfile(
        name=action.name(),
        duration_us=_r(duration_ns / 1e3, 3) if duration_ns is not None else None,
        grid=_dims(m, "launch__grid_dim"),
        block=_dims(m, "launch__block_dim"),
        registers=int(m.get("registers")) if m.get("registers") is not None else None,
        shared_static_bytes=int(m.get("smem_static")) if m.get("smem_static") is not None else None,
        shared_dynamic_bytes=int(m.get("smem_dynamic")) if m.get("smem_dynamic") is not None else None,
        waves_per_sm=_r(m.get("waves")),
        occupancy_theoretical_pct=_r(theoretical, 1),
        occupancy_achieved_pct=_r(m.get("occ_achieved"), 1),
        occupancy_limiter=occupancy_limiter(limits, theoretical),
        occupancy_limits={label: int(v) for label, v in limits.items() if v is not None and v > 0} or None,
        sm_count=int(m.get("sm_count")) if m.get("sm_count") else None,
        compute_throughput_pct=_r(m.get("compute_pct"), 1),
        memory_throughput_pct=_r(m.get("memory_pct"), 1),
        dram_throughput_pct=_r(m.get("dram_pct"), 1),
        l2_hit_pct=_r(m.get("l2_hit"), 1),
        l1_hit_pct=_r(m.get("l1_hit"), 1),
        sectors_per_request=_r(sectors / requests) if sectors and requests else None,
        tensor_pipe_pct=_r(m.get("tensor_pct"), 1),
        local_memory_bytes=sum(local) * 32 if local else None,
        stalls=_stalls(m) or None,
        findings=_findings(action) or None,
        roofline=_roofline(m, duration_ns / 1e9 if duration_ns else None),
    )
    kernel.source_lines = _source_lines(action) or None
    kernel.bottleneck = classify(kernel)
    if wiki_route is not None:
        kernel.bottleneck.wiki = wiki_route(kernel.bottleneck.label) or None
    if detail == "compact":
        kernel.findings = kernel.findings[:3] if kernel.findings else None
        kernel.source_lines = kernel.source_lines[:5] if kernel.source_lines else None
    else:
        kernel.metrics = {name: action.metric_by_name(name).value() for name in sorted(m.names) if _plain(action.metric_by_name(name).value())}
    return kernel


def _plain(value: Any) -> bool:
    return isinstance(value, (int, float, str)) and not (isinstance(value, str) and len(value) > 200)


def _dims(m: _Metrics, prefix: str) -> list[int] | None:
    dims = [m.raw(f"{prefix}_{axis}") for axis in "xyz"]
    if any(d is None for d in dims):
        total = m.get("grid" if "grid" in prefix else "block")
        return [int(total)] if total is not None else None
    return [int(d) for d in dims if d is not None]


def summarize_report(report: Path, *, detail: str = "compact", wiki_route: Callable[[str], list[dict[str, str]]] | None = None) -> tuple[list[KernelProfile], str | None]:
    """Every profiled kernel in launch order, and the GPU name."""
    context = load(report)
    kernels, gpu = [], None
    for r in range(context.num_ranges()):
        rng = context.range_by_idx(r)
        for a in range(rng.num_actions()):
            action = rng.action_by_idx(a)
            if gpu is None and "device__attribute_display_name" in action.metric_names():
                gpu = action.metric_by_name("device__attribute_display_name").value()
            kernels.append(summarize_action(action, detail=detail, wiki_route=wiki_route))
    return kernels, gpu
