"""Integrity checks that need no GPU: policy scans, the forbidden-call recorder, the sanitizer parser
and the A/B statistics (the runner's findings with fake children are in test_evaluation.py)."""

from __future__ import annotations


import pytest
import torch
from flashinfer_bench.data import Solution

from kda_mcp.tools.evaluation.abtest import WorkloadAB, meaningful, paired_interval, summarize, verdict_for
from kda_mcp.tools.evaluation.policy import Policy, kernel_findings, runtime_findings, static_findings
from kda_mcp.tools.harness.policy_hooks import ForbiddenCalls
from kda_mcp.tools.sanitize.parse import parse_sanitizer

GEMM_POLICY = Policy(
    forbidden_calls=["torch.matmul", "torch.nn.functional.linear", "torch.Tensor.__matmul__", "torch.Tensor.mm"],
    forbidden_kernels=["^nvjet", "xmma_gemm"],
    forbidden_libraries=["cublas"],
)


def solution(files: dict[str, str], language: str = "python") -> Solution:
    entry = next(iter(files))
    return Solution.model_validate(
        {
            "name": "s",
            "definition": "gemm_n4096_k4096_bf16",
            "author": "t",
            "spec": {"language": language, "target_hardware": ["cuda"], "entry_point": f"{entry}::run"},
            "sources": [{"path": p, "content": c} for p, c in files.items()],
        }
    )


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ndef run(A, B, C):\n    C.copy_(torch.matmul(A, B.T))\n",
        "import torch.nn.functional as F\ndef run(A, B, C):\n    C.copy_(F.linear(A, B))\n",
        "from torch.nn.functional import linear\ndef run(A, B, C):\n    C.copy_(linear(A, B))\n",
        "def run(A, B, C):\n    C.copy_(A @ B.T)\n",
        "def run(A, B, C):\n    C.copy_(A.mm(B.t()))\n",
    ],
)
def test_static_policy_finds_forbidden_calls(source):
    [finding] = static_findings(solution({"main.py": source}), GEMM_POLICY)
    assert finding.check == "forbidden_call" and "main.py:" in finding.detail


def test_static_policy_leaves_honest_code_alone():
    from pathlib import Path

    for path in Path("resources/dataset/solutions/kda-examples").rglob("*.json"):
        assert static_findings(Solution.model_validate_json(path.read_text()), GEMM_POLICY) == [], path


def test_static_policy_finds_forbidden_libraries_in_cuda():
    cu = '#include <cublas_v2.h>\nvoid run() { cublasGemmEx(h, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); }\n'
    findings = static_findings(solution({"kernel.cu": cu}, "cuda"), GEMM_POLICY)
    assert findings and findings[0].check == "forbidden_library" and "kernel.cu:1" in findings[0].detail


def test_kernel_and_runtime_findings():
    assert kernel_findings(["nvjet_tst_128x256_64x4_1x2_h_bz_coopA_NTN", "my_gemm_kernel"], GEMM_POLICY)[0].check == "forbidden_kernel"
    assert kernel_findings(["_gemm_abt_kernel", "add_kernel"], GEMM_POLICY) == []
    assert "torch.matmul (3x)" in runtime_findings({"torch.matmul": 3})[0].detail
    assert runtime_findings({}) == []


def test_forbidden_calls_are_counted_and_still_work():
    recorder = ForbiddenCalls(["torch.matmul", "torch.no_such_function"])
    try:
        a = torch.eye(2)
        assert torch.equal(torch.matmul(a, a), a)
        assert recorder.take() == {"torch.matmul": 1}
        assert recorder.take() == {}
    finally:
        recorder.restore()
    assert torch.matmul.__name__ == "matmul" and not hasattr(torch.matmul, "__wrapped__")


MEMCHECK = """========= COMPUTE-SANITIZER
========= Invalid __global__ write of size 4 bytes
=========     at oob_add(const float *, const float *, float *, long)+0x1d0 in /tmp/build/src/kernel.cu:9
=========     by thread (255,0,0) in block (3,0,0)
=========     Address 0x7f3a00000400 is out of bounds
=========     and is 1 bytes after the nearest allocation at 0x7f3a00000000 of size 1024 bytes
=========     Saved host backtrace up to driver entry point at kernel launch time
=========         Host Frame: [0x2f1c4c] in libcuda.so.1
=========
========= Invalid __global__ write of size 4 bytes
=========     at oob_add(const float *, const float *, float *, long)+0x1d0 in /tmp/build/src/kernel.cu:9
=========     by thread (0,0,0) in block (4,0,0)
=========     Address 0x7f3a00000800 is out of bounds
=========
========= ERROR SUMMARY: 2 errors
"""

RACECHECK = """========= COMPUTE-SANITIZER
========= Error: Race reported between Write access at racy(float *)+0x90 in kernel.cu:14
=========     and Read access at racy(float *)+0xb0 in kernel.cu:15 [248 hazards]
=========
========= RACECHECK SUMMARY: 1 hazard displayed (1 error, 0 warnings)
"""


def test_sanitizer_reports_are_grouped_with_file_and_line():
    [issue], summary = parse_sanitizer(MEMCHECK)
    assert issue.kind == "Invalid __global__ write of size 4 bytes"
    assert issue.kernel == "oob_add(const float *, const float *, float *, long)"
    assert (issue.file, issue.line, issue.count) == ("kernel.cu", 9, 2)
    assert "block (3,0,0)" in issue.example and summary == "ERROR SUMMARY: 2 errors"
    [race], summary = parse_sanitizer(RACECHECK)
    assert race.kind.startswith("Error: Race reported") and race.line == 14 and "1 hazard" in summary
    assert parse_sanitizer("========= COMPUTE-SANITIZER\n========= ERROR SUMMARY: 0 errors\n") == ([], "ERROR SUMMARY: 0 errors")


def test_ab_statistics():
    a = [100.0, 101.0, 99.5, 100.5, 100.2, 99.8]
    faster = [x / 1.10 for x in a]
    speedup, low, high, noise = paired_interval(a, faster, process_spread=0)
    assert speedup == pytest.approx(1.10, rel=1e-6) and low > 1.09 and verdict_for(low, high) == "b_faster" and meaningful(low, high)
    # The spread between processes widens every interval: 10% stays a verdict, 4% does not.
    _, low, high, _ = paired_interval(a, faster)
    assert 1.03 < low < 1.05 and verdict_for(low, high) == "b_faster"
    _, low, high, _ = paired_interval(a, [x / 1.04 for x in a])
    assert low < 1 < high
    # Rounds of one H200 job of the reference against itself (gdn_decode, batch 1): tight rounds,
    # 5.7% off; the next job read 0.948. Only the spread between processes makes that honest.
    job = [x * 1.057 for x in a]
    assert verdict_for(*paired_interval(job, a, process_spread=0)[1:3]) == "b_faster"
    _, low, high, _ = paired_interval(job, a)
    assert low < 1 < high
    # an interval that excludes 1 is a verdict even when it is within the practical threshold
    assert verdict_for(0.9966, 0.9985) == "b_slower" and not meaningful(0.9966, 0.9985)
    assert verdict_for(1.0045, 1.0659) == "b_faster" and not meaningful(1.0045, 1.0659)
    noisy = [x * (1.01 if i % 2 else 0.99) for i, x in enumerate(a)]
    _, low, high, _ = paired_interval(a, noisy, process_spread=0)
    assert low < 1 < high and verdict_for(low, high) == "no_significant_difference"
    _, low, high, _ = paired_interval(faster, a)
    assert verdict_for(low, high) == "b_slower"
    rows = [WorkloadAB(workload="w1", axes={}, a_status="PASSED", b_status="PASSED", speedup_b_over_a=1.1, verdict="b_faster"),
            WorkloadAB(workload="w2", axes={}, a_status="PASSED", b_status="INCORRECT_NUMERICAL", verdict="not_comparable")]
    verdict, geo, message = summarize(rows)
    assert verdict == "b_faster" and geo == pytest.approx(1.1) and "not comparable" in message


def test_the_calls_checked_for_sure_are_drawn_anywhere_in_the_run():
    """A fixed position (it was the last timed call) lets a solution be honest there alone."""
    import random

    from kda_mcp.tools.evaluation.judge import MIN_CHECKS, forced_checks

    rng = random.Random(7)
    draws = [forced_checks(rng, 32) for _ in range(400)]
    assert all(len(d) == MIN_CHECKS and d <= set(range(32)) for d in draws)
    assert set().union(*draws) == set(range(32))  # every call may be the checked one
    assert sum(31 in d for d in draws) < 100  # the last call is no likelier than any other (expected 25)
    assert forced_checks(rng, 1) == {0} and forced_checks(rng, 0) == set()
