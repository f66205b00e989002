"""The local executor: GPU work on this machine's GPUs, in this process's job loop (what kda-mcp
has always done). Each unit leases a GPU from app.gpus (exclusive, machine-wide) and runs there."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kda_mcp.tools.errors import UnavailableError
from kda_mcp.tools.executors import kind_of, normalize_kind

if TYPE_CHECKING:
    from kda_mcp.tools.app import KdaApp
    from kda_mcp.tools.capabilities import ClusterInfo
    from kda_mcp.tools.compile.targets import Target
    from kda_mcp.tools.evaluation.runner import Measurement, Plan, Progress, SidePlan
    from kda_mcp.tools.profile.capture import CaptureRequest


class LocalExecutor:
    name = "local"

    def __init__(self, app: KdaApp) -> None:
        self.app = app

    def kinds(self) -> list[str]:
        return sorted({kind_of(gpu.name) for gpu in self.app.capabilities().gpus})

    def require(self, tool: str, kind: str | None = None) -> None:
        self.app.gpus.require(tool)
        wanted = normalize_kind(kind)
        if wanted is not None and wanted not in self.kinds():
            raise UnavailableError(
                f"{tool} asked for a {wanted} GPU; this server's GPUs are {', '.join(self.kinds())}.",
                hint="Leave the kind out, or use a kda-mcp that runs on a cluster with that kind (serve --executor ray).",
            )

    def target(self, kind: str | None = None) -> Target | None:
        return None  # app.target falls back to this machine's first GPU

    def profiler(self) -> str | None:
        from kda_mcp.tools.profile.capture import preflight

        return preflight(self.app.capabilities().ncu_counters)

    async def measure(
        self, sides: list[SidePlan], plan: Plan, timing: dict[str, Any], *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None
    ) -> Measurement:
        return await self.app.evaluator.measure(sides, plan, timing, progress=progress, on_gpu=on_gpu, purpose=purpose)

    async def capture(
        self, request: CaptureRequest, ncu: str | None, *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None
    ) -> tuple[Path, str, float]:
        from kda_mcp.tools.profile.capture import capture

        assert ncu is not None, "profiler() finds ncu for the local executor"
        async with self.app.gpus.lease(purpose) as lease:
            on_gpu(lease.gpu)
            progress(0, 1, f"ncu --set {request.profile_set} on workload {request.workload.uuid[:8]}")
            return await capture(request, lease, ncu, self.app.sandbox)

    async def sanitize(self, *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None, **call: Any) -> tuple[list[Any], str | None, str, float]:
        from kda_mcp.tools.sanitize.parse import sanitize

        async with self.app.gpus.lease(purpose) as lease:
            on_gpu(lease.gpu)
            progress(0, 1, f"compute-sanitizer --tool {call['tool']}")
            return await sanitize(**call, lease=lease, sandbox=self.app.sandbox)

    def isolation(self, measurement: Measurement) -> dict[str, str]:
        return self.app.sandbox.describe()

    def describe(self) -> ClusterInfo | None:
        return None

    async def aclose(self) -> None:
        return None
