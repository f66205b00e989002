"""Diagnostics from a build log: what nvcc, the host compiler, ptxas, the linkers and Python said.

A build log mixes several tools' output (ninja runs nvcc, which runs gcc and ptxas; torch's extension
builder wraps it all in a Python traceback). Each recognizer below knows one tool's line format and
how many lines a message spans; anything no recognizer claims is context and is dropped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from kda_mcp.tools.compile.models import Diagnostic, Severity, Tool
from kda_mcp.tools.errors import InvalidArgumentError

_SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# nvcc's intermediate files: /tmp/tmpxft_00002ee7_00000000-6_kernel.ptx stands for kernel.ptx.
_TMPXFT = re.compile(r"(?:[^\s'\"`]*/)?tmpxft_[0-9a-fA-F]+_[0-9a-fA-F]+-\d+_(?P<name>[^\s'\",;:)]+)")
# Python source files we read to place a Triton error; bigger ones are not kernels worth scanning.
_MAX_SCAN_BYTES = 2_000_000
_MAX_SCAN_FILES = 500
_MAX_EXTRA_LINES = 3


@dataclass
class _Context:
    roots: list[str]
    source_root: Path | None
    found: list[Diagnostic] = field(default_factory=list)

    def add(self, tool: Tool, severity: str, message: str, file: str | None = None, line: int | None = None,
            column: int | None = None) -> None:
        self.found.append(
            Diagnostic(
                file=self.display_path(file) if file else None,
                line=line,
                column=column,
                severity=_severity(severity),
                message=self.clean(message),
                tool=tool,
            )
        )

    def display_path(self, path: str) -> str:
        """Relative to the source root when inside it; nvcc temporaries by their plain name."""
        path = path.strip()
        if match := _TMPXFT.fullmatch(path):
            return match["name"]
        if not os.path.isabs(path):
            return os.path.normpath(path)
        for candidate in dict.fromkeys((os.path.normpath(path), os.path.realpath(path))):
            for root in self.roots:
                if candidate == root or candidate.startswith(root.rstrip(os.sep) + os.sep):
                    return os.path.relpath(candidate, root)
        return path

    def inside_root(self, path: str) -> bool:
        return bool(self.roots) and not os.path.isabs(self.display_path(path))

    def clean(self, message: str) -> str:
        message = _TMPXFT.sub(lambda m: m["name"], message.strip())
        for root in self.roots:
            message = message.replace(root.rstrip(os.sep) + os.sep, "")
        return message


def parse_diagnostics(log: str, *, source_root: str | Path | None = None, limit: int = 50) -> list[Diagnostic]:
    """Errors first, then warnings, then notes, each in log order; duplicates dropped; at most `limit`."""
    if limit < 0:
        raise InvalidArgumentError(f"limit must be 0 or more, not {limit}.")
    roots: list[str] = []
    if source_root is not None:
        roots = list(dict.fromkeys((os.path.normpath(os.path.abspath(source_root)), os.path.realpath(source_root))))
    ctx = _Context(roots=roots, source_root=Path(roots[0]) if roots else None)
    lines = [_ANSI.sub("", line).rstrip("\r") for line in log.splitlines()]
    i = 0
    while i < len(lines):
        for recognize in _RECOGNIZERS:
            consumed = recognize(lines, i, ctx)
            if consumed:
                i += consumed
                break
        else:
            i += 1
    ordered = sorted(ctx.found, key=lambda d: _SEVERITY_RANK[d.severity])  # stable: log order within a rank
    unique: dict[tuple[str | None, int | None, str], Diagnostic] = {}
    for diag in ordered:
        unique.setdefault((diag.file, diag.line, diag.message), diag)
    return list(unique.values())[:limit]


def _severity(word: str) -> Severity:
    word = word.lower()
    if "error" in word or word == "fatal":
        return "error"
    if word.startswith("warning"):
        return "warning"
    return "note"  # note, remark, info


# Each recognizer looks at lines[i]; it returns how many lines it consumed (0: not its format).
Recognizer = Callable[[list[str], int, _Context], int]


# --- nvcc front end (EDG): kernel.cu(12): error: identifier "foo" is undefined ---------------------

_NVCC_FRONT = re.compile(
    r"^\s*(?P<file>\S.*?)\((?P<line>\d+)\): (?P<sev>(?:catastrophic |fatal |internal )?error|warning|remark)"
    r"(?: #(?P<code>[\w-]+))?\s*: (?P<msg>.*)$"
)
_NVCC_DRIVER = re.compile(r"^\s*nvcc (?P<sev>fatal|error|warning)\s*: (?P<msg>.*)$")


def _nvcc_front(lines: list[str], i: int, ctx: _Context) -> int:
    match = _NVCC_FRONT.match(lines[i])
    if not match:
        return 0
    # The message is followed by indented lines: more message, then the source line and a caret
    # under the column, then "detected during ..." instantiation context.
    block = list(_indented_after(lines, i))
    caret = next((k for k, text in enumerate(block) if text.strip() == "^"), None)
    column = None
    if caret is None:
        more, after = block, []
    else:
        more, after = block[: max(caret - 1, 0)], block[caret + 1 :]
        if caret >= 1 and "\t" not in block[caret - 1]:
            # EDG prints the source line indented by two spaces, and the caret under the column.
            column = block[caret].index("^") - 2 + 1
            column = column if column >= 1 else None
    more = [text.strip() for text in more if text.strip()][:_MAX_EXTRA_LINES]
    after = [text.strip() for text in after if text.strip()][:_MAX_EXTRA_LINES]
    message = " ".join([match["msg"].strip(), *more])
    if after:
        message += "; " + " ".join(after)
    if match["code"]:
        message += f" [#{match['code']}]"
    ctx.add("nvcc", match["sev"], message, match["file"], int(match["line"]), column)
    return 1 + len(block)


def _nvcc_driver(lines: list[str], i: int, ctx: _Context) -> int:
    match = _NVCC_DRIVER.match(lines[i])
    if not match:
        return 0
    ctx.add("nvcc", match["sev"], match["msg"])
    return 1


def _indented_after(lines: list[str], i: int) -> Iterator[str]:
    for text in lines[i + 1 :]:
        if not text.strip() or not text[:1].isspace():
            return
        yield text


# --- gcc / clang (and MLIR from Triton): kernel.cu:12:5: error: ... -------------------------------

_GCC = re.compile(
    r"^\s*(?P<file>[^\s:][^:]*?):(?P<line>\d+):(?:(?P<col>\d+):)? "
    r"(?P<sev>fatal error|error|warning|note|remark): (?P<msg>.*)$"
)
_GCC_DRIVER = re.compile(
    r"^\s*(?:\S*/)?(?:cc1plus|cc1|g\+\+|gcc|c\+\+|cc|clang\+\+|clang)(?:-[\d.]+)?: "
    r"(?P<sev>fatal error|error|warning|note): (?P<msg>.*)$"
)
_PY_WARNING = re.compile(r"^\s*(?P<file>\S.*?\.py):(?P<line>\d+): (?P<cat>\w*Warning): (?P<msg>.*)$")


def _gcc(lines: list[str], i: int, ctx: _Context) -> int:
    match = _GCC.match(lines[i])
    if not match or lines[i].lstrip().startswith(("In file included from", "from ")):
        return 0
    # MLIR diagnostics that Triton prints use the same shape, naming the kernel's .py file.
    tool: Tool = "triton" if match["file"].endswith(".py") else "gcc"
    column = int(match["col"]) if match["col"] else None
    ctx.add(tool, match["sev"], match["msg"], match["file"], int(match["line"]), column)
    return 1


def _gcc_driver(lines: list[str], i: int, ctx: _Context) -> int:
    match = _GCC_DRIVER.match(lines[i])
    if not match:
        return 0
    ctx.add("gcc", match["sev"], match["msg"])
    return 1


def _python_warning(lines: list[str], i: int, ctx: _Context) -> int:
    match = _PY_WARNING.match(lines[i])
    if not match:
        return 0
    ctx.add("python", "warning", f"{match['cat']}: {match['msg']}", match["file"], int(match["line"]))
    return 1


# --- ptxas and nvlink ------------------------------------------------------------------------------

_PTXAS_AT = re.compile(r"^\s*ptxas (?P<file>\S.*?), line (?P<line>\d+); (?P<sev>error|warning|fatal)\s*: (?P<msg>.*)$")
_PTXAS = re.compile(r"^\s*(?P<tool>ptxas|nvlink) (?P<sev>error|warning|fatal)\s*: (?P<msg>.*)$")
_SUMMARIES = ("Ptx assembly aborted due to errors",)


def _ptxas_at(lines: list[str], i: int, ctx: _Context) -> int:
    match = _PTXAS_AT.match(lines[i])
    if not match:
        return 0
    ctx.add("ptxas", match["sev"], match["msg"], match["file"], int(match["line"]))
    return 1


def _ptxas_or_nvlink(lines: list[str], i: int, ctx: _Context) -> int:
    match = _PTXAS.match(lines[i])
    if not match:
        return 0
    if match["msg"].strip() not in _SUMMARIES:
        ctx.add("ptxas" if match["tool"] == "ptxas" else "nvlink", match["sev"], match["msg"])
    return 1


# --- host linker -----------------------------------------------------------------------------------

_UNDEFINED = re.compile(r"^\s*(?:(?P<file>[^\s:][^:]*?):(?:(?P<line>\d+)|\([^)]*\)):\s*)?(?P<msg>undefined reference to .*)$")
_LD = re.compile(r"^\s*(?:\S*/)?(?:ld|ld\.\w+|mold|collect2)(?:\.exe)?: (?:(?P<sev>error|warning): )?(?P<msg>.*)$")
_LD_CONTEXT = re.compile(r"(?:in function|ld returned \d+ exit status|final link failed)")


def _undefined_reference(lines: list[str], i: int, ctx: _Context) -> int:
    match = _UNDEFINED.match(lines[i])
    if not match:
        return 0
    ctx.add("ld", "error", match["msg"], match["file"], int(match["line"]) if match["line"] else None)
    return 1


def _ld(lines: list[str], i: int, ctx: _Context) -> int:
    match = _LD.match(lines[i])
    if not match:
        return 0
    message = match["msg"]
    if "undefined reference to" in message:
        ctx.add("ld", "error", message[message.index("undefined reference to") :])
    elif not _LD_CONTEXT.search(message):
        ctx.add("ld", match["sev"] or "error", message)
    return 1


# --- ninja -----------------------------------------------------------------------------------------

_NINJA = re.compile(r"^\s*ninja: (?P<what>error|warning|build stopped): ?(?P<msg>.*)$")


def _ninja(lines: list[str], i: int, ctx: _Context) -> int:
    text = lines[i].lstrip()
    if text.startswith("FAILED: "):
        return 1  # names the failing step; the compiler's own lines follow
    match = _NINJA.match(lines[i])
    if not match:
        return 0
    if match["what"] != "build stopped":
        ctx.add("ninja", match["what"], match["msg"])
    return 1


# --- Python tracebacks, with Triton's CompilationError ----------------------------------------------

_FRAME = re.compile(r'^\s+File "(?P<file>[^"]+)", line (?P<line>\d+)(?:, in (?P<func>.*))?$')
_EXCEPTION = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_TRITON_AT = re.compile(r"^(?:[\w.]+\.)?CompilationError: at (?P<line>\d+):(?P<col>\d+):\s*$")


def _traceback(lines: list[str], i: int, ctx: _Context) -> int:
    if not lines[i].startswith("Traceback (most recent call last):"):
        return 0
    frames: list[tuple[str, int]] = []
    k = i + 1
    while k < len(lines) and (not lines[k].strip() or lines[k][:1].isspace()):
        if match := _FRAME.match(lines[k]):
            frames.append((match["file"], int(match["line"])))
        k += 1
    if k >= len(lines):
        return k - i
    exc = _EXCEPTION.match(lines[k])
    if not exc:
        return k - i
    if at := _TRITON_AT.match(lines[k]):
        return k - i + _triton_error(lines, k, at, frames, ctx)
    message = exc["msg"] if exc["msg"] is not None else ""
    if not message.strip() and k + 1 < len(lines) and lines[k + 1].strip():
        message = lines[k + 1]
    text = f"{exc['type']}: {message.strip()}" if message.strip() else exc["type"]
    frame = _user_frame(frames, ctx)
    ctx.add("python", "error", text, frame[0] if frame else None, frame[1] if frame else None)
    return k - i + 1


def _user_frame(frames: list[tuple[str, int]], ctx: _Context) -> tuple[str, int] | None:
    """The innermost frame in the solution's own code (or the innermost at all, with no source root)."""
    if not ctx.roots:
        return frames[-1] if frames else None
    return next((f for f in reversed(frames) if ctx.inside_root(f[0])), None)


def _triton_error(lines: list[str], k: int, at: re.Match[str], frames: list[tuple[str, int]], ctx: _Context) -> int:
    """`CompilationError: at L:C:`, up to 12 lines of the kernel ending at the failing one, a caret line,
    then the message. L counts from the `def` line of the @triton.jit function; C is 0-based."""
    excerpt: list[str] = []
    j = k + 1
    while j < len(lines) and lines[j].strip() != "^":
        excerpt.append(lines[j])
        j += 1
    if j >= len(lines):  # no caret: the source was unavailable; the message is what follows
        excerpt, j = [], k
    message_lines = []
    j += 1
    while j < len(lines) and lines[j].strip() and not lines[j].startswith(("Traceback", "The above exception", "During handling")):
        message_lines.append(lines[j].strip())
        j += 1
    message = " ".join(message_lines) or "Triton compilation failed"
    rel_line, col = int(at["line"]), int(at["col"])
    placed = _place_excerpt(excerpt, frames, ctx) if excerpt else None
    if placed:
        ctx.add("triton", "error", message, placed[0], placed[1], col + 1)
    else:
        ctx.add("triton", "error", f"{message} (line {rel_line}, column {col + 1} of the @triton.jit function)")
    return j - k


def _place_excerpt(excerpt: list[str], frames: list[tuple[str, int]], ctx: _Context) -> tuple[str, int] | None:
    """Find the file holding the excerpt; the failing line is its last line."""
    want = [text.strip() for text in excerpt]
    for path in _candidate_sources(frames, ctx):
        try:
            if path.stat().st_size > _MAX_SCAN_BYTES:
                continue
            have = [text.strip() for text in path.read_text(errors="replace").splitlines()]
        except OSError:
            continue
        for start in range(len(have) - len(want) + 1):
            if have[start : start + len(want)] == want:
                return str(path), start + len(want)
    return None


def _candidate_sources(frames: list[tuple[str, int]], ctx: _Context) -> Iterator[Path]:
    seen: set[Path] = set()
    for file, _ in reversed(frames):
        path = Path(file)
        if path.suffix == ".py" and (ctx.inside_root(file) or not ctx.roots) and path not in seen:
            seen.add(path)
            yield path
    if ctx.source_root is not None and ctx.source_root.is_dir():
        for count, path in enumerate(sorted(ctx.source_root.rglob("*.py"))):
            if count >= _MAX_SCAN_FILES:
                return
            if path not in seen:
                seen.add(path)
                yield path


_RECOGNIZERS: tuple[Recognizer, ...] = (
    _traceback,
    _ninja,
    _nvcc_driver,
    _nvcc_front,
    _ptxas_at,
    _ptxas_or_nvlink,
    _python_warning,
    _gcc_driver,
    _gcc,
    _undefined_reference,
    _ld,
)
