"""Streamable HTTP transport: bearer-token auth, Host/Origin allow-list, body limit, /health.

Anything served over HTTP executes code that clients send, so access is the boundary: every
request but /health needs the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kda_mcp.tools.errors import InvalidArgumentError

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(*, env_token: str | None, token_file: str | None) -> str | None:
    """The token from --token-file (first line) or KDA_MCP_TOKEN; the file wins."""
    if token_file:
        path = Path(token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip().splitlines()[0].strip() if path.stat().st_size else ""
        except OSError as exc:
            raise InvalidArgumentError(f"Cannot read token file {path}: {exc.strerror}.") from exc
        if not token:
            raise InvalidArgumentError(f"Token file {path} is empty.")
        return token
    return env_token.strip() if env_token and env_token.strip() else None


def ephemeral_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass
class HttpOptions:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    allowed_hosts: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES


def check_bind(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise InvalidArgumentError(
            f"Refusing to serve on {host} without a token: anyone who can reach it could run code on this machine.",
            hint="Set KDA_MCP_TOKEN or pass --token-file, or bind 127.0.0.1 and reach it over an SSH tunnel.",
        )


class BearerAuth:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>` matches (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str, public_paths: tuple[str, ...] = (HEALTH_PATH,)) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                supplied = value
                break
        if not hmac.compare_digest(supplied, self.expected):
            reason = "missing bearer token" if not supplied else "wrong bearer token"
            response = JSONResponse(
                {"error": "unauthorized", "detail": f"{reason}; send 'Authorization: Bearer <KDA_MCP_TOKEN>'"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="kda-mcp"'},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _security(options: HttpOptions) -> TransportSecuritySettings:
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", *options.allowed_hosts]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*", *options.allowed_origins]
    if is_loopback(options.host) or options.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)
    # Bound to a public address with no allow-list: the token is the guard (a rebinding page cannot know it).
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def build_http_app(mcp: MCPServer, options: HttpOptions, *, health: dict[str, str]) -> ASGIApp:
    @mcp.custom_route(HEALTH_PATH, methods=["GET"], include_in_schema=False)
    async def healthcheck(_: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", **health})

    starlette_app = mcp.streamable_http_app(
        streamable_http_path=MCP_PATH,
        stateless_http=True,
        max_request_body_size=options.max_body_bytes,
        transport_security=_security(options),
        host=options.host,
    )
    return BearerAuth(starlette_app, options.token)


def serve_http(mcp: MCPServer, options: HttpOptions, *, health: dict[str, str], log_level: str = "warning") -> None:
    import uvicorn

    app = build_http_app(mcp, options, health=health)
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level=log_level, lifespan="on")
    log.warning("kda-mcp listening on http://%s:%d%s", options.host, options.port, MCP_PATH)
    uvicorn.Server(config).run()
