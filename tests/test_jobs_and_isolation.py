"""The job queue, persistence across a restart, cancellation, the ledger, and run_benchmark's input
checks (the orchestrator's fault handling is in test_evaluation.py)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
import pytest
from flashinfer_bench.data import Solution
from mcp import Client

from tests.conftest import REPO
from kda_mcp.tools.errors import InvalidArgumentError, KdaError, NotFoundError
from kda_mcp.tools.jobs import JobRunner
from kda_mcp.tools.ledger import Ledger
from kda_mcp.tools.store import Store

# ---- jobs


@pytest.fixture()
def runner(tmp_path: Path):
    jobs = JobRunner(Store(tmp_path / "kda.sqlite3"))
    yield jobs
    jobs.close()


def wait(jobs: JobRunner, job_id: str, timeout: float = 10):
    return anyio.run(jobs.wait, job_id, timeout)


def test_job_runs_reports_progress_and_result(runner: JobRunner):
    async def work(job):
        job.progress(1, 2, "half")
        await anyio.sleep(0.05)
        job.progress(2, 2, "done")
        return {"answer": 42}

    job_id = runner.submit("demo", {"x": 1}, work)
    view = wait(runner, job_id)
    assert view.status == "succeeded" and view.result == {"answer": 42}
    assert view.progress == {"done": 2, "total": 2, "message": "done"}
    assert [j.job_id for j in runner.list()] == [job_id]


def test_job_failures_are_reported_not_raised(runner: JobRunner):
    async def refuses(job):
        raise InvalidArgumentError("bad input, change X")

    async def crashes(job):
        raise ZeroDivisionError("oops")

    refused = wait(runner, runner.submit("demo", {}, refuses))
    crashed = wait(runner, runner.submit("demo", {}, crashes))
    assert refused.status == "failed" and refused.error == "bad input, change X"
    assert crashed.status == "failed" and "internal error" in crashed.error and "ZeroDivisionError" in crashed.error


def test_cancel_kills_the_child_process(runner: JobRunner, tmp_path: Path):
    from kda_mcp.tools.procs import run_process

    marker = tmp_path / "pid"

    async def long(job):
        await run_process([sys.executable, "-c", f"import os,time; open({str(marker)!r},'w').write(str(os.getpid())); time.sleep(600)"], timeout=600)
        return {}

    job_id = runner.submit("demo", {}, long)
    deadline = time.time() + 20
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    started = time.monotonic()
    view = runner.cancel(job_id)
    assert view.status == "cancelled" and time.monotonic() - started < 10
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_wait_returns_a_running_job_after_the_timeout(runner: JobRunner):
    async def slow(job):
        await anyio.sleep(5)
        return {}

    job_id = runner.submit("demo", {}, slow)
    started = time.monotonic()
    view = wait(runner, job_id, timeout=0.3)
    assert view.status in ("queued", "running") and time.monotonic() - started < 2
    runner.cancel(job_id)


def test_restart_keeps_results_and_marks_interrupted_jobs(tmp_path: Path):
    store_path = tmp_path / "kda.sqlite3"
    first = JobRunner(Store(store_path))

    async def quick(job):
        return {"kept": True}

    async def forever(job):
        await anyio.sleep(3600)
        return {}

    done_id = first.submit("demo", {}, quick)
    wait(first, done_id)
    running_id = first.submit("demo", {}, forever)
    time.sleep(0.3)
    # A second server opening the same state while the first runs leaves its live job alone
    # (tests/test_shared_state.py kills a server with SIGKILL for the crash case).
    second = JobRunner(Store(store_path))
    assert second.get(done_id).result == {"kept": True}
    assert second.get(running_id).status == "running"
    first.close()  # the first one stops: its unfinished job says so
    interrupted = second.get(running_id)
    assert interrupted.status == "interrupted" and "submit it again" in interrupted.error
    second.close()
    with pytest.raises(NotFoundError, match="Unknown job"):
        second.get("j999")


# ---- ledger


def _solution(name: str, content: str) -> Solution:
    return Solution.model_validate(
        {
            "name": name,
            "definition": "vector_add_fp32",
            "author": "t",
            "spec": {"language": "python", "target_hardware": ["cuda"], "entry_point": "main.py::run"},
            "sources": [{"path": "main.py", "content": content}],
        }
    )


def _result(passed: int, total: int, speedup: float | None, suspect: bool = False) -> dict:
    return {
        "status": "complete",
        "aggregate": {"passed": passed, "total": total, "geomean_speedup_vs_baseline": speedup},
        "workloads": [{"suspect": True}] if suspect else [],
    }


def test_ledger_lineage_best_and_notes(tmp_path: Path):
    ledger = Ledger(Store(tmp_path / "kda.sqlite3"))
    a1 = ledger.record(ledger.new_id(), solution=_solution("v1", "a"), parent=None, job_id="j1", result=_result(4, 4, 1.2))
    a2 = ledger.record(ledger.new_id(), solution=_solution("v2", "b"), parent=a1, job_id="j2", result=_result(4, 4, 1.9))
    a3 = ledger.record(ledger.new_id(), solution=_solution("v3", "c"), parent=a2, job_id="j3", result=_result(3, 4, 5.0))
    a4 = ledger.record(ledger.new_id(), solution=_solution("v4", "d"), parent=a2, job_id="j4", result=_result(4, 4, 9.0, suspect=True))
    page = ledger.list(definition="vector_add_fp32")
    assert page.best == a2  # a3 fails a workload, a4 is suspect
    assert ledger.list(lineage_of=a3).lineage == [a1, a2, a3]
    assert sorted(ledger.get(a2).children) == sorted([a3, a4])
    note = ledger.add_note(direction="wider loads", attempts=[a2, a3], definition=None, hypothesis="128-bit LDG", verdict="reject", text="slower")
    assert note.definition == "vector_add_fp32"
    assert ledger.get(a3).notes[0]["note_id"] == note.note_id
    assert ledger.solution(a1).sources[0].content == "a"
    with pytest.raises(NotFoundError, match="a99"):
        ledger.check_parent("a99")
    with pytest.raises(KdaError):
        ledger.add_note(direction="x", attempts=["a42"], definition=None, hypothesis=None, verdict=None, text=None)


# ---- run_benchmark input checks (no GPU needed to refuse bad input)


def call(mcp_server, tool: str, args: dict):
    async def main():
        async with Client(mcp_server, mode="legacy") as client:
            return await client.call_tool(tool, args)

    return anyio.run(main)


EXAMPLE = REPO / "resources/dataset/solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json"


@pytest.mark.parametrize(
    "args, message",
    [
        ({"workloads": ["nope"]}, "not a workload"),
        ({"baseline": "no_such_solution"}, "Unknown baseline"),
        ({"config": {"warmup": 0}}, "greater than or equal to 1"),
        ({"config": {"made_up": 1}}, "made_up"),
        ({"parent_attempt": "a999"}, "Unknown attempt 'a999'"),
    ],
)
def test_run_benchmark_refuses_bad_input(mcp_server, args, message):
    result = call(mcp_server, "run_benchmark", {"solution": {"path": str(EXAMPLE)}, **args})
    assert result.is_error
    assert message in result.content[0].text


def test_run_benchmark_without_gpu_says_so(mcp_server, server_and_app):
    _, app = server_and_app
    if app.gpus.gpus:
        pytest.skip("this machine has a GPU")
    result = call(mcp_server, "run_benchmark", {"solution": {"path": str(EXAMPLE)}})
    assert result.is_error and "needs an NVIDIA GPU" in result.content[0].text
