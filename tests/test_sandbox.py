"""The trust boundary on a CPU machine: untrusted children run as users of their own, cannot read
the server's secrets or write its files, have no network, and leave nothing behind.

These need root (they create users and switch to them); CI runs as root. Each attack here is one
a solution attempted against an earlier design."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from kda_mcp.tools.sandbox.files import read_from, write_into
from kda_mcp.tools.sandbox.launch import child_env, prepare_room_dirs, start_child
from kda_mcp.tools.sandbox.sandbox import Sandbox, processes_of
from kda_mcp.tools.errors import KdaError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the user sandbox needs root")

ATTACKER = r'''
import json, os, socket, sys, time
report = {"uid": os.getuid(), "euid": os.geteuid(), "groups": os.getgroups()}
server = int(sys.argv[1]); port = int(sys.argv[2]); project = sys.argv[3]
for what in ("environ", "fd", "mem", "maps"):
    path = f"/proc/{server}/{what}"
    try:
        os.listdir(path) if what == "fd" else open(path, "rb").read(64)
        report[what] = "READ"
    except OSError as exc:
        report[what] = f"denied:{exc.errno}"
try:
    open(os.path.join(project, "planted.py"), "w").write("x = 1")
    report["project_write"] = "WROTE"
except OSError as exc:
    report["project_write"] = f"denied:{exc.errno}"
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    report["loopback"] = "CONNECTED"
except OSError as exc:
    report["loopback"] = f"failed:{exc.errno}"
report["env_secret"] = os.environ.get("KDA_MCP_TOKEN", "absent")
open("/tmp/kda-test-left-behind", "w").write("next job, read me")
# leave the process group and the session, and keep running
pid = os.fork()
if pid == 0:
    os.setsid()
    if os.fork() == 0:
        nul = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(nul, fd)
        time.sleep(600)
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps(report), flush=True)
'''


@pytest.fixture()
def sandbox():
    # Rooms must be reachable by the sandbox users: pytest's tmp folders are 0700, /dev/shm is not.
    runtime = Path(tempfile.mkdtemp(prefix="kda-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    yield Sandbox.configure("user", runtime, base_user="kda-sbx-test")
    shutil.rmtree(runtime, ignore_errors=True)


@needs_root
def test_an_untrusted_child_reaches_nothing_of_the_server_and_leaves_nothing(sandbox: Sandbox, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("KDA_MCP_TOKEN", "secret-token-value")
    libc = ctypes.CDLL(None)
    libc.prctl(4, 0, 0, 0, 0)  # the server makes itself non-dumpable at start (server/cli.py)
    project = tmp_path / "project"
    project.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    room = sandbox.room("g0s0", "job1")
    prepare_room_dirs(room)
    script = write_into(room.path, "attack.py", ATTACKER)

    async def run() -> str:
        proc = await start_child(
            [sys.executable, str(script), str(os.getpid()), str(listener.getsockname()[1]), str(project)],
            child_env(room),
            sandbox=sandbox,
            room=room,
        )
        assert proc.stdout is not None
        out = b""
        with anyio.fail_after(60):
            async for chunk in proc.stdout:
                out += chunk
            await proc.wait()
        return out.decode()

    try:
        report = json.loads(anyio.run(run).strip().splitlines()[-1])
    finally:
        libc.prctl(4, 1, 0, 0, 0)
    identity = room.identity
    assert identity is not None and report["uid"] == identity.uid != 0 and report["euid"] == identity.uid and report["groups"] == []
    assert all(report[k].startswith("denied") for k in ("environ", "fd", "mem", "maps")), report
    assert report["project_write"].startswith("denied") and not (project / "planted.py").exists()
    assert report["loopback"].startswith("failed"), report
    assert report["env_secret"] == "absent"
    time.sleep(0.2)
    assert processes_of(identity.uid), "the escaped daemon should still be running before cleanup"
    assert Path("/tmp/kda-test-left-behind").exists()
    outcome = sandbox.clear([room])
    assert processes_of(identity.uid) == []
    assert outcome["processes_killed"] >= 1
    assert not Path("/tmp/kda-test-left-behind").exists()
    assert not room.path.exists()


@needs_root
def test_each_role_has_its_own_user(sandbox: Sandbox):
    users = {sandbox.identity(slot).uid for slot in ("g0s0", "g0s1", "g0s2", "b0")}
    assert len(users) == 4 and 0 not in users


def test_files_cross_the_boundary_without_following_links(tmp_path: Path):
    room = tmp_path / "room"
    room.mkdir()
    secret = tmp_path / "secret"
    secret.write_text("server secret")
    (room / "out.so").symlink_to(secret)
    (room / "dir").symlink_to(tmp_path)
    with pytest.raises(KdaError, match="link"):
        read_from(room, "out.so", limit=1000)
    try:
        assert read_from(room, "dir/secret", limit=1000) is None  # a link as a folder: not followed
    except KdaError:
        pass
    with pytest.raises(OSError):
        write_into(room, "out.so", "overwrite through the link")
    assert secret.read_text() == "server secret"
    (room / "big").write_bytes(b"x" * 2000)
    with pytest.raises(KdaError, match="limit"):
        read_from(room, "big", limit=1000)
    write_into(room, "sub/ok.txt", "fine")
    assert read_from(room, "sub/ok.txt", limit=100) == b"fine"
    with pytest.raises(KdaError):
        write_into(room, "../escape", "no")


def test_child_environment_is_an_allow_list(tmp_path: Path):
    env = child_env(None, gpu=3, base={"PATH": "/usr/bin", "KDA_MCP_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "k", "HOME": "/root", "CUDA_HOME": "/usr/local/cuda", "NCCL_NVLS_ENABLE": "0", "TRITON_CACHE_DIR": "/root/.triton"})
    assert env["PATH"] == "/usr/bin" and env["CUDA_HOME"] == "/usr/local/cuda" and env["NCCL_NVLS_ENABLE"] == "0"
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    for hidden in ("KDA_MCP_TOKEN", "AWS_SECRET_ACCESS_KEY", "HOME", "TRITON_CACHE_DIR"):
        assert hidden not in env


def test_auto_mode_says_what_it_chose(sandbox: Sandbox, tmp_path: Path):
    assert sandbox.mode == "user" or os.geteuid() != 0
    none = Sandbox.configure("none", tmp_path / "run2")
    assert none.describe()["isolation"] == "none" and "not protected" in none.describe()["detail"]


@needs_root
def test_auto_falls_back_loudly_when_the_sandbox_user_cannot_run_python(tmp_path: Path):
    # pytest's tmp_path sits under 0700 folders: a sandbox user cannot enter a room there.
    box = Sandbox.configure("auto", tmp_path / "run")
    assert box.mode == "none" and "Permission denied" in box.reason and "chmod o+x" in box.reason
    with pytest.raises(KdaError, match="cannot run Python as an unprivileged user"):
        Sandbox.configure("user", tmp_path / "run3")


@needs_root
def test_without_a_network_namespace_the_user_boundary_stays_and_says_so(monkeypatch):
    """In a container without CAP_SYS_ADMIN unshare(CLONE_NEWNET) fails: keep the users, share the network."""
    answers = iter(["kda-mcp sandbox: cannot create a private network namespace (errno 1)", None])
    monkeypatch.setattr(Sandbox, "_probe", lambda self: next(answers))
    runtime = Path(tempfile.mkdtemp(prefix="kda-test-net-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    try:
        box = Sandbox.configure("user", runtime, base_user="kda-sbx-test")
        assert box.mode == "user" and box.net == "shared"
        assert "host's network" in box.describe()["detail"]
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
