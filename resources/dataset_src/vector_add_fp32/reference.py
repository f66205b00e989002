import torch


def run(x, y):
    # Elementwise sum of two fp32 vectors; exact in fp32, so any correct kernel
    # produces bit-identical results.
    assert x.shape == y.shape and x.dim() == 1
    return x + y
