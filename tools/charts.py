"""Pictures of results, drawn on the server with matplotlib (Agg) and cached by content.

Three kinds, each built in two steps: a *spec* (plain JSON-able data taken from the records: a
profile summary, a benchmark result, an attempt history) and a PNG drawn from the spec alone. The
cache key is the hash of the kind, the spec, the size and CHART_VERSION, so the same data never
draws twice and changed data never shows a stale picture. The dashboard (server/dashboard) and the
render_chart tool both come here.

- roofline: achieved FLOP/s against arithmetic intensity (FLOP per DRAM byte) for each kernel of a
  profile, under the GPU's ceilings (DRAM bandwidth roof, FP32 and tensor-core peaks), all from
  the profile summary's roofline fields.
- latency: per workload of a benchmark, the candidate's median with its p10-p90 range, against the
  reference's and the baseline's medians (the stored result keeps medians for those two).
- speedup_history: geomean speedup of each attempt of a definition in the order they were made,
  with the best-so-far line over fully passing, unsuspected attempts.

matplotlib is imported on first draw (it costs about half a second), through its object API only
(no pyplot, no global figure state); draws are serialized by a lock since text rendering shares
caches across threads.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kda_mcp.tools import ledger
from kda_mcp.tools.errors import InvalidArgumentError

ChartKind = Literal["roofline", "latency", "speedup_history"]
KINDS: tuple[str, ...] = ("roofline", "latency", "speedup_history")
CHART_VERSION = "1"  # bump when the drawing changes, so cached pictures are drawn again
DEFAULT_WIDTH, DEFAULT_HEIGHT = 800, 480
MIN_WIDTH, MAX_WIDTH = 320, 2000
MIN_HEIGHT, MAX_HEIGHT = 240, 1400
DPI = 100
MAX_WORKLOADS = 40  # latency chart: more workloads than this are cut (the caption says so)
MAX_POINTS = 200  # speedup history: the most recent attempts drawn

# Colours: the dashboard's palette (static/dashboard.css), readable on white and for most colour-blind readers.
BLUE, ORANGE, GREEN, RED, GREY, PURPLE = "#2563eb", "#d97706", "#15803d", "#dc2626", "#6b7280", "#7c3aed"
LABEL_COLOURS = {
    "memory-bound": BLUE,
    "compute-bound": GREEN,
    "latency-bound": ORANGE,
    "occupancy-limited": PURPLE,
    "tail-effect": "#0891b2",
    "launch-bound": RED,
}

_DRAW_LOCK = threading.Lock()


@dataclass(frozen=True)
class Chart:
    kind: str
    png: bytes
    key: str
    width: int
    height: int
    cached: bool
    caption: str


# ---- specs: what a picture shows, as plain data


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _positive(value: Any) -> float | None:
    v = _num(value)
    return v if v is not None and v > 0 else None


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}"


def roofline_spec(summary: Any) -> dict[str, Any]:
    """The roofline of a ProfileSummary (tools/profile/models.py): kernels and the GPU's ceilings."""
    kernels = []
    peaks: dict[str, float] = {}
    for k in summary.kernels:
        r = k.roofline
        if r is None:
            kernels.append({"name": k.name, "duration_us": _num(k.duration_us), "label": k.bottleneck.label if k.bottleneck else None})
            continue
        for key, value in (("dram_tb_s", r.peak_dram_tb_s), ("fp32_tflops", r.peak_tflops_fp32), ("tensor_tflops", r.peak_tflops_tensor)):
            v = _positive(value)
            if v is not None:
                peaks[key] = max(peaks.get(key, 0.0), v)
        kernels.append(
            {
                "name": k.name,
                "duration_us": _num(k.duration_us),
                "label": k.bottleneck.label if k.bottleneck else None,
                "ai": _positive(r.arithmetic_intensity),
                "tflops": _positive(r.achieved_tflops),
                "dram_tb_s": _positive(r.achieved_dram_tb_s),
                "note": r.note,
            }
        )
    return {
        "title": f"Roofline of profile {summary.profile_id}: {_short(summary.solution, 40)}",
        "subtitle": " · ".join(x for x in (summary.gpu, f"{summary.definition} workload {summary.workload[:8]}", f"set {summary.profile_set}") if x),
        "peaks": peaks,
        "kernels": kernels,
    }


def _workload_label(w: dict[str, Any]) -> str:
    axes = w.get("axes") or {}
    if axes:
        text = ",".join(f"{k}={v}" for k, v in list(axes.items())[:3])
        return _short(text, 28)
    return str(w.get("workload", "?"))[:8]


def latency_spec(result: dict[str, Any]) -> dict[str, Any]:
    """Per-workload latency of a stored BenchmarkResult (as a dict): candidate p10/median/p90,
    reference and baseline medians."""
    rows = []
    workloads = result.get("workloads") or []
    for w in workloads[:MAX_WORKLOADS]:
        lat = w.get("latency") or {}
        speedup = w.get("speedup") or {}
        rows.append(
            {
                "workload": str(w.get("workload", "?")),
                "label": _workload_label(w),
                "status": w.get("status"),
                "median_us": _positive(lat.get("median_us")),
                "p10_us": _positive(lat.get("p10_us")),
                "p90_us": _positive(lat.get("p90_us")),
                "reference_us": _positive(w.get("reference_us")),
                "baseline_us": _positive(w.get("baseline_us")),
                "vs_reference": _positive(speedup.get("vs_reference")),
                "vs_baseline": _positive(speedup.get("vs_baseline")),
                "suspect": bool(w.get("suspect")),
            }
        )
    attempt = result.get("attempt_id")
    return {
        "title": f"Latency per workload{f' of attempt {attempt}' if attempt else ''}: {_short(str(result.get('solution', '?')), 40)}",
        "subtitle": f"{result.get('definition', '?')} · {(result.get('provenance') or {}).get('gpu') or 'GPU unknown'}",
        "workloads": rows,
        "omitted": max(0, len(workloads) - MAX_WORKLOADS),
    }


def speedup_history_spec(definition: str, summaries: list[Any]) -> dict[str, Any]:
    """Speedup of each attempt of `definition` (AttemptSummary list, any order), oldest first."""
    ordered = sorted(summaries, key=lambda s: (s.created, s.attempt_id))[-MAX_POINTS:]
    use_baseline = any(s.geomean_speedup_vs_baseline for s in ordered)
    points = []
    for s in ordered:
        value = s.geomean_speedup_vs_baseline if use_baseline else s.geomean_speedup_vs_reference
        points.append(
            {
                "attempt": s.attempt_id,
                "created": round(float(s.created), 3),
                "speedup": _positive(value),
                "passed": s.passed,
                "passed_all": ledger.passed_all(s),
                "suspect": bool(s.suspect),
            }
        )
    return {
        "title": f"Speedup over attempts: {definition}",
        "metric": "baseline" if use_baseline else "reference",
        "points": points,
    }


def caption(kind: str, spec: dict[str, Any]) -> str:
    """What the picture shows, in words and numbers (for readers without vision, and alt text)."""
    if kind == "roofline":
        peaks = spec["peaks"]
        ceilings = ", ".join(
            f"{name} {_fmt(peaks[key])} {unit}"
            for key, name, unit in (("dram_tb_s", "DRAM", "TB/s"), ("fp32_tflops", "FP32", "TFLOP/s"), ("tensor_tflops", "tensor", "TFLOP/s"))
            if key in peaks
        )
        parts = []
        for k in spec["kernels"]:
            if k.get("ai") and k.get("tflops"):
                parts.append(f"{_short(k['name'], 40)}: {_fmt(k['ai'])} FLOP/B, {_fmt(k['tflops'])} TFLOP/s")
            else:
                parts.append(f"{_short(k['name'], 40)}: not placed (no FLOP count{'; DRAM ' + _fmt(k['dram_tb_s']) + ' TB/s' if k.get('dram_tb_s') else ''})")
        return f"{spec['title']}. Ceilings: {ceilings or 'unknown'}. " + "; ".join(parts) + "."
    if kind == "latency":
        parts = []
        for w in spec["workloads"]:
            if w["median_us"] is None:
                parts.append(f"{w['label']}: {w['status']}")
                continue
            ref = f", reference {_fmt(w['reference_us'])} us" if w["reference_us"] else ""
            base = f", baseline {_fmt(w['baseline_us'])} us" if w["baseline_us"] else ""
            parts.append(f"{w['label']}: median {_fmt(w['median_us'])} us (p10 {_fmt(w['p10_us'])}, p90 {_fmt(w['p90_us'])}){ref}{base}")
        more = f" ({spec['omitted']} more workloads not drawn)" if spec["omitted"] else ""
        return f"{spec['title']}. " + "; ".join(parts) + more + "."
    points = spec["points"]
    best = None
    for p in points:
        if p["passed_all"] and not p["suspect"] and p["speedup"] and (best is None or p["speedup"] > best["speedup"]):
            best = p
    head = f"{spec['title']}: {len(points)} attempts, geomean speedup vs {spec['metric']}"
    if best is None:
        return head + "; none fully passing and unsuspected yet."
    return head + f"; best {best['attempt']} at {best['speedup']:.3g}x, latest {points[-1]['attempt']} at {_fmt(points[-1]['speedup'])}x."


# ---- drawing


def _figure(width: int, height: int) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _titles(fig: Any, ax: Any, spec: dict[str, Any]) -> None:
    ax.set_title(spec["title"], fontsize=11, loc="left", pad=18 if spec.get("subtitle") else 8)
    if spec.get("subtitle"):
        ax.text(0, 1.015, spec["subtitle"], transform=ax.transAxes, fontsize=8, color=GREY, va="bottom")
    ax.grid(True, which="major", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=10, color=GREY, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_roofline(fig: Any, ax: Any, spec: dict[str, Any]) -> None:
    _titles(fig, ax, spec)
    peaks = spec["peaks"]
    placed = [k for k in spec["kernels"] if k.get("ai") and k.get("tflops")]
    unplaced = [k for k in spec["kernels"] if not (k.get("ai") and k.get("tflops"))]
    bw = peaks.get("dram_tb_s")
    ceilings = [(peaks[key], name) for key, name in (("fp32_tflops", "FP32"), ("tensor_tflops", "tensor")) if key in peaks]
    xs = [k["ai"] for k in placed]
    ridges = [p / bw for p, _ in ceilings] if bw else []
    lo = min([*xs, *ridges, 1.0]) / 10
    hi = max([*xs, *ridges, 10.0]) * 10
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ys = [k["tflops"] for k in placed] + [p for p, _ in ceilings]
    if bw:
        ys.append(bw * lo)
    y_lo = min(ys or [0.01]) / 5
    y_hi = max(ys or [100.0]) * 3
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlabel("arithmetic intensity (FLOP per DRAM byte)")
    ax.set_ylabel("achieved TFLOP/s")
    import numpy as np

    grid = np.logspace(math.log10(lo), math.log10(hi), 200)
    if bw:
        top = max((p for p, _ in ceilings), default=None)
        roof = grid * bw if top is None else np.minimum(grid * bw, top)
        ax.plot(grid, roof, color="#111827", linewidth=1.6)
        ax.text(lo * 1.3, bw * lo * 1.3 * 1.25, f"DRAM {bw:.3g} TB/s", fontsize=8, rotation=0, color="#111827")
    for peak, name in ceilings:
        line = np.full_like(grid, peak) if not bw else np.where(grid * bw >= peak, peak, np.nan)
        ax.plot(grid, line, color="#111827" if name == "tensor" or len(ceilings) == 1 else GREY, linewidth=1.2, linestyle="-" if name == "tensor" else "--")
        ax.text(hi / 1.3, peak * 1.08, f"{name} peak {peak:.4g} TFLOP/s", fontsize=8, ha="right", va="bottom", color="#111827")
    if not bw and not ceilings:
        ax.text(0.02, 0.96, "GPU ceilings unknown in this profile", transform=ax.transAxes, fontsize=8, color=GREY, va="top")
    total = sum(k.get("duration_us") or 0 for k in placed) or 1.0
    for k in placed:
        share = (k.get("duration_us") or 0) / total
        colour = LABEL_COLOURS.get(k.get("label") or "", ORANGE)
        ax.scatter([k["ai"]], [k["tflops"]], s=40 + 260 * share, color=colour, edgecolor="white", linewidth=1.0, zorder=3)
        ax.annotate(_short(k["name"], 30), (k["ai"], k["tflops"]), xytext=(6, -12), textcoords="offset points", fontsize=8, color="#111827")
    if unplaced:
        names = "; ".join(
            _short(k["name"], 28) + (f" (DRAM {k['dram_tb_s']:.3g} TB/s)" if k.get("dram_tb_s") else "") for k in unplaced[:4]
        )
        more = f" and {len(unplaced) - 4} more" if len(unplaced) > 4 else ""
        fig.text(0.01, 0.01, f"Not placed, no FLOP count (profile with set='full'): {names}{more}", fontsize=7.5, color=GREY)
    labels = sorted({k.get("label") for k in placed if k.get("label")})
    if labels:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], marker="o", linestyle="", color=LABEL_COLOURS.get(lab, ORANGE), label=lab) for lab in labels]
        ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, title="bottleneck", title_fontsize=8)
    if not placed and not unplaced:
        _empty(ax, "This profile has no kernels.")


def _draw_latency(fig: Any, ax: Any, spec: dict[str, Any]) -> None:
    _titles(fig, ax, spec)
    rows = spec["workloads"]
    if not rows:
        _empty(ax, "This result has no workloads.")
        return
    xs = list(range(len(rows)))
    values = [v for w in rows for v in (w["p10_us"], w["median_us"], w["p90_us"], w["reference_us"], w["baseline_us"]) if v]
    ax.set_yscale("log")
    if values:
        ax.set_ylim(min(values) / 2.2, max(values) * 2.2)
    y_floor = ax.get_ylim()[0]
    drawn = {"candidate": False, "reference": False, "baseline": False}
    for x, w in zip(xs, rows):
        if w["median_us"] is not None:
            low = w["median_us"] - (w["p10_us"] or w["median_us"])
            high = (w["p90_us"] or w["median_us"]) - w["median_us"]
            colour = ORANGE if w["suspect"] else BLUE
            ax.errorbar([x], [w["median_us"]], yerr=[[max(low, 0)], [max(high, 0)]], fmt="o", color=colour, ecolor=colour, elinewidth=2, capsize=4, markersize=6,
                        label=None if drawn["candidate"] else "candidate median (p10-p90)", zorder=3)
            drawn["candidate"] = True
            ratio = w["vs_baseline"] or w["vs_reference"]
            if ratio and not w["suspect"]:
                ax.annotate(f"{ratio:.2g}x", (x, (w["p90_us"] or w["median_us"])), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=7.5, color="#111827")
            elif w["suspect"]:
                ax.annotate("suspect", (x, (w["p90_us"] or w["median_us"])), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=7.5, color=ORANGE)
        else:
            ax.annotate(f"✗ {w['status']}", (x, y_floor), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=7, color=RED, rotation=90, va="bottom")
        if w["reference_us"]:
            ax.scatter([x + 0.18], [w["reference_us"]], marker="D", s=30, color=GREY, zorder=2, label=None if drawn["reference"] else "reference median")
            drawn["reference"] = True
        if w["baseline_us"]:
            ax.scatter([x - 0.18], [w["baseline_us"]], marker="s", s=30, color=GREEN, zorder=2, label=None if drawn["baseline"] else "baseline median")
            drawn["baseline"] = True
    ax.set_xticks(xs)
    ax.set_xticklabels([w["label"] for w in rows], rotation=30 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center", fontsize=8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("GPU time per call (µs, log)")
    if any(drawn.values()):
        ax.legend(loc="upper left", fontsize=8, frameon=False, ncol=3)
    if spec["omitted"]:
        fig.text(0.01, 0.01, f"{spec['omitted']} more workloads not drawn", fontsize=7.5, color=GREY)


def _draw_speedup_history(fig: Any, ax: Any, spec: dict[str, Any]) -> None:
    _titles(fig, ax, spec)
    points = spec["points"]
    if not points:
        _empty(ax, "No attempts for this definition yet.")
        return
    xs = list(range(len(points)))
    good = [(x, p) for x, p in zip(xs, points) if p["speedup"] and p["passed_all"] and not p["suspect"]]
    partial = [(x, p) for x, p in zip(xs, points) if p["speedup"] and not p["passed_all"] and not p["suspect"]]
    suspect = [(x, p) for x, p in zip(xs, points) if p["suspect"]]
    failed = [(x, p) for x, p in zip(xs, points) if not p["speedup"] and not p["suspect"]]
    values = [p["speedup"] for p in points if p["speedup"]]
    top = max([*values, 1.0]) * 1.25
    ax.set_ylim(0, top)
    ax.axhline(1.0, color=GREY, linewidth=1, linestyle="--")
    ax.text(len(points) - 0.5, 1.0, f"{spec['metric']} = 1x", fontsize=8, color=GREY, ha="right", va="bottom")
    best, best_x, best_y = 0.0, [], []
    for x, p in zip(xs, points):
        if p["speedup"] and p["passed_all"] and not p["suspect"]:
            best = max(best, p["speedup"])
        if best:
            best_x.append(x)
            best_y.append(best)
    if best_x:
        ax.step(best_x, best_y, where="post", color=GREEN, linewidth=2, label="highest so far (all passed)", zorder=2)
    if good:
        ax.scatter([x for x, _ in good], [p["speedup"] for _, p in good], color=GREEN, s=36, zorder=3, label="all workloads passed")
    if partial:
        ax.scatter([x for x, _ in partial], [p["speedup"] for _, p in partial], color=ORANGE, marker="^", s=36, zorder=3, label="some workloads failed")
    if suspect:
        ax.scatter([x for x, _ in suspect], [p["speedup"] or top * 0.03 for _, p in suspect], color=ORANGE, marker="x", s=40, zorder=3, label="suspect (speedup withheld)")
    if failed:
        ax.scatter([x for x, _ in failed], [top * 0.03] * len(failed), color=RED, marker="x", s=40, zorder=3, label="no speedup (failed)")
    step = max(1, len(points) // 16)
    ax.set_xticks(xs[::step])
    ax.set_xticklabels([p["attempt"] for p in points][::step], fontsize=8, rotation=30 if len(points) > 10 else 0)
    ax.set_xlim(-0.6, len(points) - 0.4)
    ax.set_xlabel("attempt (in the order made)")
    ax.set_ylabel(f"geomean speedup vs {spec['metric']}")
    ax.legend(loc="upper left", fontsize=8, frameon=False)


_DRAW = {"roofline": _draw_roofline, "latency": _draw_latency, "speedup_history": _draw_speedup_history}


def draw(kind: str, spec: dict[str, Any], width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> bytes:
    """The PNG of `spec`, exactly width x height pixels."""
    import io

    with _DRAW_LOCK:
        fig, ax = _figure(width, height)
        _DRAW[kind](fig, ax, spec)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=DPI, metadata={"Software": None})
        fig.clear()
    return out.getvalue()


def check_size(width: int, height: int) -> None:
    if not (MIN_WIDTH <= width <= MAX_WIDTH and MIN_HEIGHT <= height <= MAX_HEIGHT):
        raise InvalidArgumentError(
            f"Chart size {width}x{height} is out of range: width {MIN_WIDTH}-{MAX_WIDTH}, height {MIN_HEIGHT}-{MAX_HEIGHT} pixels."
        )


def chart_key(kind: str, spec: dict[str, Any], width: int, height: int) -> str:
    blob = json.dumps([CHART_VERSION, kind, width, height, spec], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class ChartCache:
    """PNGs under `root`, named by content key; a hit costs one file read."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.png"

    def render(self, kind: str, spec: dict[str, Any], *, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT) -> Chart:
        if kind not in _DRAW:
            raise InvalidArgumentError(f"Unknown chart kind {kind!r}.", hint=f"Use one of: {', '.join(KINDS)}.")
        check_size(width, height)
        key = chart_key(kind, spec, width, height)
        path = self.path(key)
        text = caption(kind, spec)
        try:
            return Chart(kind, path.read_bytes(), key, width, height, True, text)
        except OSError:
            pass
        png = draw(kind, spec, width, height)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".png")
            with os.fdopen(fd, "wb") as f:
                f.write(png)
            os.replace(tmp, path)
        except OSError:  # a read-only or full cache folder: still answer with the picture
            pass
        return Chart(kind, png, key, width, height, False, text)


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
