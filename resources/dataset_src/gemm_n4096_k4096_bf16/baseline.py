import torch


def run(A, B, C):
    # Speedup baseline: the vendor GEMM (cuBLAS on CUDA) through PyTorch,
    # bf16 inputs with fp32 accumulation, written into the preallocated output.
    torch.matmul(A, B.t(), out=C)
