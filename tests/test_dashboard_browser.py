"""The dashboard in a real browser: headless Chromium driven by playwright-core (tests/browser/
dashboard.cjs) against a real uvicorn on loopback. Log in, watch a job run and finish without a
reload, cancel another, open the attempt it recorded, follow its lineage to the parent, look at
definitions and speedup over time. Screenshots go to $KDA_TEST_ARTIFACTS (else a temporary folder).

Skips, saying why, when node, Chromium (Debian's chromium, or $KDA_CHROMIUM) or playwright-core
(`.ci/install --dev` puts it in .ci/npm) is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import httpx2
import pytest

from tests.conftest import REPO, free_port
from tests.test_dashboard import DEFINITION, TOKEN, make_app, populate, submit_fake_benchmark

SCRIPT = REPO / "tests" / "browser" / "dashboard.cjs"
NODE_MODULES = REPO / ".ci" / "npm" / "node_modules"


def _chromium() -> str | None:
    for candidate in (os.environ.get("KDA_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["NODE_PATH"] = os.pathsep.join(x for x in (str(NODE_MODULES), env.get("NODE_PATH", "")) if x)
    return env


def _playwright() -> bool:
    node = shutil.which("node")
    if node is None:
        return False
    probe = subprocess.run([node, "-e", "require.resolve('playwright-core')"], check=False, env=_node_env(), capture_output=True, timeout=30)
    return probe.returncode == 0


CHROMIUM = _chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("node") is None, reason="needs node (Debian's nodejs) to run playwright-core"),
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: apt-get install chromium (or set KDA_CHROMIUM); .ci/install --dev does it"),
    pytest.mark.skipif(not _playwright(), reason="needs playwright-core: .ci/install --dev installs it in .ci/npm"),
]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    folder = Path(os.environ["KDA_TEST_ARTIFACTS"]) / "dashboard" if os.environ.get("KDA_TEST_ARTIFACTS") else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real HTTP server (uvicorn, loopback) in a thread of this process, so the test can submit jobs to it."""
    import uvicorn
    from kda_mcp.server.http import HttpOptions, build_http_app

    mcp, app = make_app(tmp_path_factory.mktemp("dash-browser"))
    ids = populate(app)
    port = free_port()
    http = build_http_app(mcp, HttpOptions(port=port, token=TOKEN), health={"server": "kda-mcp"})
    server = uvicorn.Server(uvicorn.Config(http, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx2.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx2.HTTPError:
            time.sleep(0.05)
    else:
        pytest.fail("uvicorn did not come up")
    yield {"app": app, "ids": ids, "base": base}
    server.should_exit = True
    thread.join(10)
    app.jobs.close()


def test_log_in_watch_a_job_open_an_attempt_follow_lineage(served, artifacts):
    app, ids = served["app"], served["ids"]
    watch = submit_fake_benchmark(app, steps=8, step_s=0.7, parent=ids["best"], gpu=1)
    to_cancel = submit_fake_benchmark(app, steps=10_000, step_s=0.2, gpu=0)
    env = _node_env() | {
        "KDA_UI_BASE": served["base"],
        "KDA_UI_TOKEN": TOKEN,
        "KDA_JOB_WATCH": watch,
        "KDA_JOB_CANCEL": to_cancel,
        "KDA_BEST": ids["best"],
        "KDA_DEFINITION": DEFINITION,
        "KDA_ARTIFACTS": str(artifacts),
        "KDA_CHROMIUM": CHROMIUM or "",
    }
    run = subprocess.run(["node", str(SCRIPT)], check=False, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no report from the browser script (rc {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    report = json.loads(lines[-1])
    (artifacts / "report.json").write_text(json.dumps(report, indent=1))
    assert "error" not in report, report.get("error")
    steps = {s["name"]: s for s in report["steps"]}

    assert steps["login form"]["url"].startswith(served["base"] + "/ui/login")
    assert "not this server" in steps["wrong token refused"]["text"]
    assert ["kda_ui_session", "/ui", True, "Strict"] in steps["logged in"]["cookie"]

    assert steps["job running"]["gpu"] == "1" and "timing workload" in steps["job running"]["progress"]
    finished = app.jobs.get(watch)
    assert finished.status == "succeeded"
    attempt = finished.result["attempt_id"]
    assert steps["job finished"]["attempt"] == f"/ui/attempts/{attempt}" and steps["job finished"]["no_reload"]
    assert steps["job cancelled"]["no_reload"] and app.jobs.get(to_cancel).status == "cancelled"

    assert f"Attempt {attempt}" in steps["attempt page"]["h1"] and steps["attempt page"]["workloads"] == 5
    assert steps["attempt page"]["latency"] == [[900, 420]]
    assert set(steps["lineage page"]["nodes"]) == {ids["root"], ids["best"], ids["failing"], ids["suspect"], attempt}
    assert steps["lineage page"]["on_path"] == 2 and steps["lineage page"]["focus"] == 1  # root -> best -> the new attempt
    assert f"Attempt {ids['best']}" in steps["parent attempt"]["h1"] and steps["parent attempt"]["roofline"] == [[800, 460]]
    assert steps["definition page"]["history"] == [[900, 360]] and steps["definition page"]["attempts"] == 5

    assert report["foreign_requests"] == [], "the pages must work offline: nothing but this server"
    unexpected = [e for e in report["console_errors"] if not e["url"].endswith("/ui/login")]  # the wrong token's 401 is expected
    assert unexpected == [], unexpected
    assert report["error_responses"] == [f"401 POST {served['base']}/ui/login"], report["error_responses"]
    assert len(report["screenshots"]) == 8 and all(Path(p).stat().st_size > 10_000 for p in report["screenshots"])
