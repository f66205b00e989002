"""What the dashboard shows, read from the server's state: jobs, the attempt ledger, profiles, GPUs.

Read-only: the one action anywhere in the dashboard is cancelling a job (app.jobs.cancel, in
routes.py). Every function here is synchronous (SQLite reads); routes.py calls them in a worker
thread so the event loop that also serves /mcp never waits on them.
"""

from __future__ import annotations

import asyncio
import json
import weakref
from dataclasses import dataclass, field
from typing import Any

import anyio

from kda_mcp.tools import charts
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.dataset import MAX_PAGE
from kda_mcp.tools.errors import InvalidArgumentError, KdaError, not_found
from kda_mcp.tools.jobs import FINISHED, JobView
from kda_mcp.tools.ledger import AttemptDetail, AttemptSummary, NoteView
from kda_mcp.tools.ledger import AttemptPage as LedgerPage
from kda_mcp.tools.profile.models import ProfileSummary

MAX_ATTEMPTS = 200  # per definition, the most recent (Ledger.list's ceiling)
RECENT_JOBS = 60

# Chart sizes on the pages (the render_chart tool takes any size in tools/charts.py's range).
PAGE_SIZES = {"roofline": (800, 460), "latency": (900, 420), "speedup_history": (900, 360)}


# ---- jobs


@dataclass
class JobRow:
    view: JobView
    params: dict[str, Any]

    @property
    def active(self) -> bool:
        return self.view.status not in FINISHED

    @property
    def attempt(self) -> str | None:
        result = self.view.result or {}
        value = result.get("attempt_id")
        return value if isinstance(value, str) else None

    @property
    def profile(self) -> str | None:
        result = self.view.result or {}
        value = result.get("profile_id")
        return value if isinstance(value, str) else None


@dataclass
class Queue:
    gpus: list[tuple[int, str, list[JobRow]]]  # index, what holds it ('' when free), its running jobs
    waiting: list[JobRow]  # queued or running without a GPU yet
    recent: list[JobRow]


def _params(app: KdaApp, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = app.store.execute(f"SELECT id, params FROM jobs WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids))
    out = {}
    for r in rows:
        try:
            value = json.loads(r["params"])
        except (TypeError, ValueError):
            value = {}
        out[r["id"]] = value if isinstance(value, dict) else {}
    return out


def queue(app: KdaApp) -> Queue:
    recent = app.jobs.list(limit=RECENT_JOBS)
    active_ids = {r["id"] for r in app.store.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")}
    seen = {v.job_id for v in recent}
    active = [v for v in recent if v.job_id in active_ids] + [app.jobs.get(j) for j in sorted(active_ids - seen)]
    params = _params(app, sorted({v.job_id for v in recent} | active_ids))
    rows = {v.job_id: JobRow(v, params.get(v.job_id, {})) for v in [*recent, *active]}
    status = app.gpus.status()
    gpus = [(gpu, holder, [rows[v.job_id] for v in active if v.gpu == gpu and v.status == "running"]) for gpu, holder in status.items()]
    on_gpu = {row.view.job_id for _, _, jobs in gpus for row in jobs}
    waiting = [rows[v.job_id] for v in active if v.job_id not in on_gpu]
    return Queue(gpus=gpus, waiting=waiting, recent=[rows[v.job_id] for v in recent])


# ---- definitions and attempts


def speedup_of(summary: AttemptSummary) -> float | None:
    return summary.geomean_speedup_vs_baseline or summary.geomean_speedup_vs_reference


@dataclass
class DefinitionRow:
    name: str
    in_dataset: bool
    description: str | None
    attempts: int
    best: AttemptSummary | None
    best_basis: str | None
    latest: AttemptSummary | None
    suspects: int


def _definition_names(app: KdaApp) -> tuple[list[str], dict[str, str | None]]:
    described: dict[str, str | None] = {}
    try:
        offset: int | None = 0
        while offset is not None:
            page = app.dataset().list_definitions(offset=offset, limit=MAX_PAGE)
            described.update({d.name: d.summary for d in page.definitions})
            offset = page.next_offset
    except KdaError:
        pass
    ledger = [r["definition"] for r in app.store.execute("SELECT DISTINCT definition FROM attempts")]
    return sorted(set(described) | set(ledger)), described


def ledger_page(app: KdaApp, definition: str) -> LedgerPage:
    """The definition's attempts, newest first (at most MAX_ATTEMPTS), and the ledger's best of all of them."""
    return app.ledger.list(definition=definition, limit=MAX_ATTEMPTS)


def attempts_of(app: KdaApp, definition: str) -> list[AttemptSummary]:
    return ledger_page(app, definition).attempts


def definitions(app: KdaApp) -> list[DefinitionRow]:
    names, described = _definition_names(app)
    rows = []
    for name in names:
        found = ledger_page(app, name)
        summaries = found.attempts
        best_id = found.best
        rows.append(
            DefinitionRow(
                name=name,
                in_dataset=name in described,
                description=described.get(name),
                attempts=len(summaries),
                best=next((s for s in summaries if s.attempt_id == best_id), None),
                best_basis=found.best_basis,
                latest=summaries[0] if summaries else None,
                suspects=sum(1 for s in summaries if s.suspect),
            )
        )
    return rows


def check_definition(app: KdaApp, name: str) -> None:
    names, _ = _definition_names(app)
    if name not in names:
        raise not_found("definition", name, names, list_tool="list_definitions")


@dataclass
class DefinitionPage:
    name: str
    description: str | None
    attempts: list[AttemptSummary]
    best: str | None
    best_basis: str | None
    notes: list[NoteView]


def definition(app: KdaApp, name: str) -> DefinitionPage:
    check_definition(app, name)
    _, described = _definition_names(app)
    found = ledger_page(app, name)
    return DefinitionPage(name, described.get(name), found.attempts, found.best, found.best_basis, app.ledger.notes(definition=name, limit=50))


@dataclass
class AttemptPage:
    detail: AttemptDetail
    ancestry: list[str]
    profiles: list[ProfileSummary]
    best: str | None


def profiles_of(app: KdaApp, attempt_id: str) -> list[ProfileSummary]:
    rows = app.store.execute("SELECT id FROM profiles WHERE attempt = ? ORDER BY created", (attempt_id,))
    return [app.profiles.get(r["id"]) for r in rows]


def attempt(app: KdaApp, attempt_id: str) -> AttemptPage:
    detail = app.ledger.get(attempt_id)
    # Lineage stays within a definition: reading only its attempts keeps a 5 s poll off the whole ledger.
    ancestry = app.ledger.list(definition=detail.summary.definition, lineage_of=attempt_id, limit=200).lineage or [attempt_id]
    return AttemptPage(detail, ancestry, profiles_of(app, attempt_id), ledger_page(app, detail.summary.definition).best)


def profile(app: KdaApp, profile_id: str) -> ProfileSummary:
    return app.profiles.get(profile_id)


# ---- lineage


@dataclass
class Node:
    summary: AttemptSummary
    depth: int = 0
    row: float = 0.0
    children: list[str] = field(default_factory=list)
    verdict: str | None = None
    notes: list[NoteView] = field(default_factory=list)
    outside_parent: str | None = None  # a parent in another definition (or beyond the shown window)


@dataclass
class Lineage:
    definition: str
    nodes: dict[str, Node]
    roots: list[str]
    notes: list[NoteView]
    best: str | None
    rows: int


def lineage(app: KdaApp, definition: str) -> Lineage:
    """The attempt DAG of a definition (each attempt has at most one parent, so a forest), laid
    out for drawing: depth = generations from its root, row = leaf order (parents centred on their
    children)."""
    check_definition(app, definition)
    found = ledger_page(app, definition)
    summaries = sorted(found.attempts, key=lambda s: (s.created, s.attempt_id))
    nodes = {s.attempt_id: Node(s) for s in summaries}
    roots = []
    for s in summaries:
        if s.parent and s.parent in nodes:
            nodes[s.parent].children.append(s.attempt_id)
        else:
            roots.append(s.attempt_id)
            if s.parent:
                nodes[s.attempt_id].outside_parent = s.parent
    notes = app.ledger.notes(definition=definition, limit=200)
    for note in reversed(notes):  # oldest first, so the latest verdict wins
        for attempt_id in note.attempts:
            if attempt_id in nodes:
                nodes[attempt_id].notes.append(note)
                if note.verdict:
                    nodes[attempt_id].verdict = note.verdict
    next_row = 0.0

    def place(attempt_id: str, depth: int) -> float:
        nonlocal next_row
        node = nodes[attempt_id]
        node.depth = depth
        if not node.children:
            node.row = next_row
            next_row += 1
            return node.row
        rows = [place(child, depth + 1) for child in node.children]
        node.row = (rows[0] + rows[-1]) / 2
        return node.row

    for root in roots:
        place(root, 0)
    return Lineage(definition, nodes, roots, notes, found.best, int(next_row))


# ---- charts


def chart_spec(app: KdaApp, kind: str, subject: str) -> dict[str, Any]:
    """The spec of one chart: kind roofline takes a profile id, latency an attempt id,
    speedup_history a definition name."""
    if kind == "roofline":
        return charts.roofline_spec(app.profiles.get(subject))
    if kind == "latency":
        detail = app.ledger.get(subject)
        result = dict(detail.result)
        result.setdefault("attempt_id", subject)
        return charts.latency_spec(result)
    if kind == "speedup_history":
        check_definition(app, subject)
        return charts.speedup_history_spec(subject, attempts_of(app, subject))
    raise InvalidArgumentError(f"Unknown chart kind {kind!r}.", hint=f"Use one of: {', '.join(charts.KINDS)}.")


def chart_cache(app: KdaApp) -> charts.ChartCache:
    return charts.ChartCache(app.settings.cache_dir / "charts")


_DRAWERS: weakref.WeakKeyDictionary[Any, anyio.CapacityLimiter] = weakref.WeakKeyDictionary()  # one per event loop


async def draw_chart(app: KdaApp, kind: str, subject: str, width: int | None = None, height: int | None = None) -> charts.Chart:
    """chart() in a worker thread of the charts' own: drawing is serialized anyway (tools/charts.py),
    so a burst of chart requests must not take the threads the MCP tools run in."""
    loop = asyncio.get_running_loop()
    limiter = _DRAWERS.get(loop)
    if limiter is None:
        limiter = _DRAWERS[loop] = anyio.CapacityLimiter(2)
    return await anyio.to_thread.run_sync(chart, app, kind, subject, width, height, limiter=limiter)


def chart(app: KdaApp, kind: str, subject: str, width: int | None = None, height: int | None = None) -> charts.Chart:
    w, h = PAGE_SIZES.get(kind, (charts.DEFAULT_WIDTH, charts.DEFAULT_HEIGHT))
    return chart_cache(app).render(kind, chart_spec(app, kind, subject), width=width or w, height=height or h)


def chart_key(app: KdaApp, kind: str, subject: str) -> tuple[str, str]:
    """(content key, caption) of the page-sized chart, without drawing it: for the <img> URL."""
    spec = chart_spec(app, kind, subject)
    w, h = PAGE_SIZES[kind]
    return charts.chart_key(kind, spec, w, h), charts.caption(kind, spec)
