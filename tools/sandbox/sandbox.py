"""Who runs untrusted code, where, and how everything it started is stopped.

Mode "user" (the server runs as root: GPU boxes, the Docker image): every untrusted process (a
solution, its build, its profile) runs as an unprivileged user of its own, one per concurrent
role: each side of a benchmark (candidate, reference, baseline) gets a different user, so one
side cannot signal or trace another. The users are found or created on first use
(`<base>-<slot>`, e.g. kda-sandbox-g0s1). A job works in a private folder owned by its user;
at the end of the job every process that user owns is killed (also those that left their
process group or session) and every file it owns in the private folder and the shared temporary
folders is removed, so nothing outlives the job.

Mode "none" (no root): the children run as the server's own user, each in a process group that
is killed at the end. A solution could then reach what the server's user can; capabilities,
doctor and every result say so ("isolation": "none").
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from kda_mcp.tools.errors import UnavailableError

log = logging.getLogger(__name__)

Mode = Literal["user", "none"]
SHARED_TEMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
KILL_ROUNDS = 50
PROBE_HINT = (
    "Install kda-mcp and its Python where other users may read them (e.g. /opt/kda-mcp, as the Docker image does), "
    "or let them traverse the folders on the way (chmod o+x /root), or choose --sandbox none knowingly."
)
ENTER = Path(__file__).with_name("enter.py")  # run by path with -S: standard library only, fast


@dataclass(frozen=True)
class Identity:
    """An unprivileged user untrusted code runs as."""

    name: str
    uid: int
    gid: int


@dataclass
class Room:
    """A job's private folder for one role, and the user that owns it (None in mode "none")."""

    path: Path
    identity: Identity | None

    def mkdir(self, *parts: str) -> Path:
        """A subfolder the room's user owns (so the child can write it)."""
        folder = self.path.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        if self.identity is not None:
            for made in [folder, *folder.parents]:
                if made == self.path.parent:
                    break
                os.chown(made, self.identity.uid, self.identity.gid)
        return folder


def _find_or_create_user(name: str) -> Identity:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise UnavailableError(
                f"The sandbox user {name!r} does not exist and there is no useradd to create it.",
                hint=f"Create it (useradd --system --user-group {name}) or start kda-mcp with --sandbox none to run solutions as this server's own user.",
            ) from None
        done = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0 and "already exists" not in done.stderr:
            raise UnavailableError(f"Could not create the sandbox user {name!r}: {done.stderr.strip()}") from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise UnavailableError(f"The sandbox user {name!r} has uid or gid 0; it must be an unprivileged user.")
    return Identity(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes whose real user is uid."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("State", "").strip().startswith("Z"):
            continue
        uids = fields.get("Uid", "").split()
        if uids and int(uids[0]) == uid:
            found.append(int(entry.name))
    return found


def kill_user(identity: Identity) -> int:
    """SIGKILL every process of the user, repeatedly until none is left (a fork bomb races a
    single pass). kill(-1) run as that user reaches exactly its processes. Returns how many
    were alive at the start."""
    initial = len(processes_of(identity.uid))
    for _ in range(KILL_ROUNDS):
        alive = processes_of(identity.uid)
        if not alive:
            return initial
        subprocess.run(
            [sys.executable, "-S", "-c", f"import os,signal; os.setgroups([]); os.setresgid({identity.gid},{identity.gid},{identity.gid}); os.setresuid({identity.uid},{identity.uid},{identity.uid}); os.kill(-1, signal.SIGKILL)"],
            capture_output=True,
            timeout=30,
        )
        time.sleep(0.02)
    log.warning("processes of %s survived %d kill rounds: %s", identity.name, KILL_ROUNDS, processes_of(identity.uid))
    return initial


def remove_owned(uid: int, roots: tuple[Path, ...] = SHARED_TEMP) -> int:
    """Delete the entries at the top of each root that the user owns; returns how many."""
    removed = 0
    for root in roots:
        try:
            entries = list(os.scandir(root))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
            except OSError:
                continue
    return removed


@dataclass
class Sandbox:
    """The isolation in effect for this server, and the rooms and users of running jobs."""

    mode: Mode
    runtime_dir: Path
    base_user: str = "kda-sandbox"
    net: Literal["private", "shared"] = "private"
    reason: str = ""
    _users: dict[str, Identity] = field(default_factory=dict)

    @classmethod
    def configure(cls, requested: str, runtime_dir: Path, base_user: str = "kda-sandbox") -> Sandbox:
        """'auto' is 'user' when running as root, else 'none' (said loudly, never silently)."""
        if requested not in ("auto", "user", "none"):
            raise UnavailableError(f"Unknown sandbox mode {requested!r}; use auto, user or none.")
        root = os.geteuid() == 0
        if requested == "user" and not root:
            raise UnavailableError(
                "--sandbox user needs the server to run as root (it switches untrusted processes to unprivileged users).",
                hint="Run the server as root (as in the Docker image), or use --sandbox none on a machine only you use.",
            )
        if requested == "none" or (requested == "auto" and not root):
            reason = "chosen with --sandbox none" if requested == "none" else "the server does not run as root"
            box = cls(mode="none", runtime_dir=runtime_dir, base_user=base_user, reason=reason)
            box._prepare_runtime_dir()
            return box
        box = cls(mode="user", runtime_dir=runtime_dir, base_user=base_user, reason="untrusted code runs as unprivileged users, one per role")
        box._prepare_runtime_dir()
        problem = box._probe()
        if problem is not None and "network namespace" in problem:
            # No right to make one (a container without CAP_SYS_ADMIN): keep the user boundary, share
            # the network, and say so.
            box.net, box.reason = "shared", box.reason + "; no private network (no permission for a network namespace)"
            problem = box._probe()
        if problem is None:
            return box
        if requested == "user":
            raise UnavailableError(f"The sandbox cannot run Python as an unprivileged user: {problem}", hint=PROBE_HINT)
        log.warning("sandbox: falling back to no isolation: %s %s", problem, PROBE_HINT)
        box.mode, box.reason = "none", f"an unprivileged user cannot run this Python ({problem}); {PROBE_HINT}"
        os.chmod(box.runtime_dir, 0o700)
        return box

    def _probe(self) -> str | None:
        """Can a sandbox user start this interpreter and import kda-mcp? (Not when either lives
        under a folder only root may enter, such as /root.) None when it can."""
        room = self.room("probe", "probe")
        try:
            argv = self.wrap([sys.executable, "-c", "import kda_mcp.tools.sandbox.specs"], room)
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
        except (OSError, subprocess.TimeoutExpired) as exc:
            return str(exc)
        finally:
            self.clear([room])
        if done.returncode != 0:
            return (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return None

    def describe(self) -> dict[str, str]:
        """What provenance and capabilities report."""
        if self.mode == "user":
            network = "no network" if self.net == "private" else "the host's network (no permission for a network namespace)"
            return {"isolation": "user", "detail": f"each role as its own unprivileged user ({self.base_user}-*), private folder, {network}, every process and file of the user removed after the job"}
        return {"isolation": "none", "detail": f"solutions run as the server's own user ({self.reason}): they can read what the server can; results are not protected from a solution that attacks the evaluator"}

    def _prepare_runtime_dir(self) -> None:
        """The parent of all rooms: ours, traversable (0711) but not listable by others."""
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        info = self.runtime_dir.lstat()
        if self.runtime_dir.is_symlink() or info.st_uid != os.geteuid():
            raise UnavailableError(f"{self.runtime_dir} is not a folder owned by this server's user; remove it or set KDA_RUNTIME_DIR.")
        os.chmod(self.runtime_dir, 0o711 if self.mode == "user" else 0o700)

    def identity(self, slot: str) -> Identity | None:
        """The user for a slot ('g0s1': GPU 0, side 1; 'b2': build worker 2), created on first use."""
        if self.mode == "none":
            return None
        if slot not in self._users:
            self._users[slot] = _find_or_create_user(f"{self.base_user}-{slot}")
        return self._users[slot]

    def room(self, slot: str, job: str) -> Room:
        """A fresh private folder for `job` in `slot`, owned by the slot's user, mode 0700."""
        identity = self.identity(slot)
        path = self.runtime_dir / slot / job
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        os.chmod(path.parent, 0o711 if identity else 0o700)
        if identity is not None:
            os.chown(path, identity.uid, identity.gid)
        os.chmod(path, 0o700)
        return Room(path=path, identity=identity)

    def wrap(self, command: list[str], room: Room, *, network: bool = False) -> list[str]:
        """The command line that runs `command` inside the room's sandbox."""
        if room.identity is None:
            return command
        net = "shared" if network or self.net == "shared" else "private"
        return [
            sys.executable, "-S", str(ENTER),
            "--uid", str(room.identity.uid), "--gid", str(room.identity.gid),
            "--net", net, "--dir", str(room.path), "--",
            *command,
        ]  # fmt: skip

    def clear(self, rooms: list[Room]) -> dict[str, int]:
        """End everything of these rooms: kill their users' processes, delete their files."""
        killed = removed = 0
        for room in rooms:
            if room.identity is not None:
                killed += kill_user(room.identity)
                removed += remove_owned(room.identity.uid)
            shutil.rmtree(room.path, ignore_errors=True)
        return {"processes_killed": killed, "files_removed": removed}


def terminate_group(pid: int) -> None:
    """SIGKILL a child's process group (it was started in a session of its own)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
