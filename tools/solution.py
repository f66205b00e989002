"""One way in for solutions: inline files, a starter-kit directory, or a packed solution.json.

Everything that runs, compiles or profiles a solution first turns the caller's input into a
validated flashinfer-bench `Solution` here. Every refusal says what to change.
"""

from __future__ import annotations

import ast
import json
import os
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from flashinfer_bench.data import BuildSpec, Definition, Solution, SourceFile
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kda_mcp.tools.errors import InvalidArgumentError, NotFoundError
from kda_mcp.tools.models import Result
from kda_mcp.tools.paths import Roots, clean, write_text

MAX_FILE_BYTES = 1 * 1024 * 1024
MAX_TOTAL_BYTES = 4 * 1024 * 1024
MAX_FILES = 64
SOURCE_SUFFIXES = {".py", ".cu", ".cuh", ".cpp", ".cc", ".cxx", ".c", ".h", ".hpp", ".hh", ".inl"}
SKIP_DIRS = {"__pycache__", "build", "dist", "node_modules"}
Language = Literal["cuda", "cpp", "triton", "python", "tilelang"]


class SpecInput(BaseModel):
    """How to build and call the solution (flashinfer-bench BuildSpec, with defaults filled in)."""

    model_config = ConfigDict(extra="forbid")
    language: Language = Field(description="cuda | cpp | triton | python | tilelang (CuTe DSL and cuTile code is 'python').")
    entry_point: str = Field(description="'<file>::<function>', e.g. 'main.py::run' or 'kernel.cu::run'.", max_length=300)
    destination_passing_style: bool = Field(
        default=True, description="True: run(inputs..., outputs...) writes into preallocated outputs. False: run(inputs...) returns them."
    )
    binding: Literal["tvm-ffi", "torch"] | None = Field(default=None, description="C++/CUDA only; default tvm-ffi.")
    dependencies: list[str] = Field(default_factory=list, max_length=16, description="e.g. ['cublas', 'cutlass'].")


class SolutionInput(BaseModel):
    """A solution, given in exactly one of four forms: files (+spec, definition), path, solution_json, attempt."""

    model_config = ConfigDict(extra="forbid")
    files: dict[str, str] | None = Field(
        default=None, description="Inline sources: relative path -> file content. Needs spec and definition.", max_length=MAX_FILES
    )
    spec: SpecInput | None = Field(default=None, description="Build spec for inline files (or to override a directory's config.toml).")
    path: str | None = Field(
        default=None,
        max_length=4096,
        description="On the server: a starter-kit directory (config.toml with [solution] and [build]) or a packed solution.json file.",
    )
    solution_json: str | dict[str, Any] | None = Field(default=None, description="A packed solution.json, as text or object.")
    attempt: str | None = Field(default=None, max_length=20, description="A recorded attempt id (e.g. 'a3'): the exact solution it ran.")
    definition: str | None = Field(default=None, max_length=200, description="Definition name (inline files; overrides other forms).")
    name: str | None = Field(default=None, max_length=200, description="Solution name (default derived from the definition).")
    author: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=4000)


def _check_relative_path(raw: str) -> str:
    if not raw or "\x00" in raw:
        raise InvalidArgumentError(f"Source path {raw!r} is empty or contains a NUL byte.")
    if "\\" in raw:
        raise InvalidArgumentError(f"Source path {raw!r} uses backslashes; use '/' separators.")
    path = PurePosixPath(raw)
    if path.is_absolute() or raw.startswith("~"):
        raise InvalidArgumentError(f"Source path {raw!r} is absolute; give paths relative to the solution root, e.g. 'kernel.cu'.")
    if ".." in path.parts:
        raise InvalidArgumentError(f"Source path {raw!r} leaves the solution folder ('..'); keep every file inside it.")
    parts = [p for p in path.parts if p != "."]
    if not parts:
        raise InvalidArgumentError(f"Source path {raw!r} names no file.")
    return "/".join(parts)


def _check_sizes(files: dict[str, str]) -> None:
    if not files:
        raise InvalidArgumentError("The solution has no source files.")
    if len(files) > MAX_FILES:
        raise InvalidArgumentError(f"The solution has {len(files)} files; at most {MAX_FILES} are accepted.")
    total = 0
    for path, content in files.items():
        size = len(content.encode("utf-8"))
        if size > MAX_FILE_BYTES:
            raise InvalidArgumentError(
                f"{path} is {size / 2**20:.1f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB per file. Generated tables belong in code, not literals."
            )
        total += size
    if total > MAX_TOTAL_BYTES:
        raise InvalidArgumentError(f"Sources total {total / 2**20:.1f} MiB; the limit is {MAX_TOTAL_BYTES // 2**20} MiB.")


def _normalize_files(files: dict[str, str]) -> dict[str, str]:
    normalized: dict[str, str] = {}
    for raw, content in files.items():
        path = _check_relative_path(raw)
        if path in normalized:
            raise InvalidArgumentError(f"Source path {raw!r} appears twice.")
        if not isinstance(content, str) or not content:
            raise InvalidArgumentError(f"{path} is empty; drop it or give it content.")
        normalized[path] = content
    _check_sizes(normalized)
    return normalized


MAX_WALK_ENTRIES = 2000  # a kit is a handful of files; a huge tree is a wrong path, not a kit


def _read_source_tree(root: Path, kit: Path) -> dict[str, str]:
    """Source files under root (inside the kit folder `kit`), refusing links that lead out of the kit."""
    kit_real = Path(os.path.realpath(kit))
    root_real = Path(os.path.realpath(root))
    if not root_real.is_relative_to(kit_real):
        raise InvalidArgumentError(f"{root} is a link to {root_real}, outside the kit {kit}; keep the sources inside it.")
    files: dict[str, str] = {}
    seen = 0
    for folder, dirs, names in os.walk(root_real):  # links to folders are not followed
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        for name in sorted(names):
            seen += 1
            if seen > MAX_WALK_ENTRIES:
                raise InvalidArgumentError(f"{root} holds more than {MAX_WALK_ENTRIES} files; point path at a starter kit, not a large folder.")
            path = Path(folder) / name
            rel = path.relative_to(root_real)
            if name.startswith(".") or path.suffix.lower() not in SOURCE_SUFFIXES:
                continue
            target = Path(os.path.realpath(path))
            if not target.is_relative_to(kit_real):
                raise InvalidArgumentError(f"{rel} is a link to {target}, outside the solution folder {kit}; copy the file in instead.")
            if not target.is_file():
                continue
            if target.stat().st_size > MAX_FILE_BYTES:
                raise InvalidArgumentError(f"{rel} is larger than {MAX_FILE_BYTES // 2**20} MiB.")
            try:
                files[rel.as_posix()] = target.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgumentError(f"{rel} is not UTF-8 text.") from exc
            if len(files) > MAX_FILES:
                raise InvalidArgumentError(f"{root} holds more than {MAX_FILES} source files.")
    return files


def _starter_kit_source_dir(root: Path, language: str) -> Path:
    """The flashinfer-bench starter kit keeps sources in solution/<language>/ beside config.toml."""
    for candidate in (root / "solution" / language, root / "solution"):
        if candidate.is_dir():
            return candidate
    return root


def _read_config(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise InvalidArgumentError(f"{path} is larger than {MAX_FILE_BYTES // 2**20} MiB; that is not a config.toml.")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"{path} is not valid TOML: {exc}.") from exc


def _spec_from_config(build: dict[str, Any], config_path: Path) -> SpecInput:
    try:
        return SpecInput.model_validate({k: v for k, v in build.items() if k in SpecInput.model_fields})
    except ValidationError as exc:
        raise InvalidArgumentError(f"{config_path} [build] is incomplete or wrong: {_first_error(exc)}.") from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"


def _from_directory(root: Path, given: SolutionInput) -> tuple[dict[str, str], SpecInput, dict[str, Any]]:
    config_path = root / "config.toml"
    meta: dict[str, Any] = {}
    spec = given.spec
    if config_path.is_file():
        config = _read_config(config_path)
        meta = dict(config.get("solution", {}))
        if spec is None:
            if "build" not in config:
                raise InvalidArgumentError(f"{config_path} has no [build] table (language, entry_point).")
            spec = _spec_from_config(config["build"], config_path)
    elif spec is None:
        raise InvalidArgumentError(
            f"{root} has no config.toml, so kda-mcp cannot tell how to build it.",
            hint="Add config.toml with [solution] name/definition/author and [build] language/entry_point, or pass spec.",
        )
    source_dir = _starter_kit_source_dir(root, spec.language)
    return _read_source_tree(source_dir, root), spec, meta


def _from_packed(data: Any, origin: str) -> Solution:
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"{origin} is not valid JSON: {exc.msg} at line {exc.lineno}.") from exc
    if not isinstance(data, dict):
        raise InvalidArgumentError(f"{origin} must be a JSON object (a flashinfer-bench Solution).")
    try:
        solution = Solution.model_validate(data)
    except ValidationError as exc:
        raise InvalidArgumentError(f"{origin} is not a valid Solution: {_first_error(exc)}.") from exc
    _normalize_files({s.path: s.content for s in solution.sources})
    return solution


def resolve_solution(given: SolutionInput, roots: Roots | None = None) -> Solution:
    """Turn any accepted form into a validated Solution (definition existence is checked by the caller).

    `roots` confines `path` to the folders the server may read; None (library use) reads anywhere."""
    forms = [name for name in ("files", "path", "solution_json", "attempt") if getattr(given, name) is not None]
    if given.attempt is not None and len(forms) == 1:
        raise InvalidArgumentError("Attempts are resolved through the ledger (KdaApp.resolve), not here.")
    if len(forms) != 1:
        raise InvalidArgumentError(
            "Give the solution in exactly one form: files (+spec, definition), path (directory or solution.json), solution_json, or attempt."
            + (f" Got: {', '.join(forms)}." if forms else "")
        )
    if given.solution_json is not None or (given.path and given.path.endswith(".json")):
        if given.path:
            path = roots.readable(given.path, what="solution path") if roots else clean(given.path, "solution path")
            if not path.is_file():
                raise NotFoundError(f"Solution file {given.path} does not exist (or is a folder).")
            if path.stat().st_size > MAX_TOTAL_BYTES * 2:
                raise InvalidArgumentError(f"{given.path} is larger than a packed solution can be ({2 * MAX_TOTAL_BYTES // 2**20} MiB).")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidArgumentError(f"{given.path} is not UTF-8 text.") from exc
            solution = _from_packed(text, str(path))
        else:
            solution = _from_packed(given.solution_json, "solution_json")
        overrides = {k: v for k, v in (("definition", given.definition), ("name", given.name), ("author", given.author)) if v}
        # Rebuild rather than copy: the content hash is computed at construction.
        return Solution.model_validate({**solution.model_dump(), **overrides}) if overrides else solution

    if given.files is not None:
        if given.spec is None:
            raise InvalidArgumentError("Inline files need a spec: {language, entry_point, destination_passing_style}.")
        files, spec, meta = _normalize_files(given.files), given.spec, {}
    else:
        root = roots.readable(given.path or "", what="solution path") if roots else clean(given.path or "", "solution path")
        if not root.is_dir():
            raise NotFoundError(f"Solution path {given.path} is neither a folder nor a solution.json file.")
        files, spec, meta = _from_directory(root, given)
        files = _normalize_files(files)

    definition = given.definition or meta.get("definition")
    if not definition:
        raise InvalidArgumentError("Say which definition this solves: pass definition (or set it in config.toml [solution]).")
    entry_file = spec.entry_point.split("::")[0]
    if spec.entry_point.count("::") != 1 or not entry_file or not spec.entry_point.split("::")[1]:
        raise InvalidArgumentError(f"entry_point {spec.entry_point!r} must look like 'main.py::run'.")
    if entry_file not in files:
        raise InvalidArgumentError(f"entry_point names {entry_file!r}, which is not among the files: {sorted(files)}.")
    try:
        return Solution(
            name=given.name or meta.get("name") or f"{definition}_{spec.language}",
            definition=definition,
            author=given.author or meta.get("author") or "agent",
            description=given.description or meta.get("description"),
            spec=BuildSpec(target_hardware=["cuda"], **spec.model_dump()),
            sources=[SourceFile(path=p, content=c) for p, c in files.items()],
        )
    except ValidationError as exc:
        raise InvalidArgumentError(f"The solution is not valid: {_first_error(exc)}.") from exc


def check_signature(solution: Solution, definition: Definition) -> list[str]:
    """For Python-side entry points, the parameter list must match the definition's call.

    Returns warnings (names that differ); raises when the count is wrong, since the harness
    calls positionally: inputs in definition order, then outputs for destination passing.
    """
    if solution.spec.language.value in ("cuda", "cpp"):
        return []
    source = solution.get_entry_source()
    assert source is not None
    symbol = solution.get_entry_symbol()
    try:
        tree = ast.parse(source.content, filename=source.path)
    except SyntaxError as exc:
        raise InvalidArgumentError(f"{source.path}:{exc.lineno}:{exc.offset}: syntax error: {exc.msg}.") from exc
    # The module's last top-level binding of the name is what the harness calls (a wrapper may
    # redefine run after the function it wraps).
    bindings = [n for n in tree.body if _binds(n, symbol)]
    func = bindings[-1] if bindings else None
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        if func is not None:
            return [f"{symbol} is assigned, not defined with def; its signature is checked when it first runs."]
        defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        raise InvalidArgumentError(f"{source.path} defines no top-level function {symbol!r} (it defines {defined or 'none'}).")
    if func.args.vararg is not None:
        return []
    params = [a.arg for a in func.args.posonlyargs + func.args.args]
    expected = list(definition.inputs) + (list(definition.outputs) if solution.spec.destination_passing_style else [])
    if len(params) != len(expected):
        style = "destination-passing (inputs, then outputs)" if solution.spec.destination_passing_style else "value-returning (inputs only)"
        raise InvalidArgumentError(
            f"{symbol}({', '.join(params)}) takes {len(params)} parameters; {definition.name} in {style} style calls it with "
            f"{len(expected)}: {symbol}({', '.join(expected)})."
        )
    if params != expected:
        return [f"Parameter names {params} differ from the definition's {expected}; arguments are passed by position in that order."]
    return []


def _binds(node: ast.stmt, name: str) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(getattr(t, "id", None) == name for t in node.targets)
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        return getattr(node.target, "id", None) == name
    return False


def starter_kit_files(solution: Solution) -> dict[str, str]:
    """The files of a starter kit for `solution`: config.toml plus solution/<language>/ sources."""
    lines = [
        "[solution]",
        f"name = {json.dumps(solution.name)}",
        f"definition = {json.dumps(solution.definition)}",
        f"author = {json.dumps(solution.author)}",
    ]
    if solution.description:
        lines.append(f"description = {json.dumps(solution.description)}")
    spec = solution.spec
    lines += ["", "[build]", f"language = {json.dumps(spec.language.value)}", f"entry_point = {json.dumps(spec.entry_point)}"]
    lines.append(f"destination_passing_style = {'true' if spec.destination_passing_style else 'false'}")
    if spec.binding is not None:
        lines.append(f"binding = {json.dumps(spec.binding.value)}")
    if spec.dependencies:
        lines.append(f"dependencies = {json.dumps(list(spec.dependencies))}")
    files = {"config.toml": "\n".join(lines) + "\n"}
    for source in solution.sources:
        files[f"solution/{spec.language.value}/{_check_relative_path(source.path)}"] = source.content
    return files


def to_starter_kit(solution: Solution, folder: Path, *, overwrite: bool, roots: Roots) -> list[str]:
    """Write `solution` as a starter kit under `folder` (already checked writable). Refuses, before
    writing anything, when a file exists and overwrite is false; each write is atomic on that too."""
    files = starter_kit_files(solution)
    clashes = [rel for rel in files if os.path.lexists(folder / rel)]
    if clashes and not overwrite:
        raise InvalidArgumentError(f"{len(clashes)} file(s) already exist, e.g. {folder / clashes[0]}; pass overwrite=true to replace them.")
    written = []
    for rel, content in files.items():
        write_text(folder / rel, content, overwrite=overwrite, roots=roots)
        written.append(str(folder / rel))
    return written


class PackResult(Result):
    solution: str
    definition: str
    files: int
    written: str | None = None
    solution_json: str | None = None


class UnpackResult(Result):
    folder: str
    written: list[str]


def pack(solution: Solution, *, output_path: str | None, overwrite: bool, roots: Roots) -> PackResult:
    """solution.json text, or the path it was written to (inside a workspace)."""
    text = packed_json(solution)
    result = PackResult(solution=solution.name, definition=solution.definition, files=len(solution.sources))
    if output_path:
        target = roots.writable(output_path, what="output_path")
        write_text(target, text, overwrite=overwrite, roots=roots)
        result.written = str(target)
    else:
        result.solution_json = text
    return result


def unpack(solution: Solution, *, folder: str, overwrite: bool, roots: Roots) -> UnpackResult:
    target = roots.writable(folder, what="folder")
    if target.exists() and not target.is_dir():
        raise InvalidArgumentError(f"{folder} is a file, not a folder.")
    return UnpackResult(folder=str(target), written=to_starter_kit(solution, target, overwrite=overwrite, roots=roots))


def resolve_input(app: Any, given: SolutionInput) -> tuple[Solution, Definition]:
    """The validated solution a tool call names and the definition it solves (attempt ids go
    through the ledger; paths stay inside the server's roots)."""
    if given.attempt is not None and not any((given.files, given.path, given.solution_json)):
        solution = app.ledger.solution(given.attempt)
    else:
        solution = resolve_solution(given, app.roots)
    return solution, app.dataset().definition(solution.definition)


def packed_json(solution: Solution) -> str:
    """The solution.json a contest submission or flashinfer-bench dataset expects."""
    return solution.model_dump_json(indent=2, exclude_none=True)
