import torch

TOPK = 2048


def dequantize_pages(k_index_cache_fp8, head_dim):
    # Each page of the packed cache is page_size * head_dim float8_e4m3fn key bytes (token-major)
    # followed by page_size float32 scales, one per token; the [page_size, 1, head_dim + 4] view
    # of a page does not follow this layout, so reinterpret the page as flat bytes.
    num_pages = k_index_cache_fp8.shape[0]
    raw = k_index_cache_fp8.view(torch.uint8).reshape(num_pages, -1)
    page_size = raw.shape[1] // (head_dim + 4)
    keys = raw[:, : page_size * head_dim].view(torch.float8_e4m3fn).reshape(num_pages, page_size, head_dim)
    scales = raw[:, page_size * head_dim :].contiguous().view(torch.float32)  # [P, page_size]
    return keys, scales


@torch.no_grad()
def run(q_index_fp8, k_index_cache_fp8, weights, seq_lens, block_table):
    # DeepSeek sparse-attention indexer. For each batch row b, over the first seq_lens[b] tokens
    # of its sequence (token t lives in page block_table[b, t // page_size], slot t % page_size):
    #   key_t = fp8 key * its token's scale
    #   score_t = sum_h weights[b, h] * relu(q[b, h] . key_t)
    # and the top min(TOPK, seq_len) tokens by score are written as flat cache indices
    # page * page_size + slot, highest score first (equal scores: earlier token first), then -1.
    batch, num_heads, head_dim = q_index_fp8.shape
    keys, scales = dequantize_pages(k_index_cache_fp8, head_dim)
    page_size = keys.shape[1]
    q = q_index_fp8.float()
    out = torch.full((batch, TOPK), -1, dtype=torch.int32, device=q.device)
    for b, length in enumerate(seq_lens.tolist()):
        if length <= 0:
            continue
        pages = block_table[b, : (length + page_size - 1) // page_size].long()
        k = (keys[pages].float() * scales[pages][..., None]).reshape(-1, head_dim)[:length]  # [n, D]
        scores = (torch.relu(q[b] @ k.T) * weights[b].float()[:, None]).sum(dim=0)  # [n]
        count = min(TOPK, length)
        best = torch.sort(scores, descending=True, stable=True).indices[:count]
        out[b, :count] = (pages[best // page_size] * page_size + best % page_size).to(torch.int32)
    return out
