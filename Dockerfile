# kda-mcp on a GPU box: CUDA toolkit with Nsight Compute and compute-sanitizer, served over HTTP.
#   docker build -t kda-mcp .
#   docker run --gpus all -e KDA_MCP_TOKEN=... -p 8765:8765 kda-mcp
# Profiling needs counter access: run with --cap-add SYS_ADMIN, or set
# NVreg_RestrictProfilingToAdminUsers=0 on the host (kda-mcp doctor tells which applies).
FROM nvidia/cuda:13.0.2-devel-ubuntu24.04

RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev git ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The devel image carries Nsight Compute; stop the build if a base-image change ever drops it.
RUN ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1 | grep -q ncu

WORKDIR /opt/kda-mcp
COPY . .
# The same install script CI runs (.ci/run calls it with --dev).
RUN KDA_VENV=/opt/kda-mcp/.venv bash .ci/install --gpu

ENV PATH=/opt/kda-mcp/.venv/bin:/usr/local/cuda/bin:$PATH \
    KDA_STATE_DIR=/var/lib/kda-mcp \
    KDA_CACHE_DIR=/var/cache/kda-mcp
VOLUME ["/var/lib/kda-mcp"]
EXPOSE 8765
ENTRYPOINT ["kda-mcp"]
# Binding 0.0.0.0 without KDA_MCP_TOKEN is refused at start, on purpose.
CMD ["serve", "--http", "--host", "0.0.0.0", "--port", "8765"]
