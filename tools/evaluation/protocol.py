"""The line protocol between the orchestrator and a solution child.

The orchestrator drives the child one step at a time over stdin, and sends each step's seeds
with the command, so the child cannot compute anything ahead of the clock the orchestrator
keeps. The child answers on stdout with lines that start with a per-run nonce; anything else on
stdout is the solution's own printing and goes to the log.
"""

from __future__ import annotations

import json
from typing import Any

PREFIX = "KDA-"


def encode(nonce: str, message: dict[str, Any]) -> str:
    return f"{PREFIX}{nonce} {json.dumps(message, separators=(',', ':'))}\n"


def decode(nonce: str, line: str) -> dict[str, Any] | None:
    """The message if `line` is one of ours, else None (solution output)."""
    marker = f"{PREFIX}{nonce} "
    if not line.startswith(marker):
        return None
    try:
        message = json.loads(line[len(marker) :])
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
