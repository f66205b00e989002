"""Shared fixtures: an isolated server per test session, GPU detection, helper paths."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# GPU leases are machine-wide (a lock file per GPU): tests take theirs in a folder of their own.
os.environ.setdefault("KDA_LOCK_DIR", tempfile.mkdtemp(prefix="kda-test-locks-"))


def _gpu_visible() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


HAS_GPU = _gpu_visible()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_GPU:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none visible)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """State and cache folders of our own, so tests never touch the user's ~/.cache or ~/.local."""
    base = tmp_path_factory.mktemp("kda")
    dirs = {"state": base / "state", "cache": base / "cache"}
    for d in dirs.values():
        d.mkdir()
    # Rooms of sandboxed children must be reachable by the sandbox users: not under pytest's 0700 tmp.
    dirs["runtime"] = Path(tempfile.mkdtemp(prefix="kda-tests-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None))
    return dirs


@pytest.fixture(scope="session")
def settings(isolated_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    from kda_mcp.tools.settings import Settings

    # Every test's tmp_path lies under the base temp folder: that is the workspace tools may write.
    return Settings.resolve(
        dataset=None,
        wiki_paths=[],
        state_dir=isolated_dirs["state"],
        cache_dir=isolated_dirs["cache"],
        workspaces=[str(tmp_path_factory.getbasetemp())],
        runtime_dir=isolated_dirs["runtime"],
    )


@pytest.fixture(scope="session")
def server_and_app(settings):
    from kda_mcp.server.app import create_app

    return create_app(settings)


@pytest.fixture(scope="session")
def mcp_server(server_and_app):
    return server_and_app[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, *, timeout: float = 90, why: Callable[[], str] = lambda: "") -> None:
    """Until `url`/health answers 200; fails at once if the server process exits (`why()` says why)."""
    import httpx2

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early ({proc.returncode}): {why()}")
        try:
            if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not become healthy within {timeout:.0f} s")


def child_env(isolated_dirs: dict[str, Path], **extra: str) -> dict[str, str]:
    """Environment for a `kda-mcp` child process: our dirs, no inherited token or dataset."""
    env = {k: v for k, v in os.environ.items() if k not in ("KDA_MCP_TOKEN", "FIB_DATASET_PATH", "KDA_WIKI_PATHS")}
    env.update(KDA_STATE_DIR=str(isolated_dirs["state"]), KDA_CACHE_DIR=str(isolated_dirs["cache"]), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def kda_mcp_command() -> list[str]:
    """The installed console script when present, else the module (a checkout without install)."""
    exe = shutil.which("kda-mcp") or str(Path(os.sys.executable).with_name("kda-mcp"))
    if Path(exe).exists():
        return [exe]
    return [os.sys.executable, "-m", "kda_mcp.server.cli"]
