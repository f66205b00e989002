"""Errors a caller can act on.

Every error raised on purpose by the domain is a `KdaError`: its message says what went wrong
and what to do next. The MCP layer turns these into tool errors the agent reads; anything else
is a bug and is reported as one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class KdaError(Exception):
    """An anticipated failure, with a message written for the agent that made the call."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} {hint}")


class NotFoundError(KdaError):
    """A named thing (definition, workload, page, job, attempt) does not exist."""


class InvalidArgumentError(KdaError):
    """An argument is malformed or out of range."""


class UnavailableError(KdaError):
    """The request is valid but this machine cannot serve it (no GPU, no ncu, ...)."""


class DatasetError(KdaError):
    """A dataset file is missing or malformed; the message names the file."""


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Candidates that look like `name`: close spellings first, then substring matches."""
    pool = list(dict.fromkeys(candidates))
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    lowered = name.lower()
    for candidate in pool:
        if len(found) >= n:
            break
        if candidate not in found and lowered and lowered in candidate.lower():
            found.append(candidate)
    return found


def not_found(kind: str, name: str, candidates: Iterable[str], *, list_tool: str | None = None) -> NotFoundError:
    """A NotFoundError that names the missing thing and suggests close matches."""
    pool = list(candidates)
    matches = close_matches(name, pool)
    if matches:
        hint = "Did you mean: " + ", ".join(repr(m) for m in matches) + "?"
    elif pool and len(pool) <= 10:
        hint = "Known: " + ", ".join(repr(m) for m in sorted(pool)) + "."
    elif list_tool:
        hint = f"Call {list_tool} to see what exists."
    else:
        hint = None
    return NotFoundError(f"Unknown {kind} {name!r}.", hint=hint)
