"""Example Triton solution for vector_add_fp32: out[i] = x[i] + y[i].

One program handles one contiguous block of BLOCK_SIZE elements; the last
block is masked. This is deliberately the textbook version: it is correct
and streams at a good fraction of DRAM bandwidth, but block size, warps,
number of programs (e.g. a persistent grid) and cache hints are untuned.
"""

import triton
import triton.language as tl

BLOCK_SIZE = 1024
NUM_WARPS = 4


@triton.jit
def _vector_add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK_SIZE: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offsets < n_elements
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)


def run(x, y, out):
    n = x.numel()
    if n == 0:
        return
    grid = (triton.cdiv(n, BLOCK_SIZE),)
    _vector_add_kernel[grid](x, y, out, n, BLOCK_SIZE=BLOCK_SIZE, num_warps=NUM_WARPS)
