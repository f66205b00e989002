"""Content-addressed build cache: an unchanged solution answers from disk in milliseconds.

Only successful builds are stored; a failure is rebuilt on the next call, so a fixed toolchain or
a transient error never sticks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from flashinfer_bench.data import Solution

from kda_mcp.tools.compile.result import CompileResult

SCHEMA = "kda-build-2"  # bump when the build recipe or the result format changes


def build_key(solution: Solution, *, target: str, flags: list[str], toolchain: str) -> str:
    """Hash of everything that changes the binary; the solution's name and author do not."""
    spec = solution.spec
    h = hashlib.sha256()
    for part in (
        SCHEMA,
        spec.language.value,
        spec.entry_point,
        spec.binding.value if spec.binding else "",
        str(spec.destination_passing_style),
        *spec.dependencies,
        target,
        *flags,
        toolchain,
    ):
        h.update(part.encode())
        h.update(b"\0")
    for source in sorted(solution.sources, key=lambda s: s.path):
        h.update(source.path.encode() + b"\0" + source.content.encode() + b"\0")
    return h.hexdigest()[:32]


def file_digest(*paths: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.read_bytes())
    return h.hexdigest()


class BuildCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str) -> CompileResult | None:
        record = self.folder(key) / "result.json"
        if not record.is_file():
            return None
        try:
            return CompileResult.model_validate_json(record.read_text())
        except ValueError:
            return None  # written by an older schema: rebuild

    def store(self, key: str, result: CompileResult) -> None:
        record = self.folder(key) / "result.json"
        tmp = record.with_suffix(".tmp")
        tmp.write_text(result.model_dump_json())
        os.replace(tmp, record)  # readers see a whole record or none

    def fresh(self, key: str) -> Path:
        """An empty folder for a new build of `key` (removing a failed or partial one)."""
        folder = self.folder(key)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        return folder

    def log(self, key: str) -> str | None:
        path = self.folder(key) / "build.log"
        return path.read_text(errors="replace") if path.is_file() else None

    def artifacts(self, key: str) -> dict[str, str]:
        """What the benchmark worker needs to load the build: library path and source folder."""
        path = self.folder(key) / "artifacts.json"
        return json.loads(path.read_text()) if path.is_file() else {}
