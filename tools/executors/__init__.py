"""Where GPU work runs: the seam between the operations (run_benchmark, compare_solutions,
profile_solution, sanitize_solution) and the machines that do the work.

An executor runs the three units of GPU work, each the same code wherever it runs:

    measure(sides, plan, timing)   Evaluator.measure: the judge and the sandboxed executors on one GPU
    capture(request, ncu)          Nsight Compute on one call (tools/profile/capture.py)
    sanitize(**call)               compute-sanitizer on one call (tools/sanitize/parse.py)

`local` (local.py) leases one of this machine's GPUs and calls them directly, as kda-mcp always
has. `ray` (ray.py) sends each as a Ray task needing one GPU and one unit of the resource
`gpu_<kind>` to whichever node Ray picks; there the task builds its own sandbox and evaluator and
runs the same function (tasks.py). The server stays the single front door either way: jobs, the
ledger and traces stay in its SQLite and state folder.

A GPU *kind* is a lower-case model name ('h200', 'b200', 'a100'): nodes advertise theirs as the
Ray resource `gpu_<kind>`, a job runs on the kind its caller names (else the server's default),
and results are only compared within one kind.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Protocol

from kda_mcp.tools.errors import KdaError, UnavailableError

if TYPE_CHECKING:
    from pathlib import Path

    from kda_mcp.tools.app import KdaApp
    from kda_mcp.tools.capabilities import ClusterInfo
    from kda_mcp.tools.compile.targets import Target
    from kda_mcp.tools.evaluation.runner import Measurement, Plan, Progress, SidePlan
    from kda_mcp.tools.profile.capture import CaptureRequest

RAY_INSTALL = "pip install 'kda-mcp[ray]'"
RESOURCE_PREFIX = "gpu_"
EXECUTORS = ("local", "ray")


class NodeLostError(KdaError):
    """The machine running a job went away (a Ray node died, its worker was killed). The job did
    not finish and nothing was recorded for it: the failure is the machine's, not the solution's,
    and submitting it again is the right thing to do."""

    retryable = True


class Executor(Protocol):
    name: str

    def require(self, tool: str, kind: str | None = None) -> None:
        """Refuse up front, saying what to do instead, when `tool` cannot get a GPU (of `kind`)."""

    def target(self, kind: str | None = None) -> Target | None:
        """The build target of the GPUs a job of `kind` would run on, when known."""

    def profiler(self) -> str | None:
        """Check Nsight Compute can run where profiles run; the ncu to use, when that is here."""

    async def measure(
        self, sides: list[SidePlan], plan: Plan, timing: dict[str, Any], *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None
    ) -> Measurement: ...

    async def capture(
        self, request: CaptureRequest, ncu: str | None, *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None
    ) -> tuple[Path, str, float]: ...

    async def sanitize(self, *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None, **call: Any) -> tuple[list[Any], str | None, str, float]: ...

    def isolation(self, measurement: Measurement) -> dict[str, str]:
        """How the measured code was isolated, where it ran (for provenance)."""

    def describe(self) -> ClusterInfo | None:
        """The cluster, for capabilities (None for the local executor)."""

    async def aclose(self) -> None: ...


def normalize_kind(kind: str | None) -> str | None:
    """'H200', 'gpu_h200', ' h200 ' -> 'h200'; None stays None."""
    if kind is None or not kind.strip():
        return None
    cleaned = kind.strip().lower()
    if cleaned.startswith(RESOURCE_PREFIX):
        cleaned = cleaned[len(RESOURCE_PREFIX) :]
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,31}", cleaned):
        raise KdaError(f"GPU kind {kind!r} is not a kind name; use the model in lower case, e.g. 'h200', 'b200', 'a100'.")
    return cleaned


def kind_of(gpu_name: str) -> str:
    """The kind a GPU model advertises: 'NVIDIA H200' -> 'h200', 'NVIDIA H100 80GB HBM3' -> 'h100',
    'NVIDIA A100-SXM4-80GB' -> 'a100', 'NVIDIA GeForce RTX 4090' -> 'rtx4090'."""
    words = [w for w in re.split(r"[\s\-]+", gpu_name.lower()) if w and w not in ("nvidia", "geforce", "tesla", "quadro")]
    if not words:
        return "unknown"
    if words[0] == "rtx" and len(words) > 1:
        return "rtx" + re.sub(r"[^a-z0-9]", "", words[1])
    return re.sub(r"[^a-z0-9]", "", words[0]) or "unknown"


def resource_of(kind: str) -> str:
    return f"{RESOURCE_PREFIX}{kind}"


def ray_missing() -> str | None:
    """Why the Ray executor cannot be used here, or None when it can."""
    try:
        import ray  # noqa: F401
    except ImportError as exc:
        return f"--executor ray needs Ray, which is not installed in this Python ({exc}). Install it with: {RAY_INSTALL}"
    return None


def make_executor(app: KdaApp) -> Executor:
    """The executor app.settings names."""
    name = app.settings.executor
    if name == "local":
        from kda_mcp.tools.executors.local import LocalExecutor

        return LocalExecutor(app)
    if name == "ray":
        missing = ray_missing()
        if missing:
            raise UnavailableError(missing)
        from kda_mcp.tools.executors.ray import RayExecutor

        return RayExecutor(app.settings)
    raise UnavailableError(f"Unknown executor {name!r}; use one of {', '.join(EXECUTORS)}.")
