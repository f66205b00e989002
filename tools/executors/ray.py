"""The Ray executor: each unit of GPU work is a Ray task needing one GPU (num_gpus=1, so Ray gives
it a device of its own) and one unit of the node resource gpu_<kind>, run on whichever node Ray
picks, with that node's sandbox (tasks.py). Ray queues what waits for a GPU; this process only
submits, follows and reports.

The job loop awaits each task. Progress comes back through a small actor of this server's (the
reporter, on the server's node), which the task tells where it runs and how far it got; the
server polls it while it waits. A task whose node dies fails its job with NodeLostError, which
says to submit it again; queued tasks stay queued (a new node of their kind picks them up), and
the server, its SQLite and the ledger carry on: a job's attempt is only recorded once it finished.
Cancelling a job cancels its task, which ends its processes on the node as a local job would.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import ray
import ray.exceptions

from kda_mcp.tools.capabilities import ClusterInfo, ClusterKind, ClusterNode
from kda_mcp.tools.compile.targets import Target, default_target
from kda_mcp.tools.errors import KdaError, UnavailableError
from kda_mcp.tools.executors import RESOURCE_PREFIX, NodeLostError, normalize_kind, resource_of
from kda_mcp.tools.executors.tasks import CaptureCall, MeasureCall, NodeSettings, Outcome, SanitizeCall, ShippedBuild, probe_node, ray_auth, run_on_node
from kda_mcp.tools.harness.staging import Built

if TYPE_CHECKING:
    from kda_mcp.tools.evaluation.runner import Measurement, Plan, Progress, SidePlan
    from kda_mcp.tools.profile.capture import CaptureRequest
    from kda_mcp.tools.settings import Settings

log = logging.getLogger(__name__)

POLL_S = 0.25  # how often a waiting job asks the reporter for its task's progress
PROBE_TIMEOUT_S = 30.0
REACH_TIMEOUT_S = 5.0
CLIENT_ATTEMPTS = 3  # joins tried over Ray Client before the server gives up
CANCEL_GRACE_S = 10.0  # after a cancel, how long the task gets to end its processes before it is killed
NAMESPACE = "kda-mcp"
# The task's worker process stays for the next task (max_calls=0): it never touches the GPU itself
# (the judge and executors it starts do), so there is nothing to release between tasks.
TASK_OPTIONS: dict[str, Any] = {"num_gpus": 1, "num_cpus": 0, "max_retries": 0, "retry_exceptions": False, "max_calls": 0}
LOST = (
    ray.exceptions.NodeDiedError,
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.ObjectLostError,
    ray.exceptions.OwnerDiedError,
    ray.exceptions.RaySystemError,
)


class Reporter:
    """Progress of this server's tasks, kept until the server asks (one actor per server)."""

    def __init__(self) -> None:
        self.events: dict[str, list[tuple[Any, ...]]] = defaultdict(list)

    def report(self, token: str, event: tuple[Any, ...]) -> None:
        self.events[token].append(event)

    def drain(self, token: str) -> list[tuple[Any, ...]]:
        return self.events.pop(token, [])


class RayExecutor:
    name = "ray"

    def __init__(self, settings: Settings, *, commands: Any = None, stand_in: Any = None, poll_s: float = POLL_S) -> None:
        self.address = settings.ray_address or "auto"
        self.default_kind = normalize_kind(settings.gpu_kind)
        self.node = NodeSettings(
            sandbox=settings.sandbox,
            dataset_path=str(settings.dataset_path),
            dataset_embedded=settings.dataset_is_embedded,
            commands=commands,
            stand_in=stand_in,
            allow_no_auth=os.environ.get("KDA_RAY_NO_AUTH") == "1",
        )
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._queued: Counter[str] = Counter()
        self._running: Counter[str] = Counter()
        self._reporter: Any = None
        self._task: Any = None
        self._probe: Any = None
        self._models: dict[str, list[dict[str, Any]]] = {}  # node id -> its GPUs (nvidia-smi)

    # ---- the cluster

    def connect(self) -> None:
        """Join the cluster (once per process; a process already joined keeps its connection)."""
        with self._lock:
            # Ray Client (ray://) starts a server process per client on the head, which now and then
            # fails to come up on a loaded head: try it a few times before giving up.
            attempts = CLIENT_ATTEMPTS if self.address.startswith("ray://") else 1
            if not ray.is_initialized():
                _check_reachable(self.address)
            for attempt in range(1, attempts + 1):
                if ray.is_initialized():
                    break
                try:
                    ray.init(address=self.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
                except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean "not reachable"
                    if attempt < attempts:
                        log.warning("joining the Ray cluster at %s failed (%s); trying again", self.address, exc)
                        try:
                            ray.shutdown()  # a half-made client connection would refuse the next init
                        except Exception:
                            pass
                        time.sleep(2.0 * attempt)
                        continue
                    raise UnavailableError(
                        f"Could not join the Ray cluster at {self.address}: {type(exc).__name__}: {exc}",
                        hint="Start one (ray start --head on this machine, then --ray-address auto) or name it: --ray-address ray://HEAD:10001.",
                    ) from exc
            if self._task is None:
                self._task = ray.remote(**TASK_OPTIONS)(run_on_node)
                self._probe = ray.remote(num_cpus=0, max_retries=0)(probe_node)

    def _reporter_handle(self) -> Any:
        with self._lock:
            if self._reporter is None:
                options: dict[str, Any] = {"num_cpus": 0}
                try:  # on the server's own node, so a worker node that dies takes no progress with it
                    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                    options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
                except Exception:
                    pass
                self._reporter = ray.remote(Reporter).options(**options).remote()
            return self._reporter

    def nodes(self) -> list[dict[str, Any]]:
        self.connect()
        return ray.nodes()

    def kinds(self) -> dict[str, int]:
        """GPU kind -> GPUs on the alive nodes."""
        total: Counter[str] = Counter()
        for node in self.nodes():
            if node.get("Alive"):
                for key, value in (node.get("Resources") or {}).items():
                    if key.startswith(RESOURCE_PREFIX):
                        total[key[len(RESOURCE_PREFIX) :]] += int(value)
        return dict(total)

    def resolve_kind(self, kind: str | None, tool: str = "this job") -> str:
        """The kind a job runs on: the caller's, else the server's default, else the cluster's only one."""
        wanted = normalize_kind(kind) or self.default_kind
        kinds = self.kinds()
        listing = ", ".join(f"{k} ({n} GPU{'s' if n != 1 else ''})" for k, n in sorted(kinds.items())) or "none"
        if wanted is not None:
            # The default kind is accepted with no node up: an autoscaler (KubeRay) starts one for a queued task.
            if wanted in kinds or wanted == self.default_kind:
                return wanted
            raise UnavailableError(f"{tool} asked for a {wanted} GPU; the Ray cluster at {self.address} has no node of that kind.", hint=f"GPU kinds there: {listing}.")
        if len(kinds) == 1:
            return next(iter(kinds))
        if not kinds:
            raise UnavailableError(
                f"{tool} needs a GPU and the Ray cluster at {self.address} has no GPU node (no resource gpu_<kind>).",
                hint="Join a GPU node: ray start --address HEAD:6379 --num-gpus N --resources '{\"gpu_h200\": N}' (kda-mcp node-resources prints it).",
            )
        raise UnavailableError(
            f"The Ray cluster has GPUs of several kinds ({listing}) and {tool} names none; results are only comparable within one kind.",
            hint="Name the kind, or start the server with --gpu-kind KIND to choose one for every call.",
        )

    def require(self, tool: str, kind: str | None = None) -> None:
        self.resolve_kind(kind, tool)

    def _node_gpus(self, node_id: str) -> list[dict[str, Any]]:
        if node_id not in self._models:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            ref = self._probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
            try:
                self._models[node_id] = ray.get(ref, timeout=PROBE_TIMEOUT_S)["gpus"]
            except Exception as exc:
                log.warning("could not probe Ray node %s: %s", node_id[:8], exc)
                ray.cancel(ref, force=True)
                return []
        return self._models[node_id]

    def models(self, kind: str) -> list[dict[str, Any]]:
        """The GPUs of the alive nodes of `kind` (probed once per node)."""
        found = []
        for node in self.nodes():
            if node.get("Alive") and (node.get("Resources") or {}).get(resource_of(kind)):
                found += self._node_gpus(node["NodeID"])
        return found

    def target(self, kind: str | None = None) -> Target | None:
        try:
            chosen = self.resolve_kind(kind)
        except KdaError:
            return None
        capabilities = {g.get("compute_capability") for g in self.models(chosen)} - {None}
        return default_target(capabilities.pop()) if len(capabilities) == 1 else None

    def describe(self) -> ClusterInfo:
        try:
            nodes = self.nodes()
            free = ray.available_resources()
        except KdaError as exc:
            return ClusterInfo(address=self.address, connected=False, error=str(exc), default_kind=self.default_kind)
        rows, kinds, per_kind_nodes = [], Counter(), Counter()
        for node in nodes:
            resources = node.get("Resources") or {}
            offered = {k[len(RESOURCE_PREFIX) :]: int(v) for k, v in resources.items() if k.startswith(RESOURCE_PREFIX)}
            alive = bool(node.get("Alive"))
            rows.append(
                ClusterNode(
                    node_id=node["NodeID"], address=node.get("NodeManagerAddress", ""), alive=alive, kinds=offered, gpus=int(resources.get("GPU", 0)), cpus=int(resources.get("CPU", 0))
                )
            )
            if alive:
                kinds.update(offered)
                per_kind_nodes.update(offered.keys())
        with self._lock:
            queued, running = dict(self._queued), dict(self._running)
        rows_by_kind = []
        for kind in sorted(set(kinds) | {k for k, v in {**queued, **running}.items() if v} | ({self.default_kind} if self.default_kind else set())):
            models = sorted({f"{g['name']} ({g['arch']})" for g in self.models(kind)}) if kinds.get(kind) else []
            rows_by_kind.append(
                ClusterKind(
                    kind=kind,
                    gpus=kinds.get(kind, 0),
                    free=int(free.get(resource_of(kind), 0)),
                    nodes=per_kind_nodes.get(kind, 0),
                    queued=queued.get(kind, 0),
                    running=running.get(kind, 0),
                    models=models or None,
                )
            )
        return ClusterInfo(address=self.address, connected=True, auth=ray_auth(), default_kind=self.default_kind, kinds=rows_by_kind, nodes=rows)

    # ---- the units of work

    def profiler(self) -> str | None:
        return None  # each node checks its own ncu and counter permission

    async def measure(
        self, sides: list[SidePlan], plan: Plan, timing: dict[str, Any], *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None
    ) -> Measurement:
        chosen = await anyio.to_thread.run_sync(self.resolve_kind, kind)
        shipped = [(s.name, ShippedBuild.of(s.built), s.policy_applies) for s in sides]
        call = MeasureCall(sides=shipped, plan=plan, timing=timing, purpose=purpose)
        measurement, where = await self._run(call, chosen, purpose, progress, on_gpu, total=len(plan.workloads) + 1)
        measurement.facts["ray"] = {**where, "kind": chosen}
        return measurement

    async def capture(
        self, request: CaptureRequest, ncu: str | None, *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None
    ) -> tuple[Path, str, float]:
        chosen = await anyio.to_thread.run_sync(self.resolve_kind, kind)
        call = CaptureCall(request=replace(request, built=_without_library(request.built)), build=ShippedBuild.of(request.built), purpose=purpose)
        (data, text, seconds), _ = await self._run(call, chosen, purpose, progress, on_gpu, total=1)
        path = request.report.with_suffix(".ncu-rep")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path, text, seconds

    async def sanitize(self, *, progress: Progress, on_gpu: Any, purpose: str, kind: str | None = None, **call: Any) -> tuple[list[Any], str | None, str, float]:
        chosen = await anyio.to_thread.run_sync(self.resolve_kind, kind)
        built = call["built"]
        job = SanitizeCall(call={**call, "built": _without_library(built)}, build=ShippedBuild.of(built), purpose=purpose)
        value, _ = await self._run(job, chosen, purpose, progress, on_gpu, total=1)
        return value

    def isolation(self, measurement: Measurement) -> dict[str, str]:
        found = dict(measurement.facts.get("isolation") or {"isolation": "unknown", "detail": "the node did not say"})
        where = measurement.facts.get("ray") or {}
        if where:
            found["ray_node"] = f"{where.get('host')} {where.get('address')} (node {str(where.get('node_id'))[:12]}), {where.get('kind')} GPU {where.get('gpu')}"
        return found

    async def _run(self, call: Any, kind: str, purpose: str, progress: Progress, on_gpu: Any, *, total: int) -> tuple[Any, dict[str, Any]]:
        """Submit `call` as a task on a `kind` GPU, follow it, and return (its value, where it ran)."""
        await anyio.to_thread.run_sync(self.connect)
        reporter = self._reporter_handle()
        token = secrets.token_hex(8)
        ref = self._task.options(resources={resource_of(kind): 1}, name=f"kda-mcp {purpose}"[:120]).remote(self.node, call, token, reporter)
        fut = asyncio.wrap_future(ref.future())
        where: dict[str, Any] = {}
        state = "queued"
        with self._lock:
            self._queued[kind] += 1
        progress(0, total, f"queued on the Ray cluster for a {kind} GPU")

        def apply(events: list[tuple[Any, ...]]) -> None:
            nonlocal where, state
            for event in events:
                if event[0] == "started":
                    where = dict(event[1])
                    state = self._move(kind, state, "running")
                    progress(0, total, f"running on Ray node {where.get('host')} {where.get('address')} (node {str(where.get('node_id'))[:8]}), {kind} GPU {where.get('gpu')}")
                elif event[0] == "gpu":
                    on_gpu(event[1])
                elif event[0] == "progress":
                    progress(*event[1:])

        try:
            # One drain call in flight at a time, its answer never dropped: a drain the reporter
            # runs late (it is still starting, the head is busy) still delivers what it took.
            drain: asyncio.Future[Any] | None = None
            while not fut.done():
                if drain is None:
                    drain = self._drain(reporter, token)
                await asyncio.wait({fut, drain} if drain is not None else {fut}, timeout=self.poll_s, return_when=asyncio.FIRST_COMPLETED)
                if drain is not None and drain.done():
                    apply(self._events(drain))
                    drain = None
                    await asyncio.wait({fut}, timeout=self.poll_s)  # pace the next drain
            # The drain in flight may have been answered before the task's last words: take its
            # answer, then ask once more for what the task said before it ended.
            for last in (drain, self._drain(reporter, token)):
                if last is not None:
                    await asyncio.wait({last}, timeout=5)
                    apply(self._events(last) if last.done() else [])
            try:
                outcome: Outcome = fut.result()
            except LOST as exc:
                raise NodeLostError(_lost_message(exc, where, kind)) from exc
            except ray.exceptions.TaskCancelledError as exc:
                raise KdaError("The job's Ray task was cancelled on the cluster (ray cancel, or its node's shutdown); submit it again.") from exc
            except ray.exceptions.RayTaskError as exc:
                raise KdaError(f"internal error in kda-mcp's Ray task ({exc}); the job did not finish.") from exc
            where = outcome.where or where
            if outcome.error is not None:
                raise KdaError(outcome.error, hint=outcome.hint)
            return outcome.value, where
        except BaseException:
            if not fut.done():
                await self._cancel(ref, fut)
            raise
        finally:
            self._move(kind, state, "gone")
            try:  # what the task reported after we stopped listening
                reporter.drain.remote(token)
            except Exception:
                pass

    def _move(self, kind: str, state: str, to: str) -> str:
        with self._lock:
            if state == "queued":
                self._queued[kind] -= 1
            elif state == "running":
                self._running[kind] -= 1
            if to == "running":
                self._running[kind] += 1
        return to

    def _drain(self, reporter: Any, token: str) -> asyncio.Future[Any] | None:
        try:
            return asyncio.wrap_future(reporter.drain.remote(token).future())
        except Exception:  # a reporter that died costs progress lines, never the job
            log.debug("reporter unavailable", exc_info=True)
            return None

    def _events(self, drain: asyncio.Future[Any]) -> list[tuple[Any, ...]]:
        try:
            return drain.result()
        except Exception:
            log.debug("reporter unavailable", exc_info=True)
            with self._lock:
                self._reporter = None  # the next job gets a new one
            return []

    async def _cancel(self, ref: Any, fut: asyncio.Future[Any]) -> None:
        """Cancel the task: first as an interrupt, which lets it end its processes and rooms on the
        node; if it has not ended within CANCEL_GRACE_S, kill its worker."""
        with anyio.CancelScope(shield=True):
            try:
                ray.cancel(ref, force=False)
            except Exception:
                log.debug("ray.cancel failed", exc_info=True)
                return
            deadline = time.monotonic() + CANCEL_GRACE_S
            while not fut.done() and time.monotonic() < deadline:
                await asyncio.wait({fut}, timeout=0.25)
            if not fut.done():
                log.warning("a cancelled Ray task did not end within %.0f s; killing its worker", CANCEL_GRACE_S)
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    log.debug("forced ray.cancel failed", exc_info=True)
            if not fut.done():
                fut.cancel()
            elif not fut.cancelled():
                fut.exception()  # retrieved, so asyncio does not warn of it

    async def aclose(self) -> None:
        return None  # the connection closes with the process (ray's atexit); tasks end with their jobs


def _check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when a named cluster does not answer: ray.init retries an
    unreachable GCS for a long while. ('auto' finds the local cluster's own address file.)"""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UnavailableError(f"--ray-address {address!r} is not 'auto', HOST:PORT or ray://HOST:PORT.")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise UnavailableError(
            f"Nothing answers at the Ray cluster address {address} ({exc}).",
            hint="Check the head node runs (ray status there) and the port: 6379 for HOST:PORT on a cluster node, 10001 for ray://.",
        ) from exc


def _without_library(built: Built) -> Built:
    return Built(solution=built.solution, error=built.error, compile_report=built.compile_report)


def _lost_message(exc: BaseException, where: dict[str, Any], kind: str) -> str:
    node = f"{where.get('host')} {where.get('address')} (node {str(where.get('node_id'))[:12]})" if where else "the node it was sent to"
    return (
        f"The Ray node running this job, {node}, was lost ({type(exc).__name__}) before the job finished, so nothing was "
        f"measured or recorded. This is the cluster's failure, not the solution's: submit the job again and it runs on "
        f"another {kind} GPU (capabilities lists the nodes alive)."
    )
