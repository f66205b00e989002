import math

import torch
import torch.nn.functional as F


@torch.no_grad()
def run(q, k, v, state, A_log, a, dt_bias, b, cu_seqlens, scale):
    # The decode step of the gated delta rule applied token by token within each sequence
    # (sequence s is tokens cu_seqlens[s] .. cu_seqlens[s+1]-1, starting from state[s]). In fp32,
    # with S the state of one head as a [K, V] matrix (the input is k-last, [V, K]):
    #   g = exp(-exp(A_log) * softplus(a + dt_bias));  beta = sigmoid(b)
    #   S' = g * S;  r = k^T S';  u = beta * v + (1 - beta) * r
    #   S <- S' + k (u - r)^T;  output_t = scale * q^T S
    # The loop runs over time steps, every sequence still running advances together: sequences
    # are ordered longest first, so the running ones are always a leading slice.
    total, num_q_heads, head_k = q.shape
    num_k_heads = k.shape[1]
    num_v_heads, head_v = v.shape[1], v.shape[2]
    assert num_v_heads % num_q_heads == 0 and num_v_heads % num_k_heads == 0
    if scale is None or scale == 0:
        scale = 1.0 / math.sqrt(head_k)
    device = q.device

    bounds = cu_seqlens.tolist()
    num_seqs = len(bounds) - 1
    starts = bounds[:-1]
    lengths = [bounds[s + 1] - bounds[s] for s in range(num_seqs)]
    assert bounds[0] == 0 and bounds[-1] == total and min(lengths, default=0) >= 0

    g = torch.exp(-torch.exp(A_log.float()) * F.softplus(a.float() + dt_bias.float()))  # [N, HV]
    beta = torch.sigmoid(b.float())  # [N, HV]
    q_h = q.float().repeat_interleave(num_v_heads // num_q_heads, dim=1)  # [N, HV, K]
    k_h = k.float().repeat_interleave(num_v_heads // num_k_heads, dim=1)  # [N, HV, K]
    v_h = v.float()  # [N, HV, V]

    if state is None:
        initial = torch.zeros(num_seqs, num_v_heads, head_k, head_v, dtype=torch.float32, device=device)
    else:
        initial = state.float().transpose(-1, -2)  # [S, HV, K, V]
    order = sorted(range(num_seqs), key=lambda s: -lengths[s])
    longest = lengths[order[0]] if num_seqs else 0
    ordered = [lengths[s] for s in order]
    running, n = [], num_seqs  # running[t]: how many sequences are longer than t
    for t in range(longest):
        while n and ordered[n - 1] <= t:
            n -= 1
        running.append(n)

    # Token index of step t of the i-th longest sequence (-1 past its end), and every per-token
    # input laid out by [step, sequence] once, so each step reads a leading slice.
    steps = torch.full((longest, num_seqs), -1, dtype=torch.long)
    for i, s in enumerate(order):
        steps[: lengths[s], i] = torch.arange(starts[s], starts[s] + lengths[s])
    steps = steps.to(device)
    picked = steps.clamp(min=0)
    Q, K, V, G, BETA = q_h[picked], k_h[picked], v_h[picked], g[picked], beta[picked]

    S = initial[order]  # running states, longest sequence first
    out = torch.zeros(longest, num_seqs, num_v_heads, head_v, dtype=torch.float32, device=device)
    for t in range(longest):
        n = running[t]
        St, kt, bt = S[:n], K[t, :n], BETA[t, :n, :, None]
        St.mul_(G[t, :n, :, None, None])
        r = torch.einsum("shk,shkv->shv", kt, St)
        u = bt * V[t, :n] + (1.0 - bt) * r
        St.add_(kt[..., :, None] * (u - r)[..., None, :])
        out[t, :n] = scale * torch.einsum("shk,shkv->shv", Q[t, :n], St)

    output = torch.zeros(total, num_v_heads, head_v, dtype=torch.float32, device=device)
    valid = steps >= 0
    output[steps[valid]] = out[valid]
    new_state = torch.empty_like(initial)
    new_state[order] = S
    return output.to(torch.bfloat16), new_state.transpose(-1, -2).contiguous()
