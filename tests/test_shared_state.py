"""Several kda-mcp servers on one state folder and one machine, as separate processes.

Jobs carry their owner and a heartbeat, so no server marks a live job of another interrupted;
cancel and wait work across servers through the database; GPU leases are exclusive machine-wide
through OS file locks. The "servers" here are child Python processes each holding a JobRunner (or
a GpuPool) on the same files, driven over stdin/stdout, with short heartbeats so each test takes
a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from tests.conftest import REPO
from kda_mcp.tools.gpus import GpuPool
from kda_mcp.tools.jobs import JobRunner, pid_alive
from kda_mcp.tools.store import Store

BEAT = dict(heartbeat_s=0.2, heartbeat_timeout_s=1.0, poll_s=0.05)

# A server: a JobRunner on the database in argv[1], with the heartbeat timeout in argv[2], taking commands.
SERVER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import anyio
    from kda_mcp.tools.jobs import JobRunner
    from kda_mcp.tools.procs import run_process
    from kda_mcp.tools.store import Store

    runner = JobRunner(Store(Path(sys.argv[1])), heartbeat_s=0.2, heartbeat_timeout_s=float(sys.argv[2]), poll_s=0.05,
                       cancel_wait_s=float(sys.argv[3]))

    async def long(job):
        job.progress(1, 3, "started its child")
        marker = job.runner.marker
        code = f"import os,time; open({marker!r},'w').write(str(os.getpid())); time.sleep(600)"
        await run_process([sys.executable, "-c", code], timeout=600)
        return {}

    async def short(job):
        job.progress(1, 2, "half way")
        await anyio.sleep(float(job.runner.seconds))
        return {"slept": job.runner.seconds}

    def reply(value):
        print(json.dumps(value), flush=True)

    reply({"pid": os.getpid(), "owner": runner.owner.id})
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "long":
            runner.marker = args[0]
            reply(runner.submit("demo", {}, long))
        elif cmd == "short":
            runner.seconds = args[0]
            reply(runner.submit("demo", {}, short))
        elif cmd == "get":
            reply(runner.get(args[0]).model_dump(mode="json"))
        elif cmd == "cancel":
            t = time.monotonic()
            view = runner.cancel(args[0]).model_dump(mode="json")
            reply({**view, "took": time.monotonic() - t})
        elif cmd == "close":
            runner.close()
            reply("closed")
            break
    """
)


class Server:
    """A child process holding a JobRunner on `db`."""

    def __init__(self, db: Path, *, timeout: float = 1.0, cancel_wait: float = 10.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(db), str(timeout), str(cancel_wait)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
        )
        hello = self.read()
        self.pid, self.owner = hello["pid"], hello["owner"]

    def read(self):
        line = self.proc.stdout.readline()
        assert line, f"server {self.proc.pid} exited with {self.proc.poll()}"
        return json.loads(line)

    def ask(self, *words: str):
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.ask("close")
                self.proc.wait(10)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.kill()


def wait_for_pid(marker: Path, timeout: float = 20) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if marker.exists() and marker.read_text():
            return int(marker.read_text())
        time.sleep(0.02)
    raise AssertionError(f"{marker} never written")


def gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def status(db: Path, job_id: str) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]


@pytest.fixture()
def cleanup():
    """Servers and grandchildren to stop whatever the test did."""
    servers: list[Server] = []
    pids: list[Path] = []
    yield servers, pids
    for server in servers:
        server.stop()
    for marker in pids:
        if marker.exists() and marker.read_text():
            try:
                os.kill(int(marker.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---- the database


OLD_JOBS = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, kind TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,
    started REAL, finished REAL, params TEXT NOT NULL, progress TEXT, result TEXT, error TEXT, gpu INTEGER);
INSERT INTO jobs(id, kind, status, created, started, params) VALUES ('j1', 'demo', 'running', 1, 1, '{}');
INSERT INTO jobs(id, kind, status, created, finished, params, result) VALUES ('j2', 'demo', 'succeeded', 1, 2, '{}', '{"kept":1}');
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters VALUES ('j', 2);
"""


def test_an_old_database_gains_the_new_columns_and_keeps_working(tmp_path: Path):
    db = tmp_path / "kda.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_JOBS)
    # Several servers opening it at the same moment all migrate it, once.
    code = f"from pathlib import Path; from kda_mcp.tools.store import Store; Store(Path({str(db)!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=30)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    runner = JobRunner(Store(db), **BEAT)
    try:
        columns = {row["name"] for row in runner.store.execute("PRAGMA table_info(jobs)")}
        assert {"owner", "owner_pid", "owner_host", "heartbeat", "cancel_requested"} <= columns
        legacy = runner.get("j1")  # accepted by a kda-mcp that kept no owner: as before, interrupted
        assert legacy.status == "interrupted" and "submit it again" in legacy.error
        assert runner.get("j2").result == {"kept": 1}

        async def quick(job):
            return {"ok": True}

        job_id = runner.submit("demo", {}, quick)
        assert job_id == "j3" and anyio.run(runner.wait, job_id, 10).result == {"ok": True}
    finally:
        runner.close()


def test_liveness_rules(tmp_path: Path):
    """Dead: no owner recorded, owner pid gone (same host), heartbeat too old, closed runner of this
    process. Alive: fresh heartbeat of a live pid, or of another host."""
    db = tmp_path / "kda.sqlite3"
    runner = JobRunner(Store(db), heartbeat_s=0.2, heartbeat_timeout_s=5.0)
    other = JobRunner(Store(db))
    closed = JobRunner(Store(db))
    closed.close()
    dead_pid = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid.wait()
    host, t = runner.owner.host, time.time()
    rows = {
        "no_owner": (None, None, None, t),
        "pid_gone": (f"x.{dead_pid.pid}@{host}", dead_pid.pid, host, t),
        "silent": (f"x.1@{host}", 1, host, t - 60),  # pid 1 lives, but said nothing for a minute
        "silent_elsewhere": ("x.5@far", 5, "far", t - 60),
        "live_elsewhere": ("x.5@far", 5, "far", t),
        "live_here": (f"x.1@{host}", 1, host, t),
        "other_runner_here": (other.owner.id, os.getpid(), host, t),
        "closed_runner_here": (closed.owner.id, os.getpid(), host, t),
    }
    for job_id, (owner, pid, h, beat) in rows.items():
        runner.store.execute(
            "INSERT INTO jobs(id, kind, status, created, params, owner, owner_pid, owner_host, heartbeat) VALUES (?, 'demo', 'running', ?, '{}', ?, ?, ?, ?)",
            (job_id, t, owner, pid, h, beat),
        )
    try:
        reaped = set(runner._reap())
        assert reaped == {"no_owner", "pid_gone", "silent", "silent_elsewhere", "closed_runner_here"}
        assert f"its process {dead_pid.pid} is gone" in runner.get("pid_gone").error
        assert "no heartbeat for 60 s" in runner.get("silent").error and "x.1@" in runner.get("silent").error
        assert runner.get("live_here").status == "running" and runner.get("live_here").owner == f"x.1@{host}"
    finally:
        runner.close()
        other.close()


def test_close_marks_its_own_unfinished_jobs_interrupted(tmp_path: Path):
    runner = JobRunner(Store(tmp_path / "kda.sqlite3"), **BEAT)

    async def forever(job):
        await anyio.sleep(3600)
        return {}

    job_id = runner.submit("demo", {}, forever)
    time.sleep(0.1)
    runner.close()
    view = JobRunner(Store(tmp_path / "kda.sqlite3")).get(job_id)
    assert view.status == "interrupted" and "submit it again" in view.error


# ---- two servers on one state folder, end to end


def test_two_servers_one_state_dir_end_to_end(tmp_path: Path, cleanup):
    servers, markers = cleanup
    db = tmp_path / "kda.sqlite3"
    a = Server(db)
    servers.append(a)
    job_a, marker_a = a.ask("long", str(tmp_path / "a.pid")), tmp_path / "a.pid"
    markers.append(marker_a)
    pid_a = wait_for_pid(marker_a)
    b = Server(db)  # starts while A's job runs
    servers.append(b)
    job_b, marker_b = b.ask("long", str(tmp_path / "b.pid")), tmp_path / "b.pid"
    markers.append(marker_b)
    pid_b = wait_for_pid(marker_b)
    time.sleep(1.5)  # past the heartbeat timeout: heartbeats keep both alive
    third = JobRunner(Store(db), **BEAT)
    try:
        assert status(db, job_a) == status(db, job_b) == "running"
        seen_from_b = b.ask("get", job_a)
        assert seen_from_b["owner"] == a.owner and seen_from_b["progress"]["message"] == "started its child"

        # Cancel from B stops A's job and kills its processes.
        cancelled = b.ask("cancel", job_a)
        assert cancelled["status"] == "cancelled" and "another kda-mcp server" in cancelled["error"], cancelled
        assert cancelled["took"] < 3, cancelled
        assert gone(pid_a)
        assert a.ask("get", job_a)["status"] == "cancelled"

        # Kill -9 B: after the timeout, a runner started then marks its job interrupted.
        b.kill()
        killed_at = time.monotonic()
        time.sleep(1.1)
        fourth = JobRunner(Store(db), **BEAT)
        try:
            view = fourth.get(job_b)
            assert view.status == "interrupted" and b.owner in view.error and "submit it again" in view.error
            assert time.monotonic() - killed_at < 3
        finally:
            fourth.close()
        assert a.ask("get", job_b)["status"] == "interrupted"
    finally:
        third.close()
    os.kill(pid_b, signal.SIGKILL)  # B's grandchild outlived it (it runs in its own session)


def test_a_frozen_owner_is_taken_for_dead_only_after_the_heartbeat_timeout(tmp_path: Path, cleanup):
    """SIGSTOP: the pid lives, the heartbeats stop; only the timeout says the owner is dead."""
    servers, markers = cleanup
    db = tmp_path / "kda.sqlite3"
    a = Server(db)
    servers.append(a)
    marker = tmp_path / "a.pid"
    markers.append(marker)
    job_id = a.ask("long", str(marker))
    wait_for_pid(marker)
    a.kill(signal.SIGSTOP)
    stopped = time.monotonic()
    early = JobRunner(Store(db), **BEAT)
    early.close()
    assert status(db, job_id) == "running"
    while time.monotonic() - stopped < 1.3:
        time.sleep(0.05)
    late = JobRunner(Store(db), **BEAT)
    late.close()
    assert status(db, job_id) == "interrupted"


def test_waiting_on_another_servers_job_polls_the_database(tmp_path: Path, cleanup):
    servers, _ = cleanup
    db = tmp_path / "kda.sqlite3"
    a = Server(db)
    servers.append(a)
    here = JobRunner(Store(db), **BEAT)
    try:
        job_id = a.ask("short", "1.0")
        started = time.monotonic()
        running = anyio.run(here.wait, job_id, 0.3)
        assert running.status == "running" and 0.25 < time.monotonic() - started < 1.0
        done = anyio.run(here.wait, job_id, 10)
        took = time.monotonic() - started
        assert done.status == "succeeded" and done.result == {"slept": "1.0"} and took < 2.0, took
        # The owner dies while someone waits: the waiter sees it interrupted, not a 10 s wait.
        long_id = a.ask("short", "600")
        a.kill()
        started = time.monotonic()
        view = anyio.run(here.wait, long_id, 10)
        assert view.status == "interrupted" and time.monotonic() - started < 2
    finally:
        here.close()


def test_cancel_names_the_owner_when_it_does_not_stop_in_time(tmp_path: Path, cleanup):
    servers, markers = cleanup
    db = tmp_path / "kda.sqlite3"
    a = Server(db, timeout=30)
    servers.append(a)
    marker = tmp_path / "a.pid"
    markers.append(marker)
    job_id = a.ask("long", str(marker))
    pid = wait_for_pid(marker)
    a.kill(signal.SIGSTOP)  # alive, but not acting on anything
    here = JobRunner(Store(db), heartbeat_s=0.2, heartbeat_timeout_s=30, poll_s=0.05, cancel_wait_s=0.5)
    try:
        started = time.monotonic()
        view = here.cancel(job_id)
        assert 0.4 < time.monotonic() - started < 2
        assert view.status == "running" and view.owner == a.owner
        assert a.owner in view.message and f"process {a.pid}" in view.message and "get_job" in view.message
        # The request stays in the database: the owner acts on it once it runs again.
        os.kill(a.pid, signal.SIGCONT)
        final = anyio.run(here.wait, job_id, 10)
        assert final.status == "cancelled" and gone(pid)
    finally:
        here.close()


# ---- GPU leases across processes

# A process leasing GPU argv[2] of a pool locked in argv[1] for argv[3] seconds; prints times.
LEASER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import anyio
    from kda_mcp.tools.gpus import GpuPool

    async def main():
        pool = GpuPool([0, 1], lock_dir=Path(sys.argv[1]))
        print(json.dumps({"waiting": time.time()}), flush=True)
        async with pool.lease("benchmark j7", gpu=int(sys.argv[2])) as lease:
            print(json.dumps({"got": time.time(), "gpu": lease.gpu}), flush=True)
            await anyio.sleep(float(sys.argv[3]))
            released = time.time()
        print(json.dumps({"released": released}), flush=True)

    anyio.run(main)
    """
)


def leaser(lock_dir: Path, gpu: int, seconds: float) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", LEASER, str(lock_dir), str(gpu), str(seconds)], stdout=subprocess.PIPE, text=True)
    json.loads(proc.stdout.readline())
    got = json.loads(proc.stdout.readline())
    return proc, got


def test_two_processes_never_hold_one_gpu_at_once(tmp_path: Path):
    lock_dir = tmp_path / "locks"
    proc, got = leaser(lock_dir, 0, 1.0)
    try:
        pool = GpuPool([0, 1], lock_dir=lock_dir)
        seen: dict = {}

        async def main():
            ticks = 0

            async def ticker():  # the loop keeps running while the lease waits
                nonlocal ticks
                while True:
                    await anyio.sleep(0.01)
                    ticks += 1

            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                await anyio.sleep(0.1)
                seen["while_waiting"] = pool.status()
                waited = time.time()
                async with pool.lease("benchmark j1", gpu=0) as lease:
                    seen["got"], seen["gpu"], seen["held"] = time.time(), lease.gpu, pool.status()
                    seen["waited"] = seen["got"] - waited
                seen["ticks"] = ticks
                tg.cancel_scope.cancel()

        anyio.run(main)
        released = json.loads(proc.stdout.readline())["released"]
        assert proc.wait(10) == 0
    finally:
        proc.kill()
    assert seen["while_waiting"][0] == f"held by another kda-mcp process (pid {proc.pid}: benchmark j7)"
    assert seen["while_waiting"][1] == ""
    assert seen["got"] >= released and seen["got"] - released < 0.3, (seen, released)
    assert seen["held"] == {0: "benchmark j1", 1: ""}
    assert seen["waited"] > 0.5 and seen["ticks"] > 0.3 * seen["waited"] / 0.01  # the event loop was not blocked
    assert GpuPool([0], lock_dir=lock_dir).status() == {0: ""}


def test_a_killed_holder_frees_the_gpu_and_any_gpu_skips_a_locked_one(tmp_path: Path):
    lock_dir = tmp_path / "locks"
    proc, got = leaser(lock_dir, 0, 600)
    try:
        pool = GpuPool([0, 1], lock_dir=lock_dir)

        async def take(gpu):
            async with pool.lease("benchmark j2", gpu=gpu) as lease:
                return lease.gpu

        assert anyio.run(take, None) == 1  # GPU 0 is held by the other process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        started = time.monotonic()
        assert anyio.run(take, 0) == 0
        assert time.monotonic() - started < 0.5
    finally:
        proc.kill()


def test_arrival_order_holds_while_another_process_holds_the_gpu(tmp_path: Path):
    lock_dir = tmp_path / "locks"
    proc, _ = leaser(lock_dir, 0, 0.5)
    pool = GpuPool([0], lock_dir=lock_dir)
    order: list[str] = []

    async def user(name: str, delay: float):
        await anyio.sleep(delay)
        async with pool.lease(name):
            order.append(name)
            await anyio.sleep(0.02)

    async def main():
        async with anyio.create_task_group() as tg:
            for i, name in enumerate(["first", "second", "third", "fourth"]):
                tg.start_soon(user, name, 0.01 * i)

    try:
        anyio.run(main)
    finally:
        proc.wait(10)
    assert order == ["first", "second", "third", "fourth"]


def test_lock_folder_modes_env_and_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture):
    lock_dir = tmp_path / "machine-locks"
    monkeypatch.setenv("KDA_LOCK_DIR", str(lock_dir))
    pool = GpuPool([0])

    async def take():
        async with pool.lease("x") as lease:
            return lease.gpu

    assert anyio.run(take) == 0
    assert stat.S_IMODE(lock_dir.stat().st_mode) == 0o1777
    assert stat.S_IMODE((lock_dir / "gpu0.lock").stat().st_mode) == 0o666
    assert (lock_dir / "gpu0.lock").read_text() == ""  # the holder is cleared on release

    # A link planted where the lock file goes is never followed nor written.
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (lock_dir / "gpu0.lock").unlink()
    (lock_dir / "gpu0.lock").symlink_to(victim)
    assert anyio.run(take) == 0 and victim.read_text() == "keep me"
    assert "exclusive within this process only" in caplog.text

    # Nor a lock folder that is a link.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked = tmp_path / "linked"
    linked.symlink_to(elsewhere)
    assert anyio.run(lambda: _take(GpuPool([0], lock_dir=linked))) == 0
    assert list(elsewhere.iterdir()) == []


async def _take(pool: GpuPool) -> int:
    async with pool.lease("x") as lease:
        return lease.gpu
