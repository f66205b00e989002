"""Who may see the dashboard: the token holder, by header or by a session cookie from /ui/login.

server/http.py's BearerAuth asks this module about /ui paths only; /mcp stays header-only.

- /ui/login (GET: the form; POST: check the token, set the cookie) is answered here, since only
  the middleware knows the token. /ui/static/ is public (the package's own CSS and JS).
- The cookie holds no token: its value is "<issued>.<HMAC(token, label|issued)>", so a stolen cookie
  opens the dashboard (read-only but for cancelling jobs) and never /mcp, for SESSION_MAX_AGE_S at
  most (the server checks the age, not only the browser), and a new token ends every session.
  Logging out clears the browser's copy; a copy taken before stays valid until it expires.
  It is HttpOnly, SameSite=Strict and scoped to /ui; state-changing requests also need the
  X-KDA-UI header (server/dashboard/routes.py), which a cross-site form cannot send.
- Without credentials a page request is redirected to the login form; fragment polls, charts and
  the API get a 401 the page's script turns into that redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import re
import time
import urllib.parse
from http.cookies import CookieError, SimpleCookie

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import Receive, Scope, Send

UI_PREFIX = "/ui"
LOGIN_PATH = "/ui/login"
STATIC_PREFIX = "/ui/static/"
API_PREFIX = "/ui/api/"
CHARTS_PREFIX = "/ui/charts/"
COOKIE = "kda_ui_session"
SESSION_LABEL = b"kda-mcp dashboard session v1"
SESSION_MAX_AGE_S = 7 * 24 * 3600
UI_HEADER = "x-kda-ui"  # sent by the dashboard's script on polls and actions
FAILED_LOGIN_DELAY_S = 0.3
MAX_LOGIN_BODY = 4096
LOGIN_BODY_TIMEOUT_S = 10.0  # the form is a few hundred bytes: a body that trickles is a held connection
_SAFE_NEXT = re.compile(r"^/ui(/[A-Za-z0-9._~%!$&'()*+,;=:@-][A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?/?$")
_SAFE_QUERY = re.compile(r"^[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*$")


def is_ui(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


def is_login(path: str) -> bool:
    return path.rstrip("/") == LOGIN_PATH


def session_value(token: bytes, issued: int | None = None) -> str:
    issued = int(time.time()) if issued is None else issued
    return f"{issued}.{_session_mac(token, issued)}"


def _session_mac(token: bytes, issued: int) -> str:
    return hmac.new(token, SESSION_LABEL + b"|" + str(issued).encode(), hashlib.sha256).hexdigest()


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            jar = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except CookieError:
                continue
            out.update({k: m.value for k, m in jar.items()})
    return out


def has_session(scope: Scope, token: bytes) -> bool:
    """Whether the request carries this token's dashboard cookie (constant-time compare)."""
    supplied = _cookies(scope).get(COOKIE)
    if not supplied or not token:
        return False
    issued_text, _, mac = supplied.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    if not -60 <= time.time() - issued <= SESSION_MAX_AGE_S:
        return False
    return hmac.compare_digest(mac.encode("latin-1", "replace"), _session_mac(token, issued).encode())


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a dashboard path (with its query), never another site."""
    path, _, query = (value or "").partition("?")
    if (
        _SAFE_NEXT.match(path)
        and _SAFE_QUERY.match(query)
        and "//" not in path
        and not {".", ".."} & set(path.split("/"))
        and not is_login(path)
    ):
        return path + (f"?{query}" if query else "")
    return UI_PREFIX + "/"


def _wants_page(scope: Scope) -> bool:
    if scope.get("method") != "GET":
        return False
    path = scope["path"]
    if path.startswith((API_PREFIX, CHARTS_PREFIX)):
        return False
    if any(name == UI_HEADER.encode() for name, _ in scope.get("headers", [])):
        return False
    return b"fragment=" not in scope.get("query_string", b"")


async def refuse(scope: Scope, receive: Receive, send: Send) -> None:
    """No valid credentials for a /ui path: to the login form (pages) or a 401 (everything else)."""
    if _wants_page(scope):
        target = scope["path"] + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
        response: Response = RedirectResponse(f"{LOGIN_PATH}?next={urllib.parse.quote(safe_next(target), safe='/')}", status_code=303)
    else:
        reason = "dashboard session expired or the server's token changed" if COOKIE in _cookies(scope) else "not logged in"
        response = JSONResponse(
            {
                "error": "unauthorized",
                "error_description": f"kda-mcp dashboard: {reason}. Log in at {LOGIN_PATH} with the server's token, "
                "or send 'Authorization: Bearer <token>'.",
                "login": LOGIN_PATH,
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="kda-mcp"', "Cache-Control": "no-store"},
        )
    await response(scope, receive, send)


SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def login_page(next_path: str, error: str | None = None) -> str:
    from kda_mcp.server.dashboard.assets import asset_url

    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>kda-mcp · log in</title><link rel="stylesheet" href="{asset_url('dashboard.css')}">
<link rel="icon" href="{asset_url('favicon.svg')}" type="image/svg+xml"></head>
<body class="login"><main class="login-box">
<h1>kda-mcp dashboard</h1>
<p>Paste the token this server was started with (<code>KDA_MCP_TOKEN</code> or <code>--token-file</code>; a server
started without either printed a per-run token on its stderr).</p>
{message}
<form method="post" action="{LOGIN_PATH}" id="login-form">
<input type="hidden" name="next" value="{html.escape(next_path)}">
<label for="token">Token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
<p class="muted">The browser keeps a session cookie for <code>/ui</code> only, derived from the token; the token itself is not stored.</p>
</main></body></html>"""


async def login(scope: Scope, receive: Receive, send: Send, token: bytes) -> None:
    """GET: the form. POST (form-encoded `token`, `next`): the session cookie and a redirect, or the form again with a 401."""
    request = Request(scope, receive)
    next_path = safe_next(request.query_params.get("next"))
    if request.method == "POST":
        body = b""
        with anyio.move_on_after(LOGIN_BODY_TIMEOUT_S) as reading:
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_LOGIN_BODY:
                    response: Response = HTMLResponse(login_page(next_path, "That request was too large."), status_code=413, headers=SECURITY_HEADERS)
                    await response(scope, receive, send)
                    return
        if reading.cancelled_caught:
            response = HTMLResponse(login_page(next_path, "The form took too long to arrive."), status_code=408, headers={**SECURITY_HEADERS, "Connection": "close"})
            await response(scope, receive, send)
            return
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
        supplied = (form.get("token") or [""])[0].strip().encode()
        next_path = safe_next((form.get("next") or [next_path])[0])
        if token and supplied and hmac.compare_digest(supplied, token):
            response = RedirectResponse(next_path, status_code=303)
            response.set_cookie(
                COOKIE,
                session_value(token),
                max_age=SESSION_MAX_AGE_S,
                path=UI_PREFIX,
                httponly=True,
                samesite="strict",
                secure=scope.get("scheme") == "https",
            )
        else:
            await anyio.sleep(FAILED_LOGIN_DELAY_S)
            why = "That is not this server's token." if supplied else "Enter the token."
            response = HTMLResponse(login_page(next_path, why), status_code=401, headers=SECURITY_HEADERS)
    elif request.method in ("GET", "HEAD"):
        response = HTMLResponse(login_page(next_path), headers=SECURITY_HEADERS)
    else:
        response = JSONResponse({"error": "method_not_allowed", "detail": f"{LOGIN_PATH} takes GET and POST."}, status_code=405, headers={"Allow": "GET, POST"})
    await response(scope, receive, send)
