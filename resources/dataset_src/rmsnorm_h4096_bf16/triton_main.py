"""Example Triton solution for rmsnorm_h4096_bf16.

One program normalizes one row: it loads all 4096 bf16 values at once,
accumulates the sum of squares in fp32, and writes x * rsqrt(mean + eps) * w
back as bf16. Correct and bandwidth-friendly for large batches, but untuned:
with few rows most SMs sit idle, and warps per program, rows per program and
cache hints for the shared weight vector are all left at simple defaults.
"""

import triton
import triton.language as tl

EPS = 1e-6
NUM_WARPS = 8


@triton.jit
def _rmsnorm_row_kernel(
    x_ptr,
    w_ptr,
    out_ptr,
    x_row_stride,
    out_row_stride,
    eps,
    HIDDEN: tl.constexpr,
):
    row = tl.program_id(axis=0).to(tl.int64)
    cols = tl.arange(0, HIDDEN)

    x = tl.load(x_ptr + row * x_row_stride + cols).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=0) / HIDDEN
    inv_rms = tl.rsqrt(mean_sq + eps)

    w = tl.load(w_ptr + cols).to(tl.float32)
    y = x * inv_rms * w
    tl.store(out_ptr + row * out_row_stride + cols, y.to(tl.bfloat16))


def run(hidden_states, weight, out):
    batch_size, hidden_size = hidden_states.shape
    if batch_size == 0:
        return
    # The whole row is one block, so the row length must be a power of two
    # (it is the constant 4096 in this definition).
    assert hidden_size & (hidden_size - 1) == 0
    assert hidden_states.stride(1) == 1 and out.stride(1) == 1 and weight.stride(0) == 1
    grid = (batch_size,)
    _rmsnorm_row_kernel[grid](
        hidden_states,
        weight,
        out,
        hidden_states.stride(0),
        out.stride(0),
        EPS,
        HIDDEN=hidden_size,
        num_warps=NUM_WARPS,
    )
