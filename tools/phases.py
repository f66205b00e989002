"""The phase prompts: markdown templates with YAML front matter, rendered with string.Template."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import yaml

from kda_mcp.resources import tasks

from kda_mcp.tools.errors import InvalidArgumentError, KdaError, not_found


@dataclass(frozen=True)
class PromptArgumentSpec:
    name: str
    description: str
    required: bool
    default: str | None


@dataclass(frozen=True)
class PhasePrompt:
    name: str
    title: str
    description: str
    arguments: tuple[PromptArgumentSpec, ...]
    template: str
    path: Path

    @property
    def phase(self) -> str:
        """The short handle used in phase:// URIs and get_phase_prompt: the file stem (phase1, ...)."""
        return self.path.stem

    def render(self, values: dict[str, str | None]) -> str:
        known = {a.name for a in self.arguments}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError(f"Prompt {self.name!r} has no argument(s) {unknown}; it takes {sorted(known)}.")
        filled: dict[str, str] = {}
        for arg in self.arguments:
            value = values.get(arg.name)
            if value is None or str(value).strip() == "":
                if arg.required:
                    raise InvalidArgumentError(f"Prompt {self.name!r} needs {arg.name!r}: {arg.description}")
                value = arg.default or ""
            filled[arg.name] = str(value)
        # The definition's task note (what dominates its cost, its traps, the wiki pages that apply).
        filled["task_note"] = tasks.note(filled.get("definition", "")) or "(kda-mcp has no task note for this definition.)"
        return string.Template(self.template).safe_substitute(filled)


def _parse(path: Path) -> PhasePrompt:
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        raise KdaError(f"{path}: phase prompt has no front matter.")
    _, head, body = text.split("---", 2)
    meta = yaml.safe_load(head) or {}
    args = tuple(
        PromptArgumentSpec(
            name=a["name"],
            description=a.get("description", ""),
            required=bool(a.get("required", False)),
            default=None if a.get("default") is None else str(a["default"]),
        )
        for a in meta.get("arguments", [])
    )
    return PhasePrompt(
        name=meta["name"],
        title=meta.get("title", meta["name"]),
        description=meta.get("description", ""),
        arguments=args,
        template=body.lstrip("\n"),
        path=path,
    )


def load_phase_prompts(folder: Path) -> list[PhasePrompt]:
    return [_parse(p) for p in sorted(folder.glob("phase*.md"))]


def find_phase(prompts: list[PhasePrompt], phase: str) -> PhasePrompt:
    """By file stem ('phase2'), prompt name, or bare number ('2')."""
    wanted = phase.strip().lower()
    for prompt in prompts:
        if wanted in (prompt.phase, prompt.name, prompt.phase.removeprefix("phase")):
            return prompt
    raise not_found("phase", phase, [p.phase for p in prompts] + [p.name for p in prompts])
