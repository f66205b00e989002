"""Streamable HTTP: auth, DNS-rebinding guard, body limit, /health — in-process and as a real process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.testclient import TestClient

from kda_mcp.server.http import HttpOptions, build_http_app, check_bind, load_token
from tests.conftest import REPO, child_env, free_port, kda_mcp_command, wait_healthy
from kda_mcp.tools.errors import InvalidArgumentError

TOKEN = "test-token-0123456789"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture()
def http_client(settings):
    from kda_mcp.server.app import create_app

    mcp, _ = create_app(settings)  # a fresh server: custom routes register once per server object
    app = build_http_app(mcp, HttpOptions(token=TOKEN, max_body_bytes=64 * 1024), health={"server": "kda-mcp"})
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        yield client


def test_health_is_public(http_client):
    response = http_client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_mcp_needs_the_token(http_client):
    missing = http_client.post("/mcp", json=INIT, headers=MCP_HEADERS)
    assert missing.status_code == 401
    assert "Bearer" in missing.headers["www-authenticate"]
    wrong = http_client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong" in wrong.json()["detail"]
    prefix = http_client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN[:-1]}"})
    assert prefix.status_code == 401
    ok = http_client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200, ok.text
    assert "kda-mcp" in ok.text


def test_scheme_is_case_insensitive_and_401s_say_what_to_do(http_client):
    lower = http_client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"bearer {TOKEN}"})
    assert lower.status_code == 200, lower.text
    missing = http_client.post("/mcp", json=INIT, headers=MCP_HEADERS)
    assert missing.headers["www-authenticate"] == 'Bearer realm="kda-mcp"'
    wrong = http_client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": "BEARER nope"})
    assert wrong.headers["www-authenticate"].startswith('Bearer realm="kda-mcp", error="invalid_token", error_description="wrong')
    for response in (missing, wrong):
        assert "Authorization: Bearer <token>" in response.json()["error_description"]
    assert http_client.get("/mcp", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_cli_data_options_reach_the_settings(tmp_path, isolated_dirs):
    from kda_mcp.server.cli import _parser, _settings

    a, b = tmp_path / "a", tmp_path / "b"
    args = _parser().parse_args(
        ["serve", "--http", "--state-dir", str(isolated_dirs["state"]), "--workspace", str(a), "--workspace", str(b),
         "--sandbox", "none", "--sandbox-user", "kda-test"]
    )  # fmt: skip
    settings = _settings(args)
    assert settings.workspaces == (a.resolve(), b.resolve())
    assert (settings.sandbox, settings.sandbox_user) == ("none", "kda-test")
    # no --workspace: an HTTP server gets a folder under its state dir, a stdio one the folder it started in
    shared = _settings(_parser().parse_args(["serve", "--http", "--state-dir", str(isolated_dirs["state"])]))
    assert shared.workspaces == ((isolated_dirs["state"] / "workspace").resolve(),)
    local = _settings(_parser().parse_args(["serve", "--state-dir", str(isolated_dirs["state"])]))
    cwd = Path.cwd().resolve()
    assert local.workspaces == ((isolated_dirs["state"] / "workspace").resolve() if cwd == Path(cwd.anchor) else cwd,)
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--sandbox", "chroot"])


def test_cli_doctor_takes_the_data_options(tmp_path, isolated_dirs, capsys):
    from kda_mcp.server.cli import main

    code = main(
        ["doctor", "--json", "--http", "--state-dir", str(isolated_dirs["state"]), "--cache-dir", str(isolated_dirs["cache"]),
         "--workspace", str(tmp_path), "--sandbox", "none", "--sandbox-user", "kda-test"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["settings"]["workspaces"] == [str(tmp_path.resolve())]
    assert report["settings"]["sandbox"] == "none" and report["settings"]["sandbox_user"] == "kda-test"


def test_dns_rebinding_and_body_limit(http_client):
    auth = {**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
    evil_host = http_client.post("/mcp", json=INIT, headers={**auth, "Host": "evil.example:8765"})
    assert evil_host.status_code == 421
    evil_origin = http_client.post("/mcp", json=INIT, headers={**auth, "Origin": "http://evil.example"})
    assert evil_origin.status_code == 403
    huge = dict(INIT, params={**INIT["params"], "pad": "x" * (128 * 1024)})
    too_big = http_client.post("/mcp", content=json.dumps(huge), headers=auth)
    assert too_big.status_code == 413


def test_non_loopback_bind_needs_a_token(tmp_path):
    with pytest.raises(InvalidArgumentError, match="without a token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t")  # fine with one
    check_bind("127.0.0.1", None)  # loopback: the CLI generates a per-run token
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(InvalidArgumentError, match="empty"):
        load_token(env_token=None, token_file=str(empty))
    good = tmp_path / "tok"
    good.write_text("from-file\n")
    assert load_token(env_token="from-env", token_file=str(good)) == "from-file"


# ---- a real `kda-mcp serve --http` process on loopback


@pytest.fixture(scope="module")
def live_server(isolated_dirs):
    port = free_port()
    proc = subprocess.Popen(
        [*kda_mcp_command(), "serve", "--http", "--port", str(port)],
        env=child_env(isolated_dirs, KDA_MCP_TOKEN=TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=60, why=lambda: proc.stderr.read() if proc.stderr else "")
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
def test_real_http_server_with_sdk_client(live_server, mode):
    async def main():
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http:
            async with Client(streamable_http_client(live_server, http_client=http), mode=mode) as client:
                tools = await client.list_tools()
                result = await client.call_tool("get_definition", {"name": "vector_add_fp32", "include_reference": False})
                return tools, result

    tools, result = anyio.run(main)
    assert "run_benchmark" in {t.name for t in tools.tools} or "get_definition" in {t.name for t in tools.tools}
    assert result.structured_content["name"] == "vector_add_fp32"


@pytest.mark.slow
def test_real_http_server_rejects_missing_token(live_server):
    async def main():
        async with Client(live_server, mode="legacy") as client:  # no Authorization header
            await client.list_tools()

    with pytest.raises(Exception):  # the SDK reports the refused handshake as an error
        anyio.run(main)
    raw = httpx2.post(live_server, json=INIT, headers=MCP_HEADERS, timeout=10)
    assert raw.status_code == 401 and raw.json()["error"] == "unauthorized"


def _inspector() -> str | None:
    local = REPO / ".ci" / "npm" / "node_modules" / ".bin" / "mcp-inspector"
    if local.exists():
        return str(local)
    return os.environ.get("KDA_INSPECTOR") or shutil.which("mcp-inspector")


@pytest.mark.slow
def test_inspector_cli_lists_and_calls_tools(live_server):
    inspector = _inspector()
    if inspector is None:
        if os.environ.get("KDA_REQUIRE_INSPECTOR"):
            pytest.fail("MCP Inspector CLI not installed; .ci/install --dev installs it into .ci/npm")
        pytest.skip("MCP Inspector CLI not installed (run .ci/install --dev)")
    base = [inspector, "--cli", live_server, "--transport", "http", "--header", f"Authorization: Bearer {TOKEN}"]

    def inspect(*args: str) -> dict:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr + done.stdout
        return json.loads(done.stdout)

    listed = inspect("--method", "tools/list")
    names = {t["name"] for t in listed["tools"]}
    assert {"capabilities", "get_definition", "search_wiki"} <= names
    called = inspect("--method", "tools/call", "--tool-name", "list_definitions", "--tool-arg", "tag=sample")
    assert not called.get("isError")
    assert called["structuredContent"]["total"] == 3
    searched = inspect("--method", "tools/call", "--tool-name", "search_wiki", "--tool-arg", "query=tensor memory accelerator")
    assert searched["structuredContent"]["hits"][0]["id"] == "hw-tma"
    prompts = inspect("--method", "prompts/list")
    assert len(prompts["prompts"]) == 3
    # without the token the Inspector gets nothing
    done = subprocess.run([inspector, "--cli", live_server, "--transport", "http", "--method", "tools/list"], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0


@pytest.mark.slow
def test_cli_refuses_public_bind_without_token(isolated_dirs):
    done = subprocess.run(
        [*kda_mcp_command(), "serve", "--http", "--host", "0.0.0.0", "--port", str(free_port())],
        env=child_env(isolated_dirs),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Refusing to serve on 0.0.0.0 without a token" in done.stderr
    assert "KDA_MCP_TOKEN" in done.stderr


@pytest.mark.slow
def test_cli_bad_dataset_is_named(isolated_dirs, tmp_path):
    done = subprocess.run(
        [*kda_mcp_command(), "serve", "--dataset", str(tmp_path / "missing")],
        env=child_env(isolated_dirs),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert "missing" in done.stderr and "does not exist" in done.stderr


@pytest.mark.slow
def test_stdio_server_speaks_only_protocol_on_stdout(isolated_dirs):
    from mcp import StdioServerParameters

    cmd = kda_mcp_command()
    params = StdioServerParameters(command=cmd[0], args=[*cmd[1:], "serve"], env=child_env(isolated_dirs), cwd=str(REPO))

    async def main():
        async with Client(params, mode="legacy") as client:
            tools = await client.list_tools()
            result = await client.call_tool("list_definitions", {"limit": 1})
            return tools, result

    tools, result = anyio.run(main)
    assert "get_definition" in {t.name for t in tools.tools}
    assert result.structured_content["next_offset"] == 1
    assert sys.executable  # the stdio transport would have failed on any stray stdout line
