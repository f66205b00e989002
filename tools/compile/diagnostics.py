"""Diagnostics from a build log: what nvcc, the host compiler, ptxas, the linkers and Python said.

A build log mixes several tools' output (ninja runs nvcc, which runs gcc and ptxas; torch's extension
builder wraps it all in a Python traceback). Each recognizer below knows one tool's line format and
how many lines a message spans; anything no recognizer claims is context and is dropped.

Logs can be huge (a 1 MB source with a warning per line gives a 6 MB log), so parsing is linear in
the log and reads at most MAX_LOG_CHARS of it: the head and the tail, where the first errors and
the final summary are. Every recognizer looks at a bounded number of lines from where it stands,
every regex is anchored or starts with a literal, and messages are capped.

Two things need the build's files, not just its log (solution_diagnostics):

- Whose diagnostic it is. With a source root, a warning or note from a file outside the solution
  (torch's, CUDA's or the host compiler's headers) is counted, not listed; errors are listed
  wherever they are, since a header can be where the solution's mistake shows. nvcc's
  intermediates (kernel.ptx, kernel.cudafe1.cpp) are the solution's.
- Where a ptxas error is in the .cu. ptxas names a line of the PTX nvcc generated (an inline-asm
  mistake is only found there). Built with -lineinfo, that PTX carries `.file` and `.loc`
  directives mapping its lines to source lines; when the PTX is in one of `ptx_dirs` (nvcc
  deletes it unless the build keeps it), the diagnostic moves to the .cu file:line and keeps the
  PTX line in its message. Without the PTX it stays at the PTX line and says the .cu line is
  unknown, naming the solution's inline-asm statements that use the instruction ptxas named.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from glob import escape as glob_escape
from dataclasses import dataclass, field
from pathlib import Path

from kda_mcp.tools.compile.models import Diagnostic, Severity, Tool
from kda_mcp.tools.errors import InvalidArgumentError, KdaError

_SEVERITY_RANK = {"error": 0, "warning": 1, "note": 2}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# nvcc's intermediate files: /tmp/tmpxft_00002ee7_00000000-6_kernel.ptx stands for kernel.ptx.
_TMPXFT = re.compile(r"(?:[^\s'\"`]*/)?tmpxft_[0-9a-fA-F]+_[0-9a-fA-F]+-\d+_(?P<name>[^\s'\",;:)]+)")
# The same, starting at its literal, for searching inside messages (the form above, unanchored,
# rescans a long token from every position: quadratic).
_TMPXFT_NAME = re.compile(r"tmpxft_[0-9a-fA-F]+_[0-9a-fA-F]+-\d+_(?P<name>[^\s'\",;:)]+)")
_TOKEN_STOPS = frozenset(" \t\r\n\f\v'\"`")
# What is read of a log: its first and last MAX_LOG_CHARS / 2 characters.
MAX_LOG_CHARS = 2_000_000
MAX_MESSAGE_CHARS = 2_000
_MAX_PATH_CHARS = 4_096
# A Triton excerpt is at most 12 source lines before its caret; look no further than this.
_MAX_EXCERPT_LINES = 40
_MAX_SCAN_TOTAL_BYTES = 20_000_000
# Python source files we read to place a Triton error; bigger ones are not kernels worth scanning.
_MAX_SCAN_BYTES = 2_000_000
_MAX_SCAN_FILES = 500
_MAX_EXTRA_LINES = 3


# One found diagnostic, kept as a plain tuple until the end: (file, line, column, severity, message, tool).
_Found = tuple[str | None, int | None, int | None, Severity, str, Tool]


@dataclass
class _Context:
    roots: list[str]
    source_root: Path | None
    ptx_dirs: list[Path] = field(default_factory=list)
    found: list[_Found] = field(default_factory=list)
    _ptx: dict[str, tuple[dict[int, str], list[tuple[int, int, int]]] | None] = field(default_factory=dict)
    _asm: list[tuple[str, int, str]] | None = None
    _paths: dict[str, str] = field(default_factory=dict)
    _sources: dict[Path, list[str] | None] = field(default_factory=dict)
    _source_bytes: int = 0
    _tree: list[Path] | None = None
    # The solution's sources (relative path -> text), when the caller has them: read from here, never
    # from the room the untrusted code ran in (gone by then, and its files were the solution's to swap).
    sources: dict[str, str] | None = None

    def _own(self, suffixes: tuple[str, ...]) -> list[Path] | None:
        """Paths of the given sources with these suffixes, when the sources were given."""
        if self.sources is None or self.source_root is None:
            return None
        return sorted(self.source_root / rel for rel in self.sources if Path(rel).suffix in suffixes)[:_MAX_SCAN_FILES]

    def add(self, tool: Tool, severity: str, message: str, file: str | None = None, line: int | None = None,
            column: int | None = None) -> None:
        self.found.append(
            (self.display_path(file) if file else None, line, column, _severity(severity), self.clean(message), tool)
        )

    def display_path(self, path: str) -> str:
        """Relative to the source root when inside it; nvcc temporaries by their plain name."""
        shown = self._paths.get(path)
        if shown is None:
            shown = self._paths[path] = self._display_path(path)
        return shown

    def _display_path(self, path: str) -> str:
        path = path.strip()[:_MAX_PATH_CHARS]
        if match := _TMPXFT.fullmatch(path):
            return match["name"]
        if not os.path.isabs(path):
            return os.path.normpath(path)
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            real = path
        for candidate in dict.fromkeys((os.path.normpath(path), real)):
            for root in self.roots:
                if candidate == root or candidate.startswith(root.rstrip(os.sep) + os.sep):
                    return os.path.relpath(candidate, root)
        return path

    def inside_root(self, path: str) -> bool:
        return bool(self.roots) and not os.path.isabs(self.display_path(path))

    def outside_solution(self, shown: str | None) -> bool:
        """A displayed path that is not the solution's: outside the source root (absolute, or
        climbing out of it). PTX and nvcc's other intermediates come from the solution's code."""
        if not self.roots or shown is None:
            return False
        if shown.endswith((".ptx", ".cudafe1.cpp", ".cudafe1.c", ".cudafe1.stub.c", ".ii")):
            return False
        return os.path.isabs(shown) or shown == ".." or shown.startswith(".." + os.sep)

    def ptx_source_line(self, ptx_name: str, ptx_line: int) -> tuple[str, int] | None:
        """(source path, line) of the last .loc at or before `ptx_line`, in a kept copy of the PTX."""
        name = Path(ptx_name).name
        if name not in self._ptx:
            self._ptx[name] = self._read_ptx(name)
        table = self._ptx[name]
        if table is None:
            return None
        files, locs = table
        best = None
        for at, index, line in locs:  # in order of PTX line
            if at > ptx_line:
                break
            best = (index, line)
        if best is None or best[0] not in files or best[1] <= 0:
            return None
        return files[best[0]], best[1]

    def _read_ptx(self, name: str) -> tuple[dict[int, str], list[tuple[int, int, int]]] | None:
        from kda_mcp.tools.sandbox.files import read_from

        stem = name[: -len(".ptx")]
        for folder in self.ptx_dirs:
            candidates = [name]
            try:
                candidates += sorted(p.name for p in folder.glob(f"{glob_escape(stem)}.*.ptx"))
            except OSError:
                pass
            for candidate in candidates:
                try:
                    data = read_from(folder, candidate, limit=_MAX_PTX_BYTES)
                except KdaError:
                    data = None
                if data is None:
                    continue
                files: dict[int, str] = {}
                locs: list[tuple[int, int, int]] = []
                for number, text in enumerate(data.decode(errors="replace").splitlines(), start=1):
                    if ".loc" in text and (loc := _PTX_LOC.match(text)):
                        locs.append((number, int(loc["index"]), int(loc["line"])))
                    elif ".file" in text and (declared := _PTX_FILE.match(text)):
                        files[int(declared["index"])] = declared["path"]
                if locs:
                    return files, locs
        return None

    def inline_asm(self, op: str | None) -> list[str]:
        """The solution's inline-asm statements (file:line), those naming `op` when given."""
        if self._asm is None:
            self._asm = []
            paths = self._own(tuple(_ASM_SUFFIXES))
            if paths is None and self.source_root is not None and self.source_root.is_dir():
                try:
                    paths = sorted(p for p in self.source_root.rglob("*") if p.suffix in _ASM_SUFFIXES and p.is_file())[:_MAX_SCAN_FILES]
                except OSError:
                    paths = []
            if paths:
                for path in paths:
                    lines = self.source_lines(path)
                    for number, text in enumerate(lines or [], start=1):
                        if "asm" in text and _INLINE_ASM.search(text):
                            body = " ".join((lines or [])[number - 1 : number + 7])
                            self._asm.append((os.path.relpath(path, self.source_root), number, body))
        wanted = re.compile(rf"(?<![\w.]){re.escape(op)}(?![\w])") if op else None
        hits = [f"{file}:{line}" for file, line, body in self._asm if wanted is None or wanted.search(body)]
        if not hits and wanted is not None:
            hits = [f"{file}:{line}" for file, line, _ in self._asm]
        return hits[:_MAX_ASM_CANDIDATES]

    def clean(self, message: str) -> str:
        message = _strip_tmpxft(message.strip())
        for root in self.roots:
            message = message.replace(root.rstrip(os.sep) + os.sep, "")
        if len(message) > MAX_MESSAGE_CHARS:
            message = message[: MAX_MESSAGE_CHARS - 1] + "…"
        return message

    def source_lines(self, path: Path) -> list[str] | None:
        """A candidate source's stripped lines, read once per parse, within a total byte budget."""
        if path in self._sources:
            return self._sources[path]
        lines = None
        if self.sources is not None:
            rel = os.path.relpath(path, self.source_root) if self.source_root is not None and path.is_absolute() else str(path)
            text = self.sources.get(os.path.normpath(rel))
            self._sources[path] = [t.strip() for t in text.splitlines()] if text is not None else None
            return self._sources[path]
        try:
            size = path.stat().st_size
            if size <= _MAX_SCAN_BYTES and self._source_bytes + size <= _MAX_SCAN_TOTAL_BYTES:
                self._source_bytes += size
                lines = [text.strip() for text in path.read_text(errors="replace").splitlines()]
        except (OSError, ValueError):
            pass
        self._sources[path] = lines
        return lines

    def source_tree(self) -> list[Path]:
        """The source root's .py files, sorted, at most _MAX_SCAN_FILES (listed once per parse)."""
        if self._tree is None and (own := self._own((".py",))) is not None:
            self._tree = own
        if self._tree is None:
            found: list[Path] = []
            if self.source_root is not None and self.source_root.is_dir():
                try:
                    for count, path in enumerate(self.source_root.rglob("*.py")):
                        if count >= 10 * _MAX_SCAN_FILES:
                            break
                        found.append(path)
                except OSError:
                    pass
            self._tree = sorted(found)[:_MAX_SCAN_FILES]
        return self._tree


def _strip_tmpxft(message: str) -> str:
    """nvcc temporaries by their plain name: `/tmp/tmpxft_..._kernel.ptx` becomes `kernel.ptx`.

    Linear: each temporary is found by its literal, then the path before it is walked back over.
    """
    if "tmpxft_" not in message:
        return message
    out: list[str] = []
    cursor = 0
    for match in _TMPXFT_NAME.finditer(message):
        start = match.start()
        if start > cursor and message[start - 1] == "/":
            # The directory part: back to the start of the token (or the previous replacement).
            k = start - 1
            while k > cursor and message[k - 1] not in _TOKEN_STOPS:
                k -= 1
            start = k
        out.append(message[cursor:start])
        out.append(match["name"])
        cursor = match.end()
    out.append(message[cursor:])
    return "".join(out)


def cap_log(log: str, max_chars: int = MAX_LOG_CHARS) -> tuple[str, int]:
    """The log's head and tail, at most `max_chars` in all and cut at line ends; also how many
    characters were left out of the middle (0 when the log was whole)."""
    if len(log) <= max_chars:
        return log, 0
    half = max(max_chars // 2, 1)
    head = log[:half]
    cut = head.rfind("\n")
    head = head[: cut + 1] if cut >= 0 else head
    tail = log[len(log) - half :]
    cut = tail.find("\n")
    tail = tail[cut + 1 :] if cut >= 0 else tail
    # A blank line between the two ends any indented block the cut split.
    return head + "\n" + tail, len(log) - len(head) - len(tail)


def parse_diagnostics(
    log: str,
    *,
    source_root: str | Path | None = None,
    limit: int = 50,
    max_chars: int = MAX_LOG_CHARS,
    ptx_dirs: Sequence[str | Path] = (),
) -> list[Diagnostic]:
    """Errors first, then warnings, then notes, each in log order; duplicates dropped; at most `limit`.
    Every diagnostic, the solution's or not (solution_diagnostics separates them).

    Reads at most `max_chars` of the log (its head and tail, see cap_log); linear in what it reads.
    """
    if limit < 0:
        raise InvalidArgumentError(f"limit must be 0 or more, not {limit}.")
    ctx = _parse(log, source_root, max_chars, ptx_dirs)
    return _unique(ctx.found, limit)


@dataclass
class SolutionDiagnostics:
    diagnostics: list[Diagnostic]
    outside_solution: int = 0  # distinct warnings and notes from files that are not the solution's


def solution_diagnostics(
    log: str,
    *,
    source_root: str | Path,
    limit: int = 50,
    max_chars: int = MAX_LOG_CHARS,
    ptx_dirs: Sequence[str | Path] = (),
    sources: Mapping[str, str] | None = None,
) -> SolutionDiagnostics:
    """What compile_solution lists: every error, and the warnings and notes of the solution's own
    files (or of no file); warnings and notes from other files (torch's, CUDA's headers) are only
    counted, in `outside_solution`. `sources` (relative path -> text) are what excerpts are placed
    in; without them the files under source_root are read."""
    if limit < 0:
        raise InvalidArgumentError(f"limit must be 0 or more, not {limit}.")
    ctx = _parse(log, source_root, max_chars, ptx_dirs, sources)
    own = [f for f in ctx.found if f[3] == "error" or not ctx.outside_solution(f[0])]
    outside = {(f[0], f[1], f[4]) for f in ctx.found if f[3] != "error" and ctx.outside_solution(f[0])}
    return SolutionDiagnostics(diagnostics=_unique(own, limit), outside_solution=len(outside))


def _parse(log: str, source_root: str | Path | None, max_chars: int, ptx_dirs: Sequence[str | Path], sources: Mapping[str, str] | None = None) -> _Context:
    roots: list[str] = []
    if source_root is not None:
        roots = list(dict.fromkeys((os.path.normpath(os.path.abspath(source_root)), os.path.realpath(source_root))))
    ctx = _Context(roots=roots, source_root=Path(roots[0]) if roots else None, ptx_dirs=[Path(d) for d in ptx_dirs],
                   sources={os.path.normpath(k): v for k, v in sources.items()} if sources is not None else None)
    log, _ = cap_log(log, max_chars)
    if "\x1b" in log:
        log = _ANSI.sub("", log)
    lines = [line.rstrip("\r") for line in log.splitlines()]
    i = 0
    while i < len(lines):
        for recognize in _RECOGNIZERS:
            consumed = recognize(lines, i, ctx)
            if consumed:
                i += consumed
                break
        else:
            i += 1
    ctx.found = [_place_ptx(found, ctx) if found[5] == "ptxas" and found[0] and found[0].endswith(".ptx") and found[1] else found for found in ctx.found]
    return ctx


def _unique(found: list[_Found], limit: int) -> list[Diagnostic]:
    ordered = sorted(found, key=lambda d: _SEVERITY_RANK[d[3]])  # stable: log order within a rank
    unique: dict[tuple[str | None, int | None, str], _Found] = {}
    for item in ordered:
        if len(unique) >= limit:
            break
        unique.setdefault((item[0], item[1], item[4]), item)
    return [
        Diagnostic(file=file, line=line, column=column, severity=severity, message=message, tool=tool)
        for file, line, column, severity, message, tool in unique.values()
    ]


# --- ptxas errors back to .cu lines ----------------------------------------------------------------

_MAX_PTX_BYTES = 64 * 2**20
_PTX_FILE = re.compile(r'^\s*\.file\s+(?P<index>\d+)\s+"(?P<path>[^"]+)"')
_PTX_LOC = re.compile(r"^\s*\.loc\s+(?P<index>\d+)\s+(?P<line>\d+)\s+(?P<col>\d+)")
_NAMED_INSTRUCTION = re.compile(r"instruction:?\s*'(?P<op>[A-Za-z_][\w.:]*)'")
_INLINE_ASM = re.compile(r"\b(?:asm|__asm__)\s*(?:volatile\s*|__volatile__\s*)?\(")
_ASM_SUFFIXES = (".cu", ".cuh", ".h", ".hpp", ".hh", ".cpp", ".cc", ".inl")
_MAX_ASM_CANDIDATES = 5


def _place_ptx(found: _Found, ctx: _Context) -> _Found:
    """A ptxas diagnostic at a PTX line, moved to the source line the PTX's .loc names when the PTX
    is at hand; else kept, with what is known about the source line said in the message."""
    ptx_name, ptx_line, column, severity, message, tool = found
    assert ptx_name is not None and ptx_line is not None
    where = f"{Path(ptx_name).name} line {ptx_line}"
    mapped = ctx.ptx_source_line(ptx_name, ptx_line)
    if mapped is not None:
        source, line = mapped
        return (ctx.display_path(source), line, None, severity, f"{message} (ptxas: {where}; mapped through the PTX's .loc)", tool)
    if not ctx.ptx_dirs:
        why = "nvcc does not keep the PTX, so the .cu line is unknown"
    else:
        why = "the PTX is not among the build's kept files, so the .cu line is unknown"
    hint = ""
    op = _NAMED_INSTRUCTION.search(message)
    candidates = ctx.inline_asm(op["op"].split(".")[0] if op else None)
    if candidates:
        hint = f"; inline asm in the solution{' using ' + repr(op['op'].split('.')[0]) if op else ''}: " + ", ".join(candidates)
    return (ptx_name, ptx_line, column, severity, f"{message} ({where}: {why}{hint})", tool)


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
    # By index: a slice `lines[i + 1 :]` copies the rest of the log for every message (quadratic).
    for k in range(i + 1, len(lines)):
        text = lines[k]
        if not text[:1].isspace() or not text.strip():
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
    stop = min(len(lines), k + 1 + _MAX_EXCERPT_LINES)
    while j < stop and lines[j].strip() != "^":
        excerpt.append(lines[j])
        j += 1
    if j >= stop:  # no caret: the source was unavailable; the message is what follows
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
        have = ctx.source_lines(path)
        if have is None:
            continue
        # Compare slices only where the first line matches: linear in the file for real excerpts.
        for start in range(len(have) - len(want) + 1):
            if have[start] == want[0] and have[start : start + len(want)] == want:
                return str(path), start + len(want)
    return None


def _candidate_sources(frames: list[tuple[str, int]], ctx: _Context) -> Iterator[Path]:
    seen: set[Path] = set()
    for file, _ in reversed(frames):
        path = Path(file)
        if path.suffix == ".py" and (ctx.inside_root(file) or not ctx.roots) and path not in seen:
            seen.add(path)
            yield path
    for path in ctx.source_tree():
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
