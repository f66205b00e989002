"""Streamable HTTP transport: bearer-token auth, Host/Origin allow-list, body limit, /health,
request caps, POST-only /mcp, and (server/connections.py) connection timeouts and a bounded stop.

Anything served over HTTP executes code that clients send, so access is the boundary: every
request but /health (and the /.well-known/ discovery paths, which 404; the dashboard's login form
and static files) needs the token; /ui pages also take the login's session cookie. The
middleware order, outermost first: BearerAuth (401), McpMethods (405), RequestLimits (429), then
the MCP SDK's app (421/403 Host/Origin, 413 body).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from kda_mcp.server.dashboard import auth as ui_auth
from kda_mcp.server.connections import (
    DEFAULT_GRACEFUL_STOP_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_MAX_REQUESTS_PER_TOKEN,
    HeaderTimeoutH11Protocol,
    StoppingServer,
)
from kda_mcp.tools.errors import InvalidArgumentError

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
HEALTH_PATH = "/health"
WELL_KNOWN_PREFIX = "/.well-known/"
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
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S  # a connection's request headers must be in by then
    keep_alive_s: float = DEFAULT_KEEP_ALIVE_S  # an idle kept-alive connection is closed after this
    max_requests: int = DEFAULT_MAX_REQUESTS  # requests in flight, all tokens together
    max_requests_per_token: int = DEFAULT_MAX_REQUESTS_PER_TOKEN
    graceful_stop_s: float = DEFAULT_GRACEFUL_STOP_S  # on SIGTERM, how long open requests may still finish


def check_bind(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise InvalidArgumentError(
            f"Refusing to serve on {host} without a token: anyone who can reach it could run code on this machine.",
            hint="Set KDA_MCP_TOKEN or pass --token-file, or bind 127.0.0.1 and reach it over an SSH tunnel.",
        )


# What a client needs to hear when it has no token or the wrong one (RFC 6750 section 3; the MCP
# authorization spec's 401). No OAuth here: the token is configured out of band, so the body says how.
_HOW_TO_AUTHENTICATE = (
    "Send the header 'Authorization: Bearer <token>' with the token this server was started with "
    "(KDA_MCP_TOKEN or --token-file; a server started without either printed a per-run token on its stderr). "
    'Claude Code: claude mcp add --transport http kda-mcp <url> --header "Authorization: Bearer <token>".'
)


def _parse_authorization(value: bytes) -> tuple[bytes, bytes]:
    """(scheme lowercased, credentials) of an Authorization header; the scheme is case-insensitive."""
    parts = value.strip().split(None, 1)
    if not parts:
        return b"", b""
    return parts[0].lower(), parts[1].strip() if len(parts) > 1 else b""


def _challenge(error: str | None, description: str) -> str:
    challenge = 'Bearer realm="kda-mcp"'
    if error:  # RFC 6750 3.1: no error code when the request carried no credentials at all
        safe = description.replace("\\", "").replace('"', "'")
        challenge += f', error="{error}", error_description="{safe}"'
    return challenge


def unauthorized(error: str | None, reason: str) -> JSONResponse:
    """A 401 that says what was wrong and what to do, in WWW-Authenticate and in the body.

    The body has the OAuth error-response shape (error, error_description): MCP clients built on the
    TypeScript SDK (Claude Code) parse it and show error_description where they would otherwise
    report an empty error. `detail` is the short reason, for people reading the JSON.
    """
    return JSONResponse(
        {
            "error": "unauthorized",
            "error_description": f"kda-mcp: {reason}. {_HOW_TO_AUTHENTICATE}",
            "detail": f"{reason}; send 'Authorization: Bearer <KDA_MCP_TOKEN>'",
        },
        status_code=401,
        headers={"WWW-Authenticate": _challenge(error, reason)},
    )


class BearerAuth:
    """ASGI middleware: 401 unless `Authorization: Bearer <token>` matches (constant-time compare).

    The scheme is case-insensitive (RFC 7235). /health and /.well-known/* are public: discovery
    probes of OAuth-aware clients get a plain 404 there instead of a 401 that would send them looking
    for an authorization server this server does not have. Who the caller is goes into the scope as
    `kda_mcp.client` (a digest of the token), which the request limits count by.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str,
        public_paths: tuple[str, ...] = (HEALTH_PATH,),
        public_prefixes: tuple[str, ...] = (WELL_KNOWN_PREFIX, ui_auth.STATIC_PREFIX),
    ) -> None:
        self.app = app
        self.expected = token.encode()
        self.client_id = hashlib.sha256(self.expected).hexdigest()[:12]
        self.public_paths = public_paths
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths or scope["path"].startswith(self.public_prefixes):
            await self.app(scope, receive, send)
            return
        if ui_auth.is_login(scope["path"]):  # the dashboard's login form checks the token itself
            await ui_auth.login(scope, receive, send, self.expected)
            return
        supplied = None
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                supplied = value
                break
        if not supplied and ui_auth.is_ui(scope["path"]):  # /ui (only) also takes the login's session cookie
            if ui_auth.has_session(scope, self.expected):
                scope["kda_mcp.client"] = self.client_id
                await self.app(scope, receive, send)
            else:
                await ui_auth.refuse(scope, receive, send)
            return
        if not supplied or not supplied.strip():
            await unauthorized(None, "missing bearer token: this server needs one")(scope, receive, send)
            return
        scheme, credentials = _parse_authorization(supplied)
        if scheme != b"bearer":
            shown = scheme.decode("latin-1")[:20] or "none"
            await unauthorized("invalid_request", f"unsupported authorization scheme '{shown}': use Bearer")(scope, receive, send)
            return
        if not hmac.compare_digest(credentials, self.expected):
            await unauthorized("invalid_token", "wrong bearer token: it does not match this server's token")(scope, receive, send)
            return
        scope["kda_mcp.client"] = self.client_id
        await self.app(scope, receive, send)


class McpMethods:
    """ASGI middleware: `/mcp` takes POST only.

    In stateless mode this server never sends anything outside the response to a POST, so the
    standalone SSE stream a GET opens would carry nothing and never close (300 of them stayed open in
    issue 10); the Streamable HTTP spec lets a server answer 405 instead. DELETE ends a session, and
    there are none.
    """

    def __init__(self, app: ASGIApp, path: str = MCP_PATH) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].rstrip("/") == self.path and scope["method"] != "POST":
            method = scope["method"]
            response = JSONResponse(
                {
                    "error": "method_not_allowed",
                    "detail": f"{method} {self.path} is not served: this server is stateless and sends everything in the "
                    f"response to each POST (no standalone SSE stream, no sessions to delete). POST JSON-RPC messages to {self.path}.",
                },
                status_code=405,
                headers={"Allow": "POST"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class RequestLimits:
    """ASGI middleware: at most `per_client` requests in flight per token and `total` overall.

    A request counts from its arrival until the app has sent the whole response (a tool call's SSE
    stream included). Past a cap the answer is 429 with Retry-After and a body saying what to do.
    /health is not counted, so a monitor sees a busy server as alive.
    """

    def __init__(self, app: ASGIApp, *, total: int, per_client: int, retry_after_s: int = 1, exempt: tuple[str, ...] = (HEALTH_PATH,)) -> None:
        self.app = app
        self.total = total
        self.per_client = per_client
        self.retry_after_s = retry_after_s
        self.exempt = exempt
        self.active = 0
        self.by_client: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        client = scope.get("kda_mcp.client", "anonymous")
        mine = self.by_client.get(client, 0)
        if mine >= self.per_client or self.active >= self.total:
            await self._refuse(scope, receive, send, per_token=mine >= self.per_client)
            return
        # One event loop runs every request: no await between the check and the increment.
        self.active += 1
        self.by_client[client] = mine + 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
            left = self.by_client[client] - 1
            if left:
                self.by_client[client] = left
            else:
                del self.by_client[client]

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, *, per_token: bool) -> None:
        if per_token:
            what = f"this token already has {self.per_client} requests in flight (the most one token may have)"
            knob = "--max-requests-per-token"
        else:
            what = f"the server already has {self.total} requests in flight (the most it takes at once)"
            knob = "--max-requests"
        log.warning("429: %s", what)
        response = JSONResponse(
            {
                "error": "too_many_requests",
                "detail": f"{what}. Retry after {self.retry_after_s} s; long work belongs in jobs (run_benchmark, "
                f"profile_solution return a job_id that get_job polls), so send fewer calls at once, or start the server "
                f"with a higher {knob}.",
                "retry_after_s": self.retry_after_s,
                "limit": self.per_client if per_token else self.total,
                "scope": "token" if per_token else "server",
            },
            status_code=429,
            headers={"Retry-After": str(self.retry_after_s)},
        )
        await response(scope, receive, send)


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
    limited = RequestLimits(starlette_app, total=options.max_requests, per_client=options.max_requests_per_token)
    return BearerAuth(McpMethods(limited), options.token)


def serve_http(
    mcp: MCPServer,
    options: HttpOptions,
    *,
    health: dict[str, str],
    log_level: str = "warning",
    on_signal: Callable[[int], None] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; then open requests get `graceful_stop_s` to finish before they are
    cancelled, and this returns. `on_signal(sig)` is called on the first signal (to arm a deadline)."""
    import uvicorn

    app = build_http_app(mcp, options, health=health)
    config = uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_level=log_level,
        lifespan="on",
        http=HeaderTimeoutH11Protocol.with_timeout(options.header_timeout_s),
        timeout_keep_alive=options.keep_alive_s,  # type: ignore[arg-type]  # uvicorn takes a float fine
        timeout_graceful_shutdown=options.graceful_stop_s,  # type: ignore[arg-type]
    )
    log.warning("kda-mcp listening on http://%s:%d%s", options.host, options.port, MCP_PATH)
    StoppingServer(config, on_signal=on_signal).run()
