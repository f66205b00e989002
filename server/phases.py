"""The phase prompts, served three ways: MCP prompts, phase:// resources, and get_phase_prompt."""

import functools
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument
from mcp.server.mcpserver.resources import FunctionResource
from pydantic import Field

from kda_mcp.server.adapters import domain_errors, read_only
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.phases import PhasePrompt, find_phase

Text = Annotated[str | None, Field(max_length=2000)]


def _render(prompt: PhasePrompt, **arguments: str) -> str:
    return prompt.render(arguments)


def register(mcp: MCPServer, app: KdaApp) -> None:
    prompts = app.phase_prompts
    for prompt in prompts:
        mcp.add_prompt(
            Prompt(
                name=prompt.name,
                title=prompt.title,
                description=prompt.description,
                arguments=[PromptArgument(name=a.name, description=a.description, required=a.required) for a in prompt.arguments],
                fn=functools.partial(_render, prompt),
            )
        )
        mcp.add_resource(
            FunctionResource(
                uri=f"phase://{prompt.phase}",
                name=prompt.name,
                title=prompt.title,
                description=prompt.description + " (template; placeholders like $definition are filled by the prompt or get_phase_prompt)",
                mime_type="text/markdown",
                fn=functools.partial(lambda p: p.template, prompt),
            )
        )

    phases = ", ".join(f"'{p.phase}' ({p.title})" for p in prompts)

    @mcp.tool(
        name="get_phase_prompt",
        annotations=read_only("Get a phase prompt"),
        description=(
            f"Get the working instructions for one phase of the optimization loop, filled in for your task: {phases}. "
            "Use it when your client does not show MCP prompts. Start with phase1 for a new definition; move on when "
            "the phase's 'When to move on' criteria are met."
        ),
        structured_output=False,
    )
    @domain_errors
    def get_phase_prompt(
        phase: Annotated[str, Field(min_length=1, max_length=100, description="'phase1', 'phase2', 'phase3' (or 1, 2, 3).")],
        definition: Annotated[str | None, Field(max_length=200, description="The definition being optimized (required by every phase).")] = None,
        target_speedup: Annotated[str | None, Field(max_length=200, description="Speedup aimed for, e.g. '2x over the baseline'.")] = None,
        dev_workloads: Text = None,
        iterations_per_direction: Annotated[str | None, Field(max_length=20, description="Attempts allowed per optimization direction.")] = None,
    ) -> str:
        prompt = find_phase(prompts, phase)
        values = dict(definition=definition, target_speedup=target_speedup, dev_workloads=dev_workloads, iterations_per_direction=iterations_per_direction)
        known = {a.name for a in prompt.arguments}
        return prompt.render({k: v for k, v in values.items() if k in known})
