"""Reliability bench (issue 10, item 7): fuzz, concurrent HTTP clients, a server that never freezes.

    python bench/bench_reliability.py [--clients 200] [--calls 13] [--per-token-limit N] [--skip-fuzz]

Prints one table:

* fuzz: every field of every tool with hostile values, in-process (tests/test_fuzz.py's fuzzer):
  calls, crashes, hangs, bare errors, internal errors, reads and writes outside the roots;
* HTTP load: a real `kda-mcp serve --http` on loopback with a token; CLIENTS MCP sessions at once,
  each making CALLS cheap calls (catalog, wiki, phase prompts): p50/p99 latency, errors (429s
  counted apart), the server's RSS before and after;
* a pathological grep (`(.*.*)*=.*shared.*X{5}` over a page it backtracks on) running on that
  server: how long /health and another tool call take to answer meanwhile, and what the grep says;
* SIGTERM while that grep runs: seconds until the process is gone;
* one regex search on one thread while another thread runs Python: the longest stall of the other
  thread with Python's re (holds the GIL) and with the regex engine grep_wiki now uses;
* parse_diagnostics + parse_ptxas_info on a 4 MB nvcc log.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import free_port, kda_mcp_command, wait_healthy

PATHOLOGICAL = r"(.*.*)*=.*shared.*X{5}"
SLOW_LINE = "int x = shared_mem[threadIdx.x] + shared_other[1]; // the shared memory of the block, XXXX " * 12
CHEAP_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_definitions", {}),
    ("get_definition", {"name": "vector_add_fp32", "include_reference": False}),
    ("list_workloads", {"definition": "rmsnorm_h4096_bf16", "limit": 3}),
    ("search_wiki", {"query": "shared memory bank conflicts", "limit": 3}),
    ("grep_wiki", {"pattern": r"cp\.async", "max_matches": 5}),
    ("read_wiki_page", {"page": "pattern-memory-bound", "max_chars": 1000}),
    ("get_phase_prompt", {"phase": "phase1", "definition": "vector_add_fp32"}),
]


def load_fuzz_module() -> Any:
    path = REPO / "tests" / "test_fuzz.py"
    spec = importlib.util.spec_from_file_location("kda_fuzz", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kda_fuzz"] = module
    spec.loader.exec_module(module)
    return module


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its descendants, MiB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True, timeout=5).stdout
        pids += [int(p) for p in out.split()]
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


# --- fuzz ----------------------------------------------------------------------------------------


def bench_fuzz(base: Path) -> dict[str, Any]:
    fuzz = load_fuzz_module()
    from kda_mcp.server.app import create_app
    from kda_mcp.tools.settings import Settings

    for name in ("state", "cache", "workspace"):
        (base / name).mkdir(parents=True, exist_ok=True)
    settings = Settings.resolve(dataset=None, wiki_paths=[], state_dir=base / "state", cache_dir=base / "cache",
                                workspaces=[str(base / "workspace")])
    server, app = create_app(settings)
    fuzz.without_gpus(app)
    outside = Path(str(base) + "-outside")
    try:
        report = fuzz.run_fuzz(server, fuzz.Terrain(workspace=base / "workspace", outside=outside))
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    return {"report": report}


# --- a real HTTP server ----------------------------------------------------------------------------


class LiveServer:
    def __init__(self, base: Path, *, per_token_limit: int | None, log: Path) -> None:
        self.base = base
        self.port = free_port()
        self.token = secrets.token_urlsafe(32)
        wiki = base / "wiki"
        wiki.mkdir(parents=True, exist_ok=True)
        (wiki / "slow.md").write_text(f"# Slow\n\nA page the pathological pattern backtracks on.\n\n{SLOW_LINE}\n")
        for name in ("state", "cache", "workspace"):
            (base / name).mkdir(parents=True, exist_ok=True)
        launcher = kda_mcp_command()
        command = [*launcher, "serve", "--http", "--port", str(self.port), "--log-level", "WARNING", "--wiki", str(wiki)]
        help_text = subprocess.run([*launcher, "serve", "--help"], capture_output=True, text=True).stdout
        if per_token_limit is not None and "--max-requests-per-token" in help_text:
            command += ["--max-requests-per-token", str(per_token_limit), "--max-requests", str(2 * per_token_limit)]
        env = {k: v for k, v in os.environ.items() if k not in ("FIB_DATASET_PATH", "KDA_WIKI_PATHS")}
        env.update(KDA_MCP_TOKEN=self.token, KDA_STATE_DIR=str(base / "state"), KDA_CACHE_DIR=str(base / "cache"),
                   KDA_WORKSPACES=str(base / "workspace"), PYTHONUNBUFFERED="1")
        self.command = command
        self.log = log.open("w")
        self.proc = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=str(base))
        self.url = f"http://127.0.0.1:{self.port}"
        wait_healthy(self.url, self.proc, why=lambda: f"see {log}")

    def client(self, http: Any) -> Client:
        return Client(streamable_http_client(f"{self.url}/mcp", http_client=http), mode="legacy")

    def http(self, timeout: float = 120) -> Any:
        limits = httpx2.Limits(max_connections=8, max_keepalive_connections=8)
        return httpx2.AsyncClient(headers={"Authorization": f"Bearer {self.token}"}, timeout=timeout, limits=limits)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def bench_http_load(server: LiveServer, clients: int, calls: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    too_many = 0
    sessions_failed = 0

    async def warm() -> None:
        async with server.http() as http, server.client(http) as client:
            for name, args in CHEAP_CALLS:
                await client.call_tool(name, args)

    anyio.run(warm)
    rss_before = rss_mib(server.proc.pid)

    async def one_client(index: int) -> None:
        nonlocal too_many, sessions_failed
        try:
            async with server.http() as http, server.client(http) as client:
                for k in range(calls):
                    name, args = CHEAP_CALLS[(index + k) % len(CHEAP_CALLS)]
                    start = time.perf_counter()
                    try:
                        result = await client.call_tool(name, args)
                    except Exception as exc:  # transport error, 429, ...
                        text = f"{type(exc).__name__}: {exc}"
                        if "429" in text:
                            too_many += 1
                        errors.append(f"{name}: {text[:160]}")
                        continue
                    latencies.append(time.perf_counter() - start)
                    if result.is_error:
                        errors.append(f"{name}: {''.join(getattr(b, 'text', '') for b in result.content)[:160]}")
        except BaseException as exc:  # the session itself failed (connect, initialize, 429 on the stream)
            sessions_failed += 1
            flat = exc
            while isinstance(flat, BaseExceptionGroup) and flat.exceptions:
                flat = flat.exceptions[0]
            text = f"{type(flat).__name__}: {flat}"
            if "429" in text:
                too_many += 1
            errors.append(f"session {index}: {text[:160]}")

    async def main() -> float:
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(clients):
                tg.start_soon(one_client, i)
        return time.perf_counter() - start

    wall = anyio.run(main)
    time.sleep(1.0)
    rss_after = rss_mib(server.proc.pid)
    return {
        "clients": clients, "calls": clients * calls, "completed": len(latencies), "wall": wall,
        "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies, default=float("nan")),
        "errors": len(errors), "429": too_many, "sessions_failed": sessions_failed, "error_examples": errors[:5],
        "rss_before": rss_before, "rss_after": rss_after,
    }


def bench_health_during_grep(server: LiveServer, greps: int = 4, seconds: float = 6.0) -> dict[str, Any]:
    health: list[float] = []
    other: list[float] = []
    grep_results: list[tuple[float, str]] = []

    async def grep_once() -> None:
        async with server.http() as http, server.client(http) as client:
            start = time.perf_counter()
            result = await client.call_tool("grep_wiki", {"pattern": PATHOLOGICAL})
            text = "".join(getattr(b, "text", "") for b in result.content)
            grep_results.append((time.perf_counter() - start, text))

    async def greps_for(deadline: float) -> None:
        while time.perf_counter() < deadline:
            await grep_once()

    async def poll_health(deadline: float) -> None:
        async with httpx2.AsyncClient(timeout=30) as http:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await http.get(f"{server.url}/health")
                assert response.status_code == 200
                health.append(time.perf_counter() - start)
                await anyio.sleep(0.05)

    async def poll_tool(deadline: float) -> None:
        async with server.http() as http, server.client(http) as client:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await client.call_tool("get_phase_prompt", {"phase": "phase1", "definition": "vector_add_fp32"})
                other.append(time.perf_counter() - start)
                await anyio.sleep(0.1)

    async def main() -> None:
        deadline = time.perf_counter() + seconds
        async with anyio.create_task_group() as tg:
            for _ in range(greps):
                tg.start_soon(greps_for, deadline)
            await anyio.sleep(0.3)
            tg.start_soon(poll_health, deadline)
            tg.start_soon(poll_tool, deadline)

    anyio.run(main)
    first = grep_results[0][1] if grep_results else ""
    return {
        "greps": len(grep_results), "grep_seconds": statistics.median(s for s, _ in grep_results) if grep_results else float("nan"),
        "grep_says": re.sub(r"\s+", " ", first)[:150],
        "health_p50": percentile(health, 50), "health_max": max(health, default=float("nan")), "health_n": len(health),
        "tool_p50": percentile(other, 50), "tool_max": max(other, default=float("nan")), "tool_n": len(other),
    }


def bench_sigterm_during_grep(server: LiveServer) -> float:
    """Seconds from SIGTERM (sent while pathological greps run) until the process is gone."""
    started = threading.Event()

    def run_greps() -> None:
        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    async def one() -> None:
                        try:
                            async with server.http() as http, server.client(http) as client:
                                started.set()
                                await client.call_tool("grep_wiki", {"pattern": PATHOLOGICAL})
                        except BaseException:
                            pass
                    tg.start_soon(one)

        try:
            anyio.run(main)
        except BaseException:
            pass

    thread = threading.Thread(target=run_greps, daemon=True)
    thread.start()
    started.wait(30)
    time.sleep(0.5)
    start = time.perf_counter()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        return float("inf")
    return time.perf_counter() - start


# --- in-process: the GIL, the parsers ----------------------------------------------------------------


def longest_stall(work: Callable[[], None]) -> float:
    ticks = [time.monotonic()]
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.002)

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    time.sleep(0.05)
    work()
    stop.set()
    thread.join()
    return max(b - a for a, b in zip(ticks, ticks[1:]))


def bench_gil() -> dict[str, float]:
    import regex

    line = SLOW_LINE[:14]  # "int x = shared": Python's re backtracks about 3 s on these 14 characters (16: 35 s)
    py = re.compile(PATHOLOGICAL, re.IGNORECASE)
    rx = regex.compile(PATHOLOGICAL, regex.IGNORECASE)
    t0 = time.perf_counter()
    re_stall = longest_stall(lambda: py.search(line))
    re_seconds = time.perf_counter() - t0

    def with_regex() -> None:
        try:
            rx.search(SLOW_LINE, timeout=1.0, concurrent=True)
        except TimeoutError:
            pass

    t0 = time.perf_counter()
    rx_stall = longest_stall(with_regex)
    rx_seconds = time.perf_counter() - t0
    return {"re_stall": re_stall, "re_seconds": re_seconds, "regex_stall": rx_stall, "regex_seconds": rx_seconds}


def bench_parsers() -> dict[str, float]:
    sys.path.insert(0, str(REPO / "tests"))
    spec = importlib.util.spec_from_file_location("kda_loop_safety", REPO / "tests" / "test_loop_safety.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kda_loop_safety"] = module
    spec.loader.exec_module(module)
    from kda_mcp.tools.compile.diagnostics import parse_diagnostics
    from kda_mcp.tools.compile.ptxas import parse_ptxas_info

    log = module.big_nvcc_log(4_000_000)
    start = time.perf_counter()
    diags = parse_diagnostics(log, source_root="/work/sol")
    parse_ptxas_info(log)
    return {"mb": len(log) / 1e6, "seconds": time.perf_counter() - start, "diagnostics": len(diags)}


# --- the table -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--calls", type=int, default=13, help="calls per client")
    parser.add_argument("--per-token-limit", type=int, default=None,
                        help="pass --max-requests-per-token N (and --max-requests 2N) to the server; default: its own defaults")
    parser.add_argument("--skip-fuzz", action="store_true")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="kda-reliability-"))
    rows: list[tuple[str, str]] = []
    try:
        if not args.skip_fuzz:
            report = bench_fuzz(base / "fuzz")["report"]
            rows += [
                ("fuzz: calls (tools / fields)", f"{report.calls} ({report.tools} / {report.fields}) in {report.seconds:.1f} s"),
                ("fuzz: crashes / hangs (>10 s)", f"{report.crashes} / {report.hangs}"),
                ("fuzz: bare errors / internal errors", f"{report.bare_errors} / {report.internal_errors}"),
                ("fuzz: reads / writes outside the roots", f"{report.outside_reads} / {report.outside_writes}"),
                ("fuzz: slowest call", f"{report.slowest[0][0]:.2f} s ({report.slowest[0][1][:60]})" if report.slowest else "-"),
            ]
            for kind, items in report.examples.items():
                rows += [(f"  {kind}", item[:100]) for item in items[:3]]
        gil = bench_gil()
        rows += [
            ("one pathological search, re", f"{gil['re_seconds']:.2f} s; another thread stalled {gil['re_stall'] * 1000:.0f} ms"),
            ("one pathological search, regex (1 s limit)", f"{gil['regex_seconds']:.2f} s; another thread stalled {gil['regex_stall'] * 1000:.0f} ms"),
        ]
        parsed = bench_parsers()
        rows.append((f"parse a {parsed['mb']:.1f} MB nvcc log", f"{parsed['seconds']:.2f} s ({parsed['diagnostics']} diagnostics)"))
        if not args.skip_http:
            server = LiveServer(base / "http", per_token_limit=args.per_token_limit, log=base / "server.log")
            try:
                load = bench_http_load(server, args.clients, args.calls)
                limits = f"per-token limit {args.per_token_limit}" if args.per_token_limit else "server's default limits"
                rows += [
                    (f"HTTP: {load['clients']} clients x {args.calls} calls ({limits})",
                     f"{load['completed']}/{load['calls']} answered in {load['wall']:.1f} s"),
                    ("HTTP: latency p50 / p99 / max", f"{load['p50'] * 1000:.0f} / {load['p99'] * 1000:.0f} / {load['max'] * 1000:.0f} ms"),
                    ("HTTP: errors (429s, failed sessions)", f"{load['errors']} ({load['429']}, {load['sessions_failed']})"),
                    ("HTTP: server RSS before / after", f"{load['rss_before']:.0f} / {load['rss_after']:.0f} MiB"),
                ]
                rows += [("  error", e[:100]) for e in load["error_examples"][:3]]
                during = bench_health_during_grep(server)
                rows += [
                    ("pathological grep x4 in a loop: grep answers", f"{during['greps']} greps, median {during['grep_seconds']:.2f} s"),
                    ("  it says", during["grep_says"][:100]),
                    ("  /health meanwhile p50 / max", f"{during['health_p50'] * 1000:.0f} / {during['health_max'] * 1000:.0f} ms ({during['health_n']} polls)"),
                    ("  another tool call meanwhile p50 / max", f"{during['tool_p50'] * 1000:.0f} / {during['tool_max'] * 1000:.0f} ms ({during['tool_n']} calls)"),
                ]
                rows.append(("SIGTERM during pathological greps: exit after", f"{bench_sigterm_during_grep(server):.2f} s"))
            finally:
                server.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)

    width = max(len(k) for k, _ in rows)
    print(f"kda-mcp reliability bench ({os.cpu_count()} CPUs, Python {sys.version.split()[0]})")
    print("-" * (width + 60))
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
