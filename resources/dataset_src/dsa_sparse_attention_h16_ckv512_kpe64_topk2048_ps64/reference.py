import math

import torch


@torch.no_grad()
def run(q_nope, q_pe, ckv_cache, kpe_cache, sparse_indices, sm_scale):
    # MLA-style attention of each token over the cache rows its indexer selected. Row r of the
    # flattened cache is page r // page_size, slot r % page_size; -1 (any negative) is padding.
    # Per token and head, over the valid selected rows j:
    #   logit_j = sm_scale * (q_nope . ckv_j + q_pe . kpe_j)
    #   output = sum_j softmax(logit)_j * ckv_j          (the compressed KV is also the value)
    #   lse = log2(sum_j exp(logit_j)) = logsumexp(logit) / ln 2
    # A token with no valid index gets output 0 and lse -inf.
    num_tokens, num_heads, head_dim_ckv = q_nope.shape
    head_dim_kpe = q_pe.shape[-1]
    ckv = ckv_cache.reshape(-1, head_dim_ckv)
    kpe = kpe_cache.reshape(-1, head_dim_kpe)

    valid = sparse_indices >= 0  # [T, topk]
    rows = sparse_indices.clamp(min=0).long()
    kc = ckv[rows].float()  # [T, topk, ckv]
    kp = kpe[rows].float()  # [T, topk, kpe]

    logits = torch.einsum("thd,tjd->thj", q_nope.float(), kc) + torch.einsum("thd,tjd->thj", q_pe.float(), kp)
    logits = (logits * sm_scale).masked_fill(~valid[:, None, :], float("-inf"))
    lse = torch.logsumexp(logits, dim=-1)  # [T, H]; -inf where nothing is valid
    any_valid = valid.any(dim=-1)[:, None, None]
    weights = torch.where(any_valid, torch.exp(logits - lse[..., None]), torch.zeros_like(logits))
    output = torch.einsum("thj,tjd->thd", weights, kc)
    return output.to(torch.bfloat16), lse / math.log(2.0)
