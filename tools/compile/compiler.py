"""compile_solution: build without timing, and report what the compiler saw.

CUDA/C++ build in a child process (nvcc through tvm-ffi or torch's extension builder) on a CPU
core; Python-side code (Triton, CuTe DSL, TileLang) compiles on its first call, so it runs once on
a leased GPU. Both end in the same report: diagnostics, per-kernel resources, SASS facts.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.lowlevel
from flashinfer_bench.data import Definition, Solution, Workload

from kda_mcp.tools.compile.cache import BuildCache, build_key, file_digest
from kda_mcp.tools.compile.dependencies import resolve
from kda_mcp.tools.compile.diagnostics import cap_log, solution_diagnostics
from kda_mcp.tools.compile.flags import check_flags, check_includes
from kda_mcp.tools.compile.models import Diagnostic, KernelResources
from kda_mcp.tools.compile.ptxas import parse_ptxas_info
from kda_mcp.tools.compile.result import CompileResult
from kda_mcp.tools.compile.sass import disassemble
from kda_mcp.tools.compile.targets import Target
from kda_mcp.tools.capabilities import cuda_home, find_cuda_tool
from kda_mcp.tools.errors import InvalidArgumentError, KdaError, UnavailableError
from kda_mcp.tools.gpus import GpuPool
from kda_mcp.tools.harness.staging import stage_solution
from kda_mcp.tools.procs import run_process
from kda_mcp.tools.sandbox.files import copy_out, copy_tree_out, read_from, write_into
from kda_mcp.tools.sandbox.launch import child_env, prepare_room_dirs
from kda_mcp.tools.sandbox.sandbox import Room, Sandbox
from kda_mcp.tools.sandbox.specs import CudaBuildSpec, JitBuildSpec
from kda_mcp.tools.solution import check_signature

MAX_DIAGNOSTICS = 20
MAX_LIBRARY_BYTES = 512 * 2**20
LOG_TAIL_CHARS = 20_000


def own_sources(solution: Solution) -> dict[str, str]:
    """The solution's sources as submitted (what diagnostics are placed in, not the room's copies)."""
    return {source.path: source.content for source in solution.sources}


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _nvcc_version() -> str:
    nvcc = find_cuda_tool("nvcc")
    if nvcc is None:
        return "none"
    try:
        stamp = os.stat(nvcc).st_mtime_ns
    except OSError:
        stamp = 0
    return _nvcc_version_of(str(nvcc), stamp)


@functools.lru_cache(maxsize=8)
def _nvcc_version_of(nvcc: str, stamp: int) -> str:
    """`nvcc --version`, once per binary (a new toolkit in its place has a new mtime): every build key asks."""
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"V([\d.]+)", out)
    return match.group(1) if match else out.strip()[-40:]


def _triton_ptxas() -> str | None:
    """Triton's bundled ptxas: the one that built its cubins, so its -v report matches them."""
    spec = importlib.util.find_spec("triton")
    if spec and spec.submodule_search_locations:
        candidate = Path(spec.submodule_search_locations[0]) / "backends" / "nvidia" / "bin" / "ptxas"
        if candidate.is_file():
            return str(candidate)
    return find_cuda_tool("ptxas")


def _sort_diagnostics(items: list[Diagnostic]) -> tuple[list[Diagnostic], int]:
    order = {"error": 0, "warning": 1, "note": 2}
    ranked = sorted(items, key=lambda d: order.get(d.severity, 3))
    return ranked[:MAX_DIAGNOSTICS], max(0, len(ranked) - MAX_DIAGNOSTICS)


def _kernel_warnings(kernels: list[KernelResources]) -> list[str]:
    warnings = []
    for k in kernels:
        label = k.demangled or k.name
        if (k.spill_store_bytes or 0) + (k.spill_load_bytes or 0) > 0:
            warnings.append(
                f"{label}: spills ({k.spill_store_bytes or 0} B stores, {k.spill_load_bytes or 0} B loads) to local memory; "
                "see wiki pattern-register-spills."
            )
        elif k.sass and (k.sass.local_loads or k.sass.local_stores):
            warnings.append(f"{label}: local memory traffic (LDL/STL) without spills: a runtime-indexed per-thread array.")
        if k.registers is not None and k.registers >= 255:
            warnings.append(f"{label}: uses {k.registers} registers, the per-thread maximum; occupancy is one or two warps per scheduler.")
    return warnings


@dataclass
class Compiler:
    """Builds run as untrusted code: each in a room of its own, as a build slot's sandbox user;
    the trusted side copies the library and the result out (no links followed) into the cache."""

    cache: BuildCache
    gpus: GpuPool
    sandbox: Sandbox
    parallel: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    _limiter: anyio.CapacityLimiter | None = None
    _loop: object = None
    _free: list[int] = field(default_factory=list)

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[int]:
        """A build slot (one of `parallel`), whose sandbox user no other running build shares."""
        token = anyio.lowlevel.current_token()
        if self._limiter is None or self._loop != token:
            self._limiter, self._loop = anyio.CapacityLimiter(self.parallel), token
            self._free = list(range(self.parallel))
        async with self._limiter:
            slot = self._free.pop(0)
            try:
                yield slot
            finally:
                self._free.append(slot)

    def key_for(self, solution: Solution, target: Target, flags: list[str]) -> str:
        native = solution.spec.language.value in ("cuda", "cpp")
        toolchain = f"nvcc {_nvcc_version()}" if native else f"torch {_version('torch')} triton {_version('triton')}"
        if native and solution.spec.dependencies:
            libraries, _ = resolve(list(solution.spec.dependencies), cuda_home())
            toolchain += "".join(f"; {lib.found}" for lib in libraries)  # new headers, new build
        return build_key(solution, target=target.name, flags=flags, toolchain=toolchain)

    async def compile(
        self,
        solution: Solution,
        definition: Definition,
        *,
        target: Target,
        extra_flags: list[str],
        timeout_s: float,
        first_call_workload: Workload | None,
        dataset_root: Path,
        include_log: bool = False,
    ) -> CompileResult:
        extra_flags = check_flags(extra_flags)
        if solution.spec.language.value in ("cuda", "cpp"):
            await anyio.to_thread.run_sync(check_includes, own_sources(solution))  # seconds on megabytes of source
        key = self.key_for(solution, target, extra_flags)
        syntax = _python_syntax_errors(solution)
        if syntax:  # a compile failure, reported like any other (and never cached)
            return CompileResult(
                status="failed",
                solution=solution.name,
                definition=definition.name,
                language=solution.spec.language.value,
                build_seconds=0.0,
                cache_hit=False,
                build_key=key,
                diagnostics=syntax,
                message=f"Syntax error in {syntax[0].file} line {syntax[0].line}: {syntax[0].message}.",
            )
        warnings = check_signature(solution, definition)
        cached = self.cache.load(key)
        if cached is not None:
            log = self._log_tail(key) if include_log else None
            return cached.model_copy(update={"cache_hit": True, "solution": solution.name, "log": log})

        folder = self.cache.fresh(key)
        if solution.spec.language.value in ("cuda", "cpp"):
            async with self._slot() as slot:
                room = self.sandbox.room(f"b{slot}", key)
                try:
                    result = await self._build_native(solution, definition, key, folder, room, target, extra_flags, timeout_s)
                finally:
                    await anyio.to_thread.run_sync(self.sandbox.clear, [room])
        else:
            result = await self._build_jit(solution, definition, key, folder, target, timeout_s, first_call_workload, dataset_root)
        result.warnings = (warnings + (result.warnings or [])) or None
        if result.status == "ok":
            self.cache.store(key, result)
        if include_log:
            result.log = self._log_tail(key)
        return result

    def _log_tail(self, key: str) -> str | None:
        log = self.cache.log(key)
        return None if log is None else log[-LOG_TAIL_CHARS:]

    async def _build_native(
        self, solution: Solution, definition: Definition, key: str, folder: Path, room: Room, target: Target, flags: list[str], timeout_s: float
    ) -> CompileResult:
        if find_cuda_tool("nvcc") is None:
            raise UnavailableError("nvcc is not installed here, so CUDA/C++ cannot be built.", hint="Install the CUDA toolkit or set CUDA_HOME.")
        libraries, library_warnings = resolve(list(solution.spec.dependencies), cuda_home())
        prepare_room_dirs(room)
        source_dir, _ = stage_solution(room.path, solution, None)
        build_dir = room.mkdir("build")
        spec = CudaBuildSpec(
            source_dir=str(source_dir),
            build_dir=str(build_dir),
            files=[s.path for s in solution.sources],
            package=f"kda_{key[:16]}",
            binding=solution.spec.binding.value if solution.spec.binding else "tvm-ffi",
            arch_dotted=target.dotted,
            gencode=target.gencode,
            extra_flags=flags,
            dependencies=list(solution.spec.dependencies),
            result_path=str(room.path / "child_result.json"),
        )
        spec_path = write_into(room.path, "build_spec.json", spec.model_dump_json())
        argv = self.sandbox.wrap([sys.executable, "-m", "kda_mcp.tools.compile.cuda_child", "--spec", str(spec_path)], room)
        outcome = await run_process(argv, timeout=timeout_s, env=child_env(room), cwd=room.path)
        log_text = outcome.output.replace(str(source_dir) + "/", "")
        (folder / "build.log").write_text(log_text)
        child = _read_child_result(room)
        # The solution's own diagnostics are listed; those of torch's and CUDA's headers only counted.
        # A ptxas error in inline PTX maps back to its .cu line through the PTX the build kept.
        parsed = await anyio.to_thread.run_sync(lambda: solution_diagnostics(outcome.output, source_root=source_dir, ptx_dirs=[build_dir / "nvcc-keep"], sources=own_sources(solution)))
        diagnostics, omitted = _sort_diagnostics(parsed.diagnostics)
        base = dict(
            solution=solution.name,
            definition=definition.name,
            language=solution.spec.language.value,
            target=target.name,
            build_seconds=round(outcome.seconds, 2),
            cache_hit=False,
            build_key=key,
            diagnostics=diagnostics or None,
            diagnostics_omitted=omitted or None,
            diagnostics_outside_solution=parsed.outside_solution or None,
            libraries=[lib.found for lib in libraries] or None,
        )
        if outcome.timed_out:
            return CompileResult(status="failed", message=f"The build ran past {timeout_s:.0f} s and was stopped; raise timeout_s or simplify the code.", **base)
        if not child.get("ok"):
            first = next((d for d in diagnostics if d.severity == "error"), None)
            where = f"{first.file}:{first.line}: {first.message}" if first and first.file else (str(child.get("error") or "see the log")[:400])
            return CompileResult(
                status="failed",
                message=f"Build failed ({sum(d.severity == 'error' for d in diagnostics)} errors). First: {where}. Fix it and call compile_solution again (include_log=true shows the raw log).",
                **base,
            )
        built = Path(str(child.get("library", "")))
        if not built.is_relative_to(room.path):
            return CompileResult(status="failed", message="The build reported a library outside its own folder; nothing was kept.", **base)
        library = folder / "lib" / built.name
        copied = await anyio.to_thread.run_sync(lambda: copy_out(room.path, str(built.relative_to(room.path)), library, limit=MAX_LIBRARY_BYTES))
        if not copied:
            return CompileResult(status="failed", message="The build reported a library that is not there (or is a link); nothing was kept.", **base)
        kernels = await anyio.to_thread.run_sync(parse_ptxas_info, outcome.output)
        _, cut = cap_log(outcome.output)
        clipped = [f"The build log was {len(outcome.output) / 2**20:.1f} MB; diagnostics and resources come from its first and last MB."] if cut else []
        sass, sass_note = await anyio.to_thread.run_sync(_sass_of, library)
        for kernel in kernels:
            kernel.sass = sass.get(kernel.name) or sass.get(f"{kernel.name}@{kernel.arch}")
        (folder / "artifacts.json").write_text(json.dumps({"library": str(library)}))
        spills = sum((k.spill_store_bytes or 0) + (k.spill_load_bytes or 0) for k in kernels)
        note = " (device code only: link needs a CUDA build of torch)" if library.suffix == ".cubin" else ""
        return CompileResult(
            status="ok",
            artifact_hash=file_digest(library) if library.is_file() else None,
            kernels=kernels or None,
            warnings=(library_warnings + _kernel_warnings(kernels) + ([sass_note] if sass_note else []) + clipped) or None,
            message=f"Built for {target.name} in {outcome.seconds:.1f} s{note}: {len(kernels)} kernel(s), {spills} spill bytes.",
            **base,
        )

    async def _build_jit(
        self,
        solution: Solution,
        definition: Definition,
        key: str,
        folder: Path,
        target: Target,
        timeout_s: float,
        workload: Workload | None,
        dataset_root: Path,
    ) -> CompileResult:
        base = dict(
            solution=solution.name,
            definition=definition.name,
            language=solution.spec.language.value,
            cache_hit=False,
            build_key=key,
        )
        started = time.monotonic()
        if not self.gpus.gpus:
            (folder / "build.log").write_text("static checks passed; no GPU for the first call\n")
            return CompileResult(
                status="needs_gpu",
                build_seconds=round(time.monotonic() - started, 2),
                message=(
                    f"{solution.spec.language.value} kernels compile on their first call with real arguments, which needs a GPU; "
                    "this server has none. Syntax and the entry signature are fine. Run on a GPU server to get registers, "
                    "shared memory, spills and SASS."
                ),
                **base,
            )
        if workload is None:
            raise InvalidArgumentError(f"{definition.name} has no workloads, so there is nothing to call the solution with.")
        cache_dir = folder / "triton_cache"
        async with self.gpus.lease("compile_solution (first call)") as lease:
            room = self.sandbox.room(f"g{lease.gpu}solo", key)
            try:
                prepare_room_dirs(room)
                source_dir, _ = stage_solution(room.path, solution, None)
                spec = JitBuildSpec(
                    source_dir=str(source_dir),
                    solution=solution.model_dump_json(),
                    definition=definition.model_dump_json(),
                    workload=workload.model_dump_json(),
                    dataset_root=str(dataset_root),
                    result_path=str(room.path / "child_result.json"),
                )
                spec_path = write_into(room.path, "jit_spec.json", spec.model_dump_json())
                argv = self.sandbox.wrap([sys.executable, "-m", "kda_mcp.tools.compile.jit_child", "--spec", str(spec_path)], room)
                outcome = await run_process(argv, timeout=timeout_s, env=child_env(room, gpu=lease.gpu), cwd=room.path)
                child = _read_child_result(room)
                # What Triton compiled, copied out of the room (regular files only) before it is cleared.
                await anyio.to_thread.run_sync(lambda: copy_tree_out(room.path, "triton", cache_dir, limit=MAX_LIBRARY_BYTES))
            finally:
                await anyio.to_thread.run_sync(self.sandbox.clear, [room])
        (folder / "build.log").write_text(outcome.output.replace(str(source_dir) + "/", ""))
        parsed = await anyio.to_thread.run_sync(lambda: solution_diagnostics(outcome.output, source_root=source_dir, sources=own_sources(solution)))
        diagnostics, omitted = _sort_diagnostics(parsed.diagnostics)
        base.update(
            build_seconds=round(outcome.seconds, 2),
            diagnostics=diagnostics or None,
            diagnostics_omitted=omitted or None,
            diagnostics_outside_solution=parsed.outside_solution or None,
        )
        kernels, binaries, arch = await anyio.to_thread.run_sync(_triton_kernels, cache_dir)
        base["target"] = arch or target.name
        if outcome.timed_out:
            return CompileResult(status="failed", message=f"The first call ran past {timeout_s:.0f} s and was stopped (a hang, or a very slow JIT).", **base)
        if not child.get("ok"):
            error = child.get("error") or (f"the child exited with status {outcome.returncode}" if outcome.returncode else "unknown failure")
            phase = child.get("phase", "setup")
            return CompileResult(
                status="failed",
                message=f"Failed during {phase}: {error[:400]}. A JIT error here is a compile error; fix it and compile again.",
                kernels=kernels or None,
                **base,
            )
        return CompileResult(
            status="ok",
            artifact_hash=file_digest(*binaries) if binaries else None,
            kernels=kernels or None,
            warnings=(_kernel_warnings(kernels) or []) + ([] if kernels else ["No Triton kernel was compiled during the first call (torch ops or another DSL?); nothing to report per kernel."]) or None,
            message=f"Ran once on workload {workload.uuid[:8]} and compiled {len(kernels)} Triton kernel(s) in {outcome.seconds:.1f} s.",
            **base,
        )


def _sass_of(binary: Path) -> tuple[dict, str | None]:
    """SASS facts per kernel, or none with a note when no disassembler is installed."""
    if not binary.is_file():
        return {}, None
    try:
        return disassemble(binary), None
    except UnavailableError as exc:
        return {}, f"No SASS facts: {exc}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _read_child_result(room: Room) -> dict:
    """The result file a (sandboxed) build child wrote: untrusted, so size-capped and link-free."""
    try:
        data = read_from(room.path, "child_result.json", limit=1 << 20)
        value = json.loads(data) if data else {}
    except (KdaError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _python_syntax_errors(solution: Solution) -> list[Diagnostic]:
    errors = []
    for source in solution.sources:
        if not source.path.endswith(".py"):
            continue
        try:
            compile(source.content, source.path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            errors.append(
                Diagnostic(file=source.path, line=exc.lineno, column=exc.offset, severity="error", message=exc.msg, tool="python")
            )
    return errors


def _triton_kernels(cache_dir: Path) -> tuple[list[KernelResources], list[Path], str | None]:
    """Kernels Triton compiled into cache_dir: ptxas -v on its PTX, SASS from its cubin."""
    kernels: list[KernelResources] = []
    binaries: list[Path] = []
    arch = None
    ptxas = _triton_ptxas()
    for meta_path in sorted(cache_dir.rglob("*.json")) if cache_dir.is_dir() else []:
        cubin = meta_path.with_suffix(".cubin")
        if not cubin.is_file():
            continue
        meta = _read_json(meta_path)
        target_arch = meta.get("target", {}).get("arch")
        kernel_arch = f"sm_{target_arch}a" if target_arch in (90, 100) else (f"sm_{target_arch}" if target_arch else None)
        arch = arch or kernel_arch
        resources = None
        ptx = meta_path.with_suffix(".ptx")
        if ptxas and ptx.is_file() and kernel_arch:
            done = subprocess.run([ptxas, "-v", f"-arch={kernel_arch}", str(ptx), "-o", os.devnull], capture_output=True, text=True, timeout=120)
            parsed = parse_ptxas_info(done.stdout + done.stderr)
            resources = parsed[0] if parsed else None
        kernel = resources or KernelResources(name=meta.get("name", cubin.stem))
        kernel.name = meta.get("name", kernel.name)
        kernel.arch = kernel_arch
        kernel.shared_dynamic_bytes = meta.get("shared")
        kernel.sass = next(iter(_sass_of(cubin)[0].values()), None)
        kernels.append(kernel)
        binaries.append(cubin)
    return kernels, binaries, arch
