"""sanitize_solution's racecheck grouping (issue 18, item 1): one issue per hazard kind and
source-line pair, with racecheck's total and one example, on a captured-form racecheck log.

tests/fixtures/sanitizer/racecheck_raw.log has the shape `compute-sanitizer --tool racecheck
--racecheck-report all --print-limit 200` prints for a kernel that writes smem[t + 1] at kernel.cu:9
and reads smem[t] at kernel.cu:10 with no barrier between: 200 per-byte hazard reports (150 RAW
errors in blocks 0-5, 50 WAR warnings in blocks 6-10, each at its own address), then the analysis
reports with the hazard totals, then the summary.
"""

from __future__ import annotations

from pathlib import Path

from kda_mcp.tools.sanitize.parse import parse_sanitizer

LOG = (Path(__file__).parent / "fixtures" / "sanitizer" / "racecheck_raw.log").read_text()


def test_racecheck_reports_are_one_issue_per_hazard_kind_and_line_pair():
    issues, summary = parse_sanitizer(LOG)
    assert summary == "RACECHECK SUMMARY: 262145 hazards displayed (8193 errors, 253952 warnings)"
    assert len(issues) == 2  # today: 51 groups (20 shown), one per address and block, count 1 each
    raw, war = issues
    assert raw.kind == "Error: Race reported between Write access and Read access (RAW hazard)"
    assert (raw.kernel, raw.file, raw.line, raw.second_file, raw.second_line) == ("racy(float *)", "kernel.cu", 9, "kernel.cu", 10)
    assert raw.count == 8160 + 33 and raw.reports == 150  # both instructions of line 10 fold into one pair
    assert raw.example.startswith("Error: Potential RAW hazard detected at __shared__ 0x80 in block (0,0,0)")
    assert "Write Thread (32,0,0)" in raw.example and "Read Thread (31,0,0)" in raw.example
    assert war.kind.startswith("Warning: Race reported between Read access and Write access (WAR hazard)")
    assert (war.line, war.second_line, war.count, war.reports) == (10, 9, 253952, 50)


def test_without_analysis_reports_the_printed_hazards_are_counted():
    hazards_only = "\n".join(line for line in LOG.splitlines() if "Race reported" not in line and "access at" not in line)
    [raw, war] = parse_sanitizer(hazards_only)[0]
    assert (raw.count, raw.reports, war.count, war.reports) == (150, 150, 50, 50)


def test_analysis_only_and_the_cuda_memcheck_form():
    analysis = "\n".join(line for line in LOG.splitlines() if "Potential" not in line and "Thread (" not in line and "Value :" not in line)
    [raw, war] = parse_sanitizer(analysis)[0]
    assert (raw.count, raw.reports, war.count) == (8193, None, 253952) and raw.example.startswith("Error: Race reported between Write access")
    old = (
        "========= CUDA-MEMCHECK\n"
        "========= WARN:(Warp Level Programming) Potential WAR hazard detected at __shared__ 0x3 in block (0, 0, 0) :\n"
        "=========     Read Thread (31, 0, 0) at 0x00000170 in ./race.cu:4:test(int*, int*)\n"
        "=========     Write Thread (0, 0, 0) at 0x000001a8 in ./race.cu:4:test(int*, int*)\n"
        "=========     Current Value : 0, Incoming Value : 0\n"
        "========= RACECHECK SUMMARY: 1 hazard displayed (0 errors, 1 warning)\n"
    )
    [issue], _ = parse_sanitizer(old)
    assert (issue.kernel, issue.file, issue.line, issue.second_line, issue.count) == ("test(int*, int*)", "race.cu", 4, 4, 1)
    assert "WAR hazard" in issue.kind and issue.kind.startswith("Warning")


def test_memcheck_groups_by_line_and_leaves_the_host_backtrace_out():
    log = "".join(
        f"========= Invalid __global__ write of size 4 bytes\n"
        f"=========     at oob(float *)+0x1d0 in /tmp/build/src/kernel.cu:9\n"
        f"=========     by thread ({t},0,0) in block (3,0,0)\n"
        f"=========     Address 0x7f3a{t:08x} is out of bounds\n"
        f"=========     Saved host backtrace up to driver entry point at kernel launch time\n"
        f"=========         Host Frame: [0x2f1c4c] in libcuda.so.1\n"
        "=========\n"
        for t in range(64)
    ) + "========= ERROR SUMMARY: 64 errors\n"
    [issue], summary = parse_sanitizer(log)
    assert (issue.kind, issue.kernel, issue.file, issue.line, issue.count) == ("Invalid __global__ write of size 4 bytes", "oob(float *)", "kernel.cu", 9, 64)
    assert "Saved host backtrace" not in issue.example and summary == "ERROR SUMMARY: 64 errors"
