"""Recording calls a definition forbids, inside the executor.

This runs in the solution's own process, so a determined solution can undo it: it is a second
line behind the static check of the sources (policy.py) and the kernel names the executor reports.
"""

from __future__ import annotations

import functools
import importlib
from collections import Counter
from typing import Any


def resolve(dotted: str) -> tuple[Any, str, Any] | None:
    """(owner, attribute, value) for 'package.module.Class.attr', or None if it does not exist."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            owner: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for name in parts[split:-1]:
                owner = getattr(owner, name)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            return None
    return None


class ForbiddenCalls:
    """Wraps each forbidden callable so calls are counted (and still performed)."""

    def __init__(self, names: list[str]) -> None:
        self.calls: Counter[str] = Counter()
        self._originals: list[tuple[Any, str, Any]] = []
        for name in names:
            found = resolve(name)
            if found is None or not callable(found[2]):
                continue
            owner, attribute, original = found
            try:
                setattr(owner, attribute, self._wrap(name, original))
                self._originals.append((owner, attribute, original))
            except (AttributeError, TypeError):
                continue  # a C type that refuses new attributes; the static check still covers it

    def _wrap(self, name: str, original: Any) -> Any:
        @functools.wraps(original)
        def recorder(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return original(*args, **kwargs)

        return recorder

    def restore(self) -> None:
        for owner, attribute, original in reversed(self._originals):
            setattr(owner, attribute, original)
        self._originals.clear()

    def take(self) -> dict[str, int]:
        seen = dict(self.calls)
        self.calls.clear()
        return seen
