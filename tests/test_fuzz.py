"""Hostile values in every field of every tool, through the real server (issue 10, items 6 and 7).

The server runs in-process behind the SDK's Client. For each tool the fuzzer builds a valid-looking
call from the input schema, then replaces one field at a time (top-level fields, and the fields of
the solution, its spec and the benchmark config) with each of a fixed list of hostile values: NUL
bytes, 4,096-character strings, huge and negative numbers, wrong types, paths such as "/",
"/etc/passwd", "../../x", "~root", a folder that is a file, a starter kit outside the roots, unicode.

Counted: calls; crashes (an exception escapes the client call, or the server stops answering);
hangs (a call over CALL_TIMEOUT_S); bare errors (an error with nothing after "Error executing tool
X", which is how the SDK reports an exception it was not given a message for); internal errors
(kda-mcp's own "internal error" message, i.e. a bug caught by domain_errors); reads outside the
roots (a response holding /etc/passwd's text, or a canary from a file or environment variable
outside them); writes outside the roots (a sentinel file changed, or a new file next to it).
All but the call count must be zero. Deterministic: values and sampling come from a fixed seed.

bench/bench_reliability.py reuses this module (run_fuzz) to print the same counts.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

CALL_TIMEOUT_S = 10.0
SEED = 20261001
PASSWD_MARKER = "root:x:0:0"
ENV_CANARY_NAME = "KDA_FUZZ_ENV_CANARY"
ENV_CANARY = "env-canary-6b1f0c"
FILE_CANARY = "file-canary-93d2aa"
BARE = re.compile(r"^Error executing tool [\w.-]+:?\s*$")
INTERNAL = "internal error in kda-mcp"

# A solution every solution-taking tool accepts up to the point where it needs a GPU (or builds it).
KERNEL_PY = "import torch\n\n\ndef run(x, y, out):\n    out.copy_(x + y)\n"
FILES_SOLUTION = {
    "files": {"kernel.py": KERNEL_PY},
    "spec": {"language": "python", "entry_point": "kernel.py::run"},
    "definition": "vector_add_fp32",
}
SOLUTION_FORMS = {"path", "solution_json", "attempt"}  # fuzzed on their own: the forms exclude each other

# Plausible values for required fields, by name (everything else is derived from the schema).
NAMED = {
    "name": "vector_add_fp32",
    "definition": "vector_add_fp32",
    "job_id": "j1",
    "attempt_id": "a1",
    "a": "p1",
    "b": "p2",
    "pattern": "shared",
    "query": "shared memory",
    "page": "pattern-memory-bound",
    "phase": "phase1",
    "direction": "fuzz",
    "language": "python",
    "entry_point": "kernel.py::run",
}


@dataclass
class FuzzReport:
    calls: int = 0
    crashes: int = 0
    hangs: int = 0
    bare_errors: int = 0
    internal_errors: int = 0
    outside_reads: int = 0
    outside_writes: int = 0
    tool_errors: int = 0
    seconds: float = 0.0
    tools: int = 0
    fields: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    per_tool: Counter = field(default_factory=Counter)

    def note(self, kind: str, what: str, limit: int = 8) -> None:
        self.examples.setdefault(kind, [])
        if len(self.examples[kind]) < limit:
            self.examples[kind].append(what)

    def summary(self) -> str:
        head = (
            f"calls {self.calls} over {self.tools} tools and {self.fields} fields in {self.seconds:.1f} s; "
            f"crashes {self.crashes}, hangs {self.hangs}, bare errors {self.bare_errors}, internal errors "
            f"{self.internal_errors}, outside-root reads {self.outside_reads}, outside-root writes {self.outside_writes}"
        )
        lines = [head]
        for kind, items in self.examples.items():
            lines.append(f"{kind}:")
            lines.extend(f"  {item}" for item in items)
        lines.append("slowest: " + "; ".join(f"{s:.2f}s {w}" for s, w in self.slowest[:5]))
        return "\n".join(lines)


@dataclass
class Terrain:
    """Files the hostile values point at: inside the workspace, and outside every root."""

    workspace: Path
    outside: Path

    def prepare(self) -> None:
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.outside.mkdir(parents=True, exist_ok=True)
        (self.workspace / "a_file.txt").write_text("just a file\n")
        (self.workspace / "folder").mkdir(exist_ok=True)
        kit = self.outside / "kit"
        (kit / "solution" / "python").mkdir(parents=True, exist_ok=True)
        (kit / "config.toml").write_text(
            '[solution]\nname = "stolen"\ndefinition = "vector_add_fp32"\nauthor = "x"\n\n'
            '[build]\nlanguage = "python"\nentry_point = "kernel.py::run"\n'
        )
        (kit / "solution" / "python" / "kernel.py").write_text(f"# {FILE_CANARY}\n{KERNEL_PY}")
        (self.outside / "secret.txt").write_text(f"{FILE_CANARY}\n")
        packed = {"name": "stolen", "definition": "vector_add_fp32", "author": "x",
                  "spec": {"language": "python", "entry_point": "kernel.py::run", "target_hardware": ["cuda"]},
                  "sources": [{"path": "kernel.py", "content": f"# {FILE_CANARY}\n{KERNEL_PY}"}]}
        (self.outside / "solution.json").write_text(json.dumps(packed))
        link = self.workspace / "link_out"
        if not link.is_symlink():
            link.symlink_to(self.outside)

    def strings(self) -> list[str]:
        ws, out = str(self.workspace), str(self.outside)
        return [
            "", " ", "\x00", "a\x00b", "/etc/passwd\x00.json", f"{ws}/\x00",
            "x" * 4096, "/" + "a" * 4095, "a/" * 2048, f"{ws}/" + "n" * 300, "é" * 4096,
            "/", "/etc", "/etc/passwd", "/etc/shadow", "/proc/self/environ", "/proc/self/cwd", "/root", "/dev/null",
            "../../x", "../../../../../../etc/passwd", "./../..", "~root", "~", "~/.ssh/id_rsa", "$HOME",
            f"{ws}/a_file.txt", f"{ws}/a_file.txt/child", f"{ws}/folder", f"{ws}/link_out", f"{ws}/link_out/kit",
            f"{ws}/missing/../../{self.outside.name}/secret.txt", out, f"{out}/kit", f"{out}/solution.json", f"{out}/secret.txt",
            "é漢字🚀\u202e\ufeff", "\n\r\t", "$(id)", "`id`", "%s%n%x", "{{7*7}}", "'; DROP TABLE attempts;--",
            '{"a": 1}', "-1", "NaN", "a" * 201, "*", "[", r"(.*.*)*=.*shared.*X{5}", "\\", "j1", "a1", "p1",
        ]

    def values(self) -> list[Any]:
        deep: Any = "x"
        for _ in range(200):
            deep = [deep]
        return [
            *self.strings(),
            -1, 0, 1, 2**31, -(2**63), 2**63, 10**30, -(10**30), 0.5, 1e308, -1e308,
            None, True, False, [], {}, ["x"] * 3, [None], [1, 2], {"a": 1}, deep,
            ["-Xcompiler=-specs=../src/evil.specs"], ["--options-file=/etc/passwd", "-I/etc"], ["x" * 4096] * 40,
            {"/etc/passwd": "x"}, {"../../evil.cu": "x"}, {"a\x00": "x"}, {"x" * 4096: "x"},
            {"kernel.cu": '#include "/etc/passwd"\n'}, {f"f{i}.py": "x" for i in range(70)},
        ]


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return defs[schema["$ref"].split("/")[-1]]
    for option in schema.get("anyOf", []):
        if "$ref" in option:
            return defs[option["$ref"].split("/")[-1]]
    return schema


def _object_ref(schema: dict[str, Any]) -> str | None:
    if "$ref" in schema:
        return schema["$ref"].split("/")[-1]
    for option in schema.get("anyOf", []):
        if "$ref" in option:
            return option["$ref"].split("/")[-1]
    return None


class Fuzzer:
    def __init__(self, terrain: Terrain, *, seed: int = SEED, values_per_field: int | None = None,
                 call_timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.terrain = terrain
        self.rng = random.Random(seed)
        self.values = terrain.values()
        self.values_per_field = values_per_field
        self.call_timeout_s = call_timeout_s
        self.unpacks = 0

    # -- building calls ---------------------------------------------------------------------------

    def plausible(self, name: str, schema: dict[str, Any], defs: dict[str, Any]) -> Any:
        ref = _object_ref(schema)
        if ref == "SolutionInput":
            return copy.deepcopy(FILES_SOLUTION)
        if ref is not None:
            return {}
        if name == "folder":
            self.unpacks += 1
            return str(self.terrain.workspace / f"unpacked-{self.unpacks}")
        if name in NAMED:
            return NAMED[name]
        kind = schema.get("type") or next((o.get("type") for o in schema.get("anyOf", []) if o.get("type") != "null"), "string")
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), 1)
        if kind == "number":
            return 0
        if kind == "boolean":
            return False
        if kind == "array":
            return []
        if kind == "object":
            return {}
        return "x"

    def baseline(self, schema: dict[str, Any]) -> dict[str, Any]:
        defs = schema.get("$defs", {})
        props = schema.get("properties", {})
        return {name: self.plausible(name, props[name], defs) for name in schema.get("required", [])}

    def field_paths(self, schema: dict[str, Any]) -> list[tuple[str, ...]]:
        """Top-level fields, and one level into the solution, its spec and the benchmark config."""
        defs = schema.get("$defs", {})
        paths: list[tuple[str, ...]] = []
        for name, prop in schema.get("properties", {}).items():
            paths.append((name,))
            ref = _object_ref(prop)
            if ref is None:
                continue
            inner = defs[ref]
            for sub, sub_prop in inner.get("properties", {}).items():
                paths.append((name, sub))
                if _object_ref(sub_prop) == "SpecInput":
                    paths.extend((name, sub, leaf) for leaf in defs["SpecInput"].get("properties", {}))
        return paths

    def call_for(self, schema: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
        args = self.baseline(schema)
        defs = schema.get("$defs", {})
        if len(path) == 1:
            args[path[0]] = value
            return args
        top = path[0]
        if top not in args:
            args[top] = self.plausible(top, schema["properties"][top], defs)
        if _object_ref(schema["properties"][top]) == "SolutionInput" and path[1] in SOLUTION_FORMS:
            args[top] = {}
        target = args[top]
        for part in path[1:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
        return args

    def plan(self, tools: list[Any]) -> list[tuple[str, tuple[str, ...], dict[str, Any]]]:
        calls = []
        for tool in sorted(tools, key=lambda t: t.name):
            schema = tool.input_schema
            calls.append((tool.name, (), self.baseline(schema)))
            calls.append((tool.name, ("<unknown field>",), {**self.baseline(schema), "no_such_field": "\x00"}))
            for path in self.field_paths(schema):
                values = self.values
                if self.values_per_field is not None and len(values) > self.values_per_field:
                    values = self.rng.sample(values, self.values_per_field)
                for value in values:
                    calls.append((tool.name, path, self.call_for(schema, path, value)))
        return calls

    # -- running them ----------------------------------------------------------------------------

    async def run(self, server: Any, report: FuzzReport | None = None) -> FuzzReport:
        report = report or FuzzReport()
        os.environ[ENV_CANARY_NAME] = ENV_CANARY
        sentinels = _sentinels(self.terrain)
        before = {p: _digest(p) for p in sentinels}
        start = time.monotonic()
        async with Client(server) as client:
            tools = (await client.list_tools()).tools
            report.tools = len(tools)
            plan = self.plan(tools)
            report.fields = len({(name, path) for name, path, _ in plan})
            client_box = [client]
            for name, path, args in plan:
                await self._one(server, client_box, name, path, args, report)
            # Still alive after all that?
            try:
                with anyio.fail_after(self.call_timeout_s):
                    alive = await client.call_tool("get_phase_prompt", {"phase": "phase1", "definition": "vector_add_fp32"})
                if alive.is_error:
                    raise RuntimeError("the server no longer answers a plain call")
            except Exception as exc:
                report.crashes += 1
                report.note("crashes", f"after the fuzz: {type(exc).__name__}: {exc}")
        report.seconds = time.monotonic() - start
        after = {p: _digest(p) for p in _sentinels(self.terrain)}
        changed = [str(p) for p in set(before) | set(after) if before.get(p) != after.get(p)]
        report.outside_writes += len(changed)
        for path in changed[:8]:
            report.note("outside-root writes", path)
        report.slowest.sort(reverse=True)
        del report.slowest[10:]
        return report

    async def _one(self, server: Any, client_box: list[Any], name: str, path: tuple[str, ...], args: dict[str, Any],
                   report: FuzzReport) -> None:
        label = f"{name} {'.'.join(path) or '<baseline>'}={_short(_get(args, path))}"
        report.calls += 1
        report.per_tool[name] += 1
        began = time.monotonic()
        try:
            with anyio.fail_after(self.call_timeout_s):
                result = await client_box[0].call_tool(name, args)
        except TimeoutError:
            report.hangs += 1
            report.note("hangs", label)
            return
        except Exception as exc:  # an exception escaped: the call crashed (or the session did)
            report.crashes += 1
            report.note("crashes", f"{label}: {type(exc).__name__}: {str(exc)[:200]}")
            return
        finally:
            elapsed = time.monotonic() - began
            report.slowest.append((elapsed, label))
            if len(report.slowest) > 50:
                report.slowest.sort(reverse=True)
                del report.slowest[10:]
        text = "".join(getattr(block, "text", "") or "" for block in result.content)
        if result.structured_content is not None:
            text += json.dumps(result.structured_content, ensure_ascii=False)
        if PASSWD_MARKER in text or ENV_CANARY in text or FILE_CANARY in text:
            report.outside_reads += 1
            report.note("outside-root reads", f"{label}: {text[:200]!r}")
        if result.is_error:
            report.tool_errors += 1
            if BARE.match(text.strip()) or not text.strip():
                report.bare_errors += 1
                report.note("bare errors", f"{label}: {text[:200]!r}")
            elif INTERNAL in text:
                report.internal_errors += 1
                report.note("internal errors", f"{label}: {text[:300]!r}")


def _get(args: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = args
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return "-"
        value = value[part]
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…({len(text)} chars)"


def _sentinels(terrain: Terrain) -> list[Path]:
    """Files whose change (or appearance) means a write outside the roots."""
    paths = [Path("/etc/passwd"), Path("/etc/hostname"), terrain.outside / "secret.txt", terrain.outside / "solution.json",
             terrain.outside / "kit" / "config.toml", Path("../../x").resolve(), Path.cwd() / "x", Path("/x"), Path("/tmp/x")]
    for folder in (terrain.outside, terrain.outside / "kit", terrain.outside.parent):
        try:
            paths.extend(p for p in folder.iterdir() if p.is_file())
        except OSError:
            pass
    return sorted(set(paths))


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def without_gpus(app: Any) -> None:
    """GPU tools answer "needs a GPU" on every machine, so the fuzz is fast and queues no GPU work."""
    from kda_mcp.tools.gpus import GpuPool

    app.__dict__["gpus"] = GpuPool([], machine_wide=False)  # KdaApp.gpus is a cached_property


def run_fuzz(server: Any, terrain: Terrain, **kwargs: Any) -> FuzzReport:
    terrain.prepare()
    return anyio.run(Fuzzer(terrain, **kwargs).run, server)


# --- the test -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory):
    from kda_mcp.server.app import create_app
    from kda_mcp.tools.settings import Settings

    base = tmp_path_factory.mktemp("fuzz")
    for name in ("state", "cache", "workspace"):
        (base / name).mkdir()
    settings = Settings.resolve(dataset=None, wiki_paths=[], state_dir=base / "state", cache_dir=base / "cache",
                                workspaces=[str(base / "workspace")])
    server, app = create_app(settings)
    without_gpus(app)
    return server, base


def test_fuzz_every_tool(fuzz_server) -> None:
    server, base = fuzz_server
    # Outside every root, and outside pytest's numbered folders (whose clean-up a concurrent run may do).
    outside = Path(tempfile.mkdtemp(prefix="kda-fuzz-outside-"))
    terrain = Terrain(workspace=base / "workspace", outside=outside)
    try:
        report = run_fuzz(server, terrain)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    print(report.summary())
    assert report.tools >= 20
    assert report.calls > 10_000
    assert (report.crashes, report.hangs, report.bare_errors, report.outside_reads, report.outside_writes) == (0, 0, 0, 0, 0), report.summary()
    assert report.internal_errors == 0, report.summary()


# --- what domain_errors says for each kind of exception -----------------------------------------------


def _message_for(exc: BaseException) -> str:
    from kda_mcp.server.adapters import domain_errors
    from mcp.server.mcpserver.exceptions import ToolError

    @domain_errors
    def tool() -> None:
        raise exc

    with pytest.raises(ToolError) as caught:
        tool()
    return str(caught.value)


def test_every_exception_becomes_a_tool_error_that_says_what_to_do(caplog: pytest.LogCaptureFixture) -> None:
    import errno

    from kda_mcp.tools.errors import NotFoundError
    from pydantic import BaseModel

    class Config(BaseModel):
        rounds: int

    try:
        Config(rounds="many")  # type: ignore[arg-type]
    except Exception as exc:
        validation = exc
    long_path = "/" + "a" * 5000
    cases = {
        NotFoundError("Unknown job 'j9'.", hint="Call list_jobs."): "Unknown job 'j9'. Call list_jobs.",
        validation: "Invalid argument: rounds: Input should be a valid integer",
        OSError(errno.ENAMETOOLONG, "File name too long", long_path): "is too long for the file system",
        IsADirectoryError(errno.EISDIR, "Is a directory", "/srv/kit"): "'/srv/kit' is a folder where a file was expected",
        NotADirectoryError(errno.ENOTDIR, "Not a directory", "/srv/f/x"): "is a file where a folder was expected",
        PermissionError(errno.EACCES, "Permission denied", "/root/x"): "Permission denied for '/root/x'",
        FileNotFoundError(errno.ENOENT, "No such file", "/srv/nope"): "No such file or folder: '/srv/nope'",
        ValueError("embedded null byte"): "contains a NUL byte",
        ValueError("bad shape"): "Invalid input (ValueError: bad shape)",
        TypeError("expected str, got int"): "wrong type (expected str, got int)",
        ExceptionGroup("group", [NotFoundError("Unknown attempt 'a9'.")]): "Unknown attempt 'a9'.",
    }
    for exc, expected in cases.items():
        message = _message_for(exc)
        assert expected in message, (exc, message)
        assert len(message) <= 1_500
    with caplog.at_level("ERROR", logger="kda_mcp.server"):
        message = _message_for(KeyError("slot"))
    assert message == "internal error in kda-mcp (KeyError: 'slot'); the server keeps running — report it."
    assert "Traceback" in caplog.text or any(r.exc_info for r in caplog.records)


def test_tool_errors_and_cancellation_pass_through() -> None:
    from kda_mcp.server.adapters import domain_errors
    from mcp.server.mcpserver.exceptions import ToolError

    assert _message_for(ToolError("already a tool error")) == "already a tool error"

    @domain_errors
    async def cancelled() -> None:
        raise anyio.get_cancelled_exc_class()()

    async def main() -> None:
        with pytest.raises(anyio.get_cancelled_exc_class()):
            await cancelled()

    anyio.run(main)
