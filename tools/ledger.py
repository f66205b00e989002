"""The attempt ledger: every benchmark is an attempt; notes record directions and verdicts.

Attempts keep the solution's sources, so any past attempt can be re-run, compared or packed.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from flashinfer_bench.data import Solution
from pydantic import Field, PrivateAttr

from kda_mcp.tools.errors import InvalidArgumentError, not_found
from kda_mcp.tools.models import Result
from kda_mcp.tools.store import Store, dumps, now

NoteVerdict = Literal["idea", "keep", "revise", "reject"]


class AttemptSummary(Result):
    attempt_id: str
    created: float
    definition: str
    solution: str
    solution_hash: str
    parent: str | None = None
    status: str
    passed: str = Field(description="passed/total workloads")
    geomean_speedup_vs_baseline: float | None = None
    geomean_speedup_vs_reference: float | None = None
    suspect: bool | None = None
    gpu: str | None = Field(default=None, description="The GPU it was timed on (provenance).")
    job_id: str | None = None
    # The candidate's own median latency per workload (us): what `best` compares.
    _latency_us: dict[str, float] = PrivateAttr(default_factory=dict)


class AttemptPage(Result):
    attempts: list[AttemptSummary]
    best: str | None = Field(
        default=None,
        description="The fastest fully passing, unsuspected attempt by its own median latencies, on the workloads and GPU it shares with the most others (best_basis says how).",
    )
    best_basis: str | None = Field(default=None, description="How best was decided: on what workloads and GPU, its margin, and which attempts could not be compared.")
    lineage: list[str] | None = Field(default=None, description="Ancestry of lineage_of, oldest first.")
    notes: list[dict[str, Any]] | None = None


class AttemptDetail(Result):
    summary: AttemptSummary
    result: dict[str, Any]
    solution: dict[str, Any] | None = None
    children: list[str] | None = None
    notes: list[dict[str, Any]] | None = None


class NoteView(Result):
    note_id: str
    created: float
    definition: str | None = None
    direction: str
    hypothesis: str | None = None
    verdict: str | None = None
    attempts: list[str]
    text: str | None = None


def _latencies(result: dict[str, Any]) -> dict[str, float]:
    """The candidate's median latency per passed workload, from a benchmark result."""
    found = {}
    for row in result.get("workloads") or []:
        median = ((row.get("latency") or {}) if isinstance(row, dict) else {}).get("median_us")
        if row.get("status") == "PASSED" and row.get("workload") and isinstance(median, (int, float)) and median > 0:
            found[row["workload"]] = float(median)
    return found


def passed_counts(s: AttemptSummary) -> tuple[int, int]:
    """(workloads passed, workloads run) from the summary's 'x/y'; (0, 0) when unreadable."""
    done, _, total = s.passed.partition("/")
    try:
        return int(done), int(total)
    except ValueError:
        return 0, 0


def passed_all(s: AttemptSummary) -> bool:
    done, total = passed_counts(s)
    return total > 0 and done == total


def _fully_passing(s: AttemptSummary) -> bool:
    return passed_all(s) and not s.suspect


def solution_hash(solution: Solution) -> str:
    """Content hash of what runs (sources and build spec), independent of name and author."""
    import hashlib

    h = hashlib.sha256()
    spec = solution.spec
    for part in (spec.language.value, spec.entry_point, str(spec.destination_passing_style), spec.binding.value if spec.binding else "", *spec.dependencies):
        h.update(part.encode() + b"\0")
    for source in sorted(solution.sources, key=lambda s: s.path):
        h.update(source.path.encode() + b"\0" + source.content.encode() + b"\0")
    return h.hexdigest()[:16]


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _ids(self, definition: str | None = None) -> list[str]:
        if definition:
            return [r["id"] for r in self.store.execute("SELECT id FROM attempts WHERE definition = ? ORDER BY created DESC LIMIT 50", (definition,))]
        return [r["id"] for r in self.store.execute("SELECT id FROM attempts ORDER BY created DESC LIMIT 50")]

    def check_parent(self, parent: str | None) -> None:
        if parent and not self.store.execute("SELECT 1 FROM attempts WHERE id = ?", (parent,)):
            raise not_found("attempt", parent, self._ids(), list_tool="list_attempts")

    def new_id(self) -> str:
        return self.store.next_id("a")

    def record(self, attempt_id: str, *, solution: Solution, parent: str | None, job_id: str | None, result: dict[str, Any]) -> str:
        aggregate = result.get("aggregate", {})
        summary = {
            "passed": f"{aggregate.get('passed', 0)}/{aggregate.get('total', 0)}",
            "geomean_speedup_vs_baseline": aggregate.get("geomean_speedup_vs_baseline"),
            "geomean_speedup_vs_reference": aggregate.get("geomean_speedup_vs_reference"),
            "suspect": any(w.get("suspect") for w in result.get("workloads", [])) or None,
            "gpu": (result.get("provenance") or {}).get("gpu"),
            "latency_us": _latencies(result),
        }
        self.store.execute(
            "INSERT INTO attempts(id, created, definition, solution_name, solution_hash, solution, parent, job_id, status, summary, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt_id,
                now(),
                solution.definition,
                solution.name,
                solution_hash(solution),
                solution.model_dump_json(),
                parent,
                job_id,
                result.get("status", "complete"),
                dumps(summary),
                dumps(result),
            ),
        )
        return attempt_id

    def _summary(self, row: Any) -> AttemptSummary:
        summary = json.loads(row["summary"])
        latencies = summary.pop("latency_us", None)
        if latencies is None or "gpu" not in summary:  # recorded before the ledger kept them
            result = json.loads(row["result"]) if row["result"] else {}
            latencies = _latencies(result) if latencies is None else latencies
            summary.setdefault("gpu", (result.get("provenance") or {}).get("gpu"))
        found = AttemptSummary(
            attempt_id=row["id"],
            created=row["created"],
            definition=row["definition"],
            solution=row["solution_name"],
            solution_hash=row["solution_hash"],
            parent=row["parent"],
            status=row["status"],
            job_id=row["job_id"],
            **summary,
        )
        found._latency_us = dict(latencies or {})
        return found

    def _row(self, attempt_id: str) -> Any:
        rows = self.store.execute("SELECT * FROM attempts WHERE id = ?", (attempt_id,))
        if not rows:
            raise not_found("attempt", attempt_id, self._ids(), list_tool="list_attempts")
        return rows[0]

    def solution(self, attempt_id: str) -> Solution:
        return Solution.model_validate_json(self._row(attempt_id)["solution"])

    def list(self, *, definition: str | None = None, lineage_of: str | None = None, limit: int = 20) -> AttemptPage:
        if not 1 <= limit <= 200:
            raise InvalidArgumentError(f"limit must be between 1 and 200, got {limit}.")
        sql, args = "SELECT * FROM attempts", []
        if definition:
            sql += " WHERE definition = ?"
            args.append(definition)
        rows = self.store.execute(sql + " ORDER BY created DESC", tuple(args))
        summaries = [self._summary(r) for r in rows]
        lineage = None
        if lineage_of:
            lineage = []
            cursor: str | None = lineage_of
            while cursor and cursor not in lineage:
                lineage.append(cursor)
                cursor = self._summary(self._row(cursor)).parent
            lineage.reverse()
            wanted = set(lineage)
            summaries = [s for s in summaries if s.attempt_id in wanted]
        best, basis = self.decide_best(summaries)
        notes = self.notes(definition=definition, limit=10) if definition and not lineage_of else None
        return AttemptPage(
            attempts=summaries[:limit], best=best, best_basis=basis, lineage=lineage, notes=[n.model_dump(exclude_none=True) for n in notes] if notes else None
        )

    @staticmethod
    def best(summaries: list[AttemptSummary]) -> str | None:
        return Ledger.decide_best(summaries)[0]

    @staticmethod
    def decide_best(summaries: list[AttemptSummary]) -> tuple[str | None, str | None]:
        """The best attempt and how it was decided.

        Speedups are ratios to a reference or baseline that is re-timed in every run, so a geomean
        speedup moves with the other side's noise. The best is decided instead on the candidates'
        own median latency per workload, among fully passing, unsuspected attempts timed on the
        same GPU model, over the workloads they all ran: of every (GPU, workload set) an attempt
        defines, the one that compares the most measurements (attempts x workloads; then the
        most attempts, then the newest); the lowest geomean latency over those workloads wins. Attempts on other GPUs or without
        those workloads are named as not compared. Attempts with no latencies recorded fall back
        to the geomean speedup, and the basis says so.
        """
        eligible = [s for s in summaries if _fully_passing(s)]
        if not eligible:
            return None, None
        timed = [s for s in eligible if s._latency_us]
        if not timed:
            scored = [(s.geomean_speedup_vs_baseline or s.geomean_speedup_vs_reference, s.attempt_id) for s in eligible]
            scored = [(v, a) for v, a in scored if v]
            if not scored:
                return None, None
            return max(scored)[1], (
                "highest geomean speedup (vs baseline, else reference): no per-workload latencies were recorded, "
                "and a speedup moves with the other side's time; compare_solutions decides between close attempts"
            )
        newest = {s.attempt_id: s.created for s in timed}
        best_pick: tuple[tuple[bool, int, int, float], str, frozenset[str], list[AttemptSummary]] | None = None
        for gpu in dict.fromkeys(s.gpu for s in timed):
            members = [s for s in timed if s.gpu == gpu]
            for anchor in members:
                workloads = frozenset(anchor._latency_us)
                group = [s for s in members if workloads <= set(s._latency_us)]
                # Most measurements compared (attempts x workloads), a comparison over one before none.
                rank = (len(group) > 1, len(group) * len(workloads), len(group), max(newest[s.attempt_id] for s in group))
                if best_pick is None or rank > best_pick[0]:
                    best_pick = (rank, gpu or "an unrecorded GPU", workloads, group)
        assert best_pick is not None
        _, gpu_name, workloads, group = best_pick

        def geomean_us(s: AttemptSummary) -> float:
            return math.exp(sum(math.log(s._latency_us[w]) for w in workloads) / len(workloads))

        ranked = sorted(group, key=lambda s: (geomean_us(s), -s.created))
        winner = ranked[0]
        basis = (
            f"lowest geomean of its own median latencies, {geomean_us(winner):.3f} us, over the {len(workloads)} workload(s) "
            f"{len(group)} attempt(s) timed on {gpu_name} share"
        )
        if len(ranked) > 1:
            wins = sum(all(winner._latency_us[w] <= s._latency_us[w] for s in ranked[1:]) for w in workloads)
            margin = geomean_us(ranked[1]) / geomean_us(winner) - 1
            basis += f"; next {ranked[1].attempt_id} at {geomean_us(ranked[1]):.3f} us (+{margin:.1%}); fastest on {wins} of {len(workloads)} workload(s)"
            if margin < 0.02:
                basis += f"; under 2% apart across runs is within run-to-run drift: compare_solutions {winner.attempt_id} vs {ranked[1].attempt_id} decides"
        else:
            basis += " (no other attempt to compare with)"
        compared = {s.attempt_id for s in group}
        apart = []
        for s in eligible:
            if s.attempt_id in compared:
                continue
            if not s._latency_us:
                apart.append(f"{s.attempt_id} (no latencies recorded)")
            elif (s.gpu or "an unrecorded GPU") != gpu_name:
                apart.append(f"{s.attempt_id} (timed on {s.gpu or 'an unrecorded GPU'})")
            else:
                apart.append(f"{s.attempt_id} (did not run all {len(workloads)} workloads)")
        if apart:
            basis += "; not comparable, so not compared: " + ", ".join(apart[:10]) + (f" and {len(apart) - 10} more" if len(apart) > 10 else "")
        return winner.attempt_id, basis

    def get(self, attempt_id: str, *, include_sources: bool = False) -> AttemptDetail:
        row = self._row(attempt_id)
        children = [r["id"] for r in self.store.execute("SELECT id FROM attempts WHERE parent = ? ORDER BY created", (attempt_id,))]
        notes = [n for n in self.notes(limit=200) if attempt_id in n.attempts]
        return AttemptDetail(
            summary=self._summary(row),
            result=json.loads(row["result"]),
            solution=json.loads(row["solution"]) if include_sources else None,
            children=children or None,
            notes=[n.model_dump(exclude_none=True) for n in notes] or None,
        )

    def add_note(
        self, *, direction: str, attempts: list[str], definition: str | None, hypothesis: str | None, verdict: str | None, text: str | None
    ) -> NoteView:
        for attempt in attempts:
            self._row(attempt)
        if definition is None and attempts:
            definition = self._row(attempts[0])["definition"]
        note_id = self.store.next_id("n")
        self.store.execute(
            "INSERT INTO notes(id, created, definition, direction, hypothesis, verdict, attempts, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (note_id, now(), definition, direction, hypothesis, verdict, dumps(attempts), text),
        )
        return self._notes("SELECT * FROM notes WHERE id = ?", (note_id,))[0]

    def notes(self, *, definition: str | None = None, limit: int = 50) -> list[NoteView]:
        if definition:
            return self._notes("SELECT * FROM notes WHERE definition = ? ORDER BY created DESC LIMIT ?", (definition, limit))
        return self._notes("SELECT * FROM notes ORDER BY created DESC LIMIT ?", (limit,))

    def _notes(self, sql: str, args: tuple[Any, ...]) -> list[NoteView]:
        rows = self.store.execute(sql, args)
        return [
            NoteView(
                note_id=r["id"],
                created=r["created"],
                definition=r["definition"],
                direction=r["direction"],
                hypothesis=r["hypothesis"],
                verdict=r["verdict"],
                attempts=json.loads(r["attempts"]),
                text=r["text"],
            )
            for r in rows
        ]
