"""What this machine can do: GPUs, toolchain, versions. Probed in subprocesses, so the server
process never creates a CUDA context of its own, and cached, since none of it changes while we run."""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from pydantic import Field

from kda_mcp.tools.models import Result

PROBE_TIMEOUT_S = 20


class GpuInfo(Result):
    index: int
    name: str
    arch: str = Field(description="Compute target, e.g. sm_90 (sm_90a for wgmma/setmaxnreg).")
    compute_capability: str
    memory_gib: float | None = None
    sm_count: int | None = None
    l2_mib: float | None = None
    clock_sm_mhz: int | None = Field(default=None, description="SM clock as found at probe time (not locked).")
    clock_max_sm_mhz: int | None = None
    clock_mem_mhz: int | None = None


class ToolInfo(Result):
    path: str
    version: str | None = None


class CounterAccess(Result):
    permitted: bool | None = Field(default=None, description="Whether Nsight Compute may read hardware counters; None when unknown.")
    reason: str


class ClusterKind(Result):
    kind: str = Field(description="A GPU kind, e.g. 'h200': nodes advertise it as the Ray resource gpu_<kind>.")
    gpus: int = Field(description="GPUs of this kind on the alive nodes.")
    free: int = Field(description="Of those, not held by any Ray task now.")
    nodes: int
    queued: int = Field(description="This server's jobs waiting for a GPU of this kind.")
    running: int = Field(description="This server's jobs running on a GPU of this kind.")
    models: list[str] | None = Field(default=None, description="GPU models found on its nodes (nvidia-smi), with their arch.")


class ClusterNode(Result):
    node_id: str
    address: str
    alive: bool
    kinds: dict[str, int] = Field(description="GPU kind -> GPUs this node offers.")
    gpus: int
    cpus: int


class ClusterInfo(Result):
    """The Ray cluster GPU work runs on (executor 'ray')."""

    address: str
    connected: bool
    error: str | None = None
    auth: str | None = Field(default=None, description="'token' when the cluster wants Ray's token for every call; nodes without it run no solution.")
    default_kind: str | None = Field(default=None, description="The kind a job runs on when the caller names none.")
    kinds: list[ClusterKind] = Field(default_factory=list)
    nodes: list[ClusterNode] = Field(default_factory=list)


class Capabilities(Result):
    gpus: list[GpuInfo]
    gpu_note: str | None = None
    driver: str | None = None
    cuda_runtime: str | None = Field(default=None, description="CUDA version torch was built with.")
    python: str
    packages: dict[str, str] = Field(description="Installed versions of the packages kda-mcp runs kernels with.")
    nvcc: ToolInfo | None = None
    ncu: ToolInfo | None = None
    ncu_counters: CounterAccess
    compute_sanitizer: ToolInfo | None = None
    cuobjdump: ToolInfo | None = None
    nvdisasm: ToolInfo | None = None
    dataset: str
    dataset_embedded: bool
    wiki_roots: list[str]
    timing_method: str = Field(description="How run_benchmark times calls with this Python: CUPTI activity records over every stream, or the CUDA-events fallback.")
    timing_fix: str | None = Field(default=None, description="With the fallback: the command that installs CUPTI.")
    executor: str = Field(description="Where GPU work runs: 'local' (this machine's GPUs) or 'ray' (a Ray cluster's; see cluster).")
    cluster: ClusterInfo | None = Field(default=None, description="With executor 'ray': nodes, GPU kinds and counts, this server's queue per kind.")
    isolation: dict[str, str] | None = Field(default=None, description="How untrusted code (solutions, builds, profiles) is kept from the server and the judge.")
    workspaces: list[str] | None = Field(default=None, description="Folders pack_solution, unpack_solution and solution paths may use.")
    probed_at: str


_PACKAGES = ("torch", "triton", "flashinfer-bench", "mcp", "cuda-python", "cupti-python", "ncu-report", "whoosh-reloaded", "ray")


def _run(cmd: list[str], timeout: float = PROBE_TIMEOUT_S) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def cuda_home() -> Path | None:
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    nvcc = shutil.which("nvcc")
    return Path(nvcc).resolve().parent.parent if nvcc else None


def _wheel_bin_dirs() -> list[Path]:
    """bin/ folders of NVIDIA's PyPI tool wheels (nvidia-cuda-cuobjdump, -nvdisasm): a toolkit
    without cuobjdump (a slim CI image) still gets SASS facts from them."""
    import site

    roots = [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
    return [d for r in roots for d in sorted(r.glob("nvidia/cu*/bin")) if d.is_dir()]


def find_cuda_tool(name: str) -> str | None:
    """A CUDA toolkit binary: on PATH, under CUDA_HOME, in NVIDIA's tool wheels, in Triton's bundled
    copies, or (ncu) in an Nsight Compute install."""
    found = shutil.which(name)
    if found:
        return found
    home = cuda_home()
    if home and (home / "bin" / name).is_file():
        return str(home / "bin" / name)
    for folder in _wheel_bin_dirs():
        if (folder / name).is_file():
            return str(folder / name)
    override = os.environ.get(f"TRITON_{name.upper()}_PATH")  # Triton's bundled binaries, last
    if override and Path(override).is_file():
        return override
    triton = importlib.util.find_spec("triton")
    if triton and triton.submodule_search_locations:
        bundled = Path(triton.submodule_search_locations[0]) / "backends" / "nvidia" / "bin" / name
        if bundled.is_file():
            return str(bundled)
    if name == "ncu":
        patterns = ["/opt/nvidia/nsight-compute/*/ncu", "/usr/local/cuda*/nsight-compute*/ncu"]
        hits = sorted(h for p in patterns for h in glob.glob(p))
        if hits:
            return hits[-1]
    return None


def _tool(name: str, version_pattern: str) -> ToolInfo | None:
    path = find_cuda_tool(name)
    if path is None:
        return None
    out = _run([path, "--version"]) or ""
    match = re.search(version_pattern, out)
    return ToolInfo(path=path, version=match.group(1) if match else None)


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


_SMI_FIELDS = "index,name,compute_cap,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem"

# Runs in a child process: SM count and L2 size need the CUDA runtime, which we keep out of the server.
_PROPS_SCRIPT = """
import json
try:
    from cuda.bindings import runtime as rt
    err, n = rt.cudaGetDeviceCount()
    out = []
    for i in range(n if int(err) == 0 else 0):
        err, p = rt.cudaGetDeviceProperties(i)
        out.append({"sm_count": p.multiProcessorCount, "l2_bytes": p.l2CacheSize})
except Exception:
    import torch
    out = [{"sm_count": p.multi_processor_count, "l2_bytes": getattr(p, "L2_cache_size", None)}
           for p in (torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count()))]
print(json.dumps(out))
"""


def _int(text: str) -> int | None:
    try:
        return int(float(text))
    except ValueError:
        return None


def probe_gpus() -> tuple[list[GpuInfo], str | None, str | None]:
    """(gpus, driver version, note explaining an empty list)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], None, "nvidia-smi not found: no NVIDIA driver on this machine, so GPU tools (run_benchmark, profile_solution) are unavailable; compile_solution still works for a named arch."
    out = _run([smi, f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader,nounits"])
    if not out or not out.strip():
        return [], None, "nvidia-smi found no usable GPU (or failed)."
    gpus, driver = [], None
    for line in out.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 8:
            continue
        major, _, minor = cols[2].partition(".")
        driver = cols[4]
        gpus.append(
            GpuInfo(
                index=int(cols[0]),
                name=cols[1],
                compute_capability=cols[2],
                arch=f"sm_{major}{minor}",
                memory_gib=round(_int(cols[3]) / 1024, 1) if _int(cols[3]) else None,
                clock_sm_mhz=_int(cols[5]),
                clock_max_sm_mhz=_int(cols[6]),
                clock_mem_mhz=_int(cols[7]),
            )
        )
    props = _run([sys.executable, "-c", _PROPS_SCRIPT], timeout=60)
    if props:
        try:
            for gpu, extra in zip(gpus, json.loads(props.strip().splitlines()[-1])):
                gpu.sm_count = extra.get("sm_count")
                if extra.get("l2_bytes"):
                    gpu.l2_mib = round(extra["l2_bytes"] / 2**20, 1)
        except (ValueError, IndexError):
            pass
    return gpus, driver, None


def gpu_clocks(gpu: int) -> dict[str, int] | None:
    """SM and memory clocks of one GPU as found now (not locked), from nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    out = _run([smi, f"--id={gpu}", "--query-gpu=clocks.sm,clocks.mem,clocks.max.sm", "--format=csv,noheader,nounits"]) if smi else None
    if not out:
        return None
    try:
        sm, mem, max_sm = (int(float(x)) for x in out.strip().split(","))
    except ValueError:
        return None
    return {"sm": sm, "memory": mem, "max_sm": max_sm}


def driver_version() -> str | None:
    smi = shutil.which("nvidia-smi")
    out = _run([smi, "--query-gpu=driver_version", "--format=csv,noheader"]) if smi else None
    return out.splitlines()[0].strip() if out else None


def probe_counter_access() -> CounterAccess:
    params = Path("/proc/driver/nvidia/params")
    if not params.exists():
        return CounterAccess(permitted=None, reason="No NVIDIA driver parameters to read; profile_solution checks on first use.")
    admin_only = "RmProfilingAdminOnly: 1" in params.read_text(errors="replace")
    if not admin_only:
        return CounterAccess(permitted=True, reason="The driver lets any user read performance counters.")
    if os.geteuid() == 0:
        return CounterAccess(permitted=True, reason="Counters are admin-only and this server runs as root.")
    return CounterAccess(
        permitted=False,
        reason="The driver restricts counters to admins (RmProfilingAdminOnly=1): ncu fails with ERR_NVGPUCTRPERM. "
        "Run as root or set NVreg_RestrictProfilingToAdminUsers=0 for the nvidia module.",
    )


def _cuda_runtime_version() -> str | None:
    # torch records the CUDA it was built with in torch/version.py; read it without importing torch.
    try:
        files = importlib.metadata.files("torch") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).replace("\\", "/") == "torch/version.py":
            match = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", f.read_text(), re.M)
            return match.group(1) if match else None
    return None


def probe(*, dataset: str, dataset_embedded: bool, wiki_roots: list[str], executor: str = "local") -> Capabilities:
    gpus, driver, note = probe_gpus()
    return Capabilities(
        gpus=gpus,
        gpu_note=note,
        driver=driver,
        cuda_runtime=_cuda_runtime_version(),
        python=f"{platform.python_implementation()} {platform.python_version()}",
        packages=_package_versions(),
        nvcc=_tool("nvcc", r"release ([\d.]+)"),
        ncu=_tool("ncu", r"Version ([\d.]+)"),
        ncu_counters=probe_counter_access(),
        compute_sanitizer=_tool("compute-sanitizer", r"Version ([\d.]+)"),
        cuobjdump=_tool("cuobjdump", r"release ([\d.]+)"),
        nvdisasm=_tool("nvdisasm", r"release ([\d.]+)"),
        dataset=dataset,
        dataset_embedded=dataset_embedded,
        wiki_roots=wiki_roots,
        executor=executor,
        **_timing_method(),
        probed_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


TIMING_FIX = "bash .ci/install --gpu (or: pip install 'kda-mcp[gpu]'), then restart the server"


def _timing_method() -> dict[str, str | None]:
    # The executor runs in this Python, so what imports here is what it will time with. The wording
    # matches tools/evaluation/timing.py (CUPTI, EVENTS), which imports torch and so is not used here.
    try:
        found = importlib.util.find_spec("cupti") is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return {"timing_method": "cupti activity records (all streams)", "timing_fix": None}
    return {
        "timing_method": "cuda events (fallback: the executor's current stream only): cupti-python is not installed",
        "timing_fix": TIMING_FIX,
    }


class CapabilityCache:
    """Probe once, answer from memory after; `refresh` probes again (e.g. after installing ncu)."""

    def __init__(self, **probe_args: object) -> None:
        self._args = probe_args
        self._value: Capabilities | None = None
        self._lock = threading.Lock()

    def get(self, *, refresh: bool = False) -> Capabilities:
        with self._lock:
            if self._value is None or refresh:
                self._value = probe(**self._args)  # type: ignore[arg-type]
            return self._value
