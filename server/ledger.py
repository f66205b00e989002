"""Tools over the attempt ledger: attempts, lineage, best-so-far, and decision notes."""

from typing import Annotated, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.types import CallToolResult
from pydantic import Field

from kda_mcp.server.adapters import annotations, compact, domain_errors, read_only
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.ledger import AttemptDetail, AttemptPage, NoteView

AttemptId = Annotated[str, Field(min_length=2, max_length=20, description="Attempt id such as 'a7'.")]


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="list_attempts",
        annotations=read_only("List attempts"),
        description=(
            "The attempt ledger: every run_benchmark is an attempt (solution hash, parent, passed/total, geomean "
            "speedups, suspect flag). Filter by definition; 'best' names the fully passing, unsuspected attempt with the "
            "lowest own latencies over the workloads and GPU most attempts share, and best_basis says how it was decided "
            "(and which attempts could not be compared); "
            "lineage_of gives an attempt's ancestry. Recent notes for the definition come along."
        ),
    )
    @domain_errors
    def list_attempts(
        definition: Annotated[str | None, Field(max_length=200)] = None,
        lineage_of: Annotated[str | None, Field(max_length=20, description="Only this attempt and its ancestors.")] = None,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
    ) -> Annotated[CallToolResult, AttemptPage]:
        return compact(app.ledger.list(definition=definition, lineage_of=lineage_of, limit=limit))

    @mcp.tool(
        name="get_attempt",
        annotations=read_only("Get an attempt"),
        description="One attempt in full: per-workload results, provenance, children, linked notes; include_sources adds the solution it ran.",
    )
    @domain_errors
    def get_attempt(
        attempt_id: AttemptId,
        include_sources: Annotated[bool, Field(description="Include the solution's files.")] = False,
    ) -> Annotated[CallToolResult, AttemptDetail]:
        return compact(app.ledger.get(attempt_id, include_sources=include_sources))

    @mcp.tool(
        name="record_note",
        annotations=annotations("Record a note", read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False),
        description=(
            "Record an optimization direction and its outcome in the ledger: the direction (e.g. 'split-k for "
            "small M'), the hypothesis with its predicted effect, and a verdict (idea / keep / revise / reject) "
            "linked to the attempts that are the evidence. Notes show up in list_attempts and get_attempt."
        ),
    )
    @domain_errors
    def record_note(
        direction: Annotated[str, Field(min_length=1, max_length=200)],
        verdict: Annotated[Literal["idea", "keep", "revise", "reject"] | None, Field(description="The decision, when there is one.")] = None,
        attempts: Annotated[list[str] | None, Field(max_length=50, description="Attempt ids this note is about.")] = None,
        hypothesis: Annotated[str | None, Field(max_length=2000, description="What you expect and why, with the metric that should move.")] = None,
        text: Annotated[str | None, Field(max_length=8000, description="Evidence and reasoning: numbers, profile deltas.")] = None,
        definition: Annotated[str | None, Field(max_length=200, description="Defaults to the first attempt's definition.")] = None,
    ) -> Annotated[CallToolResult, NoteView]:
        if definition:
            app.dataset().definition(definition)
        return compact(
            app.ledger.add_note(direction=direction, attempts=attempts or [], definition=definition, hypothesis=hypothesis, verdict=verdict, text=text)
        )

    @mcp.resource(
        "attempt://{attempt_id}",
        name="attempt",
        title="Benchmark attempt",
        description="An attempt's full record as JSON, sources included.",
        mime_type="application/json",
    )
    def attempt_resource(attempt_id: str) -> str:
        try:
            return app.ledger.get(attempt_id, include_sources=True).model_dump_json(exclude_none=True, indent=1)
        except KdaError as exc:
            raise ResourceError(str(exc)) from exc
