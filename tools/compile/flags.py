"""What an agent may pass to nvcc, and which #include lines a solution may hold.

A build is untrusted code. nvcc and the host compiler it drives have many ways to run a program or
read a file of the caller's choosing (`-Xcompiler=-specs=evil.specs`, `-ccbin`, `--options-file`,
`-include /etc/passwd`, `@file`, `-Xlinker=-plugin=...`), and new ones appear with each toolkit, so
flags are checked against an ALLOW-LIST of optimization and code-generation options: anything not
on it is refused with the reason when we know one. Values are restricted to a charset with no shell
metacharacters, because torch's extension builder writes the flags into a ninja file that a shell
runs.

`check_includes` refuses `#include` (and `#embed`, `__has_include`, assembler `.incbin`/`.include`)
naming an absolute path or one with a `..` component: with no -I allowed, every other include
resolves inside the solution or among the toolkit's and the system's public headers. A text scan
cannot see everything the preprocessor and assembler can build (a `.incbin` spelled with string
escapes, say): it catches the plain forms early and with a clear message; what keeps a build from
reading the server's files is that it runs as a sandbox user (mode none says it has no such
boundary).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from kda_mcp.tools.errors import InvalidArgumentError

MAX_FLAGS = 32
MAX_FLAG_CHARS = 200

EXAMPLES = (
    "-O3, -maxrregcount=128, --use_fast_math, -lineinfo, -DBLOCK=128, -std=c++17, --expt-relaxed-constexpr, "
    "-Xptxas=-v, -Xptxas=--warn-on-spills, -Xcompiler=-O3, -ftz=true, -res-usage"
)

_IDENT = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_VALUE = r"[A-Za-z0-9_.+\-]{0,64}"  # no quotes, spaces, $ ; ` | & ( ) < > \ / : the ninja file goes through a shell
_BOOL = r"(?:true|false)"

# nvcc options, whole tokens. An option that takes a value may also be written as two tokens
# (`-Xptxas -v`, `-maxrregcount 64`); see _VALUE_OPTIONS.
_NVCC_ALLOWED = re.compile(
    "|".join(
        (
            r"-O[0-3]",
            r"--optimize=[0-3]",
            r"--?maxrregcount=(?:[1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-5])",
            r"--?use_fast_math",
            r"-lineinfo|--generate-line-info",
            r"-G|--device-debug",
            rf"-D{_IDENT}(?:={_VALUE})?",
            rf"--define-macro={_IDENT}(?:={_VALUE})?",
            rf"-U{_IDENT}",
            rf"--undefine-macro={_IDENT}",
            r"--?std=c\+\+(?:17|20)",
            r"--?expt-relaxed-constexpr",
            r"--?expt-extended-lambda|--?extended-lambda",
            r"--?restrict",
            r"--?extra-device-vectorization",
            r"-res-usage|--resource-usage",
            rf"--?ftz={_BOOL}",
            rf"--?prec-div={_BOOL}",
            rf"--?prec-sqrt={_BOOL}",
            rf"--?fmad={_BOOL}",
            r"-w|--disable-warnings",
            r"--?diag-suppress=[0-9]{1,5}(?:,[0-9]{1,5}){0,15}",
        )
    )
)

# Inside -Xptxas / --ptxas-options (comma-separated).
_PTXAS_ALLOWED = re.compile(
    "|".join(
        (
            r"-v|--verbose",
            r"-O[0-3]|--opt-level=[0-3]",
            rf"--allow-expensive-optimizations={_BOOL}|-allow-expensive-optimizations={_BOOL}",
            r"--warn-on-spills|-warn-spills",
            r"--warn-on-local-memory-usage|-warn-lmem-usage",
            r"-dlcm=(?:ca|cg|cs|lu|cv)|--def-load-cache=(?:ca|cg|cs|lu|cv)",
            r"-dscm=(?:wb|cg|cs|wt)|--def-store-cache=(?:wb|cg|cs|wt)",
        )
    )
)

# Inside -Xcompiler / --compiler-options (comma-separated): host-compiler options.
_HOST_ALLOWED = re.compile(
    r"-O[23]|-Wall|-Wextra|-Wno-[a-z0-9][a-z0-9+-]{0,62}|-funroll-loops|-ffast-math|-fno-strict-aliasing"
)

# Options whose value may come as the next token.
_VALUE_OPTIONS = {
    "-Xptxas": "ptxas",
    "--ptxas-options": "ptxas",
    "-Xcompiler": "host",
    "--compiler-options": "host",
    "-maxrregcount": "nvcc",
    "--maxrregcount": "nvcc",
    "-std": "nvcc",
    "--std": "nvcc",
}

# Why a known-dangerous option is refused: (regex on the option's name part, reason).
_PATHS = "take paths outside the solution"
_CHANGES = "change what is built or run it"
_REASONS_NVCC: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), why)
    for p, why in (
        (r"@.*", "reads options from an arbitrary file"),
        (r"--options-file(=.*)?|-optf.*", "reads arbitrary files"),
        (r"-ccbin.*|--compiler-bindir(=.*)?", "chooses which program runs as the host compiler"),
        (r"-Xlinker.*|--linker-options(=.*)?|-Xnvlink.*|--nvlink-options(=.*)?|-Xarchive.*|--archive-options(=.*)?",
         "passes options to a linker, which can load plugins and read arbitrary files"),
        (r"-Xcudafe.*|--cudafe-options.*|-Xfatbin.*|--fatbin-options.*|-Xnvvm.*|--nvvm-options.*",
         "passes raw options to an internal compiler stage"),
        (
            (
                r"-I.*|--include-path(=.*)?|-isystem.*|--system-include(=.*)?|-include.*|--pre-include(=.*)?|-iquote.*|"
                r"-idirafter.*|-L.*|--library-path(=.*)?|-l.*|--library(=.*)?"
            ),
            f"-I/-isystem/-include/-L/-l {_PATHS}",
        ),
        (r"-D.*|--define-macro.*", "a macro is -DNAME or -DNAME=VALUE, NAME an identifier and VALUE at most 64 of letters, digits and _ . + -"),
        (r"-U.*|--undefine-macro.*", "-U takes one identifier (-UNAME)"),
        (
            (
                r"-o.*|--output-file(=.*)?|-c|--compile|-E|--preprocess|-M.*|--run|-run|--?run-args(=.*)?|-odir|"
                r"--output-directory(=.*)?|-shared|--shared|-lib|--lib|-link|--link|-cubin|--cubin|-ptx|--ptx|-fatbin|"
                r"--fatbin|-dlink|--device-link|-dc|--device-c|-dw|--device-w|-keep.*|--keep.*|-save-temps|--save-temps|"
                r"-dryrun|--dryrun|-x|--x(=.*)?|-rdc.*|--relocatable-device-code.*|-cuda|--cuda|-MF.*|-MT.*"
            ),
            f"-o/-c/-E/--run {_CHANGES}",
        ),
        (r"-arch.*|--gpu-architecture.*|-gencode.*|--generate-code.*|-code.*|--gpu-code.*",
         "chooses the GPU architecture, which kda-mcp sets from the target argument"),
        (r"-Xptxas|--ptxas-options|-Xcompiler|--compiler-options", "needs a value (e.g. -Xptxas=-v)"),
    )
)
_REASONS_HOST: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), why)
    for p, why in (
        (r"-specs.*|--specs.*", "can run programs"),
        (r"-fplugin.*", "loads a compiler plugin, which runs code"),
        (r"-wrapper.*", "runs a program around each compiler stage"),
        (r"@.*", "reads options from an arbitrary file"),
        (r"-B.*|--prefix.*|-no-canonical-prefixes|-print-prog-name.*", "chooses the programs the compiler runs"),
        (r"-I.*|-isystem.*|-include.*|-imacros.*|-iquote.*|-idirafter.*|-iprefix.*|-isysroot.*|--sysroot.*|-L.*|-l.*",
         _PATHS),
        (r"-W[lap](,.*)?|-Xlinker.*|-Xassembler.*|-Xpreprocessor.*", "passes options to the linker, assembler or preprocessor"),
        (r"-o.*|-c|-E|-S|-M.*|-save-temps.*|-dump.*|-fdump.*|-aux-info.*|--output.*", "changes what is built"),
        (r"-fprofile.*|-fauto-profile.*|-fcoverage.*|-ftest-coverage|-fcallgraph-info.*|-fstack-usage|-fopt-info.*",
         "reads or writes files of its own"),
    )
)
_REASONS_PTXAS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), why)
    for p, why in (
        (r"@.*|--options-file.*|-optf.*", "reads options from an arbitrary file"),
        (r"-o.*|--output-file.*|-arch.*|--gpu-name.*|-c|--compile-only", "changes what is built"),
    )
)


def _refuse(flag: str, why: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"Extra nvcc flag {flag!r} is refused: {why}.",
        hint=f"Only optimization and code-generation flags are accepted, such as {EXAMPLES}.",
    )


def _reason(part: str, reasons: Iterable[tuple[re.Pattern[str], str]], default: str | None) -> str | None:
    for pattern, why in reasons:
        if pattern.fullmatch(part):
            return why
    return default


def _check_list(shown: str, option: str, value: str, kind: str) -> None:
    """The comma-separated items of a -Xptxas / -Xcompiler value."""
    allowed, reasons, label = (
        (_PTXAS_ALLOWED, _REASONS_PTXAS, "ptxas") if kind == "ptxas" else (_HOST_ALLOWED, _REASONS_HOST, "host-compiler")
    )
    if not value:
        raise _refuse(shown, f"it passes no {label} option")
    for item in value.split(","):
        if allowed.fullmatch(item):
            continue
        why = _reason(item, reasons, None)
        if why is None:
            why = f"{item!r} is not an allowed {label} option"
        else:
            why = f"{option}={item} {why}"
        raise _refuse(shown, why)


def _check_one(flag: str, value: str | None = None) -> None:
    """One option; `value` is the next token for the two-token form (`-Xptxas -v`)."""
    if value is not None:
        shown = f"{flag} {value}"
        kind = _VALUE_OPTIONS[flag]
        if kind != "nvcc":
            _check_list(shown, flag, value, kind)
        elif not _NVCC_ALLOWED.fullmatch(f"{flag}={value}"):
            raise _refuse(shown, f"{value!r} is not an allowed value for {flag}")
        return
    name, eq, rest = flag.partition("=")
    if eq and _VALUE_OPTIONS.get(name, "nvcc") != "nvcc":
        _check_list(flag, name, rest, _VALUE_OPTIONS[name])
        return
    if _NVCC_ALLOWED.fullmatch(flag):
        return
    why = _reason(flag, _REASONS_NVCC, None)
    raise _refuse(flag, why or "it is not on the allow-list of optimization and code-generation flags")


def check_flags(flags: list[str]) -> list[str]:
    """Extra nvcc flags, checked against the allow-list; returns them unchanged, or raises
    InvalidArgumentError naming the first refused flag and why."""
    if not isinstance(flags, list):
        raise InvalidArgumentError(f"extra_nvcc_flags must be a list of strings, not {type(flags).__name__}.")
    if len(flags) > MAX_FLAGS:
        raise InvalidArgumentError(f"At most {MAX_FLAGS} extra nvcc flags are accepted; got {len(flags)}.")
    i = 0
    while i < len(flags):
        flag = flags[i]
        if not isinstance(flag, str):
            raise InvalidArgumentError(f"Extra nvcc flag {flag!r} is not a string.")
        if len(flag) > MAX_FLAG_CHARS:
            raise _refuse(flag[:60] + "…", f"it is {len(flag)} characters; the limit is {MAX_FLAG_CHARS}")
        if not flag or any(c.isspace() or c == "\x00" for c in flag):
            raise _refuse(flag, "each list item must be one option, with no spaces or NUL bytes")
        if flag in _VALUE_OPTIONS:
            if i + 1 >= len(flags) or not isinstance(flags[i + 1], str):
                raise _refuse(flag, "it needs a value (e.g. -Xptxas=-v)")
            value = flags[i + 1]
            if len(value) > MAX_FLAG_CHARS or any(c.isspace() or c == "\x00" for c in value):
                raise _refuse(f"{flag} {value[:60]}", "its value must be one option, with no spaces or NUL bytes")
            _check_one(flag, value)
            i += 2
            continue
        _check_one(flag)
        i += 1
    return flags


# --- #include and friends -----------------------------------------------------------------------

_DIRECTIVE = re.compile(r"(?:#|%:)[ \t]*(?P<kind>include_next|include|import|embed)\b[ \t]*(?P<rest>.*)")
_HAS_INCLUDE = re.compile(r"(?P<kind>__has_include_next|__has_include|__has_embed)[ \t]*\([ \t]*(?P<rest>.*)")
# .incbin / .include in inline assembly, not member access (x.include): not after a name or a closing bracket,
# unless the name is an escape such as "\t.incbin".
_ASM_FILE = re.compile(r"(?:(?<![A-Za-z0-9_)\]>])|(?<=\\[ntr]))\.(?P<kind>incbin|include)\b")
_C_FAMILY = (".cu", ".cuh", ".c", ".cc", ".cpp", ".cxx", ".c++", ".h", ".hh", ".hpp", ".hxx", ".inl", ".inc", ".ipp", ".tpp")
_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_OPERAND = re.compile(r'"(?P<q>[^"\n]*)"|<(?P<a>[^>\n]*)>')
_ADJACENT_STRINGS = re.compile(r'"\s*"')
MAX_INCLUDE_PROBLEMS = 5


_SPLICE = re.compile(r"\\[ \t]*\r?\n")


def _strip_block_comments(text: str) -> str:
    """/* */ comments replaced by a space, as the compiler does; the newlines they held are put back
    after the end of the line, so a directive split by a comment stays one line and the line
    numbers of what follows stay those of the file."""
    out: list[str] = []
    pending = 0
    pos = 0

    def emit(chunk: str) -> None:
        nonlocal pending
        if pending and "\n" in chunk:
            cut = chunk.index("\n") + 1
            chunk = chunk[:cut] + "\n" * pending + chunk[cut:]
            pending = 0
        out.append(chunk)

    for match in _BLOCK_COMMENT.finditer(text):
        emit(text[pos : match.start()])
        out.append(" ")
        pending += match.group().count("\n")
        pos = match.end()
    emit(text[pos:])
    out.append("\n" * pending)
    return "".join(out)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, text) per logical line: backslash-newline joined, trigraphs read."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 1
    for number, line in enumerate(text.replace("??=", "#").replace("??/", "\\").split("\n"), start=1):
        line = line.rstrip("\r")
        if not pending:
            start = number
        stripped = line.rstrip(" \t")
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(line)
        out.append((start, "".join(pending)))
        pending = []
    if pending:
        out.append((start, "".join(pending)))
    return out


def _path_problem(name: str) -> str | None:
    if not name:
        return "names no file"
    if name.startswith("/"):
        return "is an absolute path, outside the solution"
    if name.startswith("~"):
        return "names a home folder, outside the solution"
    if ".." in re.split(r"[/\\]", name):
        return "has a '..' component, which leads outside the solution"
    if "\x00" in name:
        return "contains a NUL byte"
    return None


_QUOTED_INCLUDE = re.compile(r'#\s*include\s*"([^"\n]+)"')


def _included_by_name(files: dict[str, str]) -> set[str]:
    """Sources some file includes by a quoted name (as written, and by that name's last part): the
    preprocessor reads them as C whatever their suffix (`#include "x.txt"` holding `#include P`)."""
    named: set[str] = set()
    for text in files.values():
        if isinstance(text, str) and "include" in text:
            for name in _QUOTED_INCLUDE.findall(_SPLICE.sub("", text)):
                named.update((name.strip(), name.strip().rsplit("/", 1)[-1]))
    return {path for path in files if path in named or path.rsplit("/", 1)[-1] in named}


def _scan_includes(path: str, lines: list[tuple[int, str]], problems: dict[tuple[str, int], str], *, c_family: bool) -> None:
    # In other files (Python, text) '# include ...' is a comment; only a named path is checked there.
    for number, text in lines:
        if "include" in text or "import" in text or "embed" in text:
            for match in _DIRECTIVE.finditer(text):
                rest = match["rest"]
                rest = _BLOCK_COMMENT.sub(" ", rest).strip()
                operand = _OPERAND.match(rest)
                directive = f"#{match['kind']} {rest[:80]}".rstrip()
                if operand is None:
                    if c_family and rest and not rest.startswith(("//", "/*")):
                        problems.setdefault(
                            (path, number),
                            f"{path}:{number}: {directive!r} is a computed include (through a macro), which cannot be "
                            "checked; write the file name in quotes",
                        )
                    continue
                name = operand["q"] if operand["q"] is not None else operand["a"]
                why = _path_problem(name)
                if why:
                    problems.setdefault((path, number), f"{path}:{number}: {directive!r} {why}")
            for match in _HAS_INCLUDE.finditer(text):
                operand = _OPERAND.match(match["rest"])
                if operand is not None:
                    name = operand["q"] if operand["q"] is not None else operand["a"]
                    if why := _path_problem(name):
                        problems.setdefault((path, number), f"{path}:{number}: {match['kind']}({name!r}) {why}")
        if ".inc" in text:
            joined = _ADJACENT_STRINGS.sub("", text)
            if match := _ASM_FILE.search(joined):
                problems.setdefault(
                    (path, number),
                    f"{path}:{number}: the assembler directive .{match['kind']} reads a file of its own choosing into "
                    "the build; it is not allowed",
                )


def check_includes(files: dict[str, str]) -> None:
    """Refuse sources whose #include (or #embed, __has_include, assembler .incbin/.include) names an
    absolute path, a home folder or a path with a `..` component, or is computed through a macro.

    Conservative on purpose: each file is read twice, as written and with /* */ comments removed,
    and a directive either reading finds is checked (a commented-out one is refused too). The
    message names every problem as file:line (the first few).
    """
    problems: dict[tuple[str, int], str] = {}
    included = _included_by_name(files)
    for path, text in files.items():
        if not isinstance(text, str):
            continue
        spliced = _SPLICE.sub("", text.replace("??/", "\\"))
        if not any(word in spliced for word in ("include", "import", "embed", ".inc")):
            continue
        c_family = path.lower().endswith(_C_FAMILY) or path in included
        _scan_includes(path, _logical_lines(text), problems, c_family=c_family)
        if "/*" in text:
            _scan_includes(path, _logical_lines(_strip_block_comments(text)), problems, c_family=c_family)
    if problems:
        listed = [problems[key] for key in sorted(problems)]
        shown = "; ".join(listed[:MAX_INCLUDE_PROBLEMS])
        more = f" (and {len(listed) - MAX_INCLUDE_PROBLEMS} more)" if len(listed) > MAX_INCLUDE_PROBLEMS else ""
        raise InvalidArgumentError(
            f"The solution includes files from outside itself: {shown}{more}.",
            hint="Include the solution's own files by a relative path without '..' (\"util.cuh\", \"kernels/tile.cuh\") "
            "and toolkit headers by name (<cuda_bf16.h>, <cute/tensor.hpp>); put anything else among the sources.",
        )
