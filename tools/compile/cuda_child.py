"""Child process that builds a CUDA/C++ solution into a loadable library.

Run as `python -m kda_mcp.tools.compile.cuda_child --spec SPEC.json` (as a sandbox user). It lives in its own process (and process
group) so a build can be timed out or cancelled by killing the group, nvcc and ninja included.
Everything it prints is the build log the parent parses; the outcome goes to result.json.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import sysconfig
import traceback
from pathlib import Path
from typing import Any

from kda_mcp.tools.compile.dependencies import resolve

CUDA_SUFFIXES = {".cu"}
CPP_SUFFIXES = {".cpp", ".cc", ".cxx", ".c"}


def _cuda_home() -> Path:
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and Path(candidate, "bin", "nvcc").exists():
            return Path(candidate)
    import shutil

    nvcc = shutil.which("nvcc")
    if not nvcc:
        raise RuntimeError("nvcc not found: install the CUDA toolkit or set CUDA_HOME")
    return Path(nvcc).resolve().parent.parent


def _dependency_flags(dependencies: list[str]) -> tuple[list[str], list[str]]:
    """Include paths and linker flags for the libraries a solution names (dependencies.py)."""
    libraries, warnings = resolve(dependencies, _cuda_home())
    for line in warnings:
        print(f"warning: {line}", flush=True)
    for library in libraries:
        print(f"note: {library.name}: {library.found}", flush=True)
    return [p for lib in libraries for p in lib.includes], [f for lib in libraries for f in lib.ldflags]


def _keep(job: dict[str, Any]) -> list[str]:
    """Keep nvcc's intermediate files (the PTX above all): a ptxas error in inline PTX names a
    .ptx line, and the PTX's .loc directives map it back to the .cu line the agent wrote."""
    keep = Path(job["build_dir"]) / "nvcc-keep"
    keep.mkdir(parents=True, exist_ok=True)
    return ["-keep", f"-keep-dir={keep}"]


def _build_tvm_ffi(job: dict[str, Any], sources: list[Path]) -> str:
    # tvm-ffi finds the toolkit from CUDA_HOME, else from nvcc's folder, which is wrong when nvcc
    # on PATH is a wrapper script (/usr/local/bin/nvcc): pin it to the real toolkit.
    os.environ.setdefault("CUDA_HOME", str(_cuda_home()))
    import tvm_ffi.cpp

    os.environ["TVM_FFI_CUDA_ARCH_LIST"] = job["arch_dotted"]
    os.environ["TVM_FFI_CPP_EXTENSION_LOG_BUILD"] = "1"  # ninja's output (ptxas -v) into the log
    includes, ldflags = _dependency_flags(job["dependencies"])
    return tvm_ffi.cpp.build(
        name=job["package"],
        cpp_files=[str(s) for s in sources if s.suffix in CPP_SUFFIXES],
        cuda_files=[str(s) for s in sources if s.suffix in CUDA_SUFFIXES],
        extra_cflags=["-O3"],
        # nvcc already optimizes device code fully (ptxas -O3); a second -O flag only draws a warning.
        extra_cuda_cflags=["-lineinfo", "-Xptxas=-v", *_keep(job), *job["extra_flags"]],
        extra_ldflags=ldflags,
        extra_include_paths=[job["source_dir"], *includes],
        build_directory=job["build_dir"],
    )


def _build_torch(job: dict[str, Any], sources: list[Path]) -> str:
    import torch
    from torch.utils.cpp_extension import load

    if torch.version.cuda is None and any(s.suffix in CUDA_SUFFIXES for s in sources):
        return _analyse_only(job, sources, torch_includes=True)
    os.environ.setdefault("CUDA_HOME", str(_cuda_home()))
    os.environ["TORCH_CUDA_ARCH_LIST"] = job["arch_dotted"]
    includes, ldflags = _dependency_flags(job["dependencies"])
    module = load(
        name=job["package"],
        sources=[str(s) for s in sources if s.suffix in CUDA_SUFFIXES | CPP_SUFFIXES],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3", "-lineinfo", "-Xptxas=-v", *_keep(job), *job["extra_flags"]],
        extra_ldflags=ldflags,
        extra_include_paths=[job["source_dir"], *includes],
        build_directory=job["build_dir"],
        with_cuda=any(s.suffix in CUDA_SUFFIXES for s in sources),
        verbose=True,
    )
    return str(module.__file__)


def _analyse_only(job: dict[str, Any], sources: list[Path], *, torch_includes: bool) -> str:
    """Device code only (no link): for a torch binding on a machine whose torch has no CUDA."""
    includes = [job["source_dir"], sysconfig.get_paths()["include"], *_dependency_flags(job["dependencies"])[0]]
    if torch_includes:
        from torch.utils.cpp_extension import include_paths

        includes += include_paths()
    out_dir = Path(job["build_dir"])
    cubins = []
    for source in sources:
        if source.suffix not in CUDA_SUFFIXES:
            continue
        cubin = out_dir / (source.stem + ".cubin")
        cmd = [
            str(_cuda_home() / "bin" / "nvcc"),
            "-cubin",
            job["gencode"],
            "-std=c++17",
            "-O3",
            "-lineinfo",
            *_keep(job),
            "-Xptxas=-v",
            *job["extra_flags"],
            *(f"-I{p}" for p in includes),
            str(source),
            "-o",
            str(cubin),
        ]
        print(" ".join(cmd), flush=True)
        done = subprocess.run(cmd, capture_output=True, text=True)
        print(done.stdout + done.stderr, flush=True)
        if done.returncode != 0:
            raise RuntimeError(f"nvcc exited with status {done.returncode}")
        cubins.append(str(cubin))
    print("note: analysis-only build (device code compiled, not linked): this torch has no CUDA", flush=True)
    return cubins[0] if cubins else ""


def main(argv: list[str]) -> int:
    from kda_mcp.tools.sandbox.specs import CudaBuildSpec, read_spec

    job = read_spec(CudaBuildSpec, argv).model_dump()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
    source_dir = Path(job["source_dir"])
    sources = [source_dir / p for p in job["files"] if Path(p).suffix in CUDA_SUFFIXES | CPP_SUFFIXES]
    result: dict[str, Any] = {"ok": False}
    try:
        if not sources:
            raise RuntimeError("no .cu/.cpp/.cc/.c source among the files")
        if job["binding"] == "torch":
            library = _build_torch(job, sources)
        else:
            library = _build_tvm_ffi(job, sources)
        result = {"ok": True, "library": library}
    except Exception as exc:  # the build failed: the message (ninja's output) is the diagnosis
        print(str(exc), flush=True)
        result = {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        if not isinstance(exc, RuntimeError):
            traceback.print_exc(file=sys.stdout)
    Path(job["result_path"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
