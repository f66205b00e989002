import torch

EPS = 1e-6


def run(hidden_states, weight, out):
    # Speedup baseline: the same math as the reference in eager PyTorch
    # (several kernels, fp32 intermediates), written into the preallocated output.
    x = hidden_states.float()
    inv_rms = torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + EPS)
    out.copy_(x * inv_rms * weight.float())
