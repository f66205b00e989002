"""profile_solution: Nsight Compute evidence an agent can act on.

capture.py runs `ncu` around child.py (one call of the solution on one workload, inside an NVTX
range so input generation and warm-up stay out of the report); summary.py turns the .ncu-rep
into per-kernel facts, a bottleneck label with the metrics it rests on, and wiki pages for it.
"""
