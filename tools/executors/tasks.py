"""What a Ray task runs on the node Ray picked: the same units of GPU work as the local executor
(Evaluator.measure, capture, sanitize), with a sandbox, GPU lease and evaluator of the node's own.

Everything crossing to the node is plain data (dataclasses and pydantic models, pickled by Ray):
the plan, the solutions, and a CUDA build's library as bytes, since the server's build cache is a
folder on the server. The node writes the library into a private folder of the trusted side, the
code under test reads it from its room as it would locally, and the folder goes when the task ends.

Settings that belong to the node come from the node's environment, the one `ray start` ran
with: KDA_RUNTIME_DIR, KDA_SANDBOX_USER, KDA_LOCK_DIR (and PATH, for ncu and compute-sanitizer).
The isolation the server asks for (--sandbox) is applied as it would be on the server: 'user'
fails the task on a node that cannot switch users, 'auto' is 'user' on a node running as root.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio
from flashinfer_bench.data import Solution

from kda_mcp.tools.errors import KdaError
from kda_mcp.tools.harness.staging import Built

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeSettings:
    """What the server tells every task: its isolation policy and where its dataset is.

    commands: how the judge and executors start (tests point them at GPU-free fakes).
    stand_in: an async function (call, context) -> value run instead of the call's own work, for
    measuring the cluster's overhead without a GPU (bench/bench_ray.py); None in service."""

    sandbox: str = "auto"
    dataset_path: str = ""
    dataset_embedded: bool = True
    commands: Any = None  # tools.evaluation.pool.Commands | None
    stand_in: Callable[[Any, NodeContext], Awaitable[Any]] | None = None
    allow_no_auth: bool = False  # KDA_RAY_NO_AUTH=1 on the server: run sandboxed code on nodes without Ray's token auth


@dataclass
class ShippedBuild:
    """A Built whose library travels as bytes (the server's path means nothing on the node)."""

    solution: Solution
    library_name: str | None = None
    library: bytes | None = None
    error: str | None = None
    compile_report: dict[str, Any] | None = None

    @classmethod
    def of(cls, built: Built) -> ShippedBuild:
        data = built.library.read_bytes() if built.library is not None else None
        name = built.library.name if built.library is not None else None
        return cls(solution=built.solution, library_name=name, library=data, error=built.error, compile_report=built.compile_report)

    def land(self, folder: Path, tag: str) -> Built:
        library = None
        if self.library is not None:
            library = folder / tag / (self.library_name or "solution.so")
            library.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            library.write_bytes(self.library)
        return Built(solution=self.solution, library=library, error=self.error, compile_report=self.compile_report)


@dataclass
class Outcome:
    """A task's answer: its value, or the error to raise on the server (KdaError's message and
    hint, or an internal error with the node's traceback)."""

    value: Any = None
    error: str | None = None
    hint: str | None = None
    internal: bool = False
    where: dict[str, Any] = field(default_factory=dict)


_SANDBOXES: dict[tuple[str, str, str], Any] = {}


class NodeContext:
    """The node side of one task: its GPU, sandbox, private staging folder and progress reports."""

    def __init__(self, node: NodeSettings, token: str, reporter: Any) -> None:
        import ray

        self.node = node
        self.token = token
        self.reporter = reporter
        ids = ray.get_gpu_ids()
        if len(ids) != 1:
            raise KdaError(f"This task was given {len(ids)} GPUs by Ray; it needs exactly one (num_gpus=1).")
        try:
            self.gpu = int(ids[0])
        except ValueError:
            raise KdaError(
                f"Ray names this node's GPU {ids[0]!r}; kda-mcp needs GPU indices.",
                hint="Start the node's `ray start` with CUDA_VISIBLE_DEVICES unset or set to indices, not UUIDs.",
            ) from None
        context = ray.get_runtime_context()
        self.where = {"node_id": context.get_node_id(), "address": ray.util.get_node_ip_address(), "host": socket.gethostname(), "gpu": self.gpu, "ray_auth": ray_auth()}

    def check_boundary(self) -> None:
        """Refuse to run untrusted code where Ray's own ports would be a way around the sandbox.

        Without token authentication, anything that can open a TCP connection to a node's Ray
        services (the dashboard agent's job API, the GCS) runs code as the node's user, root here.
        A solution under ncu or compute-sanitizer shares the host's network (they reach their
        target over a local socket), so on such a node it would be one connection from root. With
        RAY_AUTH_MODE=token every Ray entry point wants the token, which no sandboxed process sees
        (not in its environment, not readable in /proc or ~root)."""
        if self.sandbox.mode == "none":
            if self.node.sandbox == "none":
                return  # the operator chose no isolation anywhere: nothing here to go around
            # --sandbox auto fell back to none (not root): the code would run as the Ray user, who can
            # read the cluster's token and so run tasks on every node, sandboxed or not.
            raise KdaError(
                f"Ray node {self.where['host']} ({self.where['address']}) cannot sandbox solutions (Ray does not run as root there): "
                "code under test would run as the Ray user, read the cluster's token and reach every node; kda-mcp runs no solution there.",
                hint="Start Ray as root on every GPU node so solutions run as sandbox users, or start the server with --sandbox none "
                "for a cluster only you use.",
            )
        if self.where["ray_auth"] == "token" or self.node.allow_no_auth:
            return
        raise KdaError(
            f"Ray node {self.where['host']} ({self.where['address']}) runs without Ray's token authentication, so code under test "
            "could reach its Ray services and run as its user, around the sandbox; kda-mcp runs no solution there.",
            hint="Start every node and the server with RAY_AUTH_MODE=token and one token (RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token; "
            "`ray get-auth-token --generate` makes one). For a throwaway cluster only you use, start the server with KDA_RAY_NO_AUTH=1.",
        )

    # ---- the node's own settings

    @cached_property
    def sandbox(self) -> Any:
        from kda_mcp.tools.sandbox.sandbox import Sandbox
        from kda_mcp.tools.settings import Settings

        local = Settings.resolve(sandbox=self.node.sandbox)  # runtime dir and sandbox users from this node's environment
        key = (local.sandbox, str(local.runtime_dir), local.sandbox_user)
        if key not in _SANDBOXES:  # configuring probes a child process: once per worker process
            _SANDBOXES[key] = Sandbox.configure(local.sandbox, local.runtime_dir, local.sandbox_user)
        return _SANDBOXES[key]

    def dataset_root(self, server_root: Path) -> Path:
        if self.node.dataset_embedded:
            from kda_mcp import resources

            return resources.sample_dataset_path()
        if not Path(self.node.dataset_path).is_dir():
            raise KdaError(
                f"The dataset {self.node.dataset_path} is not on Ray node {self.where['address']} ({self.where['host']}).",
                hint="Mount the dataset at the same path on every node (a shared filesystem or the image), or have the server use the embedded sample.",
            )
        return Path(self.node.dataset_path)

    def commands(self) -> Any:
        from kda_mcp.tools.evaluation.pool import Commands

        # No warm spares: this task's evaluator ends with it, and spares would only be killed.
        return replace(self.node.commands or Commands(), warm=False)

    def gpus(self) -> Any:
        from kda_mcp.tools.gpus import GpuPool

        return GpuPool([self.gpu])  # machine-wide lock too: a local kda-mcp on this box waits its turn

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A private folder of the trusted side (0700, this user's) for libraries and reports."""
        folder = Path(self.sandbox.runtime_dir) / f"ray-{self.token}-{secrets.token_hex(3)}"
        folder.mkdir(mode=0o700, parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    # ---- reports to the server (fire and forget: a lost report costs a progress line, no more)

    def _send(self, event: tuple[Any, ...]) -> None:
        if self.reporter is None:
            return
        try:
            self.reporter.report.remote(self.token, event)
        except Exception:
            log.debug("could not report %s", event[0], exc_info=True)

    def progress(self, done: int, total: int, message: str) -> None:
        self._send(("progress", done, total, message))

    def on_gpu(self, gpu: int) -> None:
        self._send(("gpu", gpu))

    def started(self) -> None:
        self._send(("started", self.where))


# ---- the calls


@dataclass
class MeasureCall:
    """Evaluator.measure on the node's GPU."""

    sides: list[tuple[str, ShippedBuild, bool]]  # (name, build, policy_applies)
    plan: Any  # runner.Plan
    timing: dict[str, Any]
    purpose: str

    async def run(self, ctx: NodeContext) -> Any:
        from kda_mcp.tools.evaluation.runner import Evaluator, SidePlan

        plan = replace(self.plan, dataset_root=ctx.dataset_root(self.plan.dataset_root))
        with ctx.staging() as folder:
            sides = [SidePlan(name, build.land(folder, name), policy_applies=policy) for name, build, policy in self.sides]
            # The compiler is the server's business (builds happen there); measure never uses it.
            evaluator = Evaluator(None, ctx.gpus(), ctx.sandbox, ctx.commands())  # type: ignore[arg-type]
            try:
                measurement = await evaluator.measure(sides, plan, self.timing, progress=ctx.progress, on_gpu=ctx.on_gpu, purpose=self.purpose)
            finally:
                await evaluator.aclose()
        measurement.facts["isolation"] = ctx.sandbox.describe()
        from kda_mcp.tools.evaluation.report import host_provenance

        measurement.facts["node_provenance"] = host_provenance()  # the node's driver and packages, not the server's
        return measurement


@dataclass
class CaptureCall:
    """Nsight Compute on one call, on the node's GPU; the report comes back as bytes."""

    request: Any  # profile.capture.CaptureRequest, its built without a library path
    build: ShippedBuild
    purpose: str

    async def run(self, ctx: NodeContext) -> tuple[bytes, str, float]:
        from kda_mcp.tools.capabilities import probe_counter_access
        from kda_mcp.tools.profile.capture import capture, preflight

        ncu = preflight(probe_counter_access())  # this node's ncu and counter permission
        with ctx.staging() as folder:
            request = replace(self.request, built=self.build.land(folder, "solution"), dataset_root=ctx.dataset_root(self.request.dataset_root), report=folder / "report")
            async with ctx.gpus().lease(self.purpose) as lease:
                ctx.on_gpu(lease.gpu)
                ctx.progress(0, 1, f"ncu --set {request.profile_set} on workload {request.workload.uuid[:8]}")
                path, text, seconds = await capture(request, lease, ncu, ctx.sandbox)
            return path.read_bytes(), text, seconds


@dataclass
class SanitizeCall:
    """compute-sanitizer on one call, on the node's GPU."""

    call: dict[str, Any]  # sanitize()'s keywords but lease and sandbox; built without a library path
    build: ShippedBuild
    purpose: str

    async def run(self, ctx: NodeContext) -> tuple[list[Any], str | None, str, float]:
        from kda_mcp.tools.sanitize.parse import sanitize

        with ctx.staging() as folder:
            call = {**self.call, "built": self.build.land(folder, "solution"), "dataset_root": ctx.dataset_root(self.call["dataset_root"])}
            async with ctx.gpus().lease(self.purpose) as lease:
                ctx.on_gpu(lease.gpu)
                ctx.progress(0, 1, f"compute-sanitizer --tool {call['tool']}")
                return await sanitize(**call, lease=lease, sandbox=ctx.sandbox)


def run_on_node(node: NodeSettings, call: Any, token: str, reporter: Any) -> Outcome:
    """The Ray task's body. A KdaError comes back as data (the server raises it again, message
    intact); anything else as an internal error with this node's traceback. Cancellation (Ray's
    KeyboardInterrupt) passes through, after the call's own cleanup has killed its processes."""
    where: dict[str, Any] = {}
    try:
        ctx = NodeContext(node, token, reporter)
        where = ctx.where
        ctx.check_boundary()
        ctx.started()

        async def body() -> Any:
            if node.stand_in is not None:
                return await node.stand_in(call, ctx)
            return await call.run(ctx)

        return Outcome(value=anyio.run(body), where=where)
    except KdaError as exc:
        return Outcome(error=exc.message, hint=exc.hint, where=where)
    except Exception as exc:
        text = traceback.format_exc()
        log.error("kda-mcp task failed on this node:\n%s", text)
        host = where.get("host") or socket.gethostname()
        return Outcome(error=f"internal error on Ray node {host} ({type(exc).__name__}: {exc}); the job did not finish.\n{text[-2000:]}", internal=True, where=where)


def ray_auth() -> str:
    """'token' when this process's Ray connection uses token authentication, else 'disabled'."""
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        return "token" if is_token_auth_enabled() else "disabled"
    except Exception:  # a Ray without token auth (before 2.52)
        return "disabled"


def probe_node() -> dict[str, Any]:
    """What a node has: its GPUs as nvidia-smi sees them (no CUDA context), and its kda-mcp."""
    import importlib.metadata

    from kda_mcp.tools.capabilities import probe_gpus

    gpus, driver, note = probe_gpus()
    try:
        version = importlib.metadata.version("kda-mcp")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"gpus": [g.model_dump() for g in gpus], "driver": driver, "note": note, "host": socket.gethostname(), "kda_mcp": version, "pid": os.getpid()}
