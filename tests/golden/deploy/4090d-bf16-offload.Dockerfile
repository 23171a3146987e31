# Dockerfile: `qwenops serve` in a container, as a numeric non-root user.
# Rendered by qwenops 0.1.0 from profile '4090d-bf16-offload'; re-render instead of editing:
#   qwenops render dockerfile --profile 4090d-bf16-offload -o docker/Dockerfile
# Profile: "Qwen3-14B bf16 with 12 GiB of weights offloaded to CPU RAM (slow; for comparisons)"
# Build from the repository root: docker build -f docker/Dockerfile -t qwenops:4090d-bf16-offload .
# or with its compose file: docker compose -f docker/compose.yaml up -d --build

# v0.8.5.post1: the last vLLM release built on CUDA 12.4, so it runs on a CUDA 12.4 (550)
# driver; v0.9.0 and later need a CUDA 12.8 driver. It serves Qwen3 (vLLM 0.8.4 and later).
FROM vllm/vllm-openai:v0.8.5.post1

# A numeric non-root user whose HOME and caches are writable (named volumes inherit this).
RUN groupadd --system --gid 10001 qwenops \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/qwenops --shell /usr/sbin/nologin qwenops \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/qwenops /var/cache/qwenops /var/cache/qwenops/huggingface /var/cache/qwenops/compile

# qwenops' sources only (build from the repository root).
COPY pyproject.toml README.md /tmp/qwenops/
COPY qwenops /tmp/qwenops/qwenops
COPY configs /tmp/qwenops/configs
# qwenops and dumb-init, without moving a package vLLM was built with: what the image has is
# a constraint, so a conflict fails the build instead of changing torch or vLLM.
RUN python3 -m pip list --format=freeze > /tmp/image-packages.txt \
    && python3 -m pip install --no-cache-dir --constraint /tmp/image-packages.txt \
        "dumb-init==1.2.5.post1" /tmp/qwenops \
    && rm -rf /tmp/qwenops /tmp/image-packages.txt

# HOME, qwenops' state and every cache where the user can write; the profile this image serves;
# vLLM binds every interface of the container (the host side is the compose file's choice).
ENV HOME=/var/lib/qwenops \
    QWENOPS_STATE_DIR=/var/lib/qwenops \
    HF_HOME=/var/cache/qwenops/huggingface \
    XDG_CACHE_HOME=/var/cache/qwenops \
    VLLM_CACHE_ROOT=/var/cache/qwenops/compile/vllm \
    TRITON_CACHE_DIR=/var/cache/qwenops/compile/triton \
    QWENOPS_PROFILE=4090d-bf16-offload \
    QWENOPS_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/qwenops
EXPOSE 8000
# What qwenops drains on; docker stop sends it, then SIGKILL after the grace period.
STOPSIGNAL SIGTERM
# Healthy once vLLM answers /health (Python's urllib: no curl needed); the start period covers
# the profile's start-up budget (1020 s), so a loading server is "starting", not unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=1020s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# dumb-init is PID 1: it forwards signals to qwenops and reaps orphans; qwenops drains vLLM, then
# ends vLLM's process group. Arguments after the image name go to `qwenops serve`.
ENTRYPOINT ["dumb-init", "--", "qwenops", "serve"]
