"""A throwaway Ray cluster on this machine, for tests, benches and trying `--executor ray` on one
box: a head and more nodes, each a `ray start --block` of its own session, with fake GPUs
(--num-gpus N and the resource gpu_<kind>) that a GPU-free stand-in of the work can use.

Everything listens and talks on the loopback. Ray replaces 127.0.0.1 by the machine's interface
address wherever it is given (so other machines could reach the node); here we start `ray start`
through a shim that keeps 127.0.0.1, and join the driver the same way, since a test must reach
nothing beyond the loopback. A real cluster needs none of this: its nodes use their own addresses.

Each node is killed by its session id (every process `ray start` started, the raylet's workers
included, which Ray puts in process groups of their own), so nothing of Ray outlives stop().
"""

from __future__ import annotations

import json
import os
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
# `ray start`, keeping a loopback --node-ip-address and --address as given.
_SHIM = (
    "import sys, ray._private.services as s\n"
    "s.resolve_ip_for_localhost = lambda host: host\n"
    "from ray.scripts.scripts import main\n"
    "sys.argv[0] = 'ray'\n"
    "sys.exit(main())\n"
)


def keep_loopback() -> None:
    """In this process (a driver joining a LocalCluster): leave 127.0.0.1 as it is."""
    import ray._private.services as services

    services.resolve_ip_for_localhost = lambda host: host


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
        self.base = Path(base or tempfile.mkdtemp(prefix="kda-ray-", dir="/tmp"))
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", **(env or {})}
        self.address: str | None = None
        self.nodes: list[Node] = []

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, name: str, args: list[str], *, kind: str | None, gpus: int, cpus: int, env: dict[str, str] | None) -> Node:
        resources = {f"gpu_{kind}": gpus} if kind else {}
        argv = [
            sys.executable, "-c", _SHIM, "start", "--block", "--disable-usage-stats",
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
        args = ["--head", "--port", "0", "--include-dashboard", "false", "--ray-client-server-port", str(_free_port()), "--temp-dir", str(self.base / "ray")]
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
        import ray

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
