"""A throwaway Ray cluster on this machine, for tests, benches and trying `--executor ray` on one
box: a head and more nodes, each a `ray start --block` of its own session, with fake GPUs
(--num-gpus N and the resource gpu_<kind>) that a GPU-free stand-in of the work can use.

Everything listens and talks on the loopback. Ray replaces 127.0.0.1 by the machine's interface
address wherever it is given (so other machines could reach the node), and finds "its" address by
asking the routing table; a test must reach nothing beyond the loopback, so every Python process of
this cluster (nodes, their workers, the Ray Client server, and any client started with
`client_env`) imports a sitecustomize shim that keeps 127.0.0.1. This process joins through
connect(), which does the same here. A real cluster needs none of this: its nodes use their own
addresses. The cluster uses Ray's token authentication, as the recipe does.

Each node is killed by its session id (every process `ray start` started, the raylet's workers
included, which Ray puts in process groups of their own), so nothing of Ray outlives stop().
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 120.0
SHIM_SWITCH = "KDA_RAY_LOOPBACK"
# Imported at start by every Python process whose PYTHONPATH has the shim folder; acts only with
# KDA_RAY_LOOPBACK=1 (which sandboxed children never get: their environment is an allow-list).
_SITECUSTOMIZE = f"""
import os, sys
if os.environ.get("{SHIM_SWITCH}") == "1":
    import importlib.abc, importlib.machinery

    class _KeepLoopback(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "ray._private.services":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                module.resolve_ip_for_localhost = lambda host: host
                module.get_node_ip_address = lambda address=None: "{LOOPBACK}"

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _KeepLoopback())
"""


# Outlives us by design: reads node session ids on stdin; when stdin closes (stop(), or this process
# died any way, SIGKILL included) it ends those sessions. So no test that is killed leaves Ray running.
_REAPER = """
import os, signal, sys, time
sids = [int(line) for line in sys.stdin]
def members(sid):
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[3]) == sid:
                out.append(int(name))
    return out
for sig in (signal.SIGTERM, signal.SIGKILL):
    for sid in sids:
        for pid in members(sid):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    deadline = time.time() + 3
    while sig == signal.SIGTERM and time.time() < deadline and any(members(s) for s in sids):
        time.sleep(0.2)
"""


def keep_loopback() -> None:
    """In this process (a driver joining a LocalCluster): leave 127.0.0.1 as it is."""
    import ray._private.services as services

    services.resolve_ip_for_localhost = lambda host: host
    services.get_node_ip_address = lambda address=None: LOOPBACK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


@dataclass
class Node:
    name: str
    kind: str | None
    gpus: int
    proc: subprocess.Popen[str]
    log: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    node_id: str | None = None

    @property
    def sid(self) -> int:
        return self.proc.pid  # started with start_new_session: its session id is its pid


def _session_members(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 3 and int(fields[3]) == sid:  # after the name: state, ppid, pgrp, session
            found.append(int(entry.name))
    return found


def _kill_session(sid: int, sig: int) -> int:
    members = _session_members(sid)
    for pid in members:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return len(members)


class LocalCluster:
    """`with LocalCluster() as cluster: cluster.start_head(...); cluster.add_node(...)`."""

    def __init__(self, base: Path | None = None, *, env: dict[str, str] | None = None) -> None:
        # Short: Ray's socket paths live under it and must fit in 107 characters.
        self._own_base = base is None
        self.base = Path(base or tempfile.mkdtemp(prefix="kda-ray-", dir="/tmp"))
        shim = self.base / "pyshim"
        shim.mkdir(exist_ok=True)
        (shim / "sitecustomize.py").write_text(_SITECUSTOMIZE)
        # Token authentication, as the cluster recipe has it: no process without the token joins.
        self.auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
        # What a client process (a kda-mcp server started by a test) needs to join: the token, the shim.
        self.client_env = {**self.auth, "PYTHONPATH": path, SHIM_SWITCH: "1"}
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **self.client_env, **(env or {})}
        self._saved_env: dict[str, str | None] = {}
        self.address: str | None = None
        self.client_port: int | None = None
        self.nodes: list[Node] = []
        self._reaper: subprocess.Popen[str] | None = None

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, name: str, args: list[str], *, kind: str | None, gpus: int, cpus: int, env: dict[str, str] | None) -> Node:
        resources = {f"gpu_{kind}": gpus} if kind else {}
        argv = [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
            "--node-ip-address", LOOPBACK,
            "--num-cpus", str(cpus), "--num-gpus", str(gpus), "--resources", json.dumps(resources),
            "--object-store-memory", str(100 * 2**20),
            *args,
        ]  # fmt: skip
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env={**self.env, **(env or {})}, cwd=self.base
        )
        node = Node(name=name, kind=kind, gpus=gpus, proc=proc)
        self.nodes.append(node)
        if self._reaper is None:
            self._reaper = subprocess.Popen([sys.executable, "-c", _REAPER], stdin=subprocess.PIPE, text=True, start_new_session=True)
        assert self._reaper.stdin is not None
        self._reaper.stdin.write(f"{node.sid}\n")
        self._reaper.stdin.flush()
        threading.Thread(target=self._pump, args=(node,), name=f"ray-{name}-log", daemon=True).start()
        return node

    @staticmethod
    def _pump(node: Node) -> None:
        assert node.proc.stdout is not None
        for line in node.proc.stdout:
            node.log.append(line.rstrip())

    def _wait_for(self, node: Node, text: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in list(node.log):
                if text in line:
                    return line
            if node.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"ray node {node.name} did not start:\n" + "\n".join(node.log))

    def start_head(self, *, kind: str | None = "h200", gpus: int = 2, cpus: int = 2, env: dict[str, str] | None = None) -> Node:
        self.client_port = _free_port()  # Ray Client: ray://127.0.0.1:<client_port>
        args = ["--head", "--port", "0", "--include-dashboard", "false", "--ray-client-server-port", str(self.client_port), "--temp-dir", str(self.base / "ray")]
        node = self._start("head", args, kind=kind, gpus=gpus, cpus=cpus, env=env)
        line = self._wait_for(node, "ray start --address=")
        self.address = line.split("--address=")[1].strip().strip("'").split("'")[0]
        return node

    def add_node(self, *, kind: str | None, gpus: int = 1, cpus: int = 1, env: dict[str, str] | None = None, name: str | None = None) -> Node:
        assert self.address, "start_head first"
        node = self._start(name or f"node{len(self.nodes)}", ["--address", self.address], kind=kind, gpus=gpus, cpus=cpus, env=env)
        self._wait_for(node, "Ray runtime started")
        return node

    def connect(self, **init: Any) -> None:
        """Join this process to the cluster as its driver (what kda-mcp's Ray executor then uses)."""
        for key, value in self.auth.items():  # this process speaks to the cluster with its token
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        import ray

        try:  # Ray caches its config at import: read RAY_AUTH_MODE again
            from ray._raylet import Config

            Config.initialize("")
        except Exception:
            pass
        keep_loopback()
        ray.init(address=self.address, _node_ip_address=LOOPBACK, namespace="kda-mcp", log_to_driver=False, **init)

    def wait_for_nodes(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        import ray

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for n in ray.nodes() if n["Alive"]) >= count:
                return
            time.sleep(0.2)
        raise RuntimeError(f"fewer than {count} Ray nodes alive after {timeout:.0f} s")

    def kill(self, node: Node) -> None:
        """Take a node away as a crash would: SIGKILL everything it runs."""
        _kill_session(node.sid, signal.SIGKILL)
        node.proc.wait(timeout=30)

    def stop(self) -> None:
        """End every node (the head last): SIGTERM, then SIGKILL what is left."""
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        for node in reversed(self.nodes):
            _kill_session(node.sid, signal.SIGTERM)
        deadline = time.monotonic() + 3  # Ray's processes take SIGTERM in well under a second; some linger on exit hooks
        while time.monotonic() < deadline and any(_session_members(n.sid) for n in self.nodes):
            time.sleep(0.2)
        for node in self.nodes:
            _kill_session(node.sid, signal.SIGKILL)
            try:
                node.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.nodes.clear()
        if self._reaper is not None:  # nothing left for it to end
            assert self._reaper.stdin is not None
            self._reaper.stdin.close()
            self._reaper.wait(timeout=30)
            self._reaper = None
        if self._own_base:
            import shutil

            shutil.rmtree(self.base, ignore_errors=True)
