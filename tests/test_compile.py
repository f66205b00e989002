"""compile_solution on the CPU: real nvcc builds through tvm-ffi, driven through the MCP tool."""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.test_build_parsers import CAPPED, HUNGRY, WGMMA
from kda_mcp.tools.capabilities import find_cuda_tool
from kda_mcp.tools.errors import InvalidArgumentError, NotFoundError
from kda_mcp.tools.paths import Roots
from kda_mcp.tools.solution import MAX_FILE_BYTES, SolutionInput, check_signature, packed_json, resolve_solution, to_starter_kit

needs_nvcc = pytest.mark.skipif(find_cuda_tool("nvcc") is None, reason="nvcc not installed")

# The entry point (vector add, destination-passing) plus three kernels that are never launched but
# whose compiled form the report must describe: a spilling one, a register-hungry one, a wgmma one.
# The entry point (vector add, destination-passing) plus kernels that are never launched but whose
# compiled form the report must describe: the parser tests' spilling, register-hungry and wgmma ones.
KERNEL_CU = "\n".join(
    [
        "#include <tvm/ffi/container/tensor.h>",
        "#include <tvm/ffi/function.h>",
        CAPPED,  # small_kernel, local_array (a runtime-indexed array: spills)
        HUNGRY,  # 48 live values: many registers unless capped
        WGMMA,  # one warpgroup MMA (sm_90a)
        r"""
__global__ void add_kernel(const float* x, const float* y, float* out, long n) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = x[i] + y[i];
}

void run(tvm::ffi::TensorView x, tvm::ffi::TensorView y, tvm::ffi::TensorView out) {
  long n = x.size(0);
  add_kernel<<<(n + 255) / 256, 256>>>(static_cast<const float*>(x.data_ptr()),
                                       static_cast<const float*>(y.data_ptr()),
                                       static_cast<float*>(out.data_ptr()), n);
}
TVM_FFI_DLL_EXPORT_TYPED_FUNC(run, run);
""",
    ]
)

SPEC = {"language": "cuda", "entry_point": "kernel.cu::run"}


def solution(files: dict[str, str], **extra) -> dict:
    return {"files": files, "spec": SPEC, "definition": "vector_add_fp32", **extra}


def call(mcp_server, name: str, args: dict):
    async def main():
        async with Client(mcp_server, mode="legacy") as client:
            return await client.call_tool(name, args)

    return anyio.run(main)


def kernel(result: dict, fragment: str) -> dict:
    [hit] = [k for k in result["kernels"] if fragment in (k.get("demangled") or k["name"])]
    return hit


@needs_nvcc
@pytest.mark.slow
def test_cuda_build_reports_resources_and_sass(mcp_server):
    first = call(mcp_server, "compile_solution", {"solution": solution({"kernel.cu": KERNEL_CU}), "arch": "sm_90a"})
    r = first.structured_content
    assert r["status"] == "ok", r
    assert r["target"] == "sm_90a" and r["cache_hit"] is False and len(r["artifact_hash"]) == 64
    add = kernel(r, "add_kernel")
    assert 4 <= add["registers"] <= 32 and add["spill_store_bytes"] == 0
    assert add["sass"]["global_loads_by_width"] == {"32": 2}
    spill = kernel(r, "local_array")
    assert spill["stack_frame_bytes"] > 0 and spill["sass"]["local_loads"] > 0
    assert any("local_array" in w for w in r["warnings"]) and any("local memory" in w or "spill" in w for w in r["warnings"])
    assert kernel(r, "wgmma_tile")["sass"]["tensor_core"]["HGMMA"] >= 1
    free_registers = kernel(r, "hungry(")["registers"]
    assert free_registers > 32

    # The same sources again: answered from the cache, well under a second.
    started = time.monotonic()
    again = call(mcp_server, "compile_solution", {"solution": solution({"kernel.cu": KERNEL_CU}), "arch": "sm_90a"})
    assert time.monotonic() - started < 1.0
    assert again.structured_content["cache_hit"] is True
    assert again.structured_content["artifact_hash"] == r["artifact_hash"]

    # An extra nvcc flag is passed through (and is part of the cache key): the register cap holds.
    capped = call(
        mcp_server,
        "compile_solution",
        {"solution": solution({"kernel.cu": KERNEL_CU}), "arch": "sm_90a", "extra_nvcc_flags": ["-maxrregcount=32"]},
    ).structured_content
    assert capped["status"] == "ok" and capped["cache_hit"] is False
    assert kernel(capped, "hungry(")["registers"] <= 32 < free_registers


@needs_nvcc
@pytest.mark.slow
def test_syntax_error_points_at_file_and_line(mcp_server):
    broken = KERNEL_CU.replace("  if (i < n) out[i] = x[i] + y[i];", "  if (i < n) out[i] = x[i] + undefined_name;")
    line = broken.splitlines().index("  if (i < n) out[i] = x[i] + undefined_name;") + 1
    result = call(mcp_server, "compile_solution", {"solution": solution({"kernel.cu": broken}), "include_log": True})
    r = result.structured_content
    assert r["status"] == "failed"
    first = r["diagnostics"][0]
    assert (first["file"], first["line"], first["severity"]) == ("kernel.cu", line, "error")
    assert "undefined_name" in first["message"]
    assert f"kernel.cu:{line}" in r["message"] and "undefined_name" in r["log"]


def test_triton_without_gpu_needs_gpu(mcp_server, server_and_app):
    _, app = server_and_app
    if app.capabilities().gpus:
        pytest.skip("this machine has a GPU; the GPU suite covers Triton")
    source = json.loads(Path("resources/dataset/solutions/kda-examples/elementwise/vector_add_fp32/vector_add_fp32_triton_blocked.json").read_text())
    result = call(mcp_server, "compile_solution", {"solution": {"solution_json": source}})
    r = result.structured_content
    assert r["status"] == "needs_gpu" and "GPU" in r["message"]
    broken = dict(source, sources=[{"path": "main.py", "content": "def run(x, y, out):\n    return x +\n"}])
    bad = call(mcp_server, "compile_solution", {"solution": {"solution_json": broken}}).structured_content
    assert bad["status"] == "failed" and bad["diagnostics"][0]["line"] == 2


@pytest.mark.parametrize(
    "files, message",
    [
        ({"../escape.cu": "x"}, "leaves the solution folder"),
        ({"/etc/passwd": "x"}, "absolute"),
        ({"a\\b.cu": "x"}, "backslashes"),
        ({"kernel.cu": "x" * (MAX_FILE_BYTES + 1)}, "MiB"),
        ({f"f{i}.cu": "x" for i in range(100)}, "at most"),
    ],
)
def test_refuses_bad_paths_and_sizes(mcp_server, files, message):
    files = dict(files)
    if all(not k.endswith("kernel.cu") for k in files):
        files["kernel.cu"] = "int x;"
    result = call(mcp_server, "compile_solution", {"solution": solution(files)})
    assert result.is_error
    assert message in result.content[0].text


def test_refuses_link_out_of_a_directory(tmp_path: Path):
    (tmp_path / "config.toml").write_text('[solution]\nname="s"\ndefinition="vector_add_fp32"\n[build]\nlanguage="cuda"\nentry_point="kernel.cu::run"\n')
    (tmp_path / "kernel.cu").write_text("int x;")
    outside = tmp_path.parent / "secret.cu"
    outside.write_text("int secret;")
    (tmp_path / "leak.cu").symlink_to(outside)
    with pytest.raises(InvalidArgumentError, match="outside the solution folder"):
        resolve_solution(SolutionInput(path=str(tmp_path)))


def test_signature_must_match_the_definition(server_and_app):
    _, app = server_and_app
    definition = app.dataset().definition("vector_add_fp32")
    spec = {"language": "triton", "entry_point": "main.py::run"}
    wrong = resolve_solution(SolutionInput(files={"main.py": "def run(x, y):\n    pass\n"}, spec=spec, definition="vector_add_fp32"))
    with pytest.raises(InvalidArgumentError, match=r"run\(x, y, out\)"):
        check_signature(wrong, definition)
    renamed = resolve_solution(SolutionInput(files={"main.py": "def run(a, b, c):\n    pass\n"}, spec=spec, definition="vector_add_fp32"))
    assert "by position" in check_signature(renamed, definition)[0]
    missing = resolve_solution(SolutionInput(files={"main.py": "def other(x, y, out):\n    pass\n"}, spec=spec, definition="vector_add_fp32"))
    with pytest.raises(InvalidArgumentError, match="no top-level function 'run'"):
        check_signature(missing, definition)
    # The last binding is what runs: a wrapper that redefines run after the function it wraps.
    wrapped = "def run(x, y):\n    return x + y\n\n_inner = run\n\ndef run(x, y, out):\n    out.copy_(_inner(x, y))\n"
    assert check_signature(resolve_solution(SolutionInput(files={"main.py": wrapped}, spec=spec, definition="vector_add_fp32")), definition) == []
    rebound = "def run(x, y, out):\n    pass\n\nrun = make_run()\n"
    assert "is assigned" in check_signature(resolve_solution(SolutionInput(files={"main.py": rebound}, spec=spec, definition="vector_add_fp32")), definition)[0]


def test_unknown_definition_and_missing_forms(mcp_server):
    result = call(mcp_server, "compile_solution", {"solution": {**solution({"kernel.cu": "int x;"}), "definition": "vector_add"}})
    assert result.is_error and "vector_add_fp32" in result.content[0].text
    result = call(mcp_server, "compile_solution", {"solution": {"definition": "vector_add_fp32"}})
    assert result.is_error and "exactly one form" in result.content[0].text
    with pytest.raises(NotFoundError):
        resolve_solution(SolutionInput(path="/nonexistent/solution.json"))


def test_starter_kit_pack_unpack_round_trip(mcp_server, tmp_path: Path):
    kit = tmp_path / "kit"
    (kit / "solution" / "triton").mkdir(parents=True)
    (kit / "config.toml").write_text(
        '[solution]\nname = "add-v1"\ndefinition = "vector_add_fp32"\nauthor = "me"\n\n'
        '[build]\nlanguage = "triton"\nentry_point = "kernel.py::run"\n'
    )
    (kit / "solution" / "triton" / "kernel.py").write_text("from helpers import scale\n\ndef run(x, y, out):\n    out.copy_(x + y)\n")
    (kit / "solution" / "triton" / "helpers.py").write_text("def scale(v):\n    return v\n")
    (kit / "solution" / "triton" / "__pycache__").mkdir()
    (kit / "solution" / "triton" / "__pycache__" / "junk.py").write_text("skipped")

    packed = call(mcp_server, "pack_solution", {"solution": {"path": str(kit)}}).structured_content
    data = json.loads(packed["solution_json"])
    assert (data["name"], data["definition"], data["author"]) == ("add-v1", "vector_add_fp32", "me")
    assert sorted(s["path"] for s in data["sources"]) == ["helpers.py", "kernel.py"]

    written = call(mcp_server, "pack_solution", {"solution": {"path": str(kit)}, "output_path": str(tmp_path / "solution.json")})
    assert written.structured_content["written"].endswith("solution.json")
    refused = call(mcp_server, "pack_solution", {"solution": {"path": str(kit)}, "output_path": str(tmp_path / "solution.json")})
    assert refused.is_error and "overwrite" in refused.content[0].text

    out = tmp_path / "unpacked"
    call(mcp_server, "unpack_solution", {"solution": {"path": str(tmp_path / "solution.json")}, "folder": str(out)})
    again = resolve_solution(SolutionInput(path=str(out)))
    original = resolve_solution(SolutionInput(path=str(kit)))
    assert packed_json(again) == packed_json(original)
    with pytest.raises(InvalidArgumentError, match="overwrite"):
        to_starter_kit(again, out, overwrite=False, roots=Roots(workspaces=(tmp_path.resolve(),)))


def test_an_attempt_id_names_the_solution_it_ran(mcp_server, server_and_app):
    _, app = server_and_app
    ran = resolve_solution(SolutionInput(files={"main.py": "def run(x, y, out):\n    out.copy_(x + y)\n"}, spec={"language": "python", "entry_point": "main.py::run"}, definition="vector_add_fp32", name="from-ledger"))
    attempt = app.ledger.record(app.ledger.new_id(), solution=ran, parent=None, job_id=None, result={"aggregate": {"passed": 0, "total": 0}})
    packed = call(mcp_server, "pack_solution", {"solution": {"attempt": attempt}}).structured_content
    assert json.loads(packed["solution_json"])["sources"][0]["content"] == ran.sources[0].content
    missing = call(mcp_server, "pack_solution", {"solution": {"attempt": "a9999"}})
    assert missing.is_error and "Unknown attempt" in missing.content[0].text
