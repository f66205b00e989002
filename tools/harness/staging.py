"""Putting a built solution where a sandboxed child can load it: its sources and library, copied
into the child's room by the trusted side before any of the solution's code runs there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flashinfer_bench.data import Solution

from kda_mcp.tools.sandbox.files import write_into


@dataclass
class Built:
    """A solution ready for a child: its sources and, for CUDA/C++, the library the build left."""

    solution: Solution
    library: Path | None = None
    error: str | None = None
    compile_report: dict[str, Any] | None = None


def stage_solution(room: Path, solution: Solution, library: Path | None) -> tuple[Path, Path | None]:
    """(source folder, library path) inside `room`."""
    for source in solution.sources:
        write_into(room, f"src/{source.path}", source.content)
    staged = None
    if library is not None:
        staged = write_into(room, f"lib/{library.name}", library.read_bytes(), mode=0o755)
    (room / "src").mkdir(exist_ok=True)
    return room / "src", staged
