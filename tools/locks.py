"""Machine-wide GPU locks: one OS file lock (flock) per GPU, shared by every kda-mcp process.

A GpuPool's leases are exclusive within one process; several `kda-mcp serve` processes on one
machine (one per agent session) would otherwise time two benchmarks on one GPU at once. Each
lease also holds an exclusive flock on `<lock dir>/gpu<N>.lock`, so at most one process uses a
GPU at a time. The kernel drops the lock when the holder dies, kill -9 included, so a crash never
leaves a GPU locked. The holder writes its pid and purpose into the file for others to show.

The folder is machine-wide (default /tmp/kda-mcp-locks, env KDA_LOCK_DIR), made mode 1777 so
servers of different users exclude each other too; lock files are 0666. Files are opened without
following links and written only when they are plain files of one link.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path("/tmp/kda-mcp-locks")
LOCK_POLL_S = 0.05  # how often a lease waiting for another process's lock tries again

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def default_lock_dir() -> Path:
    return Path(os.environ.get("KDA_LOCK_DIR") or DEFAULT_LOCK_DIR)


class LockUnavailable(Exception):
    """The lock folder or file cannot be used (not a folder, a link, no permission)."""


@dataclass
class HeldLock:
    """An exclusive flock this process holds; release() gives it back."""

    name: str
    fd: int
    writable: bool

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            if self.writable:
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError:
            log.debug("releasing lock %s", self.name, exc_info=True)
        finally:
            os.close(self.fd)
            self.fd = -1


class LockDir:
    """The machine-wide folder of lock files."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_lock_dir()
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        try:
            os.mkdir(self.path, 0o1777)
        except FileExistsError:
            pass
        except OSError as exc:
            raise LockUnavailable(f"cannot create the lock folder {self.path}: {exc}") from exc
        else:
            try:
                os.chmod(self.path, 0o1777)  # mkdir's mode is cut by the umask
            except OSError:
                pass
        try:
            st = os.lstat(self.path)
        except OSError as exc:
            raise LockUnavailable(f"cannot read the lock folder {self.path}: {exc}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise LockUnavailable(f"the lock folder {self.path} is not a folder (a link or a file)")
        self._ready = True

    def file(self, name: str) -> Path:
        return self.path / f"{name}.lock"

    def _open(self, name: str) -> tuple[int, bool]:
        """A descriptor on the lock file (made if missing) and whether it is writable."""
        self._prepare()
        path = self.file(name)
        try:
            fd, writable = os.open(path, os.O_RDWR | os.O_CREAT | _OPEN_FLAGS, 0o666), True
        except PermissionError:  # another user's file that is not 0666: a read-only descriptor locks as well
            try:
                fd, writable = os.open(path, os.O_RDONLY | _OPEN_FLAGS), False
            except OSError as exc:
                raise LockUnavailable(f"cannot open {path}: {exc}") from exc
        except OSError as exc:  # ELOOP: a link planted in the folder
            raise LockUnavailable(f"cannot open {path}: {exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise LockUnavailable(f"{path} is not a plain file")
            if writable and st.st_nlink != 1:
                writable = False  # a hard link to some other file: lock it, never write it
            if writable and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o666:
                os.fchmod(fd, 0o666)
        except BaseException:
            os.close(fd)
            raise
        return fd, writable

    def try_lock(self, name: str, purpose: str) -> HeldLock | None:
        """Take the exclusive lock without waiting: the lock, or None while another holds it.

        Raises LockUnavailable when the lock cannot be used at all."""
        fd, writable = self._open(name)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise LockUnavailable(f"cannot lock {self.file(name)}: {exc}") from exc
        if writable:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose[:200], "since": round(time.time(), 1)}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
            except OSError:
                log.debug("could not write the holder into %s", self.file(name), exc_info=True)
        return HeldLock(name, fd, writable)

    def holder(self, name: str) -> dict[str, Any] | None:
        """Who holds the lock ({} when it did not say), or None when it is free (or unusable)."""
        try:
            self._prepare()
            fd = os.open(self.file(name), os.O_RDONLY | _OPEN_FLAGS)
        except (OSError, LockUnavailable):
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return read_holder(fd)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except OSError:
            return None
        finally:
            os.close(fd)


def read_holder(fd: int) -> dict[str, Any]:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def describe_holder(info: dict[str, Any]) -> str:
    """'held by another kda-mcp process (pid 123: benchmark j4)' from what the holder wrote."""
    pid, purpose = info.get("pid"), info.get("purpose")
    if pid == os.getpid():
        who = "held by another GPU pool of this kda-mcp process"
    else:
        who = "held by another kda-mcp process"
    parts = [f"pid {pid}" if isinstance(pid, int) else "", purpose[:200] if isinstance(purpose, str) else ""]
    details = ": ".join(part for part in parts if part)
    return f"{who} ({details})" if details else who
