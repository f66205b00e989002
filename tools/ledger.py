"""The attempt ledger: every benchmark is an attempt; notes record directions and verdicts.

Attempts keep the solution's sources, so any past attempt can be re-run, compared or packed.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from flashinfer_bench.data import Solution
from pydantic import Field

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
    job_id: str | None = None


class AttemptPage(Result):
    attempts: list[AttemptSummary]
    best: str | None = Field(default=None, description="Attempt with the highest geomean speedup among fully passing, unsuspected ones.")
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
        return AttemptSummary(
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
        best = self.best(summaries)
        notes = self.notes(definition=definition, limit=10) if definition and not lineage_of else None
        return AttemptPage(attempts=summaries[:limit], best=best, lineage=lineage, notes=[n.model_dump(exclude_none=True) for n in notes] if notes else None)

    @staticmethod
    def best(summaries: list[AttemptSummary]) -> str | None:
        def score(s: AttemptSummary) -> float | None:
            done, total = (int(x) for x in s.passed.split("/"))
            if total == 0 or done != total or s.suspect:
                return None
            return s.geomean_speedup_vs_baseline or s.geomean_speedup_vs_reference

        scored = [(score(s), s.attempt_id) for s in summaries if score(s) is not None]
        return max(scored)[1] if scored else None

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
