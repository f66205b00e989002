"""The libraries a CUDA/C++ solution may name in `spec.dependencies`, and where they come from.

`cublas`/`cublasLt` link against the toolkit's libraries. `cutlass` adds the CUTLASS and CuTe
headers: from `CUTLASS_HOME` (a clone or install: include/ and tools/util/include/), else from the
`nvidia-cutlass` wheel (`pip install 'kda-mcp[contest]'`), which carries the same headers under
cutlass_library/source/. The compiler reports which one a build used, with its version, and the
version is part of the build key, so new headers rebuild.

Imported by the trusted compiler (to report and key) and by the build child (to pass the flags):
no torch, no CUDA.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

KNOWN = ("cublas", "cublasLt", "cutlass")


@dataclass
class Library:
    name: str
    includes: list[str] = field(default_factory=list)
    ldflags: list[str] = field(default_factory=list)
    found: str = ""  # how it was found, with the version: shown in compile_solution's result

    @property
    def ok(self) -> bool:
        return bool(self.includes or self.ldflags)


def resolve(dependencies: list[str], cuda_home: Path | None) -> tuple[list[Library], list[str]]:
    """The libraries named, and warnings for names that are unknown or not installed here."""
    libraries: list[Library] = []
    warnings: list[str] = []
    for name in dict.fromkeys(dependencies):
        if name in ("cublas", "cublasLt"):
            lib64 = cuda_home / "lib64" if cuda_home else None
            if lib64 and lib64.is_dir():
                libraries.append(Library(name, ldflags=[f"-L{lib64}", "-lcublas", "-lcublasLt"], found=f"CUDA toolkit at {cuda_home}"))
            else:
                warnings.append(f"dependency {name!r}: no CUDA toolkit lib64 found (set CUDA_HOME)")
        elif name == "cutlass":
            library = cutlass()
            if library.ok:
                libraries.append(library)
            else:
                warnings.append(library.found)
        else:
            warnings.append(f"unknown dependency {name!r} ignored (known: {', '.join(KNOWN)})")
    return libraries, warnings


def cutlass() -> Library:
    home = os.environ.get("CUTLASS_HOME")
    roots = [(Path(home), f"CUTLASS_HOME={home}")] if home else []
    wheel = _wheel_root()
    if wheel is not None:
        roots.append((wheel, f"nvidia-cutlass {_version('nvidia-cutlass')} wheel"))
    for root, how in roots:
        include = root / "include"
        if (include / "cutlass" / "cutlass.h").is_file():
            util = root / "tools" / "util" / "include"
            includes = [str(include)] + ([str(util)] if util.is_dir() else [])
            return Library("cutlass", includes=includes, found=f"CUTLASS {header_version(include)} headers from {how} ({include})")
    where = f"CUTLASS_HOME={home} has no include/cutlass/cutlass.h; " if home else ""
    return Library("cutlass", found=f"dependency 'cutlass': {where}no CUTLASS headers found: pip install 'kda-mcp[contest]' (the nvidia-cutlass wheel) or set CUTLASS_HOME to a CUTLASS checkout")


def header_version(include: Path) -> str:
    """MAJOR.MINOR.PATCH from cutlass/version.h, or 'unknown version'."""
    try:
        text = (include / "cutlass" / "version.h").read_text(errors="replace")[:20_000]
    except OSError:
        return "unknown version"
    parts = [re.search(rf"#define\s+CUTLASS_{part}\s+(\d+)", text) for part in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(m.group(1) for m in parts) if all(parts) else "unknown version"


def _wheel_root() -> Path | None:
    try:
        spec = importlib.util.find_spec("cutlass_library")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "source"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"
