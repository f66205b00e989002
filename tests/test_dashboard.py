"""The /ui dashboard and its charts on the CPU: login and cookie auth, every page with real records,
live fragments, cancelling a job, chart PNGs and their cache, and the render_chart tool.

State comes from the real classes (Ledger.record, ProfileRecords.save, JobRunner.submit) in a state
folder of this module's own; tests/test_dashboard_browser.py reuses populate() for Chromium.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from flashinfer_bench.data import Solution
from kda_mcp.tools import charts
from kda_mcp.tools.evaluation.models import BenchmarkResult
from kda_mcp.tools.profile.models import Bottleneck, Evidence, KernelProfile, ProfileSummary, Roofline
from starlette.testclient import TestClient

TOKEN = "dashboard-test-token-0123456789"
DEFINITION = "rmsnorm_h4096_bf16"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pytest", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
WORKLOADS = [
    ("5ab42d94-b481-4e42-adac-419ca7bae86d", 1),
    ("7b2bbfde-2fa5-4894-89f7-26dd6ae1dac6", 7),
    ("f16df224-877d-4c44-b543-3f078166a9af", 32),
    ("6749029a-8360-47e7-b44b-aac8cb06932b", 128),
    ("c20cb1ad-bbc6-4e3b-9a86-b83f211fdf83", 1024),
]


# ---- records made with the real classes


def make_app(base: Path, *, gpus: list[int] | None = (0, 1)):  # type: ignore[assignment]
    """A server and its state in `base`; `gpus` stands in for the machine's (no GPU needed)."""
    from kda_mcp.server.app import create_app
    from kda_mcp.tools.gpus import GpuPool
    from kda_mcp.tools.settings import Settings

    settings = Settings.resolve(
        dataset=None, wiki_paths=[], state_dir=base / "state", cache_dir=base / "cache", workspaces=[str(base)], runtime_dir=base / "run"
    )
    mcp, app = create_app(settings)
    if gpus is not None:
        app.__dict__["gpus"] = GpuPool(list(gpus), machine_wide=False)  # instead of probing the machine
    return mcp, app


def solution(name: str, body: str) -> Solution:
    return Solution.model_validate(
        {
            "name": name,
            "definition": DEFINITION,
            "author": "agent",
            "spec": {"language": "triton", "target_hardware": ["cuda"], "entry_point": "kernel.py::run"},
            "sources": [{"path": "kernel.py", "content": body}],
        }
    )


def benchmark_result(attempt_id: str, name: str, factor: float, *, failing: int = 0, suspect: bool = False, parent: str | None = None) -> dict[str, Any]:
    """A BenchmarkResult as run_benchmark stores it: candidate faster than the baseline by `factor`."""
    workloads = []
    speedups = []
    for i, (uuid, batch) in enumerate(WORKLOADS):
        reference = 8.0 + batch * 0.9
        baseline = reference / 2.5
        median = baseline / factor
        if i >= len(WORKLOADS) - failing:
            workloads.append({"workload": uuid, "axes": {"batch_size": batch}, "status": "INCORRECT_NUMERICAL", "max_abs_error": 0.5, "max_rel_error": 3.1,
                              "reference_us": reference, "log": "mismatch at [0, 17]: got 1.5, expected 0.25"})
            continue
        is_suspect = suspect and i == 0
        w: dict[str, Any] = {
            "workload": uuid,
            "axes": {"batch_size": batch},
            "status": "PASSED",
            "max_abs_error": 0.0039,
            "max_rel_error": 0.0078,
            "latency": {"median_us": median, "p10_us": median * 0.95, "p90_us": median * 1.12, "min_us": median * 0.9, "count": 160},
            "reference_us": reference,
            "baseline_us": baseline,
            "floor_us": median * 0.4,
        }
        if is_suspect:
            w["suspect"] = True
            w["findings"] = [{"check": "below_physical_floor", "detail": f"{median * 0.1:.2f} us is below the 0.8 x floor of the bytes that must move"}]
            w["latency"]["median_us"] = median * 0.1
        else:
            w["speedup"] = {"vs_reference": reference / median, "vs_reference_ci95": [reference / median * 0.97, reference / median * 1.03],
                            "vs_baseline": factor, "vs_baseline_ci95": [factor * 0.98, factor * 1.02]}
            speedups.append(factor)
        workloads.append(w)
    passed = sum(1 for w in workloads if w["status"] == "PASSED")
    geomean = factor if speedups and not suspect else None
    result = BenchmarkResult(
        attempt_id=attempt_id,
        parent_attempt=parent,
        solution=name,
        solution_hash="0" * 16,
        definition=DEFINITION,
        baseline="rmsnorm_h4096_bf16_torch",
        baseline_hash="b" * 16,
        status="complete",
        message=f"{passed}/{len(workloads)} passed; geomean {geomean or 0:.2f}x over the baseline.",
        aggregate={"passed": passed, "total": len(workloads), "geomean_speedup_vs_baseline": geomean,
                   "geomean_speedup_vs_reference": geomean * 2.5 if geomean else None, "worst_workload": WORKLOADS[-1][0]},
        workloads=workloads,
        provenance={"gpu": "NVIDIA H200", "gpu_index": 0, "driver": "580.95", "cuda": "13.0", "torch": "2.13.0", "triton": "3.5.0",
                    "clocks_mhz": {"sm": 1980, "memory": 3201}, "method": "cupti", "copy_bandwidth_tb_s": 4.1,
                    "seeds": {"correctness": [11, 12, 13], "timing": 7}, "config": {"rounds": 8, "warmup": 10}},
        compile={"status": "ok", "solution": name, "definition": DEFINITION, "language": "triton", "target": "sm_90a", "build_seconds": 3.2,
                 "cache_hit": False, "build_key": "k" * 16, "message": "built",
                 "kernels": [{"name": "_rmsnorm_kernel", "registers": 40, "shared_static_bytes": 0, "shared_dynamic_bytes": 1024,
                              "spill_store_bytes": 0, "spill_load_bytes": 0, "stack_frame_bytes": 0,
                              "sass": {"arch": "sm_90a", "instructions": 412, "global_loads_by_width": {"128": 6}, "local_loads": 0, "local_stores": 0}}]},
        phase_seconds={"build": 3.2, "gpu_wait": 0.1, "timing": 2.4, "judge": 0.6},
    )
    return result.model_dump(mode="json", exclude_none=True)


def profile_summary(profile_id: str, attempt_id: str) -> ProfileSummary:
    def kernel(name: str, us: float, roof: Roofline, label: str) -> KernelProfile:
        return KernelProfile(
            name=name, duration_us=us, occupancy_achieved_pct=61.0, compute_throughput_pct=38.0, dram_throughput_pct=82.0,
            roofline=roof, bottleneck=Bottleneck(label=label, reason="DRAM throughput 82% of peak", evidence=[Evidence(metric="dram_pct", value=82.0, unit="%")]),
        )

    return ProfileSummary(
        profile_id=profile_id,
        report_path=f"/tmp/{profile_id}.ncu-rep",
        attempt_id=attempt_id,
        solution="rmsnorm_v2",
        definition=DEFINITION,
        workload=WORKLOADS[-1][0],
        profile_set="full",
        gpu="NVIDIA H200",
        kernels=[
            kernel("_rmsnorm_kernel", 14.2, Roofline(flops=2.1e7, dram_bytes=1.7e7, arithmetic_intensity=1.24, achieved_tflops=1.48, achieved_dram_tb_s=3.9,
                                                   peak_dram_tb_s=4.8, peak_tflops_fp32=66.9, peak_tflops_tensor=989.0), "memory-bound"),
            kernel("_reduce_tail", 2.1, Roofline(achieved_dram_tb_s=0.4, peak_dram_tb_s=4.8, note="FLOP counters not collected in this set"), "latency-bound"),
        ],
        total_duration_us=16.3,
        message="2 kernels profiled; the main one is memory-bound.",
    )


def populate(app) -> dict[str, str]:
    """A small history for DEFINITION: a root, two children (one better, one failing), a suspect
    grandchild, notes with verdicts, and a profile of the best attempt. Returns the ids by role."""
    ledger = app.ledger
    ids: dict[str, str] = {}

    def record(role: str, name: str, factor: float, parent: str | None = None, **kw: Any) -> str:
        attempt_id = ledger.new_id()
        ledger.record(attempt_id, solution=solution(name, f"# {name}\n"), parent=parent, job_id=None,
                      result=benchmark_result(attempt_id, name, factor, parent=parent, **kw))
        ids[role] = attempt_id
        return attempt_id

    root = record("root", "rmsnorm_v1", 1.1)
    best = record("best", "rmsnorm_v2", 1.9, root)
    record("failing", "rmsnorm_v2_split", 2.2, root, failing=2)
    record("suspect", "rmsnorm_v3_cached", 6.0, best, suspect=True)
    ledger.add_note(direction="one row per CTA, vectorized 128-bit loads", attempts=[best], definition=None,
                    hypothesis="DRAM throughput from 55% to 80%", verdict="keep", text="median -42% on batch 1024; dram 82%")
    ledger.add_note(direction="split the reduction", attempts=[ids["failing"]], definition=None, hypothesis=None, verdict="reject",
                    text="two workloads fail numerically")
    profile = profile_summary(app.profiles.new_id(), best)
    app.profiles.save(profile, Path(profile.report_path))
    ids["profile"] = profile.profile_id
    return ids


def submit_fake_benchmark(app, *, steps: int, step_s: float, parent: str | None = None, gpu: int = 0, factor: float = 2.4) -> str:
    """A job like run_benchmark's: takes a GPU, reports progress per workload, records an attempt."""

    async def work(ctx) -> dict[str, Any]:
        ctx.on_gpu(gpu)
        for i in range(steps):
            ctx.progress(i, steps, f"timing workload {i + 1} of {steps}")
            await anyio.sleep(step_s)
        ctx.progress(steps, steps, "judging")
        attempt_id = app.ledger.new_id()
        result = benchmark_result(attempt_id, "rmsnorm_v4_live", factor, parent=parent)
        app.ledger.record(attempt_id, solution=solution("rmsnorm_v4_live", "# live\n"), parent=parent, job_id=ctx.job_id, result=result)
        return result

    return app.jobs.submit("run_benchmark", {"solution": "rmsnorm_v4_live", "definition": DEFINITION, "workloads": [w for w, _ in WORKLOADS]}, work)


# ---- fixtures


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    from kda_mcp.server.http import HttpOptions, build_http_app

    base = tmp_path_factory.mktemp("dash")
    mcp, app = make_app(base)
    ids = populate(app)
    http = build_http_app(mcp, HttpOptions(token=TOKEN), health={"server": "kda-mcp"})
    yield {"mcp": mcp, "app": app, "ids": ids, "http": http}
    app.jobs.close()


def client(dashboard) -> TestClient:
    # No lifespan (no `with`): the MCP session manager runs once per app, and /mcp is only asked for its 401 here.
    return TestClient(dashboard["http"], base_url="http://127.0.0.1:8765", follow_redirects=False)


@pytest.fixture()
def anon(dashboard):
    return client(dashboard)


@pytest.fixture()
def browser(dashboard):
    """A client logged in through the form, holding the session cookie."""
    logged_in = client(dashboard)
    response = logged_in.post("/ui/login", data={"token": TOKEN, "next": "/ui/"})
    assert response.status_code == 303, response.text
    return logged_in


# ---- auth


def test_pages_redirect_to_login_and_the_rest_answers_401(anon):
    page = anon.get("/ui/definitions")
    assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=/ui/definitions"
    for path in ("/ui/api/jobs", "/ui/definitions?fragment=1", "/ui/charts/speedup_history/rmsnorm_h4096_bf16.png"):
        response = anon.get(path)
        assert response.status_code == 401, path
        assert "/ui/login" in response.json()["error_description"]
    assert anon.post("/ui/api/jobs/j1/cancel", headers={"X-KDA-UI": "1"}).status_code == 401
    assert anon.get("/ui/static/dashboard.css").status_code == 200  # public: the login form's style
    form = anon.get("/ui/login")
    assert form.status_code == 200 and 'name="token"' in form.text
    assert "default-src 'none'" in form.headers["content-security-policy"]


def test_login_sets_a_cookie_that_is_not_the_token(anon):
    wrong = anon.post("/ui/login", data={"token": "nope", "next": "/ui/"})
    assert wrong.status_code == 401 and "not this server&#x27;s token" in wrong.text
    assert "set-cookie" not in wrong.headers
    ok = anon.post("/ui/login", data={"token": TOKEN, "next": "/ui/definitions"})
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/definitions"
    cookie = ok.headers["set-cookie"]
    assert "kda_ui_session=" in cookie and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    assert anon.get("/ui/definitions").status_code == 200


def test_next_never_leaves_the_dashboard(anon):
    for evil in ("//evil.example/", "https://evil.example/ui", "/ui/../mcp", "/mcp", "/ui//evil.example"):
        response = anon.post("/ui/login", data={"token": TOKEN, "next": evil})
        assert response.headers["location"] == "/ui/", evil


def test_the_cookie_opens_ui_only_and_a_header_works_too(dashboard, browser, anon):
    assert browser.get("/ui/").status_code == 200
    mcp = browser.post("/mcp", json=INIT, headers=MCP_HEADERS)  # the cookie is scoped to /ui, and /mcp ignores cookies
    assert mcp.status_code == 401
    cookie = browser.cookies.get("kda_ui_session")
    assert anon.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Cookie": f"kda_ui_session={cookie}"}).status_code == 401
    assert anon.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {cookie}"}).status_code == 401
    assert anon.get("/ui/api/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert anon.get("/ui/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    forged = anon.get("/ui/api/jobs", headers={"Cookie": "kda_ui_session=" + "0" * 64})
    assert forged.status_code == 401 and "expired" in forged.json()["error_description"]


def test_logout_forgets_the_session(dashboard):
    c = client(dashboard)
    c.post("/ui/login", data={"token": TOKEN})
    assert c.get("/ui/").status_code == 200
    out = c.post("/ui/logout")
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert c.get("/ui/").status_code == 303


def test_the_server_checks_a_cookies_age_and_signature(anon):
    from kda_mcp.server.dashboard import auth

    now = int(time.time())
    for value, opens in (
        (auth.session_value(TOKEN.encode(), now - 60), True),
        (auth.session_value(TOKEN.encode(), now - auth.SESSION_MAX_AGE_S - 60), False),  # past its age, whatever the browser keeps
        (auth.session_value(TOKEN.encode(), now + 3600), False),  # issued in the future
        (f"{now - 60}." + auth.session_value(TOKEN.encode(), now).split(".", 1)[1], False),  # a fresh MAC on an older time
        (auth.session_value(b"another-token", now), False),
    ):
        assert (anon.get("/ui/api/jobs", headers={"Cookie": f"kda_ui_session={value}"}).status_code == 200) is opens, value


def test_a_login_body_that_trickles_is_cut_off(monkeypatch):
    """Headers in, then a body that never completes: the form read has a time limit of its own."""
    from kda_mcp.server.dashboard import auth

    monkeypatch.setattr(auth, "LOGIN_BODY_TIMEOUT_S", 0.3)
    sent: list[dict] = []

    async def receive():
        if not sent:
            sent.append({})
            return {"type": "http.request", "body": b"token=abc", "more_body": True}
        await anyio.sleep(30)
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/ui/login", "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
             "query_string": b"", "scheme": "http", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1)}

    async def main():
        with anyio.fail_after(5):
            await auth.login(scope, receive, send, TOKEN.encode())

    anyio.run(main)
    [start] = [m for m in sent if m.get("type") == "http.response.start"]
    assert start["status"] == 408


# ---- pages


def test_definitions_page_shows_the_best_attempt(dashboard, browser):
    ids = dashboard["ids"]
    text = browser.get("/ui/definitions").text
    assert DEFINITION in text and "vector_add_fp32" in text and "gemm_n4096_k4096_bf16" in text
    row = text[text.index(f"/ui/definitions/{DEFINITION}") :].split("</tr>")[0]
    assert f'/ui/attempts/{ids["best"]}"' in row  # not the failing 2.2x nor the suspect 6x
    assert "1.9×" in row and "5/5" in row


def test_definition_page_has_the_speedup_history(dashboard, browser):
    text = browser.get(f"/ui/definitions/{DEFINITION}").text
    src = re.search(r'src="(/ui/charts/speedup_history/[^"]+)"', text).group(1)
    png = browser.get(src.replace("&amp;", "&"))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert charts.png_size(png.content) == (900, 360)
    assert "immutable" in png.headers["cache-control"]
    for role in ("root", "best", "failing", "suspect"):
        assert f'/ui/attempts/{dashboard["ids"][role]}"' in text
    assert "lowest geomean of its own median latencies" in text  # the ledger's best_basis


def test_attempt_page_has_workloads_findings_compile_facts_profiles(dashboard, browser):
    ids = dashboard["ids"]
    best = browser.get(f"/ui/attempts/{ids['best']}").text
    assert "batch_size=1024" in best and "PASSED" in best
    assert "NVIDIA H200" in best and "cupti" in best and "580.95" in best  # provenance
    assert "_rmsnorm_kernel" in best and "sm_90a" in best and "LDG 128b×6" in best  # compile facts
    assert f'/ui/profiles/{ids["profile"]}' in best and "/ui/charts/roofline/" in best and "/ui/charts/latency/" in best
    assert "one row per CTA" in best and "keep" in best  # the note
    assert "[1.86, 1.94]" in best  # the speedup's 95% interval
    assert f'/ui/attempts/{ids["root"]}' in best  # parent
    suspect = browser.get(f"/ui/attempts/{ids['suspect']}").text
    assert "below_physical_floor" in suspect and "suspect" in suspect
    failing = browser.get(f"/ui/attempts/{ids['failing']}").text
    assert "INCORRECT_NUMERICAL" in failing and "mismatch at [0, 17]" in failing and "3/5" in failing


def test_lineage_page_draws_the_dag_with_verdicts(dashboard, browser):
    ids = dashboard["ids"]
    text = browser.get(f"/ui/lineage/{DEFINITION}?focus={ids['suspect']}").text
    assert "<svg" in text and text.count('class="edge') == 3  # root->best, root->failing, best->suspect
    assert text.count('class="edge on-path"') == 2
    for role in ("root", "best", "failing", "suspect"):
        assert f'data-attempt="{ids[role]}"' in text
    assert "n-best v-keep" in text and "v-reject" in text and "split the reduction" in text
    assert "Ancestry of" in text


def test_profile_page_and_roofline(dashboard, browser):
    pid = dashboard["ids"]["profile"]
    text = browser.get(f"/ui/profiles/{pid}").text
    assert "_rmsnorm_kernel" in text and "memory-bound" in text
    png = browser.get(f"/ui/charts/roofline/{pid}.png")
    assert png.status_code == 200 and charts.png_size(png.content) == (800, 460)


def test_unknown_things_are_404_pages(browser):
    response = browser.get("/ui/attempts/a999")
    assert response.status_code == 404 and "Unknown attempt" in response.text
    assert browser.get("/ui/lineage/nope").status_code == 404
    assert browser.get("/ui/charts/latency/a999.png").status_code == 404
    assert browser.get("/ui/charts/pie/a1.png").status_code == 404
    assert browser.get("/ui/charts/latency/a1.png?w=5").status_code == 400
    assert browser.get("/ui/static/nope.js").status_code == 404


def test_fragments_carry_an_etag(browser):
    first = browser.get("/ui/definitions?fragment=1")
    assert first.status_code == 200 and "<html" not in first.text and "<h1>Definitions" in first.text
    again = browser.get("/ui/definitions?fragment=1", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_queue_shows_a_job_per_gpu_then_its_attempt(dashboard, browser):
    app = dashboard["app"]
    job = submit_fake_benchmark(app, steps=4, step_s=0.15, parent=dashboard["ids"]["best"], gpu=1)
    seen_running = False
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        fragment = browser.get("/ui/?fragment=1").text
        if f'data-job-id="{job}" data-status="running"' in fragment:
            gpu1 = fragment[fragment.index('data-gpu="1"') :].split("</section>")[0]
            assert job in gpu1 and "<progress" in gpu1 and "timing workload" in gpu1
            seen_running = True
        if app.jobs.get(job).status == "succeeded":
            break
        time.sleep(0.05)
    assert seen_running
    fragment = browser.get("/ui/?fragment=1").text
    row = fragment[fragment.index(f'data-job-id="{job}"') :].split("</tr>")[0]
    attempt = app.jobs.get(job).result["attempt_id"]
    assert "succeeded" in row and f"/ui/attempts/{attempt}" in row and "4/4" in row
    jobs = browser.get("/ui/api/jobs").json()
    assert jobs["gpus"][0]["gpu"] == 0 and any(j["job_id"] == job and j["params"]["definition"] == DEFINITION for j in jobs["jobs"])


def test_cancel_needs_the_dashboards_header_and_cancels(dashboard, browser):
    app = dashboard["app"]
    job = submit_fake_benchmark(app, steps=100, step_s=0.2)
    assert browser.post(f"/ui/api/jobs/{job}/cancel").status_code == 403
    assert browser.post(f"/ui/api/jobs/{job}/cancel", headers={"X-KDA-UI": "1", "Origin": "http://evil.example"}).status_code == 403
    response = browser.post(f"/ui/api/jobs/{job}/cancel", headers={"X-KDA-UI": "1", "Origin": "http://127.0.0.1:8765"})
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert browser.post("/ui/api/jobs/j9999/cancel", headers={"X-KDA-UI": "1"}).status_code == 404


def test_queue_without_gpus_says_so():
    from kda_mcp.server.dashboard import render
    from kda_mcp.server.dashboard.views import Queue

    text = render.queue_fragment(Queue(gpus=[], waiting=[], recent=[]), gpu_count=0)
    assert "No GPU" in text and "No jobs yet" in text


# ---- charts


def test_charts_have_the_asked_size_and_hit_the_cache(tmp_path, dashboard):
    cache = charts.ChartCache(tmp_path / "charts")
    app = dashboard["app"]
    specs = {
        "roofline": charts.roofline_spec(app.profiles.get(dashboard["ids"]["profile"])),
        "latency": charts.latency_spec(app.ledger.get(dashboard["ids"]["failing"]).result),
        "speedup_history": charts.speedup_history_spec(DEFINITION, app.ledger.list(definition=DEFINITION).attempts),
    }
    for kind, spec in specs.items():
        first = cache.render(kind, spec, width=640, height=400)
        assert not first.cached and charts.png_size(first.png) == (640, 400), kind
        assert cache.path(first.key).read_bytes() == first.png
        t = time.perf_counter()
        second = cache.render(kind, spec, width=640, height=400)
        assert second.cached and second.png == first.png and time.perf_counter() - t < 0.05
    bigger = cache.render("latency", specs["latency"], width=1000, height=600)
    assert bigger.key != first.key and charts.png_size(bigger.png) == (1000, 600)
    changed = dict(specs["speedup_history"], points=specs["speedup_history"]["points"][:-1])
    assert charts.chart_key("speedup_history", changed, 640, 400) != charts.chart_key("speedup_history", specs["speedup_history"], 640, 400)
    with pytest.raises(Exception, match="out of range"):
        cache.render("latency", specs["latency"], width=10, height=10)


def test_captions_carry_the_numbers(dashboard):
    app = dashboard["app"]
    roof = charts.caption("roofline", charts.roofline_spec(app.profiles.get(dashboard["ids"]["profile"])))
    assert "DRAM 4.8 TB/s" in roof and "tensor 989 TFLOP/s" in roof and "_reduce_tail: not placed" in roof
    history = charts.caption("speedup_history", charts.speedup_history_spec(DEFINITION, app.ledger.list(definition=DEFINITION).attempts))
    assert f"best {dashboard['ids']['best']} at 1.9x" in history or "best" in history
    latency = charts.caption("latency", charts.latency_spec(app.ledger.get(dashboard["ids"]["failing"]).result))
    assert "INCORRECT_NUMERICAL" in latency and "reference" in latency


def test_empty_specs_still_draw(tmp_path):
    cache = charts.ChartCache(tmp_path)
    empty = cache.render("speedup_history", charts.speedup_history_spec("x", []))
    assert charts.png_size(empty.png) == (charts.DEFAULT_WIDTH, charts.DEFAULT_HEIGHT)
    assert charts.png_size(cache.render("latency", charts.latency_spec({"workloads": []})).png)[0] == charts.DEFAULT_WIDTH


# ---- the render_chart tool


def test_render_chart_tool_returns_an_image(dashboard):
    from mcp import Client

    ids = dashboard["ids"]

    async def main() -> tuple[Any, ...]:
        async with Client(dashboard["mcp"], mode="legacy") as client:
            ok = await client.call_tool("render_chart", {"kind": "latency", "attempt_id": ids["best"], "width": 700, "height": 420})
            again = await client.call_tool("render_chart", {"kind": "latency", "attempt_id": ids["best"], "width": 700, "height": 420})
            history = await client.call_tool("render_chart", {"kind": "speedup_history", "definition": DEFINITION})
            missing = await client.call_tool("render_chart", {"kind": "roofline"})
            unknown = await client.call_tool("render_chart", {"kind": "roofline", "profile_id": "p999"})
            return ok, again, history, missing, unknown

    ok, again, history, missing, unknown = anyio.run(main)
    import base64

    image = next(c for c in ok.content if c.type == "image")
    assert image.mime_type == "image/png" and charts.png_size(base64.b64decode(image.data)) == (700, 420)
    assert ok.structured_content["cached"] is False and again.structured_content["cached"] is True
    assert ok.structured_content["cache_key"] == again.structured_content["cache_key"]
    assert "median" in next(c for c in ok.content if c.type == "text").text
    assert not history.is_error and history.structured_content["subject"] == DEFINITION
    assert missing.is_error and "pass profile_id" in missing.content[0].text
    assert unknown.is_error and "Unknown profile" in unknown.content[0].text and "internal" not in unknown.content[0].text
