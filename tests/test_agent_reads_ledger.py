"""The ledger's best attempt is decided on comparable numbers and says how (issue 17, item 8)."""

from __future__ import annotations

import json
from pathlib import Path

from flashinfer_bench.data import Solution

from kda_mcp.tools.ledger import Ledger
from kda_mcp.tools.store import Store

H200, H100 = "NVIDIA H200", "NVIDIA H100 80GB HBM3"


def _solution(name: str) -> Solution:
    return Solution.model_validate(
        {
            "name": name,
            "definition": "fused_add_rmsnorm_h4096",
            "author": "t",
            "spec": {"language": "python", "target_hardware": ["cuda"], "entry_point": "main.py::run"},
            "sources": [{"path": "main.py", "content": f"# {name}"}],
        }
    )


def _result(latencies: dict[str, float], speedup: float, gpu: str = H200, suspect: bool = False) -> dict:
    """A benchmark result as run_benchmark records it (the fields the ledger reads)."""
    return {
        "status": "complete",
        "aggregate": {"passed": len(latencies), "total": len(latencies), "geomean_speedup_vs_reference": speedup},
        "workloads": [
            {"workload": w, "status": "PASSED", "latency": {"median_us": us, "p10_us": us, "p90_us": us, "min_us": us, "count": 64}, **({"suspect": True} if suspect else {})}
            for w, us in latencies.items()
        ],
        "provenance": {"gpu": gpu, "method": "cupti", "seeds": {}, "config": {}},
    }


def _record(ledger: Ledger, name: str, result: dict) -> str:
    return ledger.record(ledger.new_id(), solution=_solution(name), parent=None, job_id=None, result=result)


def test_best_is_the_fastest_on_shared_workloads_not_the_noisiest_geomean(tmp_path: Path):
    ledger = Ledger(Store(tmp_path / "kda.sqlite3"))
    a1 = _record(ledger, "v1", _result({"w1": 10.0, "w2": 20.0}, 1.50))
    fastest = _record(ledger, "v2", _result({"w1": 8.0, "w2": 16.0}, 1.40))  # its reference ran fast that time
    a3 = _record(ledger, "v3", _result({"w1": 9.0, "w2": 18.0}, 1.60))  # the highest geomean speedup
    h100 = _record(ledger, "v4", _result({"w1": 5.0, "w2": 10.0}, 1.10, gpu=H100))
    partial = _record(ledger, "v5", _result({"w1": 7.0}, 1.70))
    _record(ledger, "v6", _result({"w1": 1.0, "w2": 1.0}, 9.0, suspect=True))
    page = ledger.list(definition="fused_add_rmsnorm_h4096")
    assert page.best == fastest  # today: the partial run's 1.70x geomean (a3's 1.60x without it)
    basis = page.best_basis
    assert "own median latencies" in basis and "11.314 us" in basis and "2 workload(s)" in basis and H200 in basis
    assert f"next {a3} at 12.728 us (+12.5%)" in basis and "fastest on 2 of 2" in basis
    assert f"{h100} (timed on {H100})" in basis and f"{partial} (did not run all 2 workloads)" in basis
    assert a1 not in basis.split("not comparable")[1]
    assert Ledger.best(ledger.list(definition="fused_add_rmsnorm_h4096").attempts) == fastest  # the dashboard's call
    [summary] = [s for s in page.attempts if s.attempt_id == fastest]
    assert summary.gpu == H200 and "latency" not in json.dumps(summary.model_dump())  # latencies stay internal


def test_close_attempts_are_sent_to_an_ab(tmp_path: Path):
    ledger = Ledger(Store(tmp_path / "kda.sqlite3"))
    a1 = _record(ledger, "v1", _result({"w1": 10.0}, 1.0))
    a2 = _record(ledger, "v2", _result({"w1": 9.9}, 1.0))
    page = ledger.list()
    assert page.best == a2 and f"compare_solutions {a2} vs {a1} decides" in page.best_basis


def test_attempts_recorded_before_latencies_were_kept_are_read_from_their_results(tmp_path: Path):
    store = Store(tmp_path / "kda.sqlite3")
    ledger = Ledger(store)
    slow = _record(ledger, "v1", _result({"w1": 10.0}, 2.0))
    quick = _record(ledger, "v2", _result({"w1": 5.0}, 1.0))
    for attempt in (slow, quick):  # strip the summary to what older versions stored
        row = store.execute("SELECT summary FROM attempts WHERE id = ?", (attempt,))[0]
        summary = {k: v for k, v in json.loads(row["summary"]).items() if k not in ("gpu", "latency_us")}
        store.execute("UPDATE attempts SET summary = ? WHERE id = ?", (json.dumps(summary), attempt))
    page = ledger.list()
    assert page.best == quick and H200 in page.best_basis


def test_without_latencies_the_geomean_decides_and_says_so(tmp_path: Path):
    ledger = Ledger(Store(tmp_path / "kda.sqlite3"))
    result = {"status": "complete", "aggregate": {"passed": 1, "total": 1, "geomean_speedup_vs_baseline": 1.3}, "workloads": []}
    only = ledger.record(ledger.new_id(), solution=_solution("v1"), parent=None, job_id=None, result=result)
    page = ledger.list()
    assert page.best == only and "no per-workload latencies" in page.best_basis
    assert Ledger(Store(tmp_path / "empty.sqlite3")).list().best_basis is None
