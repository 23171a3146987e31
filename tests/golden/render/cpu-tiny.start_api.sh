#!/usr/bin/env bash
# Start vLLM's OpenAI-compatible server for qwenops profile 'cpu-tiny'.
# Rendered by qwenops 0.1.0; re-render instead of editing:
#   qwenops render script --profile cpu-tiny -o start_api.sh
# Profile: "tiny Qwen3-architecture model on vLLM's CPU engine (demo and tests; no GPU needed)"
set -euo pipefail

# Server environment from the profile (an existing non-empty value wins).
if [[ -z "${OMP_NUM_THREADS:-}" ]]; then export OMP_NUM_THREADS=1; fi
if [[ -z "${VLLM_CPU_KVCACHE_SPACE:-}" ]]; then export VLLM_CPU_KVCACHE_SPACE=1; fi
if [[ -z "${VLLM_CPU_OMP_THREADS_BIND:-}" ]]; then export VLLM_CPU_OMP_THREADS_BIND=nobind; fi
if [[ -z "${VLLM_ENABLE_V1_MULTIPROCESSING:-}" ]]; then export VLLM_ENABLE_V1_MULTIPROCESSING=0; fi

# The API key comes from the environment only, never from this file or argv (visible in ps).
if [[ -n "${QWENOPS_API_KEY:-}" ]]; then
  export VLLM_API_KEY="${QWENOPS_API_KEY}"
fi

args=(
  # name clients send as `model`
  --served-model-name Qwen3-14B
  # address the HTTP server binds
  --host 127.0.0.1
  # TCP port of the HTTP server
  --port 8000
  # most sequences batched at once; lower it on OOM
  --max-num-seqs 8
  # context window (prompt + answer) in tokens
  --max-model-len 512
  # skip CUDA graph capture: faster start, less memory
  --enforce-eager
  # further vLLM flags from the profile's extra_args
  --distributed-executor-backend uni
)

# vllm-cpu: its `vllm` console script is broken (package metadata is named vllm-cpu).
exec "${PYTHON:-python3}" -m vllm.entrypoints.openai.api_server --model /var/lib/qwenops/models/qwen3-tiny "${args[@]}" "$@"
