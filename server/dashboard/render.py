"""HTML of the dashboard's pages, rendered on the server from views.py's data.

Each page is a shell (header, navigation) around one live fragment, <main id="live">; the page's
script (static/dashboard.js) fetches the fragment again every few seconds and swaps it in when it
changed, so pages update without reloading and still read fine with scripting off. Everything
interpolated is escaped; nothing uses inline script or style (the Content-Security-Policy forbids
both), and every asset comes from this server.
"""

from __future__ import annotations

import html
import json
import math
import time
import urllib.parse
from collections.abc import Iterable
from typing import Any

from kda_mcp.server.dashboard.assets import asset_url
from kda_mcp.server.dashboard.auth import CHARTS_PREFIX, UI_PREFIX
from kda_mcp.server.dashboard.views import PAGE_SIZES, AttemptPage, DefinitionPage, DefinitionRow, JobRow, Lineage, Queue, speedup_of
from kda_mcp.tools.ledger import AttemptSummary, NoteView, passed_all, passed_counts
from kda_mcp.tools.profile.models import ProfileSummary

POLL_QUEUE_MS = 1500
POLL_PAGE_MS = 5000


def h(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def when(ts: float | None) -> str:
    if not ts:
        return '<span class="muted">-</span>'
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    shown = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))
    return f'<time datetime="{iso}">{shown}</time>'


def num(value: Any, digits: int = 3, unit: str = "") -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return '<span class="muted">-</span>'
    text = f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:,.0f}"
    return f"{text}{unit}"


def times(value: float | None) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    cls = "good" if value >= 1 else "bad"
    return f'<span class="{cls}">{value:.3g}×</span>'


def badge(text: str | None, kind: str | None = None) -> str:
    if not text:
        return ""
    return f'<span class="badge b-{h((kind or text).lower().replace("_", "-"))}">{h(text)}</span>'


def attempt_link(attempt_id: str | None) -> str:
    if not attempt_id:
        return '<span class="muted">-</span>'
    return f'<a href="{UI_PREFIX}/attempts/{q(attempt_id)}">{h(attempt_id)}</a>'


def definition_link(name: str) -> str:
    return f'<a href="{UI_PREFIX}/definitions/{q(name)}">{h(name)}</a>'


def table(headers: list[str], rows: Iterable[list[str]], *, cls: str = "", empty: str = "Nothing yet.") -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted empty">{h(empty)}</p>'
    head = "".join(f"<th>{h(x)}</th>" for x in headers)
    return f'<div class="table-wrap"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def dl(items: Iterable[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{h(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def code(value: Any) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    else:
        text = str(value)
    return f"<code>{h(text)}</code>"


def chart_img(kind: str, subject: str, key: str, caption: str, *, cls: str = "chart") -> str:
    width, height = PAGE_SIZES[kind]
    src = f"{CHARTS_PREFIX}{kind}/{q(subject)}.png?v={key}"
    return f'<figure class="{cls}"><img src="{src}" width="{width}" height="{height}" alt="{h(caption)}" data-chart="{kind}"><figcaption>{h(caption)}</figcaption></figure>'


NAV = [("queue", "Queue", f"{UI_PREFIX}/"), ("definitions", "Definitions", f"{UI_PREFIX}/definitions")]


def page(title: str, fragment: str, *, active: str = "", poll_ms: int = POLL_PAGE_MS, crumbs: list[tuple[str, str]] | None = None) -> str:
    current = ' class="active"'
    nav = "".join(f'<a href="{href}"{current if key == active else ""}>{h(label)}</a>' for key, label, href in NAV)
    trail = ""
    if crumbs:
        trail = '<nav class="crumbs">' + " / ".join(f'<a href="{href}">{h(text)}</a>' if href else h(text) for text, href in crumbs) + "</nav>"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{h(title)} · kda-mcp</title>
<link rel="stylesheet" href="{asset_url('dashboard.css')}"><link rel="icon" href="{asset_url('favicon.svg')}" type="image/svg+xml">
<script defer src="{asset_url('dashboard.js')}"></script>
</head><body>
<header class="top"><a class="brand" href="{UI_PREFIX}/">kda-mcp</a><nav class="main-nav">{nav}</nav>
<span id="live-status" class="live" title="This page refreshes itself">live</span>
<form method="post" action="{UI_PREFIX}/logout" class="logout"><button type="submit">Log out</button></form></header>
{trail}
<main id="live" data-poll-ms="{poll_ms}">{fragment}</main>
</body></html>"""


# ---- queue


def _job_what(row: JobRow) -> str:
    p = row.params
    parts = [definition_link(p["definition"]) if isinstance(p.get("definition"), str) else ""]
    if isinstance(p.get("solution"), str):
        parts.append(f'<span class="solution">{h(p["solution"])}</span>')
    for key in ("a", "b"):
        if isinstance(p.get(key), str):
            parts.append(h(p[key]))
    return " ".join(x for x in parts if x) or '<span class="muted">-</span>'


def _progress(row: JobRow) -> str:
    prog = row.view.progress or {}
    done, total, message = prog.get("done"), prog.get("total"), prog.get("message")
    bar = ""
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        bar = f'<progress max="{h(total)}" value="{h(min(done, total))}"></progress> <span class="count">{h(done)}/{h(total)}</span>'
    elif row.active:
        bar = "<progress></progress>"
    text = f' <span class="progress-message">{h(message)}</span>' if message else ""
    return f'<span class="progress-cell">{bar}{text}</span>'


def _outcome(row: JobRow) -> str:
    out = []
    if row.attempt:
        out.append(f"attempt {attempt_link(row.attempt)}")
    if row.profile:
        out.append(f'profile <a href="{UI_PREFIX}/profiles/{q(row.profile)}">{h(row.profile)}</a>')
    if row.view.error:
        out.append(f'<span class="error-text" title="{h(row.view.error)}">{h(row.view.error[:160])}</span>')
    return " ".join(out) or '<span class="muted">-</span>'


def _cancel(row: JobRow) -> str:
    if not row.active:
        return ""
    return f'<button type="button" class="cancel" data-job="{h(row.view.job_id)}">Cancel</button>'


def _job_card(row: JobRow) -> str:
    v = row.view
    return (
        f'<div class="job" data-job-id="{h(v.job_id)}" data-status="{h(v.status)}">'
        f'<div class="job-head"><strong>{h(v.job_id)}</strong> {h(v.kind)} {badge(v.status)} {_cancel(row)}</div>'
        f'<div class="job-what">{_job_what(row)}</div>'
        f'<div class="job-progress">{_progress(row)}</div>'
        f'<div class="muted small">started {when(v.started)} · {num(v.elapsed_s, 3, " s")}</div></div>'
    )


def queue_fragment(data: Queue, *, gpu_count: int) -> str:
    cards = []
    for gpu, holder, jobs in data.gpus:
        state = "busy" if holder or jobs else "free"
        body = "".join(_job_card(r) for r in jobs)
        if not body:
            body = f'<p class="muted small">{h(holder) if holder else "idle"}</p>'
        elif holder:
            body += f'<p class="muted small">lease: {h(holder)}</p>'
        cards.append(f'<section class="gpu gpu-{state}" data-gpu="{gpu}"><h3>GPU {gpu} {badge(state)}</h3>{body}</section>')
    if not gpu_count:
        cards.append('<section class="gpu gpu-none"><h3>No GPU</h3><p class="muted small">This server sees no NVIDIA GPU: '
                     "benchmarks and profiles are refused; compiles and the ledger work.</p></section>")
    waiting = "".join(_job_card(r) for r in data.waiting) or '<p class="muted small">Nothing waiting.</p>'
    cards.append(f'<section class="gpu gpu-waiting"><h3>Waiting or off-GPU</h3>{waiting}</section>')
    rows = [
        [
            f'<span class="job-id" data-job-id="{h(r.view.job_id)}">{h(r.view.job_id)}</span>',
            h(r.view.kind),
            _job_what(r),
            badge(r.view.status),
            "-" if r.view.gpu is None else h(r.view.gpu),
            _progress(r),
            when(r.view.created),
            num(r.view.elapsed_s, 3, " s"),
            _outcome(r),
            _cancel(r),
        ]
        for r in data.recent
    ]
    active = sum(1 for r in data.recent if r.active)
    return (
        f'<h1>Queue <span class="muted small">{active} active</span></h1>'
        f'<div class="gpus">{"".join(cards)}</div>'
        "<h2>Recent jobs</h2>"
        + table(["job", "kind", "what", "status", "GPU", "progress", "created", "elapsed", "outcome", ""], rows, cls="jobs", empty="No jobs yet.")
    )


# ---- definitions


def _speedups(s: AttemptSummary | None) -> tuple[str, str]:
    if s is None:
        return '<span class="muted">-</span>', '<span class="muted">-</span>'
    return times(s.geomean_speedup_vs_baseline), times(s.geomean_speedup_vs_reference)


def _passed(s: AttemptSummary | None) -> str:
    if s is None:
        return '<span class="muted">-</span>'
    cls = "good" if passed_all(s) else "bad"
    return f'<span class="{cls}">{h(s.passed)}</span>'


def definitions_fragment(rows: list[DefinitionRow]) -> str:
    body = []
    for r in rows:
        shown = r.best or r.latest
        vs_base, vs_ref = _speedups(r.best)
        body.append(
            [
                definition_link(r.name) + ("" if r.in_dataset else ' <span class="badge b-muted" title="not in the dataset this server reads">ledger only</span>'),
                h(r.description or ""),
                h(r.attempts),
                (attempt_link(r.best.attempt_id) + (f' <span class="basis" title="{h(r.best_basis)}">why</span>' if r.best_basis else ""))
                if r.best
                else f'<span class="muted">{"none passing yet" if r.attempts else "no attempts"}</span>',
                vs_base,
                vs_ref,
                _passed(shown),
                (attempt_link(r.latest.attempt_id) + " " + when(r.latest.created)) if r.latest else '<span class="muted">-</span>',
                f'<span class="warn">{r.suspects}</span>' if r.suspects else "0",
                f'<a href="{UI_PREFIX}/lineage/{q(r.name)}">lineage</a>' if r.attempts else "",
            ]
        )
    intro = (
        '<p class="muted">Best: the ledger&#x27;s pick among fully passing, unsuspected attempts, by their own median latencies '
        "on the workloads and GPU they share (hover <em>why</em> for its basis).</p>"
    )
    return "<h1>Definitions</h1>" + intro + table(
        ["definition", "summary", "attempts", "best", "vs baseline", "vs reference", "passed", "latest", "suspect", ""],
        body,
        cls="definitions",
        empty="No definitions: the dataset is empty and no attempt was recorded.",
    )


def _attempt_rows(summaries: list[AttemptSummary], best: str | None) -> list[list[str]]:
    rows = []
    for s in summaries:
        vs_base, vs_ref = _speedups(s)
        rows.append(
            [
                attempt_link(s.attempt_id) + (" " + badge("best") if s.attempt_id == best else ""),
                when(s.created),
                h(s.solution),
                attempt_link(s.parent) if s.parent else '<span class="muted">-</span>',
                badge(s.status),
                _passed(s),
                vs_base,
                vs_ref,
                badge("suspect") if s.suspect else "",
            ]
        )
    return rows


def notes_list(notes: list[NoteView]) -> str:
    if not notes:
        return '<p class="muted empty">No notes.</p>'
    items = []
    for n in notes:
        linked = ", ".join(attempt_link(a) for a in n.attempts)
        hyp = f'<div class="hypothesis">Hypothesis: {h(n.hypothesis)}</div>' if n.hypothesis else ""
        text = f'<div class="note-text">{h(n.text)}</div>' if n.text else ""
        items.append(
            f'<li class="note" data-note="{h(n.note_id)}">{badge(n.verdict or "note", n.verdict or "muted")} <strong>{h(n.direction)}</strong> '
            f'<span class="muted small">{h(n.note_id)} · {when(n.created)}{" · " + linked if linked else ""}</span>{hyp}{text}</li>'
        )
    return '<ul class="notes">' + "".join(items) + "</ul>"


def definition_fragment(data: DefinitionPage, chart: tuple[str, str]) -> str:
    key, caption = chart
    best = f"best {attempt_link(data.best)}" if data.best else "no fully passing attempt yet"
    return (
        f"<h1>{h(data.name)}</h1>"
        + (f'<p class="muted">{h(data.description)}</p>' if data.description else "")
        + f'<p>{len(data.attempts)} attempts · {best} · <a href="{UI_PREFIX}/lineage/{q(data.name)}">lineage</a></p>'
        + (f'<p class="muted small basis-text">Best decided on the {h(data.best_basis)}.</p>' if data.best_basis and data.best_basis.startswith("lowest") else
           (f'<p class="muted small basis-text">Best: {h(data.best_basis)}.</p>' if data.best_basis else ""))
        + "<h2>Speedup over time</h2>"
        + chart_img("speedup_history", data.name, key, caption)
        + "<h2>Attempts</h2>"
        + table(["attempt", "created", "solution", "parent", "status", "passed", "vs baseline", "vs reference", ""], _attempt_rows(data.attempts, data.best), cls="attempts", empty="No attempts yet.")
        + "<h2>Notes</h2>"
        + notes_list(data.notes)
    )


# ---- one attempt


def _ci(speedup: dict[str, Any], key: str) -> str:
    value = speedup.get(key)
    ci = speedup.get(f"{key}_ci95")
    if value is None:
        return '<span class="muted">-</span>'
    text = times(value)
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        text += f' <span class="muted small">[{ci[0]:.3g}, {ci[1]:.3g}]</span>'
    return text


def _workload_rows(workloads: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for w in workloads:
        lat = w.get("latency") or {}
        sp = w.get("speedup") or {}
        axes = ", ".join(f"{k}={v}" for k, v in (w.get("axes") or {}).items())
        flags = []
        if w.get("suspect"):
            flags.append(badge("suspect"))
        if w.get("launch_bound"):
            flags.append(badge("launch-bound", "warn"))
        for f in w.get("findings") or []:
            flags.append(f'<span class="finding-chip" title="{h(f.get("detail"))}">{h(f.get("check"))}</span>')
        err = ""
        if w.get("max_abs_error") is not None or w.get("max_rel_error") is not None:
            err = f'{num(w.get("max_abs_error"), 2)} / {num(w.get("max_rel_error"), 2)}'
        rows.append(
            [
                f'<code title="{h(w.get("workload"))}">{h(str(w.get("workload", ""))[:8])}</code>',
                h(axes),
                badge(w.get("status")),
                num(lat.get("median_us"), 4, " µs"),
                f'{num(lat.get("p10_us"), 4)} – {num(lat.get("p90_us"), 4)}' if lat else '<span class="muted">-</span>',
                num(w.get("reference_us"), 4, " µs"),
                num(w.get("baseline_us"), 4, " µs"),
                _ci(sp, "vs_reference"),
                _ci(sp, "vs_baseline"),
                num(w.get("floor_us"), 3, " µs"),
                err or '<span class="muted">-</span>',
                " ".join(flags),
            ]
        )
    return rows


def _findings(workloads: list[dict[str, Any]]) -> str:
    items = []
    for w in workloads:
        for f in w.get("findings") or []:
            items.append(
                f'<li><code>{h(str(w.get("workload", ""))[:8])}</code> {badge(f.get("check"), "warn")} {h(f.get("detail"))}</li>'
            )
        if w.get("log") and w.get("status") != "PASSED":
            items.append(f'<li><code>{h(str(w.get("workload", ""))[:8])}</code> {badge(w.get("status"))}<pre class="log">{h(str(w["log"])[-2000:])}</pre></li>')
    if not items:
        return '<p class="muted empty">No integrity findings: every check passed.</p>'
    return '<ul class="findings">' + "".join(items) + "</ul>"


def _sass(s: dict[str, Any] | None) -> str:
    if not s:
        return '<span class="muted">-</span>'
    parts = [f"{s.get('instructions', 0)} instr"]
    if s.get("tensor_core"):
        parts.append("tensor " + ", ".join(f"{k}×{v}" for k, v in s["tensor_core"].items()))
    if s.get("local_loads") or s.get("local_stores"):
        parts.append(f"LDL {s.get('local_loads', 0)} / STL {s.get('local_stores', 0)}")
    if s.get("global_loads_by_width"):
        parts.append("LDG " + ", ".join(f"{k}b×{v}" for k, v in s["global_loads_by_width"].items()))
    if s.get("tma"):
        parts.append("TMA " + ", ".join(f"{k}×{v}" for k, v in s["tma"].items()))
    if s.get("cp_async"):
        parts.append(f"cp.async {s['cp_async']}")
    return h(" · ".join(parts))


def compile_section(report: dict[str, Any] | None) -> str:
    if not report:
        return '<p class="muted empty">No compile report (a Python solution, or an older record).</p>'
    facts = dl(
        [
            ("status", badge(report.get("status"))),
            ("language", h(report.get("language"))),
            ("target", h(report.get("target"))),
            ("build", f'{num(report.get("build_seconds"), 3, " s")}{" (cache hit)" if report.get("cache_hit") else ""}'),
            ("build key", code(report.get("build_key", "-"))),
        ]
    )
    kernels = [
        [
            f'<span title="{h(k.get("name"))}">{h((k.get("demangled") or k.get("name") or "")[:80])}</span>',
            num(k.get("registers")),
            f'{num(k.get("shared_static_bytes"), 6)} / {num(k.get("shared_dynamic_bytes"), 6)}',
            f'<span class="{"bad" if (k.get("spill_store_bytes") or k.get("spill_load_bytes")) else ""}">{num(k.get("spill_store_bytes"), 6)} / {num(k.get("spill_load_bytes"), 6)}</span>',
            num(k.get("stack_frame_bytes"), 6),
            _sass(k.get("sass")),
        ]
        for k in report.get("kernels") or []
    ]
    diags = [
        [h(d.get("severity")), h(f'{d.get("file") or ""}:{d.get("line") or ""}'), h(d.get("tool")), h(d.get("message"))]
        for d in (report.get("diagnostics") or [])[:30]
    ]
    warnings = "".join(f"<li>{h(w)}</li>" for w in report.get("warnings") or [])
    return (
        facts
        + table(["kernel", "registers", "shared static / dynamic B", "spill store / load B", "stack B", "SASS"], kernels, cls="kernels", empty="No kernel resources reported.")
        + (table(["severity", "where", "tool", "message"], diags, cls="diagnostics") if diags else "")
        + (f'<ul class="warnings">{warnings}</ul>' if warnings else "")
    )


def provenance_section(p: dict[str, Any] | None) -> str:
    if not p:
        return '<p class="muted empty">No provenance recorded.</p>'
    order = ["gpu", "gpu_index", "clocks_mhz", "driver", "cuda", "torch", "triton", "method", "copy_bandwidth_tb_s", "isolation", "verification", "seeds", "config", "kda_mcp"]
    keys = [k for k in order if k in p] + sorted(k for k in p if k not in order)
    return dl((k, code(p[k]) if isinstance(p[k], (dict, list)) else h(p[k])) for k in keys)


def _profile_block(summary: ProfileSummary, chart: tuple[str, str]) -> str:
    labels = ", ".join(f"{k.name[:40]}: {k.bottleneck.label}" for k in summary.kernels if k.bottleneck)
    return (
        f'<section class="profile" data-profile="{h(summary.profile_id)}"><h3><a href="{UI_PREFIX}/profiles/{q(summary.profile_id)}">Profile {h(summary.profile_id)}</a> '
        f'<span class="muted small">{h(summary.profile_set)} · workload {h(summary.workload[:8])} · {num(summary.total_duration_us, 4, " µs")}</span></h3>'
        + (f'<p class="small">{h(labels)}</p>' if labels else "")
        + chart_img("roofline", summary.profile_id, *chart)
        + "</section>"
    )


def attempt_fragment(data: AttemptPage, latency: tuple[str, str], rooflines: dict[str, tuple[str, str]]) -> str:
    d = data.detail
    s = d.summary
    r = d.result
    agg = r.get("aggregate") or {}
    workloads = r.get("workloads") or []
    vs_base, vs_ref = _speedups(s)
    flags = [badge(s.status)]
    if s.attempt_id == data.best:
        flags.append(badge("best"))
    if s.suspect:
        flags.append(badge("suspect"))
    children = ", ".join(attempt_link(c) for c in d.children or []) or '<span class="muted">none</span>'
    ancestry = " → ".join(attempt_link(a) for a in data.ancestry)
    facts = dl(
        [
            ("definition", definition_link(s.definition)),
            ("solution", f"{h(s.solution)} <code>{h(s.solution_hash)}</code>"),
            ("created", when(s.created)),
            ("parent", attempt_link(s.parent) if s.parent else '<span class="muted">none (a root)</span>'),
            ("children", children),
            ("lineage", f'{ancestry} · <a href="{UI_PREFIX}/lineage/{q(s.definition)}?focus={q(s.attempt_id)}">graph</a>'),
            ("passed", _passed(s)),
            ("geomean vs baseline", vs_base),
            ("geomean vs reference", vs_ref),
            ("worst workload", h(agg.get("worst_workload") or "-")),
            ("baseline", f'{h(r.get("baseline") or "-")} <code>{h(r.get("baseline_hash") or "")}</code>'),
            ("job", h(s.job_id or "-")),
        ]
    )
    phases = r.get("phase_seconds") or {}
    phase_text = " · ".join(f"{h(k)} {num(v, 3, ' s')}" for k, v in phases.items())
    profiles = "".join(_profile_block(p, rooflines[p.profile_id]) for p in data.profiles) or (
        f'<p class="muted empty">No profiles of this attempt yet (profile_solution with solution={{"attempt": "{h(s.attempt_id)}"}}).</p>'
    )
    return (
        f'<h1>Attempt {h(s.attempt_id)} {" ".join(flags)}</h1>'
        + (f'<p class="message">{h(r.get("message"))}</p>' if r.get("message") else "")
        + facts
        + "<h2>Latency per workload</h2>"
        + (chart_img("latency", s.attempt_id, *latency) if workloads else "")
        + table(
            ["workload", "axes", "status", "median", "p10 – p90 µs", "reference", "baseline", "vs reference [95% CI]", "vs baseline [95% CI]", "floor", "max abs / rel err", "flags"],
            _workload_rows(workloads),
            cls="workloads",
            empty="No workloads ran (see the compile facts).",
        )
        + '<h2>Integrity findings</h2>'
        + _findings(workloads)
        + "<h2>Compile facts</h2>"
        + compile_section(r.get("compile"))
        + "<h2>Profiles</h2>"
        + profiles
        + "<h2>Notes</h2>"
        + notes_list([NoteView(**n) for n in d.notes or []])
        + "<h2>Provenance</h2>"
        + provenance_section(r.get("provenance"))
        + (f'<p class="muted small">Wall time: {phase_text}</p>' if phase_text else "")
    )


# ---- lineage


NODE_W, NODE_H, COL_W, ROW_H, PAD = 176, 48, 216, 64, 16


def _node_state(s: AttemptSummary, best: str | None) -> str:
    if s.attempt_id == best:
        return "best"
    if s.suspect:
        return "suspect"
    if passed_all(s):
        return "passed"
    return "partial" if passed_counts(s)[0] else "failed"


def lineage_svg(data: Lineage, focus: str | None) -> str:
    if not data.nodes:
        return '<p class="muted empty">No attempts yet.</p>'
    depth = max(n.depth for n in data.nodes.values())
    width = PAD * 2 + depth * COL_W + NODE_W
    height = PAD * 2 + max(data.rows - 1, 0) * ROW_H + NODE_H
    focus_path = set()
    cursor = focus
    while cursor and cursor in data.nodes and cursor not in focus_path:
        focus_path.add(cursor)
        cursor = data.nodes[cursor].summary.parent

    def xy(node: Any) -> tuple[float, float]:
        return PAD + node.depth * COL_W, PAD + node.row * ROW_H

    edges, boxes = [], []
    for attempt_id, node in data.nodes.items():
        x, y = xy(node)
        for child in node.children:
            cx, cy = xy(data.nodes[child])
            on = " on-path" if child in focus_path and attempt_id in focus_path else ""
            x1, y1, x2, y2 = x + NODE_W, y + NODE_H / 2, cx, cy + NODE_H / 2
            mid = (x1 + x2) / 2
            edges.append(f'<path class="edge{on}" d="M{x1:.0f},{y1:.0f} C{mid:.0f},{y1:.0f} {mid:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"/>')
        s = node.summary
        state = _node_state(s, data.best)
        speed = speedup_of(s)
        line2 = f"{s.passed} passed" + (" · suspect" if s.suspect else "") + (f" · {node.verdict}" if node.verdict else "")
        title = f"{s.attempt_id} {s.solution}: {s.passed} passed, speedup {speed:.3g}x" if speed else f"{s.attempt_id} {s.solution}: {s.passed} passed"
        if node.notes:
            title += " | " + " | ".join(f"{n.verdict or 'note'}: {n.direction}" for n in node.notes[-3:])
        if node.outside_parent:
            title += f" | parent {node.outside_parent} is outside this view"
        focus_cls = " focus" if s.attempt_id == focus else ""
        verdict_cls = f" v-{node.verdict}" if node.verdict else ""
        boxes.append(
            f'<a href="{UI_PREFIX}/attempts/{q(s.attempt_id)}" class="node-link" data-attempt="{h(s.attempt_id)}"><g class="node n-{state}{verdict_cls}{focus_cls}">'
            f"<title>{h(title)}</title>"
            f'<rect x="{x}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="7"/>'
            f'<text x="{x + 10}" y="{y + 19:.0f}" class="t1">{h(s.attempt_id)}{" · " + format(speed, ".3g") + "×" if speed else ""}</text>'
            f'<text x="{x + 10}" y="{y + 37:.0f}" class="t2">{h(line2[:30])}</text>'
            "</g></a>"
        )
    return (
        f'<div class="lineage-wrap"><svg class="lineage" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="attempt lineage of {h(data.definition)}">'
        + "".join(edges)
        + "".join(boxes)
        + "</svg></div>"
    )


def lineage_fragment(data: Lineage, focus: str | None) -> str:
    legend = " ".join(
        f'<span class="legend-item n-{state}"><span class="swatch"></span>{h(label)}</span>'
        for state, label in (("best", "best"), ("passed", "all passed"), ("partial", "some failed"), ("failed", "failed"), ("suspect", "suspect"))
    )
    focus_text = ""
    if focus and focus in data.nodes:
        chain = []
        cursor: str | None = focus
        while cursor and cursor in data.nodes and cursor not in chain:
            chain.append(cursor)
            cursor = data.nodes[cursor].summary.parent
        focus_text = '<p>Ancestry of ' + attempt_link(focus) + ": " + " → ".join(attempt_link(a) for a in reversed(chain)) + "</p>"
    roots = len(data.roots)
    return (
        f"<h1>Lineage of {definition_link(data.definition)}</h1>"
        f'<p class="muted">{len(data.nodes)} attempts in {roots} {"tree" if roots == 1 else "trees"}; an edge runs from a parent to the attempt that improved on it. '
        "Verdicts come from record_note.</p>"
        f'<p class="legend">{legend}</p>'
        + focus_text
        + lineage_svg(data, focus)
        + "<h2>Notes</h2>"
        + notes_list(data.notes)
    )


# ---- a profile


def profile_fragment(summary: ProfileSummary, chart: tuple[str, str]) -> str:
    rows = []
    for k in summary.kernels:
        r = k.roofline
        rows.append(
            [
                f'<span title="{h(k.name)}">{h(k.name[:70])}</span>',
                num(k.duration_us, 4, " µs"),
                (badge(k.bottleneck.label, "warn") + f' <span class="small">{h(k.bottleneck.reason)}</span>') if k.bottleneck else "",
                num(k.occupancy_achieved_pct, 3, "%"),
                num(k.compute_throughput_pct, 3, "%"),
                num(k.dram_throughput_pct, 3, "%"),
                num(r.arithmetic_intensity if r else None, 4),
                num(r.achieved_tflops if r else None, 4),
                num(r.achieved_dram_tb_s if r else None, 3),
            ]
        )
    facts = dl(
        [
            ("attempt", attempt_link(summary.attempt_id)),
            ("definition", definition_link(summary.definition)),
            ("solution", h(summary.solution)),
            ("workload", code(summary.workload)),
            ("set", h(summary.profile_set)),
            ("GPU", h(summary.gpu or "-")),
            ("total", num(summary.total_duration_us, 4, " µs")),
            ("report", code(summary.report_path)),
        ]
    )
    return (
        f"<h1>Profile {h(summary.profile_id)}</h1>"
        + (f'<p class="message">{h(summary.message)}</p>' if summary.message else "")
        + facts
        + "<h2>Roofline</h2>"
        + chart_img("roofline", summary.profile_id, *chart)
        + "<h2>Kernels</h2>"
        + table(["kernel", "duration", "bottleneck", "occupancy", "compute", "DRAM", "FLOP/B", "TFLOP/s", "TB/s"], rows, cls="kernels")
    )


def error_fragment(message: str) -> str:
    return f'<h1>Not found</h1><p class="error">{h(message)}</p><p><a href="{UI_PREFIX}/">Back to the queue</a></p>'
