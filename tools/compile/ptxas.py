"""Per-kernel resource usage from ptxas verbose output (`-Xptxas -v` / `--resource-usage`).

The lines we read, as nvcc 12 and 13 print them:

    ptxas info    : Compiling entry function '_Z6kernelPfS_i' for 'sm_90a'
    ptxas info    : Function properties for _Z6kernelPfS_i
        0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
    ptxas info    : Used 16 registers, used 1 barriers, 1024 bytes smem, 368 bytes cmem[0]

"Function properties" also appears for non-inlined device functions, which are not kernels; only
names announced by "Compiling entry function" become results. nvcc 13 prints no cmem for sm_90+.

Linear in the log, and reads at most MAX_LOG_CHARS of it (head and tail, as diagnostics does):
lines without "ptxas" or "stack frame" are skipped by a substring test, lines are cut to
MAX_LINE_CHARS, and every regex starts at a literal or a non-digit boundary.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable

from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.compile.diagnostics import MAX_LOG_CHARS, cap_log
from kda_mcp.tools.compile.models import KernelResources

_ENTRY = re.compile(r"ptxas\s+info\s*:\s*Compiling entry function '(?P<name>[^']+)'(?: for '(?P<arch>[^']+)')?")
_PROPERTIES = re.compile(r"ptxas\s+info\s*:\s*Function properties for (?P<name>\S+)")
# (?<!\d): without it, a long run of digits is rescanned from each of its positions (quadratic).
_FRAME = re.compile(
    r"(?<!\d)(?P<stack>\d+) bytes stack frame, (?P<stores>\d+) bytes spill stores, (?P<loads>\d+) bytes spill loads"
)
_USED = re.compile(r"ptxas\s+info\s*:\s*Used (?P<rest>\d+ registers.*)$")
_REGISTERS = re.compile(r"^(\d+) registers$")
_BARRIERS = re.compile(r"^used (\d+) barriers$")
# Old toolkits wrote static smem as "1024+0 bytes smem".
_SMEM = re.compile(r"^(\d+)(?:\+(\d+))? bytes smem$")
_CMEM = re.compile(r"^(\d+) bytes cmem\[\d+\]$")

DEMANGLE_TIMEOUT_S = 30
# A ptxas line is short; a long templated kernel name is a few KB at most.
MAX_LINE_CHARS = 16_384


def parse_ptxas_info(log: str, *, max_chars: int = MAX_LOG_CHARS) -> list[KernelResources]:
    """One entry per kernel (entry function) per arch, in the order ptxas compiled them."""
    kernels: list[KernelResources] = []
    current: KernelResources | None = None  # the entry being compiled; "Used ..." lines belong to it
    properties_for: str | None = None  # whose "Function properties" the next frame line describes
    early_frames: dict[str, re.Match[str]] = {}  # frames printed before their entry was announced
    log, _ = cap_log(log, max_chars)
    for raw in log.splitlines():
        if "ptxas" not in raw and "stack frame" not in raw:
            continue
        line = raw[:MAX_LINE_CHARS].strip()
        if match := _ENTRY.search(line):
            current = KernelResources(name=match["name"], arch=match["arch"])
            kernels.append(current)
            properties_for = None
            if (frame := early_frames.pop(current.name, None)) is not None:
                _apply_frame(current, frame)
        elif match := _PROPERTIES.search(line):
            properties_for = match["name"]
        elif (match := _FRAME.search(line)) and properties_for is not None:
            if current is not None and properties_for == current.name:
                _apply_frame(current, match)
            else:
                early_frames[properties_for] = match
            properties_for = None
        elif (match := _USED.search(line)) and current is not None:
            _apply_usage(current, match["rest"])
    _attach_demangled(kernels)
    return kernels


def _apply_frame(kernel: KernelResources, frame: re.Match[str]) -> None:
    kernel.stack_frame_bytes = int(frame["stack"])
    kernel.spill_store_bytes = int(frame["stores"])
    kernel.spill_load_bytes = int(frame["loads"])


def _apply_usage(kernel: KernelResources, text: str) -> None:
    constant = None
    for part in (p.strip() for p in text.split(",")):
        if m := _REGISTERS.match(part):
            kernel.registers = int(m[1])
        elif m := _BARRIERS.match(part):
            kernel.barriers = int(m[1])
        elif m := _SMEM.match(part):
            kernel.shared_static_bytes = int(m[1]) + int(m[2] or 0)
        elif m := _CMEM.match(part):
            constant = (constant or 0) + int(m[1])
    if constant is not None:
        kernel.constant_bytes = constant


def _attach_demangled(kernels: list[KernelResources]) -> None:
    names = demangle_names(k.name for k in kernels)
    for kernel in kernels:
        kernel.demangled = names.get(kernel.name)


def demangle_names(names: Iterable[str], *, timeout: float = DEMANGLE_TIMEOUT_S) -> dict[str, str]:
    """Readable C++ names for the mangled ones, with one demangler call for all of them.

    Names that are not mangled (extern "C" kernels) and names no demangler is found for are left out.
    """
    mangled = list(dict.fromkeys(n for n in names if n.startswith("_Z")))
    if not mangled:
        return {}
    tool = find_cuda_tool("cu++filt") or shutil.which("c++filt")
    if tool is None:
        return {}
    try:
        done = subprocess.run(
            [tool], input="\n".join(mangled) + "\n", capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    lines = done.stdout.splitlines()
    if done.returncode != 0 or len(lines) != len(mangled):
        return {}
    return {name: plain for name, plain in zip(mangled, lines) if plain and plain != name}
