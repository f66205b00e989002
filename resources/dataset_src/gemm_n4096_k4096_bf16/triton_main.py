"""Example Triton solution for gemm_n4096_k4096_bf16: C = A @ B^T.

A is [M, K] and B is [N, K], both row-major, so B^T is read as a [K, N]
view through strides (no transpose copy). Each program computes one
BLOCK_M x BLOCK_N tile of C with tl.dot on the tensor cores, accumulating in
fp32 over K in BLOCK_K steps. Programs are ordered in groups of GROUP_M tile
rows so that neighbouring programs share A and B tiles in L2. Rows past M are
masked, so any M works.

Fixed 128x128x64 tiles, 8 warps, 3 stages: a sound starting point, not a tuned
one. Small M (decode-like shapes) wastes most of each 128-row tile and
launches few programs; there is no autotuning, split-K, persistent scheduling
or TMA / warp specialization.
"""

import triton
import triton.language as tl

BLOCK_M = 128
BLOCK_N = 128
BLOCK_K = 64
GROUP_M = 8
NUM_WARPS = 8
NUM_STAGES = 3


@triton.jit
def _gemm_abt_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    M,
    N,
    K,
    stride_am,
    stride_ak,
    stride_bn,
    stride_bk,
    stride_cm,
    stride_cn,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    # Map the linear program id to a (pid_m, pid_n) tile, walking GROUP_M tile
    # rows down one tile column before moving to the next column.
    pid = tl.program_id(axis=0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    programs_per_group = GROUP_M * num_pid_n
    group_id = pid // programs_per_group
    first_pid_m = group_id * GROUP_M
    rows_in_group = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_in_group = pid % programs_per_group
    pid_m = first_pid_m + (pid_in_group % rows_in_group)
    pid_n = pid_in_group // rows_in_group

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N

    # A tile: [BLOCK_M, BLOCK_K]; B^T tile: [BLOCK_K, BLOCK_N] read from B [N, K].
    a_ptrs = a_ptr + offs_m[:, None] * stride_am + offs_k[None, :] * stride_ak
    b_ptrs = b_ptr + offs_k[:, None] * stride_bk + offs_n[None, :] * stride_bn

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        mask_k = (k0 + offs_k) < K
        a = tl.load(a_ptrs, mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=mask_k[:, None] & mask_n[None, :], other=0.0)
        acc += tl.dot(a, b)
        a_ptrs += BLOCK_K * stride_ak
        b_ptrs += BLOCK_K * stride_bk

    c = acc.to(tl.bfloat16)
    c_ptrs = c_ptr + offs_m[:, None] * stride_cm + offs_n[None, :] * stride_cn
    tl.store(c_ptrs, c, mask=mask_m[:, None] & mask_n[None, :])


def run(A, B, C):
    M, K = A.shape
    N, K_b = B.shape
    assert K == K_b and C.shape == (M, N)
    if M == 0:
        return
    grid = (triton.cdiv(M, BLOCK_M) * triton.cdiv(N, BLOCK_N),)
    _gemm_abt_kernel[grid](
        A,
        B,
        C,
        M,
        N,
        K,
        A.stride(0),
        A.stride(1),
        B.stride(0),
        B.stride(1),
        C.stride(0),
        C.stride(1),
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
        GROUP_M=GROUP_M,
        num_warps=NUM_WARPS,
        num_stages=NUM_STAGES,
    )
