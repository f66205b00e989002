"""render_chart: the dashboard's pictures as an MCP tool, for agents that can look at images."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Annotated, Literal

from kda_mcp.server.adapters import domain_errors, read_only
from kda_mcp.server.dashboard import views
from kda_mcp.tools import charts
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import InvalidArgumentError
from kda_mcp.tools.models import Result
from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import Field

SUBJECT = {"roofline": "profile_id", "latency": "attempt_id", "speedup_history": "definition"}


class ChartView(Result):
    kind: str
    subject: str = Field(description="The profile, attempt or definition drawn.")
    width: int
    height: int
    cache_key: str = Field(description="Content hash of what was drawn: the same key means the same picture.")
    cached: bool
    caption: str = Field(description="What the picture shows, with its numbers.")
    url: str = Field(description="Where the dashboard serves it (HTTP servers; needs the token).")


def register(mcp: MCPServer, app: KdaApp) -> None:
    @mcp.tool(
        name="render_chart",
        annotations=read_only("Render a chart"),
        description=(
            "A PNG picture of a result, for when seeing beats reading numbers: kind='roofline' (profile_id: achieved "
            "TFLOP/s against arithmetic intensity per kernel under the GPU's DRAM and FP32/tensor ceilings, to see "
            "how far from its roof a kernel is and which roof bounds it), kind='latency' (attempt_id: each workload's "
            "median with p10-p90 against the reference and baseline medians, to spot the shapes that lag), "
            "kind='speedup_history' (definition: every attempt's geomean speedup in order with the best-so-far line, "
            "to judge whether a direction still pays). Returns the image and a caption with the numbers drawn; cached "
            "by content, so asking again is cheap. The same pictures are on the dashboard at /ui."
        ),
    )
    @domain_errors
    async def render_chart(
        kind: Annotated[Literal["roofline", "latency", "speedup_history"], Field(description="Which picture.")],
        profile_id: Annotated[str | None, Field(min_length=2, max_length=20, description="For roofline: a profile id such as 'p4'.")] = None,
        attempt_id: Annotated[str | None, Field(min_length=2, max_length=20, description="For latency: an attempt id such as 'a7'.")] = None,
        definition: Annotated[str | None, Field(min_length=1, max_length=200, description="For speedup_history: a definition name.")] = None,
        width: Annotated[int, Field(ge=charts.MIN_WIDTH, le=charts.MAX_WIDTH, description="Pixels.")] = charts.DEFAULT_WIDTH,
        height: Annotated[int, Field(ge=charts.MIN_HEIGHT, le=charts.MAX_HEIGHT, description="Pixels.")] = charts.DEFAULT_HEIGHT,
    ) -> Annotated[CallToolResult, ChartView]:
        given = {"profile_id": profile_id, "attempt_id": attempt_id, "definition": definition}
        needed = SUBJECT[kind]
        subject = given[needed]
        if not subject:
            raise InvalidArgumentError(
                f"kind={kind!r} draws one {needed.replace('_id', '')}: pass {needed}.",
                hint="roofline takes profile_id (from profile_solution), latency takes attempt_id (from run_benchmark or "
                "list_attempts), speedup_history takes definition.",
            )
        extra = [name for name, value in given.items() if value and name != needed]
        if extra:
            raise InvalidArgumentError(f"kind={kind!r} takes only {needed}; drop {', '.join(extra)}.")
        chart = await views.draw_chart(app, kind, subject, width, height)
        info = ChartView(
            kind=kind,
            subject=subject,
            width=chart.width,
            height=chart.height,
            cache_key=chart.key,
            cached=chart.cached,
            caption=chart.caption,
            url=f"/ui/charts/{kind}/{urllib.parse.quote(subject, safe='')}.png?w={width}&h={height}",
        )
        data = info.model_dump(mode="json")
        return CallToolResult(
            content=[
                ImageContent(type="image", data=base64.b64encode(chart.png).decode("ascii"), mime_type="image/png"),
                TextContent(type="text", text=chart.caption),
            ],
            structured_content=data,
        )
