"""Which files the tools may read and write: every path resolves, links followed, inside a root.

Callers name paths (a starter kit, a solution.json, where to write one). Reading is allowed inside
the workspaces and the dataset; writing only inside the workspaces, and never into an
installation the server runs code from. A write that must not replace a file is one atomic O_EXCL open, so a path
through a folder that does not exist yet ("kit/missing/../solution.json") cannot slip past a
check made on the unresolved name.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from kda_mcp.tools.errors import InvalidArgumentError, NotFoundError

MAX_PATH_CHARS = 1024


def _protected() -> tuple[Path, ...]:
    """Code the server and its children import or run: writing there would run as the server."""
    import site
    import sys

    places = [Path(__file__).resolve().parents[1], Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent]
    places += [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
    return tuple(Path(os.path.realpath(p)) for p in places)


PROTECTED = _protected()


def clean(raw: str, what: str = "path") -> Path:
    """The caller's path string as a Path, refused when it cannot be a sane file name."""
    if not raw or not raw.strip():
        raise InvalidArgumentError(f"The {what} is empty.")
    if "\x00" in raw:
        raise InvalidArgumentError(f"The {what} contains a NUL byte.")
    if len(raw) > MAX_PATH_CHARS:
        raise InvalidArgumentError(f"The {what} is {len(raw)} characters long; the limit is {MAX_PATH_CHARS}.")
    return Path(raw).expanduser()


def _inside(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _real(path: Path) -> Path:
    """realpath of the longest existing prefix, joined with the rest (which holds no links yet)."""
    path = Path(os.path.abspath(path))
    missing: list[str] = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe.name)
        probe = probe.parent
    real = Path(os.path.realpath(probe))
    for part in reversed(missing):
        if part in ("..", "."):
            real = real.parent if part == ".." else real
        else:
            real = real / part
    return real


@dataclass(frozen=True)
class Roots:
    """Folders the tools may touch; every entry is an absolute, resolved path."""

    workspaces: tuple[Path, ...]
    read_only: tuple[Path, ...] = ()

    @classmethod
    def from_settings(cls, settings: object) -> Roots:
        workspaces = tuple(Path(os.path.realpath(p)) for p in getattr(settings, "workspaces"))
        dataset = Path(os.path.realpath(getattr(settings, "dataset_path")))
        return cls(workspaces=workspaces, read_only=(dataset,))

    def describe(self) -> str:
        parts = [f"workspaces {', '.join(map(str, self.workspaces)) or 'none'}"]
        if self.read_only:
            parts.append(f"read-only {', '.join(map(str, self.read_only))}")
        return "; ".join(parts)

    def readable(self, raw: str, *, what: str = "path") -> Path:
        """An existing file or folder inside a root (after links), or a clear refusal."""
        given = clean(raw, what)
        real = _real(given)
        if not _inside(real, self.workspaces + self.read_only):
            raise InvalidArgumentError(
                f"The {what} {given} is outside the folders this server may read ({self.describe()}).",
                hint="Put the files in a workspace, or start the server with --workspace naming their folder.",
            )
        if not real.exists():
            raise NotFoundError(f"The {what} {given} does not exist.")
        return real

    def writable(self, raw: str, *, what: str = "path") -> Path:
        """Where a new file may go: inside a workspace (after links), never inside kda-mcp itself."""
        given = clean(raw, what)
        real = _real(given)
        if not _inside(real, self.workspaces):
            raise InvalidArgumentError(
                f"The {what} {given} is outside the folders this server may write ({', '.join(map(str, self.workspaces)) or 'none'}).",
                hint="Write inside a workspace, or start the server with --workspace naming the folder.",
            )
        if _inside(real, PROTECTED):
            raise InvalidArgumentError(f"The {what} {given} is inside an installation the server runs code from; write somewhere else.")
        return real


def make_dirs(folder: Path, roots: Roots) -> None:
    """mkdir -p, refusing a component that is (or becomes) a link leading out of the workspaces."""
    for parent in reversed([folder, *folder.parents]):
        if parent.exists() and not parent.is_symlink():
            continue
        if parent.is_symlink():
            raise InvalidArgumentError(f"{parent} is a link; kda-mcp does not write through links.")
        try:
            os.mkdir(parent, 0o755)
        except FileExistsError:
            pass
        except OSError as exc:
            raise InvalidArgumentError(f"Cannot create folder {parent}: {exc.strerror}.") from exc
    if not _inside(Path(os.path.realpath(folder)), roots.workspaces):
        raise InvalidArgumentError(f"{folder} resolves outside the workspaces.")


def write_text(path: Path, text: str, *, overwrite: bool, roots: Roots) -> None:
    """Write a file inside the workspaces: atomically refused when it exists and overwrite is false,
    and never through a link."""
    make_dirs(path.parent, roots)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError as exc:
        raise InvalidArgumentError(f"{path} exists; pass overwrite=true to replace it.") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidArgumentError(f"{path} is a link; kda-mcp does not write through links.") from exc
        if exc.errno == errno.EISDIR:
            raise InvalidArgumentError(f"{path} is a folder, not a file.") from exc
        raise InvalidArgumentError(f"Cannot write {path}: {exc.strerror}.") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
