import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def run(q, k, v, state, A_log, a, dt_bias, b, scale):
    # One decode step of the gated delta rule for every (batch, value head) at once, in fp32.
    # Value head h reads query/key head h // (num_v_heads // num_q_heads). With S the state of
    # one head as a [K, V] matrix (the input is k-last, [V, K], hence the transposes):
    #   g = exp(-exp(A_log) * softplus(a + dt_bias))    decay
    #   beta = sigmoid(b)                               write strength
    #   S' = g * S;  r = k^T S';  u = beta * v + (1 - beta) * r
    #   S_new = S' + k (u - r)^T;  output = scale * q^T S_new
    batch, steps, num_q_heads, head_k = q.shape
    num_k_heads = k.shape[2]
    num_v_heads, head_v = v.shape[2], v.shape[3]
    assert steps == 1, "decode takes one token per sequence"
    assert num_v_heads % num_q_heads == 0 and num_v_heads % num_k_heads == 0
    if scale is None or scale == 0:
        scale = 1.0 / math.sqrt(head_k)

    g = torch.exp(-torch.exp(A_log.float()) * F.softplus(a[:, 0].float() + dt_bias.float()))  # [B, HV]
    beta = torch.sigmoid(b[:, 0].float())  # [B, HV]
    q_h = q[:, 0].float().repeat_interleave(num_v_heads // num_q_heads, dim=1)  # [B, HV, K]
    k_h = k[:, 0].float().repeat_interleave(num_v_heads // num_k_heads, dim=1)  # [B, HV, K]
    v_h = v[:, 0].float()  # [B, HV, V]
    if state is None:
        S = torch.zeros(batch, num_v_heads, head_k, head_v, dtype=torch.float32, device=q.device)
    else:
        S = state.float().transpose(-1, -2)  # [B, HV, K, V]

    S = g[..., None, None] * S
    r = torch.einsum("bhk,bhkv->bhv", k_h, S)
    u = beta[..., None] * v_h + (1.0 - beta[..., None]) * r
    S = S + k_h[..., :, None] * (u - r)[..., None, :]
    out = scale * torch.einsum("bhk,bhkv->bhv", q_h, S)

    output = out[:, None].to(torch.bfloat16)  # [B, 1, HV, V]
    new_state = S.transpose(-1, -2).contiguous()  # back to k-last [B, HV, V, K]
    return output, new_state
