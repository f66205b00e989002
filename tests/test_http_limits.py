"""Connection limits and stopping, against a real `kda-mcp serve` (uvicorn on loopback, or stdio).

Half-open and idle connections are closed, GET /mcp answers 405 at once, requests past a cap get a
429 that says what to do, every 401 carries WWW-Authenticate, and SIGTERM stops the server within
5 s while calls and jobs run, the jobs recorded as interrupted.

The servers here are the real CLI (kda_mcp.server.cli.main) with a few test tools added (slow calls
of three kinds, a long job), so stopping under load is tested on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from tests.conftest import REPO, child_env, free_port, wait_healthy

TOKEN = "limits-token-0123456789"
HEADER_TIMEOUT_S = 1.0
KEEP_ALIVE_S = 1.0
PER_TOKEN = 2
STOP_LIMIT_S = 5.0
HALF_OPEN = int(os.environ.get("KDA_TEST_HALF_OPEN", "200"))  # bench with 2000: KDA_TEST_HALF_OPEN=2000
GETS = int(os.environ.get("KDA_TEST_GETS", "300"))

# The real CLI, plus test tools: slow in three ways (awaiting, a busy worker thread, a blocked
# event loop) and a long job.
SERVER = r"""
import sys, time
import anyio
from kda_mcp.server import app as server_app
from kda_mcp.server import cli

_create = server_app.create_app


def create_app(settings=None):
    mcp, app = _create(settings)

    @mcp.tool()
    async def test_slow_async(seconds: float = 60.0) -> str:
        await anyio.sleep(seconds)
        return "done"

    @mcp.tool()
    def test_slow_thread(seconds: float = 60.0) -> str:
        time.sleep(seconds)
        return "done"

    @mcp.tool()
    async def test_block_loop(seconds: float = 60.0) -> str:
        time.sleep(seconds)
        return "done"

    @mcp.tool()
    async def test_start_job(seconds: float = 3600.0) -> dict:
        async def work(ctx):
            ctx.progress(0, 1, "sleeping")
            await anyio.sleep(seconds)
            return {"slept": seconds}

        return {"job_id": app.jobs.submit("test_sleep", {"seconds": seconds}, work)}

    return mcp, app


server_app.create_app = create_app
sys.exit(cli.main(sys.argv[1:]))
"""


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, state: Path, log: Path) -> None:
        self.proc, self.port, self.state, self.log = proc, port, state, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def job_status(self, job_id: str) -> tuple[str, str | None]:
        with sqlite3.connect(self.state / "kda.sqlite3") as db:
            return db.execute("SELECT status, error FROM jobs WHERE id = ?", (job_id,)).fetchone()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def _start(tmp: Path, isolated_dirs, *args: str, http: bool = True) -> Server:
    tmp.mkdir(parents=True, exist_ok=True)
    state, log = tmp / "state", tmp / "server.log"
    port = free_port() if http else 0
    cmd = [sys.executable, "-c", SERVER, "serve", "--state-dir", str(state), *args]
    if http:
        cmd += ["--http", "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        env=child_env(isolated_dirs, KDA_MCP_TOKEN=TOKEN),
        stdin=subprocess.DEVNULL if http else subprocess.PIPE,
        stdout=subprocess.DEVNULL if http else subprocess.PIPE,
        stderr=log.open("w"),
        cwd=REPO,
    )
    server = Server(proc, port, state, log)
    if http:
        try:
            wait_healthy(server.url, proc, why=lambda: log.read_text()[-3000:])
        except BaseException:
            server.stop()
            raise
    return server


def _rpc(name: str, arguments: dict, rid: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": name, "arguments": arguments}}).encode()


def _raw(port: int, method: str, path: str, body: bytes = b"", auth: str | None = f"Bearer {TOKEN}", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json, text/event-stream\r\n"
    if auth:
        head += f"Authorization: {auth}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def _send(port: int, data: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    return sock


def _read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response, read until the body is complete (Content-Length)
    or the server closes (an SSE body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" in headers:
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
    elif headers.get("transfer-encoding") == "chunked":
        while not body.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return status, headers, body


def _call(server: Server, name: str, arguments: dict, timeout: float = 30) -> dict:
    response = httpx2.post(
        f"{server.url}/mcp",
        content=_rpc(name, arguments),
        headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream", "Content-Type": "application/json"},
        timeout=timeout,
    )
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith("data:"):
            return json.loads(line[5:])["result"]
    return response.json()["result"]


def _wait_closed(socks: list[socket.socket], timeout: float) -> list[float]:
    """Seconds until the server closed each socket (inf if it did not within `timeout`)."""
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    closed = [float("inf")] * len(socks)
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, i)
    pending = len(socks)
    while pending and time.monotonic() - start < timeout:
        for key, _ in sel.select(timeout=0.1):
            try:
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
            except ConnectionResetError:
                data = b""
            if not data:
                closed[key.data] = time.monotonic() - start
                sel.unregister(key.fileobj)
                pending -= 1
    sel.close()
    return closed


@pytest.fixture(scope="module")
def limited_server(isolated_dirs, tmp_path_factory):
    server = _start(
        tmp_path_factory.mktemp("limits"),
        isolated_dirs,
        "--header-timeout", str(HEADER_TIMEOUT_S),
        "--keep-alive-timeout", str(KEEP_ALIVE_S),
        "--max-requests-per-token", str(PER_TOKEN),
        "--max-requests", "10",
    )  # fmt: skip
    try:
        yield server
    finally:
        server.stop()


# ---- connections


@pytest.mark.slow
def test_half_open_connections_are_closed_after_the_header_timeout(limited_server):
    socks = []
    try:
        for i in range(HALF_OPEN):
            sock = socket.create_connection(("127.0.0.1", limited_server.port), timeout=10)
            if i % 2:  # half of them send part of a request and stall (slowloris)
                sock.sendall(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ")
            socks.append(sock)
        opened = time.monotonic()
        assert httpx2.get(f"{limited_server.url}/health", timeout=2).status_code == 200  # others are still served
        closed = _wait_closed(socks, timeout=HEADER_TIMEOUT_S + 10)
        waited = time.monotonic() - opened
    finally:
        for sock in socks:
            sock.close()
    still_open = sum(1 for t in closed if t == float("inf"))
    print(f"\n{HALF_OPEN} half-open connections, header timeout {HEADER_TIMEOUT_S} s: {still_open} still open; "
          f"last closed {max(t for t in closed if t != float('inf')):.2f} s after the last was opened (waited {waited:.1f} s)")  # fmt: skip
    assert still_open == 0
    assert max(closed) < HEADER_TIMEOUT_S + 3


@pytest.mark.slow
def test_slow_headers_get_408_and_complete_requests_are_untouched(limited_server):
    sock = _send(limited_server.port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: headers unfinished
    try:
        started = time.monotonic()
        status, _, _ = _read_response(sock, timeout=HEADER_TIMEOUT_S + 5)
        assert status == 408
        assert time.monotonic() - started >= HEADER_TIMEOUT_S * 0.8
    finally:
        sock.close()
    # a tool call that outlives the header timeout is not cut off by it
    assert _call(limited_server, "test_slow_async", {"seconds": HEADER_TIMEOUT_S + 0.5})["content"][0]["text"] == "done"


@pytest.mark.slow
def test_idle_keep_alive_connections_are_closed(limited_server):
    sock = _send(limited_server.port, _raw(limited_server.port, "GET", "/health", auth=None))
    try:
        status, headers, _ = _read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        sock.sendall(_raw(limited_server.port, "GET", "/health", auth=None))  # still open: keep-alive works
        assert _read_response(sock)[0] == 200
        idle = _wait_closed([sock], timeout=KEEP_ALIVE_S + 5)[0]
    finally:
        sock.close()
    assert KEEP_ALIVE_S * 0.8 <= idle < KEEP_ALIVE_S + 2


@pytest.mark.slow
def test_get_mcp_is_405_at_once(limited_server):
    started = time.monotonic()
    socks = [_send(limited_server.port, _raw(limited_server.port, "GET", "/mcp")) for _ in range(GETS)]
    try:
        answers = [_read_response(sock, timeout=5) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    elapsed = time.monotonic() - started
    print(f"\n{GETS} GET /mcp: {sum(1 for a in answers if a[0] == 405)} got 405 in {elapsed:.2f} s")
    assert all(status == 405 for status, _, _ in answers)
    status, headers, body = answers[0]
    assert headers["allow"] == "POST"
    assert "POST" in json.loads(body)["detail"]
    assert elapsed < 5
    # DELETE (ending a session: there are none) likewise
    sock = _send(limited_server.port, _raw(limited_server.port, "DELETE", "/mcp"))
    try:
        status, headers, _ = _read_response(sock)
    finally:
        sock.close()
    assert status == 405 and headers["allow"] == "POST"


@pytest.mark.slow
def test_requests_past_the_per_token_cap_get_429(limited_server):
    busy = [_send(limited_server.port, _raw(limited_server.port, "POST", "/mcp", _rpc("test_slow_async", {"seconds": 2.5}))) for _ in range(PER_TOKEN)]
    try:
        time.sleep(0.7)  # both are in flight
        refused = httpx2.post(
            f"{limited_server.url}/mcp",
            content=_rpc("list_definitions", {"limit": 1}),
            headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json, text/event-stream", "Content-Type": "application/json"},
            timeout=5,
        )
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert body["error"] == "too_many_requests" and body["scope"] == "token" and body["limit"] == PER_TOKEN
        assert "Retry after 1 s" in body["detail"] and "--max-requests-per-token" in body["detail"]
        assert httpx2.get(f"{limited_server.url}/health", timeout=2).status_code == 200  # health is never capped
        for sock in busy:
            status, _, text = _read_response(sock, timeout=10)
            assert status == 200 and b"done" in text
    finally:
        for sock in busy:
            sock.close()
    assert _call(limited_server, "list_definitions", {"limit": 1})["structuredContent"]["next_offset"] == 1  # room again


def test_request_limits_count_per_token_and_overall():
    """RequestLimits in process: the per-token cap and the server-wide one, each released when its
    requests end."""
    from kda_mcp.server.http import RequestLimits

    gate = anyio.Event()
    answers: list[tuple[str, int]] = []

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limits = RequestLimits(slow_app, total=3, per_client=2)

    async def request(client: str) -> None:
        status = 0

        async def send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "path": "/mcp", "method": "POST", "headers": [], "kda_mcp.client": client}
        await limits(scope, receive, send)
        answers.append((client, status))

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for client in ("a", "a", "a", "b", "c"):
                tg.start_soon(request, client)
                await anyio.sleep(0.01)
            await anyio.sleep(0.05)
            assert limits.active == 3 and limits.by_client == {"a": 2, "b": 1}
            gate.set()
        assert limits.active == 0 and limits.by_client == {}

    anyio.run(main)
    assert sorted(answers) == [("a", 200), ("a", 200), ("a", 429), ("b", 200), ("c", 429)]


# ---- authentication


@pytest.mark.slow
def test_bearer_scheme_is_case_insensitive_and_every_401_says_why(limited_server):
    url = f"{limited_server.url}/mcp"
    base = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    body = _rpc("list_definitions", {"limit": 1})
    for scheme in ("bearer", "BEARER", "Bearer ", "bEaReR\t"):
        ok = httpx2.post(url, content=body, headers={**base, "Authorization": f"{scheme} {TOKEN}"}, timeout=10)
        assert ok.status_code == 200, (scheme, ok.text)

    missing = httpx2.post(url, content=body, headers=base, timeout=10)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="kda-mcp"'  # RFC 6750: no error code without credentials
    assert "missing bearer token" in missing.json()["error_description"]

    wrong = httpx2.post(url, content=body, headers={**base, "Authorization": "bearer nope"}, timeout=10)
    assert wrong.status_code == 401
    challenge = wrong.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="kda-mcp", error="invalid_token", error_description="')
    assert "wrong bearer token" in challenge and "wrong bearer token" in wrong.json()["error_description"]

    basic = httpx2.post(url, content=body, headers={**base, "Authorization": "Basic dXNlcjpwdw=="}, timeout=10)
    assert basic.status_code == 401 and 'error="invalid_request"' in basic.headers["www-authenticate"]

    for response in (missing, wrong, basic):
        described = response.json()
        assert described["error"] == "unauthorized"
        assert "Authorization: Bearer <token>" in described["error_description"] and "KDA_MCP_TOKEN" in described["error_description"]

    # OAuth discovery probes (Claude Code makes them on a 401) get a plain 404, not another 401
    probe = httpx2.get(f"{limited_server.url}/.well-known/oauth-protected-resource/mcp", timeout=10)
    assert probe.status_code == 404


# ---- stopping


def _sigterm_and_time(server: Server) -> float:
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    return time.monotonic() - started


def _start_job(server: Server) -> str:
    job_id = json.loads(_call(server, "test_start_job", {"seconds": 3600})["content"][0]["text"])["job_id"]
    assert server.job_status(job_id)[0] in ("queued", "running")
    return job_id


@pytest.mark.slow
def test_sigterm_stops_http_with_a_call_and_a_job_running(isolated_dirs, tmp_path):
    server = _start(tmp_path, isolated_dirs)
    socks = []
    try:
        job_id = _start_job(server)
        socks.append(_send(server.port, _raw(server.port, "POST", "/mcp", _rpc("test_slow_async", {"seconds": 600}))))
        time.sleep(0.7)
        assert server.job_status(job_id)[0] == "running"
        took = _sigterm_and_time(server)
        print(f"\nHTTP, SIGTERM with a job and a call in flight: exited {server.proc.returncode} after {took:.2f} s")
        assert server.proc.returncode == 0 and took < STOP_LIMIT_S, server.log.read_text()[-3000:]
        status, error = server.job_status(job_id)
        assert status == "interrupted" and "submit it again" in error
    finally:
        for sock in socks:
            sock.close()
        server.stop()


@pytest.mark.slow
def test_sigterm_stops_http_held_by_calls_that_cannot_be_cancelled(isolated_dirs, tmp_path):
    """A worker thread busy in a tool body, then the event loop itself blocked (the pathological
    calls of issue 10): the stop cannot be graceful, and still takes less than 5 s."""
    server = _start(tmp_path, isolated_dirs)
    socks = []
    try:
        job_id = _start_job(server)
        socks.append(_send(server.port, _raw(server.port, "POST", "/mcp", _rpc("test_slow_thread", {"seconds": 600}))))
        socks.append(_send(server.port, _raw(server.port, "POST", "/mcp", _rpc("test_block_loop", {"seconds": 600}))))
        time.sleep(0.7)
        with pytest.raises(httpx2.HTTPError):  # the loop is stuck
            httpx2.get(f"{server.url}/health", timeout=0.5)
        took = _sigterm_and_time(server)
        print(f"\nHTTP, SIGTERM with a busy worker thread and the event loop blocked: exited {server.proc.returncode} after {took:.2f} s")
        assert server.proc.returncode == 0 and took < STOP_LIMIT_S, server.log.read_text()[-3000:]
        assert server.job_status(job_id)[0] == "interrupted"
    finally:
        for sock in socks:
            sock.close()
        server.stop()


def _stdio_send(proc: subprocess.Popen, message: dict) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(message).encode() + b"\n")
    proc.stdin.flush()


def _stdio_reply(proc: subprocess.Popen, rid: int, timeout: float = 60) -> dict:
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if message.get("id") == rid:
                return message
    finally:
        sel.close()
    raise AssertionError(f"no reply to request {rid}")


@pytest.mark.slow
def test_sigterm_stops_stdio_with_a_call_and_a_job_running(isolated_dirs, tmp_path):
    server = _start(tmp_path, isolated_dirs, http=False)
    try:
        _stdio_send(server.proc, {
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
        })  # fmt: skip
        assert "result" in _stdio_reply(server.proc, 1)
        _stdio_send(server.proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        _stdio_send(server.proc, json.loads(_rpc("test_start_job", {"seconds": 3600}, rid=2)))
        job_id = json.loads(_stdio_reply(server.proc, 2)["result"]["content"][0]["text"])["job_id"]
        _stdio_send(server.proc, json.loads(_rpc("test_slow_thread", {"seconds": 600}, rid=3)))
        time.sleep(0.7)
        assert server.job_status(job_id)[0] == "running"
        took = _sigterm_and_time(server)
        print(f"\nstdio, SIGTERM with a job and a busy worker thread: exited {server.proc.returncode} after {took:.2f} s")
        assert server.proc.returncode is not None and took < STOP_LIMIT_S, server.log.read_text()[-3000:]
        status, error = server.job_status(job_id)
        assert status == "interrupted" and "submit it again" in error
    finally:
        server.stop()
