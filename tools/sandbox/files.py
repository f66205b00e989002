"""Files that cross the boundary: the trusted side writes into a room and reads what the
untrusted side left there, without ever following a link the untrusted side could have planted."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from kda_mcp.tools.errors import KdaError


def _parts(rel: str) -> list[str]:
    parts = [p for p in PurePosixPath(rel).parts if p not in ("", ".")]
    if not parts or any(p == ".." or "/" in p for p in parts) or PurePosixPath(rel).is_absolute():
        raise KdaError(f"{rel!r} is not a plain relative path.")
    return parts


def _open_parent(root: Path, parts: list[str], *, create: bool) -> int:
    """A descriptor of the folder holding the last part, walked one component at a time with
    O_NOFOLLOW, so no component can be a link."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                os.mkdir(part, 0o755, dir_fd=fd)
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def write_into(root: Path, rel: str, data: bytes | str, *, mode: int = 0o644) -> Path:
    """Create root/rel (a new file; folders made as needed) for the untrusted side to read."""
    parts = _parts(rel)
    payload = data.encode() if isinstance(data, str) else data
    parent = _open_parent(root, parts, create=True)
    try:
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=parent)
    finally:
        os.close(parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(payload)
    return root.joinpath(*parts)


def read_from(root: Path, rel: str, *, limit: int) -> bytes | None:
    """The bytes of root/rel if it is a regular file reached without links (None if missing).
    Refuses a file over `limit` bytes rather than reading a bomb."""
    parts = _parts(rel)
    try:
        parent = _open_parent(root, parts, create=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise KdaError(f"Cannot read {rel}: it is reached through a link or is not a folder ({exc.strerror}).") from exc
    try:
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=parent)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KdaError(f"Cannot read {rel}: {exc.strerror} (a link is never followed).") from exc
    finally:
        os.close(parent)
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KdaError(f"{rel} is not a regular file.")
        if info.st_size > limit:
            raise KdaError(f"{rel} is {info.st_size} bytes, over the {limit}-byte limit for what a child may hand back.")
        return handle.read(limit + 1)[:limit]


def copy_out(root: Path, rel: str, destination: Path, *, limit: int) -> bool:
    """Copy a file the untrusted side produced to a trusted place (no links, size-capped)."""
    data = read_from(root, rel, limit=limit)
    if data is None:
        return False
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(destination.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, destination)
    return True


def copy_tree_out(root: Path, rel: str, destination: Path, *, limit: int, max_files: int = 2000) -> int:
    """Copy the regular files under root/rel to destination (links skipped, never followed; at most
    `limit` bytes and `max_files` files in all). Returns how many files were copied."""
    base = root.joinpath(*_parts(rel))
    if base.is_symlink() or not base.is_dir():
        return 0
    copied = total = 0
    for folder, dirs, names in os.walk(base):  # does not descend into links
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(folder, d))]
        for name in names:
            relative = os.path.relpath(os.path.join(folder, name), root)
            try:
                data = read_from(root, relative, limit=limit - total)
            except KdaError:
                continue
            if data is None:
                continue
            target = destination / os.path.relpath(os.path.join(folder, name), base)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            copied += 1
            total += len(data)
            if copied >= max_files or total >= limit:
                return copied
    return copied
