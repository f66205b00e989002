"""The dashboard's HTTP routes under /ui, registered as custom routes of the MCP server.

server/http.py's BearerAuth guards them (token header, or the session cookie of /ui/login); every
handler here therefore runs for the token holder only. Reads run in a worker thread; the one
write, cancelling a job, also needs the X-KDA-UI header (no cross-site form can send it).

    GET  /ui/                              queue: jobs per GPU, progress, cancel
    GET  /ui/definitions                   best attempt per definition
    GET  /ui/definitions/{name}            speedup over time, attempts, notes
    GET  /ui/attempts/{id}                 one attempt: workloads, findings, compile facts, profiles, provenance
    GET  /ui/lineage/{definition}?focus=a3 the attempt DAG with verdicts and notes
    GET  /ui/profiles/{id}                 a profile: roofline, kernels
    GET  /ui/charts/{kind}/{subject}.png   roofline | latency | speedup_history (cached by content)
    GET  /ui/api/jobs                      the queue as JSON
    POST /ui/api/jobs/{id}/cancel          cancel a job
    POST /ui/logout                        forget the session cookie
    GET  /ui/static/{name}                 CSS and JS (public)

Any page takes ?fragment=1 for its live part alone, with an ETag (304 when unchanged): what the
page's script polls.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
from kda_mcp.server.dashboard import render, views
from kda_mcp.server.dashboard.assets import assets
from kda_mcp.server.dashboard.auth import COOKIE, LOGIN_PATH, SECURITY_HEADERS, UI_HEADER, UI_PREFIX
from kda_mcp.tools import charts
from kda_mcp.tools.app import KdaApp
from kda_mcp.tools.errors import KdaError, NotFoundError
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

log = logging.getLogger(__name__)

Built = tuple[str, str, dict[str, Any]]  # title, fragment, page options


def _etag(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return '"' + hashlib.sha256(data).hexdigest()[:24] + '"'


def _not_modified(request: Request, etag: str) -> bool:
    return etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]


async def _page(request: Request, build: Callable[[], Built]) -> Response:
    status = 200
    try:
        title, fragment, options = await anyio.to_thread.run_sync(build)
    except NotFoundError as exc:
        title, fragment, options, status = "Not found", render.error_fragment(str(exc)), {}, 404
    except KdaError as exc:
        title, fragment, options, status = "Cannot show this", render.error_fragment(str(exc)), {}, 400
    if request.query_params.get("fragment"):
        etag = _etag(fragment)
        headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
        if status == 200 and _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(fragment, status_code=status, media_type="text/html; charset=utf-8", headers=headers)
    return Response(render.page(title, fragment, **options), status_code=status, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """A state-changing request must come from the dashboard's own script: it carries X-KDA-UI, and
    an Origin, when sent, names this host."""
    if request.headers.get(UI_HEADER) != "1":
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def register(mcp: MCPServer, app: KdaApp) -> None:
    def route(path: str, methods: list[str] | None = None) -> Callable[[Callable[[Request], Any]], Any]:
        return mcp.custom_route(path, methods=methods or ["GET"], include_in_schema=False)

    @route(UI_PREFIX)
    async def ui_root(_: Request) -> Response:
        return RedirectResponse(f"{UI_PREFIX}/", status_code=307)

    @route(f"{UI_PREFIX}/")
    async def queue_page(request: Request) -> Response:
        def build() -> Built:
            data = views.queue(app)
            return "Queue", render.queue_fragment(data, gpu_count=len(data.gpus)), {"active": "queue", "poll_ms": render.POLL_QUEUE_MS}

        return await _page(request, build)

    @route(f"{UI_PREFIX}/definitions")
    async def definitions_page(request: Request) -> Response:
        return await _page(request, lambda: ("Definitions", render.definitions_fragment(views.definitions(app)), {"active": "definitions"}))

    @route(f"{UI_PREFIX}/definitions/{{name}}")
    async def definition_page(request: Request) -> Response:
        name = request.path_params["name"]

        def build() -> Built:
            data = views.definition(app, name)
            fragment = render.definition_fragment(data, views.chart_key(app, "speedup_history", name))
            return name, fragment, {"active": "definitions", "crumbs": [("Definitions", f"{UI_PREFIX}/definitions"), (name, "")]}

        return await _page(request, build)

    @route(f"{UI_PREFIX}/attempts/{{attempt_id}}")
    async def attempt_page(request: Request) -> Response:
        attempt_id = request.path_params["attempt_id"]

        def build() -> Built:
            data = views.attempt(app, attempt_id)
            latency = views.chart_key(app, "latency", attempt_id)
            rooflines = {p.profile_id: views.chart_key(app, "roofline", p.profile_id) for p in data.profiles}
            definition = data.detail.summary.definition
            crumbs = [("Definitions", f"{UI_PREFIX}/definitions"), (definition, f"{UI_PREFIX}/definitions/{render.q(definition)}"), (attempt_id, "")]
            return f"Attempt {attempt_id}", render.attempt_fragment(data, latency, rooflines), {"active": "definitions", "crumbs": crumbs}

        return await _page(request, build)

    @route(f"{UI_PREFIX}/lineage/{{definition}}")
    async def lineage_page(request: Request) -> Response:
        definition = request.path_params["definition"]
        focus = request.query_params.get("focus")

        def build() -> Built:
            data = views.lineage(app, definition)
            crumbs = [("Definitions", f"{UI_PREFIX}/definitions"), (definition, f"{UI_PREFIX}/definitions/{render.q(definition)}"), ("lineage", "")]
            return f"Lineage of {definition}", render.lineage_fragment(data, focus), {"active": "definitions", "crumbs": crumbs}

        return await _page(request, build)

    @route(f"{UI_PREFIX}/profiles/{{profile_id}}")
    async def profile_page(request: Request) -> Response:
        profile_id = request.path_params["profile_id"]

        def build() -> Built:
            summary = views.profile(app, profile_id)
            return f"Profile {profile_id}", render.profile_fragment(summary, views.chart_key(app, "roofline", profile_id)), {"active": "definitions"}

        return await _page(request, build)

    @route(f"{UI_PREFIX}/charts/{{kind}}/{{file}}")
    async def chart_image(request: Request) -> Response:
        kind, file = request.path_params["kind"], request.path_params["file"]
        if kind not in charts.KINDS or not file.endswith(".png"):
            return JSONResponse({"error": "not_found", "detail": f"Charts are {UI_PREFIX}/charts/<{'|'.join(charts.KINDS)}>/<subject>.png."}, status_code=404)
        try:
            width = int(request.query_params["w"]) if "w" in request.query_params else None
            height = int(request.query_params["h"]) if "h" in request.query_params else None
        except ValueError:
            return JSONResponse({"error": "invalid_argument", "detail": "w and h are pixel counts."}, status_code=400)
        try:
            chart = await views.draw_chart(app, kind, file[: -len(".png")], width, height)
        except NotFoundError as exc:
            return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)
        except KdaError as exc:
            return JSONResponse({"error": "invalid_argument", "detail": str(exc)}, status_code=400)
        etag = f'"{chart.key}"'
        immutable = request.query_params.get("v") == chart.key
        headers = {
            "ETag": etag,
            "Cache-Control": "private, max-age=31536000, immutable" if immutable else "private, no-cache",
            "X-Content-Type-Options": "nosniff",
            "X-Chart-Cache": "hit" if chart.cached else "miss",
        }
        if _not_modified(request, etag):
            return Response(status_code=304, headers=headers)
        return Response(chart.png, media_type="image/png", headers=headers)

    @route(f"{UI_PREFIX}/static/{{name}}")
    async def static_file(request: Request) -> Response:
        found = assets().get(request.path_params["name"])
        if found is None:
            return JSONResponse({"error": "not_found"}, status_code=404)
        data, media_type, digest = found
        cache = "public, max-age=31536000, immutable" if request.query_params.get("v") == digest else "public, max-age=60"
        return Response(data, media_type=media_type, headers={"Cache-Control": cache, "ETag": f'"{digest}"', "X-Content-Type-Options": "nosniff"})

    @route(f"{UI_PREFIX}/api/jobs")
    async def jobs_json(_: Request) -> Response:
        def build() -> dict[str, Any]:
            data = views.queue(app)
            return {
                "gpus": [{"gpu": gpu, "holder": holder or None, "running": [r.view.job_id for r in jobs]} for gpu, holder, jobs in data.gpus],
                "waiting": [r.view.job_id for r in data.waiting],
                "jobs": [r.view.model_dump(mode="json", exclude_none=True, exclude={"result"}) | {"params": r.params} for r in data.recent],
            }

        return JSONResponse(await anyio.to_thread.run_sync(build), headers={"Cache-Control": "no-store"})

    @route(f"{UI_PREFIX}/api/jobs/{{job_id}}/cancel", methods=["POST"])
    async def cancel_job(request: Request) -> Response:
        if not _same_origin(request):
            return JSONResponse(
                {"error": "forbidden", "detail": f"Cancel from the dashboard's page: the request needs the header {UI_HEADER}: 1 and this server's origin."},
                status_code=403,
            )
        job_id = request.path_params["job_id"]
        try:
            view = await anyio.to_thread.run_sync(app.jobs.cancel, job_id)
        except NotFoundError as exc:
            return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)
        log.warning("dashboard: job %s cancel requested; now %s", job_id, view.status)
        return JSONResponse(view.model_dump(mode="json", exclude_none=True, exclude={"result"}))

    @route(f"{UI_PREFIX}/logout", methods=["POST"])
    async def logout(_: Request) -> Response:
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.delete_cookie(COOKIE, path=UI_PREFIX, httponly=True, samesite="strict")
        return response
