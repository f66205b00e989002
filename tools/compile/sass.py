"""SASS facts per kernel from `cuobjdump -sass`: tensor-core use, memory-access widths, spills, TMA.

A listing looks like this (cuobjdump 12/13):

    	code for sm_90a
    		Function : _Z4vec4PK6float4PS_i
            /*00c0*/                   LDG.E.128 R8, desc[UR4][R4.64] ;   /* 0x0000000404087981 */
            /*0070*/               @P0 EXIT ;                             /* 0x000000000000094d */

Counting works on the opcode's base (the part before the first '.'); instructions guarded by the
never-true predicate `@!PT` (padding ptxas inserts) and NOPs are not counted.

Global accesses are also told apart by the path they take, from their modifiers:

    LDG.E.128               plain: through L1 and L2
    LDG.E.128.CONSTANT      read-only (non-coherent) path: ld.global.nc, __ldg, const __restrict__
    LDG.E.128.STRONG.GPU    strong (coherent, skips L1): ld.volatile, ld.relaxed/acquire, ld.global.cg
    LDG.E.EF.128            cache-hinted: EF evict-first (.cs, evict_first), EL evict-last, LU last
                            use, EU evict-unchanged, NA no L1 allocation, EFL2/ELL2/ENL2 L2
                            eviction priority, LTC64B/LTC128B/LTC256B L2 prefetch size
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

from kda_mcp.tools.compile.models import SassFacts
from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.errors import InvalidArgumentError, UnavailableError

_ARCH = re.compile(r"^\s*code for (sm_\w+)")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INSTRUCTION = re.compile(
    r"^\s*/\*[0-9a-fA-F]+\*/\s*\{?\s*(?P<pred>@!?U?P(?:T|\d+)\s+)?(?P<op>[A-Z][A-Z0-9_]*(?:\.[A-Za-z0-9_]+)*)"
)
_NEVER = ("@!PT", "@!UPT")

# Every tensor-core opcode family ends in MMA: HMMA/IMMA/DMMA (mma.sync), HGMMA/QGMMA/IGMMA/BGMMA
# (wgmma), UTCHMMA/UTCQMMA/UTCIMMA/UTCOMMA/UTCMMA (tcgen05.mma), QMMA/OMMA (sm_120 mma.sync).
_TENSOR_CORE = re.compile(r"^[A-Z]*MMA$")
_LOCAL_LOAD, _LOCAL_STORE = "LDL", "STL"
_SHARED_LOADS = {"LDS", "LDSM"}
_SHARED_STORES = {"STS", "STSM"}
_NARROW = {"U8": "8", "S8": "8", "U16": "16", "S16": "16"}
_WIDE = {"64", "128", "256"}
_READ_ONLY = {"CONSTANT", "CI"}
_HINTS = {
    "EF": "evict-first",
    "EL": "evict-last",
    "LU": "last use",
    "EU": "evict-unchanged",
    "NA": "no L1 allocation",
    "EFL2": "L2 evict-first",
    "ELL2": "L2 evict-last",
    "ENL2": "L2 evict-normal",
    "LTC64B": "L2 prefetch 64 B",
    "LTC128B": "L2 prefetch 128 B",
    "LTC256B": "L2 prefetch 256 B",
}

DISASSEMBLE_TIMEOUT_S = 60.0


def summarize_sass(text: str) -> dict[str, SassFacts]:
    """Facts per kernel, keyed by mangled name.

    A listing that holds the same kernel for several archs keys each copy as `name@arch`.
    """
    sections: list[tuple[str, str | None, list[tuple[str, list[str]]]]] = []
    arch: str | None = None
    body: list[tuple[str, list[str]]] | None = None
    for line in text.splitlines():
        if match := _ARCH.match(line):
            arch, body = match[1], None
        elif match := _FUNCTION.match(line):
            body = []
            sections.append((match[1], arch, body))
        elif body is not None and (match := _INSTRUCTION.match(line)):
            if (match["pred"] or "").strip() in _NEVER:
                continue
            base, *modifiers = match["op"].split(".")
            if base != "NOP":
                body.append((base, modifiers))

    archs_per_name = Counter(name for name, _ in {(n, a) for n, a, _ in sections})
    facts: dict[str, SassFacts] = {}
    for name, section_arch, instructions in sections:
        key = name if archs_per_name[name] == 1 else f"{name}@{section_arch}"
        facts.setdefault(key, _facts(instructions, section_arch))
    return facts


def _facts(instructions: list[tuple[str, list[str]]], arch: str | None) -> SassFacts:
    bases = Counter(base for base, _ in instructions)
    tensor = {op: n for op, n in sorted(bases.items()) if _TENSOR_CORE.match(op)}
    tma = {op: n for op, n in sorted(bases.items()) if op.startswith(("UTMA", "UBLK"))}
    loads = Counter(_width(mods) for base, mods in instructions if base == "LDG")
    stores = Counter(_width(mods) for base, mods in instructions if base == "STG")
    load_kinds = Counter(_path(mods) for base, mods in instructions if base == "LDG")
    store_kinds = Counter(_path(mods) for base, mods in instructions if base == "STG")
    hints = Counter(f"{base}.{mod}" for base, mods in instructions if base in ("LDG", "STG") for mod in mods if mod in _HINTS)
    facts = SassFacts(
        arch=arch,
        instructions=len(instructions),
        tensor_core=tensor or None,
        local_loads=bases[_LOCAL_LOAD],
        local_stores=bases[_LOCAL_STORE],
        global_loads_by_width=_by_width(loads),
        global_stores_by_width=_by_width(stores),
        global_loads_by_kind=_by_kind(load_kinds),
        global_stores_by_kind=_by_kind(store_kinds),
        global_cache_hints=dict(sorted(hints.items())) or None,
        tma=tma or None,
        cp_async=bases["LDGSTS"],
        shared_loads=sum(bases[op] for op in _SHARED_LOADS),
        shared_stores=sum(bases[op] for op in _SHARED_STORES),
        barriers=sum(n for op, n in bases.items() if _is_barrier(op)),
    )
    facts.notes = _notes(facts, bases)
    return facts


def _width(modifiers: list[str]) -> str:
    """Access width in bits; LDG.E / STG.E with no size modifier move 32 bits."""
    for mod in modifiers:
        if mod in _NARROW:
            return _NARROW[mod]
        if mod in _WIDE:
            return mod
    return "32"


def _path(modifiers: list[str]) -> str:
    """Which path a global access takes: read-only, strong, hinted or plain (first match wins)."""
    if any(mod in _READ_ONLY for mod in modifiers):
        return "read-only"
    if any(mod.startswith("STRONG") or mod in ("SYS", "VOLATILE") for mod in modifiers):
        return "strong"
    if any(mod in _HINTS for mod in modifiers):
        return "hinted"
    return "plain"


_KINDS = ("plain", "read-only", "strong", "hinted")


def _by_kind(counts: Counter[str]) -> dict[str, int] | None:
    return {kind: counts[kind] for kind in _KINDS if counts[kind]} or None


def _by_width(counts: Counter[str]) -> dict[str, int] | None:
    if not counts:
        return None
    return {width: counts[width] for width in sorted(counts, key=int)}


def _is_barrier(op: str) -> bool:
    # BAR (bar.sync / named barriers), SYNCS (mbarrier), UCGABAR_* (barrier.cluster); not BSSY/BSYNC,
    # which are branch-convergence markers, nor CGAERRBAR.
    return op in ("BAR", "SYNCS") or op.startswith(("UCGABAR", "CGABAR"))


def _notes(facts: SassFacts, bases: Counter[str]) -> list[str]:
    notes = []
    if facts.tensor_core:
        for kind, ops in _tensor_core_kinds(facts.tensor_core).items():
            notes.append(f"uses {kind} (" + ", ".join(f"{op} x{n}" for op, n in ops.items()) + ")")
    else:
        notes.append("no tensor-core instructions")
    if facts.local_loads or facts.local_stores:
        notes.append(
            f"local memory traffic: {facts.local_loads} LDL / {facts.local_stores} STL "
            "(spills or a runtime-indexed array)"
        )
    for what, widths in (("loads", facts.global_loads_by_width), ("stores", facts.global_stores_by_width)):
        if widths:
            notes.append(_width_note(what, widths))
    notes += _path_notes(facts)
    if facts.tma:
        kinds = [label for prefix, label in (("UTMALDG", "loads"), ("UTMASTG", "stores")) if prefix in facts.tma]
        if kinds:
            notes.append("TMA " + " and ".join(kinds) + " present")
        if any(op.startswith("UBLK") for op in facts.tma):
            notes.append("bulk async copies present (cp.async.bulk)")
    if facts.cp_async:
        notes.append(f"cp.async global->shared copies (LDGSTS x{facts.cp_async})")
    if bases["LDSM"]:
        notes.append(f"ldmatrix (LDSM x{bases['LDSM']})")
    return notes


def _path_notes(facts: SassFacts) -> list[str]:
    notes = []
    loads = facts.global_loads_by_kind or {}
    total = sum(loads.values())
    plain, read_only, strong = loads.get("plain", 0), loads.get("read-only", 0), loads.get("strong", 0)
    if total and read_only == total:
        notes.append(f"global loads all take the read-only path (LDG...CONSTANT, ld.global.nc) x{read_only}")
    elif total and read_only:
        notes.append(
            f"global loads: {plain + loads.get('hinted', 0)} through L1 (plain or hinted), {read_only} on the read-only path (LDG...CONSTANT)"
            + (f", {strong} strong" if strong else "")
            + ": an input the kernel never writes can take the read-only path too (const __restrict__ or __ldg in CUDA); A/B it with compare_solutions"
        )
    elif plain:
        notes.append(
            f"no global load takes the read-only path ({plain} plain LDG, no LDG...CONSTANT): for inputs the kernel never writes, "
            "const __restrict__ pointers or __ldg() let ptxas emit ld.global.nc; worth an A/B (compare_solutions)"
        )
    if strong:
        notes.append(
            f"{strong} strong global load(s) (LDG...STRONG.*: volatile, relaxed/acquire or .cg): they skip L1 and are meant for data other "
            "threads or blocks write during the kernel; a plain or read-only load is faster otherwise"
        )
    strong_stores = (facts.global_stores_by_kind or {}).get("strong", 0)
    if strong_stores:
        notes.append(f"{strong_stores} strong global store(s) (STG...STRONG.*): ordered for other threads to see; plain stores are cheaper otherwise")
    if facts.global_cache_hints:
        notes.append("cache hints: " + ", ".join(f"{op} x{n} ({_HINTS[op.split('.', 1)[1]]})" for op, n in facts.global_cache_hints.items()))
    return notes


def _tensor_core_kinds(tensor_core: dict[str, int]) -> dict[str, dict[str, int]]:
    kinds: dict[str, dict[str, int]] = {}
    for op, n in tensor_core.items():
        if op.startswith("UTC"):
            kind = "tcgen05.mma"
        elif op.endswith("GMMA"):
            kind = "wgmma"
        else:
            kind = "mma.sync"
        kinds.setdefault(kind, {})[op] = n
    return kinds


def _width_note(what: str, widths: dict[str, int]) -> str:
    if len(widths) == 1:
        bits = int(next(iter(widths)))
        return f"global {what} are {bits}-bit ({bits // 8} bytes/thread)" if bits >= 8 else f"global {what} are {bits}-bit"
    mix = ", ".join(f"{w}-bit x{n}" for w, n in sorted(widths.items(), key=lambda kv: -int(kv[0])))
    return f"global {what} mix widths: {mix}"


def find_disassembler(name: str = "cuobjdump") -> str | None:
    """cuobjdump or nvdisasm, wherever tools.capabilities.find_cuda_tool finds CUDA binaries."""
    return find_cuda_tool(name)


def disassemble(binary: Path, *, timeout: float = DISASSEMBLE_TIMEOUT_S) -> dict[str, SassFacts]:
    """SASS facts for every kernel in a .cubin, .o, .so or .fatbin; {} when it holds no device code."""
    binary = Path(binary)
    if not binary.is_file():
        raise InvalidArgumentError(f"No such binary to disassemble: {binary}.")
    tool = find_disassembler("cuobjdump")
    if tool is None:
        raise UnavailableError(
            "cuobjdump was not found (looked on PATH, in $CUDA_HOME/bin, /usr/local/cuda/bin and pip's nvidia wheels), "
            "so SASS facts are unavailable.",
            hint="Install the CUDA toolkit's cuobjdump (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm) "
            "or put it on PATH.",
        )
    env = dict(os.environ)
    # cuobjdump hands the work to nvdisasm; point it at one when it is not on PATH.
    if "NVDISASM_PATH" not in env and (nvdisasm := find_disassembler("nvdisasm")):
        env["NVDISASM_PATH"] = str(Path(nvdisasm).parent)
    try:
        done = subprocess.run(
            [tool, "-sass", str(binary)], capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise UnavailableError(f"cuobjdump -sass {binary.name} took longer than {timeout:g} s.") from exc
    except OSError as exc:
        raise UnavailableError(f"cuobjdump could not be started: {exc}.") from exc
    if "does not contain device code" in done.stderr:
        return {}
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()
        raise InvalidArgumentError(
            f"cuobjdump could not read {binary.name} (exit {done.returncode}): {detail[-1] if detail else 'no message'}"
        )
    return summarize_sass(done.stdout)
