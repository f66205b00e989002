import torch
import torch.nn.functional as F

BLOCK = 128  # quantization block: 1 x 128 for activations, 128 x 128 for weights
TOP_K = 8  # experts per token
N_GROUP = 8  # expert groups
TOPK_GROUP = 4  # groups a token may route to


def dequantize(weights, scales):
    # [R, C] fp8 with one scale per 128 x 128 block ([R / 128, C / 128]) -> fp32.
    rows, cols = weights.shape
    blocks = weights.float().view(rows // BLOCK, BLOCK, cols // BLOCK, BLOCK)
    return (blocks * scales.float()[:, None, :, None]).view(rows, cols)


def route(routing_logits, routing_bias, routed_scaling_factor):
    # DeepSeek-V3 grouped top-k: selection by sigmoid score + bias; a group's score is the sum of
    # its two best selection scores; the 4 best groups stay; the 8 best experts inside them are
    # chosen. Their weights are the unbiased sigmoid scores, normalized to sum 1, times the factor.
    tokens, num_experts = routing_logits.shape
    s = torch.sigmoid(routing_logits.float())
    selection = s + routing_bias.float()
    grouped = selection.view(tokens, N_GROUP, num_experts // N_GROUP)
    group_score = grouped.topk(2, dim=-1).values.sum(dim=-1)  # [T, N_GROUP]
    kept = torch.zeros(tokens, N_GROUP, dtype=torch.bool, device=s.device)
    kept.scatter_(1, group_score.topk(TOPK_GROUP, dim=-1).indices, True)
    candidates = grouped.masked_fill(~kept[..., None], float("-inf")).view(tokens, num_experts)
    experts = candidates.topk(TOP_K, dim=-1).indices  # [T, TOP_K] global expert ids
    weights = s.gather(1, experts)
    weights = weights / weights.sum(dim=-1, keepdim=True) * routed_scaling_factor
    return experts, weights


@torch.no_grad()
def run(
    routing_logits,
    routing_bias,
    hidden_states,
    hidden_states_scale,
    gemm1_weights,
    gemm1_weights_scale,
    gemm2_weights,
    gemm2_weights_scale,
    local_expert_offset,
    routed_scaling_factor,
):
    # Only experts local_expert_offset .. local_expert_offset + num_local - 1 are computed here.
    # Per chosen local expert e: h = x W1[e]^T (2 * intermediate wide); u, g = first and second
    # half of h; y = (u * silu(g)) W2[e]^T; the output is the routing-weighted sum over the
    # token's local experts, in fp32, rounded to bf16 once.
    tokens, hidden = hidden_states.shape
    num_local, gemm1_out, _ = gemm1_weights.shape
    intermediate = gemm1_out // 2
    experts, weights = route(routing_logits, routing_bias, routed_scaling_factor)

    # Activations: one scale per token and 128 hidden channels, stored block-first [H / 128, T].
    x = hidden_states.float() * hidden_states_scale.float().t().repeat_interleave(BLOCK, dim=1)

    local = experts - int(local_expert_offset)
    token_of, slot_of = torch.nonzero((local >= 0) & (local < num_local), as_tuple=True)
    expert_of = local[token_of, slot_of]
    order = torch.argsort(expert_of, stable=True)
    token_of, slot_of, expert_of = token_of[order], slot_of[order], expert_of[order]
    counts = torch.bincount(expert_of, minlength=num_local).tolist()

    output = torch.zeros(tokens, hidden, dtype=torch.float32, device=x.device)
    start = 0
    for e, count in enumerate(counts):
        if count == 0:
            continue
        rows, slots = token_of[start : start + count], slot_of[start : start + count]
        start += count
        h = x[rows] @ dequantize(gemm1_weights[e], gemm1_weights_scale[e]).T  # [n, 2I]
        act = h[:, :intermediate] * F.silu(h[:, intermediate:])
        y = act @ dequantize(gemm2_weights[e], gemm2_weights_scale[e]).T  # [n, H]
        output.index_add_(0, rows, y * weights[rows, slots][:, None])
    return output.to(torch.bfloat16)
