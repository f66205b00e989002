import torch


def run(x, y, out):
    # Speedup baseline: a single eager PyTorch kernel writing into the
    # preallocated output.
    torch.add(x, y, out=out)
