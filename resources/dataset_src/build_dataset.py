#!/usr/bin/env python3
"""Generate kda-mcp's embedded sample dataset from readable sources.

The JSON files under resources/dataset/ embed Python source code as JSON
strings, which is unpleasant to edit by hand. The real sources live next to
this script, one folder per definition:

    <definition>/reference.py    the definition's reference (top-level run(inputs...) -> outputs)
    <definition>/triton_main.py  the example Triton solution (author "kda-examples")
    <definition>/baseline.py     the plain-PyTorch speedup baseline (author "baseline")

and the metadata (axes, tensors, tolerances, workloads, descriptions) is in
DEFINITIONS below. Running this script rewrites, in FlashInfer-Trace layout:

    <out>/definitions/<op_type>/<name>.json
    <out>/workloads/<op_type>/<name>.jsonl
    <out>/solutions/<author>/<op_type>/<name>/<solution>.json

Usage (from the repository root):

    python resources/dataset_src/build_dataset.py            # rewrite resources/dataset
    python resources/dataset_src/build_dataset.py --check    # exit 1 if the JSON is stale
    python resources/dataset_src/build_dataset.py --out DIR  # write elsewhere

Every generated object is validated with flashinfer_bench's pydantic models
before anything is written. Definitions carry one key that flashinfer-bench
ignores and kda-mcp reads: "tolerance" {"atol", "rtol"[, "required_matched_ratio"]}.
Workload uuids are fixed here so that regenerating never changes them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

SRC_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = SRC_DIR.parent / "dataset"

# Sub-folders of the dataset that this script owns (and rewrites entirely).
OWNED_SUBDIRS = ("definitions", "workloads", "solutions")

EXAMPLE_AUTHOR = "kda-examples"
BASELINE_AUTHOR = "baseline"


def _random(*names: str) -> Dict[str, Dict[str, str]]:
    return {n: {"type": "random"} for n in names}


DEFINITIONS: List[Dict[str, Any]] = [
    {
        "name": "vector_add_fp32",
        "op_type": "elementwise",
        "description": (
            "Elementwise sum of two float32 vectors: out = x + y. Purely memory-bound, "
            "12 bytes moved per element (two reads, one write) and no data reuse. The "
            "workloads run from launch-latency-bound (n = 4096) to DRAM-bandwidth-bound "
            "(n = 2^26, 805 MB moved, the timing-fidelity case: about 265 us at 3 TB/s on "
            "an H100). A correct kernel reproduces the reference bit for bit, hence the "
            "tight tolerance."
        ),
        "tags": ["sample", "memory-bound"],
        "axes": {
            "n": {"type": "var", "description": "Number of elements."},
        },
        "inputs": {
            "x": {"shape": ["n"], "dtype": "float32", "description": "First operand."},
            "y": {"shape": ["n"], "dtype": "float32", "description": "Second operand."},
        },
        "outputs": {
            "out": {"shape": ["n"], "dtype": "float32", "description": "x + y."},
        },
        "tolerance": {"atol": 1e-6, "rtol": 1e-6},
        "workloads": [
            ({"n": 4096}, "5fb1e157-88a6-4caa-b637-35c2fbfa5843"),
            ({"n": 65536}, "626db593-c5d3-4e46-adb5-d53403c9cd55"),
            ({"n": 1048576}, "aee584f5-4107-4a05-bfe6-1d5ae20a5ae5"),
            ({"n": 16777216}, "1ea38c9f-1543-44e4-ae84-946d3cd234c8"),
            ({"n": 67108864}, "3b451058-99c8-4d06-81f2-3d084400ed5e"),
        ],
        "example": {
            "name": "vector_add_fp32_triton_blocked",
            "description": (
                "Textbook 1-D blocked Triton kernel: one program per 1024-element block, "
                "masked tail, 4 warps. Correct and close to streaming speed on large n; "
                "untuned (block size, warps, persistent grid, cache hints) and "
                "launch-bound on small n."
            ),
        },
        "baseline": {
            "name": "vector_add_fp32_torch_baseline",
            "description": "torch.add(x, y, out=out): one eager PyTorch kernel.",
        },
    },
    {
        "name": "rmsnorm_h4096_bf16",
        "op_type": "rmsnorm",
        "description": (
            "RMSNorm over the last axis of a bf16 activation, as in Llama-style models: "
            "out = x * rsqrt(mean(x^2, axis=-1) + eps) * weight with eps = 1e-6 fixed "
            "(not an input). The reference computes in fp32 and rounds to bf16 once. "
            "A row-wise reduction that is memory-bound: each 8 KiB row is read once and "
            "written once, and the 8 KiB weight is shared by all rows. batch_size 1 to 32 "
            "is decode-like (latency-bound, few rows to spread over the SMs); 1024 and "
            "8192 are bandwidth-bound. Tolerance atol = rtol = 1e-2 admits one bf16 "
            "rounding step (at most 2^-7 relative) caused by a different summation "
            "order or an approximate rsqrt, and little more."
        ),
        "tags": ["sample", "reduction", "memory-bound"],
        "axes": {
            "batch_size": {"type": "var", "description": "Number of rows (tokens)."},
            "hidden_size": {"type": "const", "value": 4096, "description": "Row length."},
        },
        "inputs": {
            "hidden_states": {
                "shape": ["batch_size", "hidden_size"],
                "dtype": "bfloat16",
                "description": "Activations to normalize, row-major.",
            },
            "weight": {
                "shape": ["hidden_size"],
                "dtype": "bfloat16",
                "description": "Per-channel scale.",
            },
        },
        "outputs": {
            "out": {
                "shape": ["batch_size", "hidden_size"],
                "dtype": "bfloat16",
                "description": "Normalized and scaled activations.",
            },
        },
        "tolerance": {"atol": 1e-2, "rtol": 1e-2},
        # The point of the exercise is the kernel: the library's own RMSNorm is off limits.
        "policy": {"forbidden_calls": ["torch.nn.functional.rms_norm", "torch.rms_norm", "torch.nn.functional.layer_norm"]},
        "workloads": [
            ({"batch_size": 1}, "5ab42d94-b481-4e42-adac-419ca7bae86d"),
            ({"batch_size": 7}, "7b2bbfde-2fa5-4894-89f7-26dd6ae1dac6"),
            ({"batch_size": 32}, "f16df224-877d-4c44-b543-3f078166a9af"),
            ({"batch_size": 128}, "6749029a-8360-47e7-b44b-aac8cb06932b"),
            ({"batch_size": 1024}, "c20cb1ad-bbc6-4e3b-9a86-b83f211fdf83"),
            ({"batch_size": 8192}, "58d9399e-99e1-4798-8029-ece50b5e9c31"),
        ],
        "example": {
            "name": "rmsnorm_h4096_bf16_triton_row",
            "description": (
                "One Triton program per row: loads the whole 4096-wide row in one block, "
                "sums squares in fp32, writes x * rsqrt(mean + eps) * w as bf16; 8 warps. "
                "Untuned: with few rows most SMs idle, and warps, rows per program and "
                "weight caching are left at simple defaults."
            ),
        },
        "baseline": {
            "name": "rmsnorm_h4096_bf16_torch_baseline",
            "description": (
                "The reference math in eager PyTorch (fp32 intermediates, several kernels), "
                "copied into the preallocated output."
            ),
        },
    },
    {
        "name": "gemm_n4096_k4096_bf16",
        "op_type": "gemm",
        "description": (
            "C = A @ B^T for bf16 A [M, 4096] and B [4096, 4096], both row-major with K "
            "contiguous (B is laid out like a torch.nn.Linear weight), fp32 accumulation, "
            "bf16 output. M = 1 and 16 are decode-like GEMV/skinny shapes bound by reading "
            "B's 32 MiB; M = 4096 is 137 GFLOP and compute-bound on the tensor cores. "
            "Tolerance: inputs are standard normal, so each output is a sum of 4096 "
            "products with standard deviation 64. Rounding to bf16 alone costs up to 2^-8 "
            "relative, and two correct kernels that sum in different orders can land one "
            "bf16 step apart (up to 2^-7, about 0.8%); rtol = 2e-2 covers that with margin. "
            "atol = 1e-1 covers outputs near zero, where fp32 summation-order differences "
            "(about 1e-4 to 1e-3 absolute) dominate. Both are tight enough that fp8 inputs "
            "or a skipped slice of K fail."
        ),
        "tags": ["sample", "tensor-core", "compute-bound"],
        "axes": {
            "M": {"type": "var", "description": "Rows of A and C (tokens)."},
            "N": {"type": "const", "value": 4096, "description": "Rows of B, columns of C."},
            "K": {"type": "const", "value": 4096, "description": "Reduction length."},
        },
        "inputs": {
            "A": {"shape": ["M", "K"], "dtype": "bfloat16", "description": "Left operand, row-major."},
            "B": {
                "shape": ["N", "K"],
                "dtype": "bfloat16",
                "description": "Right operand stored as [N, K] row-major; the product uses its transpose.",
            },
        },
        "outputs": {
            "C": {"shape": ["M", "N"], "dtype": "bfloat16", "description": "A @ B^T."},
        },
        "tolerance": {"atol": 1e-1, "rtol": 2e-2},
        # A GEMM solution must bring its own kernel: no matmul ops, no cuBLAS (nvjet/xmma kernels).
        "policy": {
            "forbidden_calls": [
                "torch.matmul", "torch.mm", "torch.bmm", "torch.addmm", "torch.einsum", "torch.nn.functional.linear",
                "torch.Tensor.matmul", "torch.Tensor.mm", "torch.Tensor.__matmul__",
            ],
            "forbidden_kernels": ["^nvjet", "xmma_gemm", "gemv2[NT]_kernel", "gemvx", "cublas"],
            "forbidden_libraries": ["cublas"],
        },
        "workloads": [
            ({"M": 1}, "05acca6f-45ec-4ef3-8208-c6a698535395"),
            ({"M": 16}, "7dd6ce26-2abf-48d6-b10d-699f4f83e98e"),
            ({"M": 128}, "a50f7ba2-7ce3-445e-892f-ea87879edfa9"),
            ({"M": 1024}, "c593bc2c-f8dd-4b09-8f37-ad9623de0fc0"),
            ({"M": 4096}, "85028450-ece5-4556-876e-ff21a9331a82"),
        ],
        "example": {
            "name": "gemm_n4096_k4096_bf16_triton_tiled",
            "description": (
                "Tiled Triton GEMM: 128x128x64 tiles, tl.dot with fp32 accumulation, "
                "grouped (GROUP_M = 8) program order for L2 reuse, masks for M not a "
                "multiple of 128; 8 warps, 3 stages. No autotuning, split-K, persistent "
                "scheduling or TMA; wasteful for small M."
            ),
        },
        "baseline": {
            "name": "gemm_n4096_k4096_bf16_torch_baseline",
            "description": "torch.matmul(A, B.t(), out=C): the vendor GEMM (cuBLAS on CUDA).",
        },
    },
]

_DEFINITION_KEYS = (
    "name",
    "op_type",
    "description",
    "tags",
    "axes",
    "constraints",
    "inputs",
    "outputs",
    "tolerance",
    "policy",
    "reference",
)


def _read_source(definition: str, filename: str) -> str:
    text = (SRC_DIR / definition / filename).read_text(encoding="utf-8")
    return text if text.endswith("\n") else text + "\n"


def _solution(spec: Dict[str, Any], *, author: str, language: str, filename: str, def_name: str) -> Dict[str, Any]:
    return {
        "name": spec["name"],
        "definition": def_name,
        "author": author,
        "description": spec["description"],
        "spec": {
            "language": language,
            "target_hardware": ["cuda"],
            "entry_point": "main.py::run",
            "dependencies": [],
            "destination_passing_style": True,
        },
        "sources": [{"path": "main.py", "content": _read_source(def_name, filename)}],
    }


def render() -> Dict[str, str]:
    """Return {relative path: file text} for the whole dataset, validated."""
    from flashinfer_bench.data import Definition, Solution, Trace

    files: Dict[str, str] = {}
    seen_uuids: set = set()
    for meta in DEFINITIONS:
        name, op_type = meta["name"], meta["op_type"]
        definition = {k: meta[k] for k in _DEFINITION_KEYS if k in meta}
        definition["reference"] = _read_source(name, "reference.py")
        definition = {k: definition[k] for k in _DEFINITION_KEYS if k in definition}
        parsed = Definition.model_validate(definition)  # ignores "tolerance"
        files[f"definitions/{op_type}/{name}.json"] = json.dumps(definition, indent=2) + "\n"

        lines = []
        for axes, uuid in meta["workloads"]:
            if uuid in seen_uuids:
                raise ValueError(f"duplicate workload uuid {uuid}")
            seen_uuids.add(uuid)
            if set(axes) != set(parsed.var_axes):
                raise ValueError(f"{name}: workload axes {sorted(axes)} != var axes {parsed.var_axes}")
            trace = {
                "definition": name,
                "workload": {"axes": axes, "inputs": _random(*parsed.inputs), "uuid": uuid},
            }
            assert Trace.model_validate(trace).is_workload_trace()
            lines.append(json.dumps(trace))
        files[f"workloads/{op_type}/{name}.jsonl"] = "\n".join(lines) + "\n"

        for author, language, filename, spec in (
            (EXAMPLE_AUTHOR, "triton", "triton_main.py", meta["example"]),
            (BASELINE_AUTHOR, "python", "baseline.py", meta["baseline"]),
        ):
            sol = _solution(spec, author=author, language=language, filename=filename, def_name=name)
            Solution.model_validate(sol)
            files[f"solutions/{author}/{op_type}/{name}/{spec['name']}.json"] = json.dumps(sol, indent=2) + "\n"
    return files


def _existing(out: Path) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for sub in OWNED_SUBDIRS:
        for p in sorted((out / sub).rglob("*")):
            if p.is_file():
                found[p.relative_to(out).as_posix()] = p.read_text(encoding="utf-8")
    return found


def write(out: Path) -> List[str]:
    files = render()
    out.mkdir(parents=True, exist_ok=True)
    # Stage in a temporary folder first so a failure never leaves a half-written dataset.
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for rel, text in files.items():
            p = Path(tmp) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        for sub in OWNED_SUBDIRS:
            shutil.rmtree(out / sub, ignore_errors=True)
            if (Path(tmp) / sub).exists():
                shutil.move(str(Path(tmp) / sub), str(out / sub))
    return sorted(files)


def check(out: Path) -> List[str]:
    """Return a list of differences between the generated and the existing files."""
    want, have = render(), _existing(out)
    problems = [f"missing: {p}" for p in sorted(set(want) - set(have))]
    problems += [f"unexpected: {p}" for p in sorted(set(have) - set(want))]
    problems += [f"stale: {p}" for p in sorted(set(want) & set(have)) if want[p] != have[p]]
    return problems


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="dataset root (default: resources/dataset)")
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 if anything differs")
    args = ap.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for line in problems:
            print(line)
        if problems:
            print(f"dataset at {args.out} is out of date; rerun {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"dataset at {args.out} is up to date")
        return 0
    for rel in write(args.out):
        print(f"wrote {args.out / rel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
