"""Example Triton solution for gdn_decode_qk4_v8_d128_k_last.

One program updates one slab of BLOCK_V value channels of one (batch, value head) state. The state
is k-last ([B, HV, V, K]), so value channel c of a head is the contiguous 128-float row
state[b, h, c, :], which is column c of the [K, V] matrix S of the math. Each row evolves on its own:

    s_c <- g * s_c;   r_c = k . s_c;   s_c <- s_c + k * beta * (v_c - r_c);   o_c = scale * q . s_c

(beta * (v_c - r_c) is u_c - r_c with u = beta * v + (1 - beta) * r). A program loads its
[BLOCK_V, K] tile once, does both dot products as row reductions in registers, and writes the new
tile and BLOCK_V outputs: the state is read once and written once, which is the whole cost.
Correct and memory-bound by design, but untuned: BLOCK_V and warps are fixed, there is no
persistent grid for small batches, and the gate math is recomputed by every program of a head.
"""

import math

import triton
import triton.language as tl

BLOCK_V = 32
NUM_WARPS = 4


@triton.jit
def _gdn_decode_kernel(
    q_ptr, k_ptr, v_ptr, state_ptr, a_log_ptr, a_ptr, dt_bias_ptr, b_ptr,
    out_ptr, new_state_ptr,
    scale,
    NUM_Q_HEADS: tl.constexpr,
    NUM_K_HEADS: tl.constexpr,
    NUM_V_HEADS: tl.constexpr,
    HEAD_K: tl.constexpr,
    HEAD_V: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid_bh = tl.program_id(0)  # batch * NUM_V_HEADS + value head
    pid_v = tl.program_id(1)  # slab of value channels
    batch = pid_bh // NUM_V_HEADS
    head = pid_bh % NUM_V_HEADS
    q_head = head // (NUM_V_HEADS // NUM_Q_HEADS)
    k_head = head // (NUM_V_HEADS // NUM_K_HEADS)

    # Gates of this (batch, head): g = exp(-exp(A_log) * softplus(a + dt_bias)), beta = sigmoid(b).
    x = tl.load(a_ptr + pid_bh).to(tl.float32) + tl.load(dt_bias_ptr + head)
    softplus = tl.where(x > 20.0, x, tl.log(1.0 + tl.exp(x)))
    g = tl.exp(-tl.exp(tl.load(a_log_ptr + head)) * softplus)
    beta = 1.0 / (1.0 + tl.exp(-tl.load(b_ptr + pid_bh).to(tl.float32)))

    cols = tl.arange(0, HEAD_K)
    rows = pid_v * BLOCK + tl.arange(0, BLOCK)
    kv = tl.load(k_ptr + (batch * NUM_K_HEADS + k_head) * HEAD_K + cols).to(tl.float32)
    qv = tl.load(q_ptr + (batch * NUM_Q_HEADS + q_head) * HEAD_K + cols).to(tl.float32)
    vv = tl.load(v_ptr + pid_bh * HEAD_V + rows).to(tl.float32)

    offs = pid_bh.to(tl.int64) * HEAD_V * HEAD_K + rows[:, None] * HEAD_K + cols[None, :]
    s = tl.load(state_ptr + offs) * g  # [BLOCK, K]: rows are value channels
    r = tl.sum(s * kv[None, :], axis=1)  # k . s_c
    delta = beta * (vv - r)  # u_c - r_c
    s = s + delta[:, None] * kv[None, :]
    o = tl.sum(s * qv[None, :], axis=1) * scale

    tl.store(new_state_ptr + offs, s)
    tl.store(out_ptr + pid_bh * HEAD_V + rows, o.to(tl.bfloat16))


def run(q, k, v, state, A_log, a, dt_bias, b, scale, output, new_state):
    batch, steps, num_q_heads, head_k = q.shape
    num_k_heads = k.shape[2]
    num_v_heads, head_v = v.shape[2], v.shape[3]
    assert steps == 1 and head_v % BLOCK_V == 0
    for t in (q, k, v, state, A_log, a, dt_bias, b, output, new_state):
        assert t.is_contiguous()
    if scale is None or scale == 0:
        scale = 1.0 / math.sqrt(head_k)
    if batch == 0:
        return
    grid = (batch * num_v_heads, head_v // BLOCK_V)
    _gdn_decode_kernel[grid](
        q, k, v, state, A_log, a, dt_bias, b,
        output, new_state,
        float(scale),
        NUM_Q_HEADS=num_q_heads,
        NUM_K_HEADS=num_k_heads,
        NUM_V_HEADS=num_v_heads,
        HEAD_K=head_k,
        HEAD_V=head_v,
        BLOCK=BLOCK_V,
        num_warps=NUM_WARPS,
    )
