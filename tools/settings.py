"""Where kda-mcp reads its inputs and keeps its state, resolved once from flags and environment."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from kda_mcp import resources


def _user_dir(env_var: str, xdg_var: str, fallback: str) -> Path:
    if os.environ.get(env_var):
        return Path(os.environ[env_var]).expanduser()
    base = os.environ.get(xdg_var)
    return (Path(base).expanduser() if base else Path.home() / fallback) / "kda-mcp"


@dataclass(frozen=True)
class Settings:
    """Paths and switches for one server process.

    dataset_path: a FlashInfer-Trace folder (definitions/, workloads/, solutions/, ...).
    wiki_paths: external wiki roots indexed beside the bundled pages.
    state_dir: jobs, attempts, traces and artifacts that must survive a restart.
    cache_dir: things that can be rebuilt (the wiki index, build outputs).
    workspaces: folders the tools may read and write (starter kits, packed solutions).
    runtime_dir: per-job private folders of sandboxed processes (reachable by the sandbox user).
    executor: where GPU work runs: 'local' (this machine's GPUs) or 'ray' (a Ray cluster's, tools/executors).
    ray_address: the cluster to join with executor 'ray': 'auto' (this machine is a node) or ray://host:10001.
    gpu_kind: the GPU kind (the Ray resource gpu_<kind> its nodes advertise) a job runs on when the
      caller names none; unset, the cluster's only kind. Results are only compared within one kind.
    """

    dataset_path: Path
    dataset_is_embedded: bool
    wiki_paths: tuple[Path, ...] = ()
    state_dir: Path = field(default_factory=lambda: _user_dir("KDA_STATE_DIR", "XDG_STATE_HOME", ".local/state"))
    cache_dir: Path = field(default_factory=lambda: _user_dir("KDA_CACHE_DIR", "XDG_CACHE_HOME", ".cache"))
    workspaces: tuple[Path, ...] = ()
    runtime_dir: Path = field(default_factory=lambda: _runtime_dir())
    sandbox: str = "auto"  # auto | user | none: how untrusted code is isolated (tools/sandbox)
    sandbox_user: str = "kda-sandbox"  # base name of the unprivileged users untrusted code runs as
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    gpu_kind: str | None = None

    @classmethod
    def resolve(
        cls,
        *,
        dataset: str | os.PathLike[str] | None = None,
        wiki_paths: list[str] | None = None,
        state_dir: str | os.PathLike[str] | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        workspaces: list[str] | None = None,
        shared: bool = False,
        sandbox: str | None = None,
        sandbox_user: str | None = None,
        runtime_dir: str | os.PathLike[str] | None = None,
        executor: str | None = None,
        ray_address: str | None = None,
        gpu_kind: str | None = None,
    ) -> Settings:
        """Flags win over environment variables, which win over the embedded defaults."""
        chosen = dataset or os.environ.get("FIB_DATASET_PATH")
        if chosen:
            dataset_path, embedded = Path(chosen).expanduser().resolve(), False
        else:
            dataset_path, embedded = resources.sample_dataset_path(), True
        if wiki_paths is None:
            raw = os.environ.get("KDA_WIKI_PATHS", "")
            wiki_paths = [p for p in raw.split(os.pathsep) if p.strip()]
        defaults = cls(dataset_path=dataset_path, dataset_is_embedded=embedded)
        state = Path(state_dir).expanduser() if state_dir else defaults.state_dir
        if workspaces is None:
            raw = os.environ.get("KDA_WORKSPACES", "")
            workspaces = [p for p in raw.split(os.pathsep) if p.strip()]
        return cls(
            dataset_path=dataset_path,
            dataset_is_embedded=embedded,
            wiki_paths=tuple(Path(p).expanduser() for p in wiki_paths),
            state_dir=state,
            cache_dir=Path(cache_dir).expanduser() if cache_dir else defaults.cache_dir,
            workspaces=tuple(Path(p).expanduser().resolve() for p in workspaces) or (_default_workspace(state, shared),),
            runtime_dir=Path(runtime_dir) if runtime_dir else defaults.runtime_dir,
            sandbox=sandbox or os.environ.get("KDA_SANDBOX") or "auto",
            sandbox_user=sandbox_user or os.environ.get("KDA_SANDBOX_USER") or "kda-sandbox",
            executor=executor or os.environ.get("KDA_EXECUTOR") or "local",
            ray_address=ray_address or os.environ.get("KDA_RAY_ADDRESS") or None,
            gpu_kind=gpu_kind or os.environ.get("KDA_GPU_KIND") or None,
        )


def _default_workspace(state_dir: Path, shared: bool) -> Path:
    """Over stdio the client owns the process, and the folder it started the server in (the agent's
    project) is the workspace. A shared server (HTTP) gets a folder of its own under the state
    folder, as does a server started at the filesystem root."""
    cwd = Path.cwd().resolve()
    if shared or cwd == Path(cwd.anchor):
        return (state_dir / "workspace").resolve()
    return cwd


def _runtime_dir() -> Path:
    """Private job folders (sources, builds, caches of sandboxed processes): somewhere a sandbox user
    can reach, which a home folder (0700) is not, and where shared libraries may be loaded, which
    /dev/shm (often mounted noexec) is not. Nothing there needs to survive a restart."""
    if os.environ.get("KDA_RUNTIME_DIR"):
        return Path(os.environ["KDA_RUNTIME_DIR"])
    var_tmp = Path("/var/tmp")
    base = var_tmp if var_tmp.is_dir() and os.access(var_tmp, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"kda-mcp-{os.getuid()}"
