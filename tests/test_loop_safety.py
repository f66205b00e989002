"""One call must never freeze the server (issue 10, item 3): time-limited regexes that release the
GIL, and build-log parsers linear in their input with a cap on what they read."""

from __future__ import annotations

import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest
from kda_mcp.tools.compile.diagnostics import MAX_LOG_CHARS, cap_log, parse_diagnostics
from kda_mcp.tools.compile.ptxas import parse_ptxas_info
from kda_mcp.tools.errors import InvalidArgumentError
from kda_mcp.wiki_index import WikiIndex, WikiRoot
from kda_mcp.wiki_index.grep import PER_SEARCH_S, TIME_BUDGET_S, GrepTimeoutError
from kda_mcp.wiki_index.index import BUNDLED_PAGES
from mcp import Client

# Ran over 300 s on Python's re, holding the GIL: /health stopped answering.
CATASTROPHIC = r"(.*.*)*=.*shared.*X{5}"
# A line the pattern backtracks on for far longer than PER_SEARCH_S, on the `regex` engine too.
SLOW_LINE = "int x = shared_mem[threadIdx.x] + shared_other[1]; // the shared memory of the block, XXXX " * 12


def slow_wiki(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "fast.md").write_text("# Fast\n\nx = shared memory, XXXXX here.\n")
    (root / "slow.md").write_text(f"# Slow\n\nSome text.\n\n{SLOW_LINE}\n")
    return root


@contextmanager
def ticker() -> Iterator[Callable[[], float]]:
    """A thread running Python code meanwhile; yields a function giving the longest gap between its ticks."""
    ticks: list[float] = [time.monotonic()]
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            sum(range(200))  # some bytecode, not only a sleep
            time.sleep(0.005)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield lambda: max(b - a for a, b in zip(ticks, ticks[1:] + [time.monotonic()]))
    finally:
        stop.set()
        thread.join()


# --- grep ----------------------------------------------------------------------------------------


def test_catastrophic_pattern_on_the_bundled_pages_answers_quickly(tmp_path: Path) -> None:
    wiki = WikiIndex.open([WikiRoot("wiki", BUNDLED_PAGES)], cache_dir=tmp_path / "cache")
    with ticker() as longest_gap:
        start = time.monotonic()
        try:
            result = wiki.grep(CATASTROPHIC, max_matches=200)
        except GrepTimeoutError as exc:  # acceptable too: a clear error
            assert "simplify" in str(exc).lower()
        else:
            assert result.pages_scanned > 0
        elapsed = time.monotonic() - start
    assert elapsed < TIME_BUDGET_S + 0.5
    assert longest_gap() < 0.5, "another thread was kept from running Python code"


@pytest.mark.parametrize("pattern", [r"shared(?:(?:(?:x{999}){999}){9})?", r"shared (?=a{200}){100}"])
def test_a_pattern_that_unrolls_when_compiled_is_refused_before_it_compiles(tmp_path: Path, pattern: str) -> None:
    """The engine unrolls counted repeats at compile time with the GIL held, before any search time
    limit: the first pattern stalled another thread for 8 s; it must be refused at once."""
    wiki = WikiIndex.open([WikiRoot("wiki", BUNDLED_PAGES)], cache_dir=tmp_path / "cache")
    with ticker() as longest_gap:
        with pytest.raises(InvalidArgumentError, match="counted repeats"):
            wiki.grep(pattern, max_matches=5)
    assert longest_gap() < 0.5
    assert wiki.grep(r"shared(?:x{100}){9}|shared memory", max_matches=5).pattern  # moderate counts still compile


def test_catastrophic_line_times_out_with_a_clear_error_and_releases_the_gil(tmp_path: Path) -> None:
    wiki = WikiIndex.open([WikiRoot("w", slow_wiki(tmp_path / "w"))], cache_dir=tmp_path / "cache")
    with ticker() as longest_gap:
        start = time.monotonic()
        result = wiki.grep(CATASTROPHIC)  # a match came before the slow line: kept, with a note
        elapsed = time.monotonic() - start
    message = result.note or ""
    assert [m.line_no for m in result.matches] == [3] and result.truncated
    assert "w/slow.md:5" in message and "backtracks" in message and "Simplify the pattern" in message
    assert "1 matching line(s) were found before it (w/fast.md:3)" in message  # what it found, kept
    assert PER_SEARCH_S * 0.8 < elapsed < PER_SEARCH_S + 1.5
    assert longest_gap() < 0.5, "the regex held the GIL"
    slow_only = tmp_path / "slow_only"
    slow_only.mkdir()
    (slow_only / "slow.md").write_text(f"# Slow\n\n{SLOW_LINE}\n")
    alone = WikiIndex.open([WikiRoot("s", slow_only)], cache_dir=tmp_path / "cache2")
    with pytest.raises(GrepTimeoutError) as caught:  # nothing found before the time limit: an error
        alone.grep(CATASTROPHIC)
    assert isinstance(caught.value, InvalidArgumentError) and "Simplify" in str(caught.value)
    # A sane pattern on the same page still works.
    assert [m.line_no for m in wiki.grep(r"shared_mem\[").matches] == [5]


def test_grep_over_the_server_leaves_other_calls_answering(tmp_path: Path) -> None:
    from kda_mcp.server.app import create_app
    from kda_mcp.tools.settings import Settings

    for name in ("state", "cache"):
        (tmp_path / name).mkdir()
    settings = Settings.resolve(
        dataset=None, wiki_paths=[str(slow_wiki(tmp_path / "w"))], state_dir=tmp_path / "state", cache_dir=tmp_path / "cache",
        workspaces=[str(tmp_path)],
    )
    server, _ = create_app(settings)

    async def main() -> tuple[object, float, float]:
        async with Client(server) as client:
            await client.call_tool("search_wiki", {"query": "shared"})  # opens the index
            grep: dict[str, object] = {}

            async def slow() -> None:
                start = anyio.current_time()
                grep["result"] = await client.call_tool("grep_wiki", {"pattern": CATASTROPHIC})
                grep["seconds"] = anyio.current_time() - start

            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await anyio.sleep(0.3)  # the grep is now backtracking
                start = anyio.current_time()
                with anyio.fail_after(5):
                    other = await client.call_tool("get_phase_prompt", {"phase": "phase1", "definition": "vector_add_fp32"})
                other_seconds = anyio.current_time() - start
                assert not other.is_error
            return grep["result"], grep["seconds"], other_seconds  # type: ignore[return-value]

    result, grep_seconds, other_seconds = anyio.run(main)
    text = "".join(getattr(b, "text", "") for b in result.content)
    assert "Simplify the pattern" in text and "slow.md:5" in text
    assert grep_seconds < TIME_BUDGET_S + 1
    print(f"grep {grep_seconds:.2f} s, other call {other_seconds:.3f} s")
    assert other_seconds < 1.0, f"another call waited {other_seconds:.2f} s behind the grep"


# --- build logs ----------------------------------------------------------------------------------


def big_nvcc_log(target_bytes: int = 4_000_000) -> str:
    """What a 1 MB .cu source with an unused variable per line makes nvcc print, plus the other tools."""
    parts = [
        "In file included from /work/sol/host.cpp:1:\n/work/sol/inc.h:1:45: error: expected primary-expression before ';' token\n",
        "/work/sol/kernel.cu(2): error: identifier \"undefined_name\" is undefined\n    x = undefined_name;\n        ^\n\n",
    ]
    size = sum(map(len, parts))
    i = 3
    while size < target_bytes:
        block = (
            f'/work/sol/kernel.cu({i}): warning #177-D: variable "unused_variable_number_{i}" was declared but never referenced\n'
            f"    int unused_variable_number_{i} = {i};\n"
            "        ^\n\n"
        )
        parts.append(block)
        size += len(block)
        i += 1
    parts.append("/work/sol/kernel.cu(99999): error: expected a \";\"\n\n")
    parts.append("ptxas info    : Compiling entry function '_Z1kPf' for 'sm_90a'\n")
    parts.append("ptxas info    : Function properties for _Z1kPf\n    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n")
    parts.append("ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem\n")
    parts.append('3 errors detected in the compilation of "/work/sol/kernel.cu".\n')
    return "".join(parts)


def test_a_4mb_build_log_parses_in_well_under_a_second() -> None:
    log = big_nvcc_log()
    assert len(log) >= 4_000_000
    start = time.perf_counter()
    diags = parse_diagnostics(log, source_root="/work/sol")
    kernels = parse_ptxas_info(log)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    errors = [(d.file, d.line) for d in diags if d.severity == "error"]
    # The first errors (head) and the last (tail) are both found; the middle was not read.
    assert errors == [("inc.h", 1), ("kernel.cu", 2), ("kernel.cu", 99999)]
    assert len(diags) == 50 and diags[3].severity == "warning" and diags[3].line == 3
    assert [(k.name, k.registers, k.spill_store_bytes) for k in kernels] == [("_Z1kPf", 40, 4)]


def test_cap_log_keeps_head_and_tail_at_line_ends() -> None:
    log = "".join(f"line {i}\n" for i in range(1000))
    assert cap_log(log, 10_000) == (log, 0)
    capped, cut = cap_log(log, 1000)
    assert len(capped) <= 1001 and cut == len(log) - len(capped) + 1
    assert capped.startswith("line 0\n") and capped.endswith("line 999\n")
    assert all(line == "" or line.startswith("line ") for line in capped.split("\n"))
    assert MAX_LOG_CHARS == 2_000_000


PATHOLOGICAL_LOGS = {
    "one 4 MB line": "kernel.cu(1): warning: x " + "a" * 4_000_000,
    "a long echoed source line": ("kernel.cu(1): warning #177-D: unused\n  " + "int a=0;" * 100_000 + "\n" + " " * 400_000 + "^\n\n") * 4,
    "parentheses": "kernel.cu" + "(1)" * 1_300_000,
    "a path token without spaces": "kernel.cu(2): error: " + "a/" * 2_000_000 + " tmpxft_1_2-3_x",
    "temporaries": "kernel.cu(2): error: " + "/tmpxft_1_2-3_x" * 260_000,
    "colons": "a" + ":1" * 2_000_000,
    "python-like": "x.py:1" * 660_000,
    "digits": "1" * 4_000_000 + " bytes stack frame",
    "tracebacks without carets": (
        "Traceback (most recent call last):\n" + '  File "/w/k.py", line 1, in f\n' * 10
        + "triton.compiler.errors.CompilationError: at 1:2:\n" + "x\n" * 30
    ) * 9_000,
    "linker names": "/usr/bin/ld" * 360_000,
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL_LOGS))
def test_pathological_logs_parse_quickly(name: str) -> None:
    log = PATHOLOGICAL_LOGS[name]
    start = time.perf_counter()
    parse_diagnostics(log, source_root="/w")
    parse_ptxas_info(log)
    assert time.perf_counter() - start < 2.0


def test_diagnostic_messages_are_capped_and_temporaries_named() -> None:
    log = textwrap.dedent(
        """\
        kernel.cu(3): error: see /tmp/tmpxft_00002ee7_00000000-6_kernel.ptx and x/y/tmpxft_1_2-3_b.o, 'q/tmpxft_aa_bb-9_z.cu'
        """
    ) + "kernel.cu(4): error: " + "z" * 10_000 + "\n"
    first, second = parse_diagnostics(log)
    assert first.message == "see kernel.ptx and b.o, 'z.cu'"
    assert len(second.message) <= 2_000 and second.message.endswith("…")
