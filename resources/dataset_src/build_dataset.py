#!/usr/bin/env python3
"""Generate kda-mcp's embedded sample dataset from readable sources.

The JSON files under resources/dataset/ embed Python source code as JSON
strings, which is unpleasant to edit by hand. The real sources live next to
this script, one folder per definition:

    <definition>/reference.py    the definition's reference (top-level run(inputs...) -> outputs)
    <definition>/triton_main.py  the example Triton solution (author "kda-examples"), if any
    <definition>/baseline.py     the plain-PyTorch speedup baseline (author "baseline"), if any

and the metadata (axes, tensors, tolerances, workloads, descriptions) is in
DEFINITIONS below: the three samples, then the five MLSys 2026 contest kernels
(CONTEST_DEFINITIONS). Running this script rewrites, in FlashInfer-Trace layout:

    <out>/definitions/<op_type>/<name>.json
    <out>/workloads/<op_type>/<name>.jsonl
    <out>/solutions/<author>/<op_type>/<name>/<solution>.json
    <out>/blob/workloads/<op_type>/<name>/<file>.safetensors   (inputs workloads read from files)

Usage (from the repository root):

    python resources/dataset_src/build_dataset.py            # rewrite resources/dataset
    python resources/dataset_src/build_dataset.py --check    # exit 1 if the JSON is stale
    python resources/dataset_src/build_dataset.py --out DIR  # write elsewhere

Every generated object is validated with flashinfer_bench's pydantic models
before anything is written. Definitions carry keys that flashinfer-bench ignores
and kda-mcp reads: "tolerance" {"atol", "rtol"[, "required_matched_ratio"]},
"policy" (forbidden calls and kernels, a speedup ceiling), "floor_check" (false
where a correct kernel reads far less than every input), and "input_rules" (valid
values for constrained inputs: tools/evaluation/input_rules.py, checked here).
Workload uuids are fixed here so that regenerating never changes them, and blobs
are made from fixed seeds, so their bytes never change either.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

SRC_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = SRC_DIR.parent / "dataset"

# Sub-folders of the dataset that this script owns (and rewrites entirely).
OWNED_SUBDIRS = ("definitions", "workloads", "solutions", "blob")

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


# ---------------------------------------------------------------------------
# The MLSys 2026 FlashInfer contest kernels, under their official names, axes, input and output
# names, shapes and dtypes; references written here from the math. Workloads use contest-like
# axis values; inputs a definition constrains follow its "input_rules" (see
# tools/evaluation/input_rules.py). Sources live in <definition>/reference.py like the samples.
# ---------------------------------------------------------------------------

MOE = "moe_fp8_block_scale_ds_routing_topk8_ng8_kg4_e32_h7168_i2048"
DSA = "dsa_sparse_attention_h16_ckv512_kpe64_topk2048_ps64"
INDEXER = "dsa_topk_indexer_fp8_h64_d128_topk2048_ps64"
GDN_DECODE = "gdn_decode_qk4_v8_d128_k_last"
GDN_PREFILL = "gdn_prefill_qk4_v8_d128_k_last"

ROUTING_BIAS_BLOB = f"blob/workloads/moe/{MOE}/routing_bias.safetensors"
DEEPSEEK_SM_SCALE = 0.1352337788608801  # 1/sqrt(128 + 64) times YaRN's mscale squared, as DeepSeek-V3.2 runs
GDN_SCALE = 0.08838834764831845  # 1/sqrt(128)


def _routing_bias() -> Dict[str, Any]:
    """A fixed, mild expert bias (synthetic, not a model's): N(0, 0.05) per expert, as bf16.

    Drawn with Python's own generator, so the blob's bytes do not depend on torch's RNG."""
    import random

    import torch

    rng = random.Random(20260)
    return {"routing_bias": torch.tensor([rng.gauss(0.0, 0.05) for _ in range(256)], dtype=torch.bfloat16)}


def _moe_workloads() -> List[Any]:
    sizes = [1, 7, 14, 15, 16, 32, 52, 53, 54, 55, 56, 57, 58, 59, 62, 80, 901, 11948, 14107]
    uuids = [
        "97d8c7fc-f6aa-4d6c-8832-47ce82f31cf9", "ef5df35e-d29c-4c04-9f77-b989db8a1652", "66f7a8fd-67c9-4ab6-bee7-aa0b1b0f01d3",
        "ffd7e194-9a53-4143-a379-620c25ca0e7c", "4d3517d8-2f18-492d-afa7-89fd567695ba", "c31f8239-d077-4eb3-ad11-82299d1eeeb2",
        "086eae04-a7d3-43c6-adcf-44a2d059f1c8", "77b839cb-6785-4cea-a90c-bdfd167251ff", "b366e67d-1ed9-4851-851d-022d7b07b6d9",
        "ae1a7803-bb90-4f15-85c3-992e8c0052eb", "da9aac97-8ca8-49fd-8bb5-734973f013c1", "1930ccd8-0888-4458-8f5a-33ef3eb4967b",
        "5a569e0b-0bba-487e-975e-6759f6ae3fd7", "97be519a-3c99-411c-b3ff-e7bd7d3c9403", "4004ed3b-a0ce-44b6-9dbe-9933c45f6e99",
        "7f0ca107-551f-45c8-8d04-cf3bee755d71", "96f0bbf8-ab85-43c3-aa1f-68a725feeea7", "855411e4-4754-4f0f-9e80-e5ee8c360a70",
        "c6a0101b-80eb-409d-b3e6-f25328ff1ca9",
    ]  # fmt: skip
    rows = []
    for i, (seq_len, uuid) in enumerate(zip(sizes, uuids)):
        # The expert-parallel rank is fixed per workload (reproducible runs); two workloads leave
        # it random, so its input rule (a multiple of 32) decides it.
        offset = None if seq_len in (15, 55) else 32 * (i % 8)
        inputs = {"routing_bias": {"type": "safetensors", "path": ROUTING_BIAS_BLOB, "tensor_key": "routing_bias"}}
        inputs["routed_scaling_factor"] = {"type": "scalar", "value": 2.5}
        if offset is not None:
            inputs["local_expert_offset"] = {"type": "scalar", "value": offset}
        rows.append(({"seq_len": seq_len}, uuid, inputs))
    return rows


CONTEST_DEFINITIONS: List[Dict[str, Any]] = [
    {
        "name": MOE,
        "op_type": "moe",
        "description": (
            "DeepSeek-V3/R1 mixture-of-experts layer on one expert-parallel rank (32 of 256 experts), with FP8 "
            "block-scaled weights and activations: routing, then two grouped GEMMs with a SwiGLU between. "
            "Routing: s = sigmoid(routing_logits); selection scores s + routing_bias; 8 groups of 32 experts, a "
            "group scores the sum of its two best selection scores; the 4 best groups stay and the 8 best experts "
            "inside them are chosen; their combine weights are the unbiased s, normalized to sum 1, times "
            "routed_scaling_factor. Only experts local_expert_offset .. +31 are computed: h = x W1^T (4096 wide), "
            "u = h[:, :2048], g = h[:, 2048:], y = (u * silu(g)) W2^T; the output is the weighted sum over the "
            "token's local experts in fp32, rounded to bf16 once. Dequantization: activations have one fp32 scale "
            "per token and 128 hidden channels, stored block-first as [56, seq_len]; weights one per 128 x 128 "
            "block. Decode-sized workloads (seq_len up to 80) are bound by reading the weights of the few experts "
            "hit; the 901 to 14107 token workloads are FP8 tensor-core GEMMs over all 32 experts. Tolerance as the "
            "contest: |out - ref| <= 1 + 0.3 |ref| on at least 90% of the elements, because an expert chosen on a "
            "near-tie may differ between correct implementations. routing_bias comes from a small blob shared by "
            "every workload (a fixed synthetic bias; a random N(0,1) bias would send every token to the same few "
            "experts); routed_scaling_factor is 2.5; local_expert_offset is fixed per workload except in two, "
            "where its input rule draws a multiple of 32. The physical-floor check is off: a kernel reads only "
            "the weights of the experts its tokens chose, far less than every input."
        ),
        "tags": ["contest:mlsys26", "model:deepseek-v3", "quantization:float8_e4m3fn"],
        "axes": {
            "seq_len": {"type": "var", "description": "Number of tokens."},
            "num_experts": {"type": "const", "value": 256, "description": "Experts in the model (routing width)."},
            "num_local_experts": {"type": "const", "value": 32, "description": "Experts on this rank (expert parallelism 8)."},
            "hidden_size": {"type": "const", "value": 7168, "description": "Model width."},
            "intermediate_size": {"type": "const", "value": 2048, "description": "Expert FFN width."},
            "gemm1_out_size": {"type": "const", "value": 4096, "description": "First GEMM's width: up and gate halves, 2 x intermediate_size."},
            "num_hidden_blocks": {"type": "const", "value": 56, "description": "hidden_size / 128 quantization blocks."},
            "num_intermediate_blocks": {"type": "const", "value": 16, "description": "intermediate_size / 128 quantization blocks."},
            "num_gemm1_out_blocks": {"type": "const", "value": 32, "description": "gemm1_out_size / 128 quantization blocks."},
        },
        "constraints": [
            "gemm1_out_size == 2 * intermediate_size",
            "num_hidden_blocks * 128 == hidden_size",
            "num_intermediate_blocks * 128 == intermediate_size",
            "num_gemm1_out_blocks * 128 == gemm1_out_size",
        ],
        "inputs": {
            "routing_logits": {"shape": ["seq_len", "num_experts"], "dtype": "float32", "description": "Router logits per token and expert."},
            "routing_bias": {"shape": ["num_experts"], "dtype": "bfloat16", "description": "Expert bias added to the sigmoid scores for selection only."},
            "hidden_states": {"shape": ["seq_len", "hidden_size"], "dtype": "float8_e4m3fn", "description": "FP8 activations."},
            "hidden_states_scale": {"shape": ["num_hidden_blocks", "seq_len"], "dtype": "float32", "description": "Activation scales, one per 128 channels of a token; block index first."},
            "gemm1_weights": {"shape": ["num_local_experts", "gemm1_out_size", "hidden_size"], "dtype": "float8_e4m3fn", "description": "Up (first half) and gate (second half) projections of the local experts, [out, in]."},
            "gemm1_weights_scale": {"shape": ["num_local_experts", "num_gemm1_out_blocks", "num_hidden_blocks"], "dtype": "float32", "description": "One scale per 128 x 128 block of gemm1_weights."},
            "gemm2_weights": {"shape": ["num_local_experts", "hidden_size", "intermediate_size"], "dtype": "float8_e4m3fn", "description": "Down projections of the local experts, [out, in]."},
            "gemm2_weights_scale": {"shape": ["num_local_experts", "num_hidden_blocks", "num_intermediate_blocks"], "dtype": "float32", "description": "One scale per 128 x 128 block of gemm2_weights."},
            "local_expert_offset": {"shape": None, "dtype": "int32", "description": "Global id of this rank's first expert."},
            "routed_scaling_factor": {"shape": None, "dtype": "float32", "description": "Multiplies the normalized combine weights."},
        },
        "outputs": {
            "output": {"shape": ["seq_len", "hidden_size"], "dtype": "bfloat16", "description": "Weighted sum of the token's local experts' outputs."},
        },
        "tolerance": {"atol": 1.0, "rtol": 0.3, "required_matched_ratio": 0.9},
        "floor_check": False,
        "policy": {"speedup_ceiling": 1000},
        "input_rules": {
            "local_expert_offset": {"kind": "choice", "values": [0, 32, 64, 96, 128, 160, 192, 224], "description": "the first expert of one of the 8 ranks"},
        },
        "blobs": {ROUTING_BIAS_BLOB: _routing_bias},
        "workloads": _moe_workloads(),
    },
    {
        "name": DSA,
        "op_type": "dsa_paged",
        "description": (
            "DeepSeek-V3.2 sparse attention (MLA, absorbed form) over a paged latent cache: each token attends "
            "only to the 2048 cache rows its indexer chose. Row r of the flattened cache is page r // 64, slot "
            "r % 64 (sparse_indices hold r; -1 is padding, always after the valid entries, as the indexer writes "
            "them). Per token and head, over the valid rows j: logit_j = sm_scale (q_nope . ckv_j + q_pe . kpe_j); "
            "output = softmax(logit) . ckv (the 512-wide latent is both key and value); lse is the log-sum-exp "
            "of the scaled logits in base 2 (natural value / ln 2). A token with no valid index gives output 0 "
            "and lse -inf. Decode-like: 1 to 8 tokens over caches of up to 8192 pages; a token gathers about "
            "2.3 MB (2048 rows x 1152 bytes), so the cost is the scattered gather, 16 heads sharing each row. "
            "sm_scale is the value DeepSeek-V3.2 runs with. Workloads with fewer than 32 pages hold fewer rows "
            "than topk, so every row is padded. The physical-floor check is off: a kernel reads only the "
            "selected rows, not the whole cache."
        ),
        "tags": ["contest:mlsys26", "model:deepseek-v3.2", "sparse:topk"],
        "axes": {
            "num_tokens": {"type": "var", "description": "Query tokens (decode: one per sequence)."},
            "num_qo_heads": {"type": "const", "value": 16, "description": "Query heads (TP 8 of 128)."},
            "head_dim_ckv": {"type": "const", "value": 512, "description": "Compressed KV (latent) width."},
            "head_dim_kpe": {"type": "const", "value": 64, "description": "Rotary key part width."},
            "page_size": {"type": "const", "value": 64, "description": "Tokens per cache page."},
            "topk": {"type": "const", "value": 2048, "description": "Selected rows per token."},
            "num_pages": {"type": "var", "description": "Pages in the cache."},
        },
        "constraints": ["sparse_indices.shape[0] == num_tokens", "sparse_indices.shape[-1] == topk", "ckv_cache.shape[1] == page_size"],
        "inputs": {
            "q_nope": {"shape": ["num_tokens", "num_qo_heads", "head_dim_ckv"], "dtype": "bfloat16", "description": "Query in latent space (absorbed)."},
            "q_pe": {"shape": ["num_tokens", "num_qo_heads", "head_dim_kpe"], "dtype": "bfloat16", "description": "Rotary part of the query."},
            "ckv_cache": {"shape": ["num_pages", "page_size", "head_dim_ckv"], "dtype": "bfloat16", "description": "Paged compressed KV cache."},
            "kpe_cache": {"shape": ["num_pages", "page_size", "head_dim_kpe"], "dtype": "bfloat16", "description": "Paged rotary key cache."},
            "sparse_indices": {"shape": ["num_tokens", "topk"], "dtype": "int32", "description": "Flat cache rows page * 64 + slot per token; -1 pads the tail."},
            "sm_scale": {"shape": None, "dtype": "float32", "description": "Softmax scale."},
        },
        "outputs": {
            "output": {"shape": ["num_tokens", "num_qo_heads", "head_dim_ckv"], "dtype": "bfloat16", "description": "Attention output in latent space."},
            "lse": {"shape": ["num_tokens", "num_qo_heads"], "dtype": "float32", "description": "Base-2 log-sum-exp of the scaled logits; -inf without a valid row."},
        },
        "tolerance": {"atol": 1e-2, "rtol": 1e-2},
        "floor_check": False,
        "policy": {"speedup_ceiling": 500},
        "input_rules": {
            "sparse_indices": {
                "kind": "indices", "high": "num_pages * page_size", "valid_min": 0, "valid_max": "min(topk, num_pages * page_size)",
                "full_fraction": 0.75, "pad": -1,
                "description": "distinct rows of the cache; 3 in 4 tokens use all they can, the rest a random count, padded with -1",
            },
        },  # fmt: skip
        "workload_inputs": {"sm_scale": {"type": "scalar", "value": DEEPSEEK_SM_SCALE}},
        "workloads": [
            ({"num_tokens": 1, "num_pages": 40}, "7bf2f577-4884-4ff0-a8a8-550c679c603d"),
            ({"num_tokens": 2, "num_pages": 20}, "7dd50a4c-acd2-4c5b-81f7-6184b29ad15a"),
            ({"num_tokens": 1, "num_pages": 1024}, "eb1e7230-9c24-4683-902c-966aacd2b021"),
            ({"num_tokens": 1, "num_pages": 4096}, "9034d36f-270e-4814-a264-4b5f1e47706c"),
            ({"num_tokens": 2, "num_pages": 2048}, "b00deefe-108e-427e-8f6a-3c28ffbba578"),
            ({"num_tokens": 3, "num_pages": 3072}, "6ff1d2c4-8cfb-4fec-985d-24008cc45970"),
            ({"num_tokens": 4, "num_pages": 1536}, "7a576081-853d-4d9d-9390-2ab0ea5a37a2"),
            ({"num_tokens": 5, "num_pages": 5000}, "5078c954-7fb4-49a2-ae4c-fe4df3c59fe2"),
            ({"num_tokens": 6, "num_pages": 6144}, "5769ef21-3b10-46c4-b5b5-c7b375a82ed7"),
            ({"num_tokens": 7, "num_pages": 2500}, "d5bba050-5f6e-4601-ae64-a82163e11020"),
            ({"num_tokens": 8, "num_pages": 4096}, "24cc202c-ea13-427e-9e96-08a2d1c6885d"),
            ({"num_tokens": 8, "num_pages": 8192}, "0608e86e-21ae-47fc-85bd-5e3f42f10d4b"),
        ],
    },
    {
        "name": INDEXER,
        "op_type": "dsa_paged",
        "description": (
            "DeepSeek-V3.2 sparse-attention indexer: choose, per batch row, the 2048 tokens of its sequence the "
            "main attention will read. Keys are FP8 in DeepGEMM's packed page: per page, 64 x 128 float8_e4m3fn "
            "key bytes (token-major) and then 64 float32 scales, one per token, 8448 bytes viewed as int8 "
            "[64, 1, 132] (that view does not follow the layout). For row b, over its first seq_lens[b] tokens "
            "(token t in page block_table[b, t // 64], slot t % 64): key_t = fp8 key x its scale; score_t = "
            "sum over the 64 heads of weights[b, h] * relu(q[b, h] . key_t); the top min(2048, seq_len) tokens "
            "are written as flat indices page * 64 + slot, highest score first (equal scores: earlier token "
            "first), then -1. The output is compared exactly, position by position: produce the same order. "
            "Inputs by rule: the cache holds valid FP8 keys and positive scales; seq_lens lie in [1, "
            "max_num_pages * 64], drawn once per workload; block tables hold distinct pages. Cost: reading "
            "the keys of every sequence's pages (132 bytes a token) and a 64 x 128 FP8 GEMV per token, then a "
            "top-k over up to 64K scores per row. The physical-floor check is off: only the pages of each "
            "sequence's length are read."
        ),
        "tags": ["contest:mlsys26", "model:deepseek-v3.2", "sparse:topk", "quantization:float8_e4m3fn"],
        "axes": {
            "batch_size": {"type": "var", "description": "Sequences (one query token each)."},
            "num_index_heads": {"type": "const", "value": 64, "description": "Indexer heads."},
            "index_head_dim": {"type": "const", "value": 128, "description": "Indexer head width."},
            "page_size": {"type": "const", "value": 64, "description": "Tokens per cache page."},
            "topk": {"type": "const", "value": 2048, "description": "Tokens chosen per sequence."},
            "max_num_pages": {"type": "var", "description": "Columns of the block table."},
            "num_pages": {"type": "var", "description": "Pages in the cache."},
            "kv_cache_num_heads": {"type": "const", "value": 1, "description": "Key heads in the cache (one, shared)."},
            "head_dim_with_scale": {"type": "const", "value": 132, "description": "128 key bytes + 4 scale bytes per token, as the view counts them."},
        },
        "constraints": ["topk <= max_num_pages * page_size"],
        "inputs": {
            "q_index_fp8": {"shape": ["batch_size", "num_index_heads", "index_head_dim"], "dtype": "float8_e4m3fn", "description": "Indexer queries."},
            "k_index_cache_fp8": {"shape": ["num_pages", "page_size", "kv_cache_num_heads", "head_dim_with_scale"], "dtype": "int8", "description": "Packed FP8 key pages with per-token scales (see the description)."},
            "weights": {"shape": ["batch_size", "num_index_heads"], "dtype": "float32", "description": "Per-head weights of the scores."},
            "seq_lens": {"shape": ["batch_size"], "dtype": "int32", "description": "Tokens in each sequence."},
            "block_table": {"shape": ["batch_size", "max_num_pages"], "dtype": "int32", "description": "Cache page of each 64-token block of each sequence."},
        },
        "outputs": {
            "topk_indices": {"shape": ["batch_size", "topk"], "dtype": "int32", "description": "Chosen flat cache indices, best first; -1 pads."},
        },
        "tolerance": {"atol": 1e-2, "rtol": 1e-2},  # an integer output is compared exactly whatever these say
        "floor_check": False,
        "policy": {"speedup_ceiling": 2000},
        "input_rules": {
            "k_index_cache_fp8": {"kind": "fp8_pages_with_scales", "head_dim": "index_head_dim", "scale_low": 0.01, "scale_high": 0.1},
            "seq_lens": {"kind": "int_range", "low": 1, "high": "max_num_pages * page_size", "per": "workload"},
            "block_table": {"kind": "page_table", "pages": "num_pages"},
        },
        "workloads": [
            ({"batch_size": 1, "max_num_pages": 32, "num_pages": 32}, "67493920-da9b-4e03-bb8a-e84f2aa0c8b9"),
            ({"batch_size": 1, "max_num_pages": 1024, "num_pages": 1024}, "f133ab09-f29e-4662-a945-72b5096e5e2a"),
            ({"batch_size": 4, "max_num_pages": 128, "num_pages": 512}, "cb533db3-10bb-43cb-b0a3-b893efc7d70c"),
            ({"batch_size": 8, "max_num_pages": 256, "num_pages": 2048}, "d764d247-7396-4461-9dbf-4f3c19960a5c"),
            ({"batch_size": 16, "max_num_pages": 64, "num_pages": 1024}, "85c385a4-e9c5-44a4-b2da-a59d77eed9d7"),
            ({"batch_size": 32, "max_num_pages": 160, "num_pages": 5120}, "ceeff836-1ffe-4f6b-b2fb-418961d2bed3"),
            ({"batch_size": 64, "max_num_pages": 32, "num_pages": 2048}, "07ed122c-4fc1-47bf-90bd-bcc4d15374e7"),
            ({"batch_size": 64, "max_num_pages": 256, "num_pages": 16384}, "f1a93294-9e92-4a85-84d2-7e4b5095fb00"),
        ],
    },
    {
        "name": GDN_DECODE,
        "op_type": "gdn",
        "description": (
            "Gated DeltaNet decode step (Qwen3-Next linear attention, TP 4: 4 query/key heads, 8 value heads, "
            "head size 128), state in k-last layout [batch, v-head, V, K]. Per batch and value head h (query and "
            "key head h // 2), with S the state as a [K, V] matrix: g = exp(-exp(A_log) softplus(a + dt_bias)), "
            "beta = sigmoid(b); S' = g S; r = k^T S'; u = beta v + (1 - beta) r; S_new = S' + k (u - r)^T; "
            "output = scale q^T S_new; new_state is S_new in k-last layout; scale 0 means 1/sqrt(128). In fp32 "
            "throughout. Memory-bound on the state: 512 KiB read and written per sequence per step, a few FLOPs "
            "per state element; batch 1 to 64. q and k are drawn L2-normalized (their input rule), as the layer "
            "feeds them; scale is 1/sqrt(128), or 0 in one workload."
        ),
        "tags": ["contest:mlsys26", "model:qwen3-next", "stage:decode", "layout:k-last"],
        "axes": {
            "batch_size": {"type": "var", "description": "Sequences decoded together."},
            "seq_len": {"type": "const", "value": 1, "description": "One token per sequence."},
            "num_q_heads": {"type": "const", "value": 4, "description": "Query heads."},
            "num_k_heads": {"type": "const", "value": 4, "description": "Key heads."},
            "num_v_heads": {"type": "const", "value": 8, "description": "Value heads (and state heads)."},
            "head_size": {"type": "const", "value": 128, "description": "K and V width."},
        },
        "constraints": ["num_v_heads >= num_q_heads", "num_v_heads % num_q_heads == 0", "num_k_heads == num_q_heads"],
        "inputs": {
            "q": {"shape": ["batch_size", "seq_len", "num_q_heads", "head_size"], "dtype": "bfloat16", "description": "Queries."},
            "k": {"shape": ["batch_size", "seq_len", "num_k_heads", "head_size"], "dtype": "bfloat16", "description": "Keys."},
            "v": {"shape": ["batch_size", "seq_len", "num_v_heads", "head_size"], "dtype": "bfloat16", "description": "Values."},
            "state": {"shape": ["batch_size", "num_v_heads", "head_size", "head_size"], "dtype": "float32", "optional": True, "description": "Recurrent state, k-last [B, HV, V, K]."},
            "A_log": {"shape": ["num_v_heads"], "dtype": "float32", "description": "Log decay rate per head."},
            "a": {"shape": ["batch_size", "seq_len", "num_v_heads"], "dtype": "bfloat16", "description": "Input-dependent decay."},
            "dt_bias": {"shape": ["num_v_heads"], "dtype": "float32", "description": "Decay bias, added to a before softplus."},
            "b": {"shape": ["batch_size", "seq_len", "num_v_heads"], "dtype": "bfloat16", "description": "Write-gate logits: beta = sigmoid(b)."},
            "scale": {"shape": None, "dtype": "float32", "description": "Output scale; 0 means 1/sqrt(head_size)."},
        },
        "outputs": {
            "output": {"shape": ["batch_size", "seq_len", "num_v_heads", "head_size"], "dtype": "bfloat16", "description": "Attention output."},
            "new_state": {"shape": ["batch_size", "num_v_heads", "head_size", "head_size"], "dtype": "float32", "description": "Updated state, k-last."},
        },
        "tolerance": {"atol": 1e-2, "rtol": 1e-2},
        "input_rules": {"q": {"kind": "l2_normalized"}, "k": {"kind": "l2_normalized"}},
        "workload_inputs": {"scale": {"type": "scalar", "value": GDN_SCALE}},
        "workloads": [
            ({"batch_size": 1}, "7c8fa60d-d9a7-4036-b6ee-5952e3262812"),
            ({"batch_size": 2}, "d3bed7ae-60ed-4b57-ae48-1360a7d66bb8"),
            ({"batch_size": 4}, "db2735f3-6d5d-4ac7-b82c-1329a4ec72d9"),
            ({"batch_size": 8}, "5a5eb1ed-8d9d-4a06-9491-c237ffa2dfd2"),
            ({"batch_size": 12}, "82ec2d6d-782a-4a57-9088-158610eb1406", {"scale": {"type": "scalar", "value": 0.0}}),
            ({"batch_size": 16}, "fb061bce-536e-41a1-b583-2924a3b9d4f3"),
            ({"batch_size": 32}, "13c52dae-5b14-403e-8de1-44c0ae2cdfc7"),
            ({"batch_size": 64}, "a0a0c5d7-999f-4288-8c60-20448fb87e7e"),
        ],
        "example": {
            "name": "gdn_decode_qk4_v8_d128_k_last_triton_rows",
            "description": (
                "One Triton program per (batch, value head, 32 value channels): loads that [32, 128] slab of "
                "the k-last state once, applies the decay, both dot products as row reductions and the rank-1 "
                "update in registers, writes the slab and 32 outputs. Reads and writes the state once; "
                "untuned (fixed slab and warps, gate math recomputed per program, no persistent grid)."
            ),
        },
    },
    {
        "name": GDN_PREFILL,
        "op_type": "gdn",
        "description": (
            "Gated DeltaNet prefill (Qwen3-Next linear attention, TP 4: 4 query/key heads, 8 value heads, head "
            "size 128): the decode step applied token by token within each sequence, sequences given by "
            "cu_seqlens over the flattened tokens, each starting from its state (k-last [seq, v-head, V, K]). "
            "Per token and value head h (query/key head h // 2), S the state as [K, V]: g = exp(-exp(A_log) "
            "softplus(a + dt_bias)), beta = sigmoid(b); S' = g S; r = k^T S'; u = beta v + (1 - beta) r; "
            "S = S' + k (u - r)^T; output = scale q^T S; new_state is the final S per sequence; scale 0 means "
            "1/sqrt(128). The reference is the literal recurrence (one step per token, sequences in parallel) "
            "and slow; fast kernels use the chunked (WY / UT) form on tensor cores, whose fp32 rounding "
            "differs from it by far less than the tolerance. q and k are drawn L2-normalized (their input rule); cu_seqlens is a random split of the "
            "tokens into num_seqs sequences of at least one token, drawn once per workload. Workloads: one "
            "short sequence up to 16 sequences totalling 8192 tokens."
        ),
        "tags": ["contest:mlsys26", "model:qwen3-next", "stage:prefill", "layout:k-last"],
        "axes": {
            "total_seq_len": {"type": "var", "description": "Tokens of all sequences together."},
            "num_seqs": {"type": "var", "description": "Sequences."},
            "num_q_heads": {"type": "const", "value": 4, "description": "Query heads."},
            "num_k_heads": {"type": "const", "value": 4, "description": "Key heads."},
            "num_v_heads": {"type": "const", "value": 8, "description": "Value heads (and state heads)."},
            "head_size": {"type": "const", "value": 128, "description": "K and V width."},
            "len_cu_seqlens": {"type": "var", "description": "num_seqs + 1."},
        },
        "constraints": ["len_cu_seqlens == num_seqs + 1", "total_seq_len == cu_seqlens[-1].item()"],
        "inputs": {
            "q": {"shape": ["total_seq_len", "num_q_heads", "head_size"], "dtype": "bfloat16", "description": "Queries."},
            "k": {"shape": ["total_seq_len", "num_k_heads", "head_size"], "dtype": "bfloat16", "description": "Keys."},
            "v": {"shape": ["total_seq_len", "num_v_heads", "head_size"], "dtype": "bfloat16", "description": "Values."},
            "state": {"shape": ["num_seqs", "num_v_heads", "head_size", "head_size"], "dtype": "float32", "optional": True, "description": "Initial state per sequence, k-last [S, HV, V, K]."},
            "A_log": {"shape": ["num_v_heads"], "dtype": "float32", "description": "Log decay rate per head."},
            "a": {"shape": ["total_seq_len", "num_v_heads"], "dtype": "bfloat16", "description": "Input-dependent decay."},
            "dt_bias": {"shape": ["num_v_heads"], "dtype": "float32", "description": "Decay bias, added to a before softplus."},
            "b": {"shape": ["total_seq_len", "num_v_heads"], "dtype": "bfloat16", "description": "Write-gate logits: beta = sigmoid(b)."},
            "cu_seqlens": {"shape": ["len_cu_seqlens"], "dtype": "int64", "description": "Sequence boundaries: 0, ..., total_seq_len."},
            "scale": {"shape": None, "dtype": "float32", "description": "Output scale; 0 means 1/sqrt(head_size)."},
        },
        "outputs": {
            "output": {"shape": ["total_seq_len", "num_v_heads", "head_size"], "dtype": "bfloat16", "description": "Attention output per token."},
            "new_state": {"shape": ["num_seqs", "num_v_heads", "head_size", "head_size"], "dtype": "float32", "description": "Final state per sequence, k-last."},
        },
        "tolerance": {"atol": 1e-2, "rtol": 1e-2},
        "policy": {"speedup_ceiling": 20000},
        "input_rules": {
            "q": {"kind": "l2_normalized"},
            "k": {"kind": "l2_normalized"},
            "cu_seqlens": {"kind": "offsets", "total": "total_seq_len", "min_length": 1, "per": "workload"},
        },
        "workload_inputs": {"scale": {"type": "scalar", "value": GDN_SCALE}},
        "workloads": [
            ({"total_seq_len": 16, "num_seqs": 1, "len_cu_seqlens": 2}, "744838c1-b95d-4232-b2a0-d6f3be2e76b6"),
            ({"total_seq_len": 128, "num_seqs": 1, "len_cu_seqlens": 2}, "c7856242-f51e-457f-b85f-371defa063a6"),
            ({"total_seq_len": 512, "num_seqs": 1, "len_cu_seqlens": 2}, "e0370e0d-8c67-46a6-8179-8b14182cb39c"),
            ({"total_seq_len": 1024, "num_seqs": 3, "len_cu_seqlens": 4}, "96e18f68-aa6e-41fd-a35d-a46f82ff9922"),
            ({"total_seq_len": 2048, "num_seqs": 2, "len_cu_seqlens": 3}, "711511e1-6aac-4e34-ba28-e006a86934a8"),
            ({"total_seq_len": 4096, "num_seqs": 1, "len_cu_seqlens": 2}, "8f83ae03-731b-4692-9688-7679715cf510"),
            ({"total_seq_len": 4096, "num_seqs": 8, "len_cu_seqlens": 9}, "74336574-cbf3-4404-89ea-b83940291297"),
            ({"total_seq_len": 8192, "num_seqs": 4, "len_cu_seqlens": 5}, "3d219d80-e2d2-496e-b38b-e2e0a3848026"),
            ({"total_seq_len": 8192, "num_seqs": 16, "len_cu_seqlens": 17}, "08c15d6f-a82a-46dd-9ce1-70531bbed39f"),
        ],
    },
]

DEFINITIONS = DEFINITIONS + CONTEST_DEFINITIONS

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
    "floor_check",
    "input_rules",
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


def _workload_rows(meta: Dict[str, Any]) -> List[Tuple[Dict[str, int], str, Dict[str, Any]]]:
    """(axes, uuid, input overrides) per workload; an entry may omit the overrides."""
    rows = []
    for entry in meta["workloads"]:
        axes, uuid = entry[0], entry[1]
        rows.append((axes, uuid, entry[2] if len(entry) > 2 else {}))
    return rows


def _blob_bytes(make: Any) -> bytes:
    from safetensors.torch import save

    return save(make())


def render() -> Dict[str, Union[str, bytes]]:
    """Return {relative path: file text (or bytes, for blobs)} for the whole dataset, validated."""
    from flashinfer_bench.data import Definition, Solution, Trace

    from kda_mcp.tools.evaluation.input_rules import validate as validate_rules

    files: Dict[str, Union[str, bytes]] = {}
    seen_uuids: set = set()
    for meta in DEFINITIONS:
        name, op_type = meta["name"], meta["op_type"]
        definition = {k: meta[k] for k in _DEFINITION_KEYS if k in meta}
        definition["reference"] = _read_source(name, "reference.py")
        definition = {k: definition[k] for k in _DEFINITION_KEYS if k in definition}
        parsed = Definition.model_validate(definition)  # ignores "tolerance", "policy", "input_rules", ...
        problems = validate_rules(parsed, definition.get("input_rules", {}))
        if problems:
            raise ValueError(f"{name}: " + "; ".join(problems))
        files[f"definitions/{op_type}/{name}.json"] = json.dumps(definition, indent=2) + "\n"
        for rel, make in meta.get("blobs", {}).items():
            files[rel] = _blob_bytes(make)

        lines = []
        for axes, uuid, overrides in _workload_rows(meta):
            if uuid in seen_uuids:
                raise ValueError(f"duplicate workload uuid {uuid}")
            seen_uuids.add(uuid)
            if set(axes) != set(parsed.var_axes):
                raise ValueError(f"{name}: workload axes {sorted(axes)} != var axes {parsed.var_axes}")
            inputs = {**_random(*parsed.inputs), **meta.get("workload_inputs", {}), **overrides}
            if set(inputs) != set(parsed.inputs):
                raise ValueError(f"{name}: workload {uuid} names inputs {sorted(set(inputs) - set(parsed.inputs))} the definition lacks")
            for spec in inputs.values():
                if spec["type"] == "safetensors" and spec["path"] not in meta.get("blobs", {}):
                    raise ValueError(f"{name}: workload {uuid} reads {spec['path']}, which this script does not write")
            trace = {
                "definition": name,
                "workload": {"axes": axes, "inputs": {n: inputs[n] for n in parsed.inputs}, "uuid": uuid},
            }
            assert Trace.model_validate(trace).is_workload_trace()
            lines.append(json.dumps(trace))
        files[f"workloads/{op_type}/{name}.jsonl"] = "\n".join(lines) + "\n"

        for author, language, filename, key in (
            (EXAMPLE_AUTHOR, "triton", "triton_main.py", "example"),
            (BASELINE_AUTHOR, "python", "baseline.py", "baseline"),
        ):
            if key not in meta:
                continue
            spec = meta[key]
            sol = _solution(spec, author=author, language=language, filename=filename, def_name=name)
            Solution.model_validate(sol)
            files[f"solutions/{author}/{op_type}/{name}/{spec['name']}.json"] = json.dumps(sol, indent=2) + "\n"
    return files


def _existing(out: Path) -> Dict[str, bytes]:
    found: Dict[str, bytes] = {}
    for sub in OWNED_SUBDIRS:
        for p in sorted((out / sub).rglob("*")):
            if p.is_file():
                found[p.relative_to(out).as_posix()] = p.read_bytes()
    return found


def _as_bytes(content: Union[str, bytes]) -> bytes:
    return content if isinstance(content, bytes) else content.encode("utf-8")


def write(out: Path) -> List[str]:
    files = render()
    out.mkdir(parents=True, exist_ok=True)
    # Stage in a temporary folder first so a failure never leaves a half-written dataset.
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for rel, content in files.items():
            p = Path(tmp) / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(_as_bytes(content))
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
    problems += [f"stale: {p}" for p in sorted(set(want) & set(have)) if _as_bytes(want[p]) != have[p]]
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
