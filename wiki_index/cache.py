"""Where built indexes live on disk, how they are named, and how they are published safely.

Each build is a folder named by a content key (a hash of every page's path and bytes plus the
schema and analyzer versions). A build is written to a private temporary folder and renamed into
place, so a reader sees either no index or a complete one. A lock file keeps two processes that
start at once from both doing the work; if locking is unavailable the rename still makes the
race harmless (the loser throws its copy away).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; the atomic rename alone keeps builds safe
    fcntl = None  # type: ignore[assignment]

INDEX_PREFIX = "ix-"
TEMP_PREFIX = "tmp-"
LOCK_NAME = ".build.lock"
# An index folder that no process has opened for this long is deleted once a newer one exists.
# Not immediately: another process may be opening it right now.
STALE_AFTER_S = 3600.0
LOCK_TIMEOUT_S = 600.0


def default_cache_dir() -> Path:
    """$KDA_CACHE_DIR/wiki, else $XDG_CACHE_HOME/kda-mcp/wiki, else ~/.cache/kda-mcp/wiki."""
    if os.environ.get("KDA_CACHE_DIR"):
        return Path(os.environ["KDA_CACHE_DIR"]).expanduser() / "wiki"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "kda-mcp" / "wiki"
    return Path.home() / ".cache" / "kda-mcp" / "wiki"


def content_key(roots: Sequence[tuple[str, Sequence[tuple[str, bytes]]]], version: str) -> str:
    """A short hash of every root's name and every page's relative path and bytes."""
    digest = hashlib.sha256(version.encode())
    for name, files in roots:
        digest.update(b"\x00root\x00" + name.encode())
        for rel_path, data in files:
            digest.update(b"\x00file\x00" + rel_path.encode() + b"\x00" + str(len(data)).encode() + b"\x00")
            digest.update(data)
    return digest.hexdigest()[:20]


def index_dir(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{INDEX_PREFIX}{key}"


def new_temp_dir(cache_dir: Path, key: str) -> Path:
    """A fresh private folder to build into; the name says which key and process it belongs to."""
    path = cache_dir / f"{TEMP_PREFIX}{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def publish(temp: Path, final: Path) -> bool:
    """Rename a finished build into place. False if another process published first."""
    try:
        os.rename(temp, final)
        return True
    except OSError:
        if final.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
            return False
        raise


def mark_used(path: Path) -> None:
    """Touch an index folder so cleanup by other processes leaves it alone for a while."""
    with contextlib.suppress(OSError):
        os.utime(path)


def clean_up(cache_dir: Path, keep: Path, *, stale_after_s: float | None = None) -> list[Path]:
    """Delete index and temp folders other than `keep` that nobody has used recently."""
    if stale_after_s is None:
        stale_after_s = STALE_AFTER_S
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(cache_dir.iterdir())
    except OSError:
        return removed
    for entry in entries:
        if entry == keep or not entry.is_dir():
            continue
        if not entry.name.startswith((INDEX_PREFIX, TEMP_PREFIX)):
            continue
        try:
            age = now - entry.stat().st_mtime
        except OSError:
            continue
        if age >= stale_after_s:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def build_lock(cache_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[bool]:
    """Hold an exclusive lock on the cache folder while building; yields whether it was taken.

    After `timeout_s` the caller proceeds without the lock (a wedged process must not block
    every later server start); the atomic publish keeps that safe.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield False
        return
    with open(cache_dir / LOCK_NAME, "a+b") as handle:
        deadline = time.monotonic() + timeout_s
        locked = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
                break
            except OSError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        try:
            yield locked
        finally:
            if locked:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
