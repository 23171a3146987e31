#!/usr/bin/env bash
# Start vLLM's OpenAI-compatible server for qwenops profile '4090d-bf16-offload'.
# Rendered by qwenops 0.1.0; re-render instead of editing:
#   qwenops render script --profile 4090d-bf16-offload -o start_api.sh
# Profile: "Qwen3-14B bf16 with 12 GiB of weights offloaded to CPU RAM (slow; for comparisons)"
set -euo pipefail

# The API key comes from the environment only, never from this file or argv (visible in ps).
if [[ -n "${QWENOPS_API_KEY:-}" ]]; then
  export VLLM_API_KEY="${QWENOPS_API_KEY}"
fi

args=(
  # name clients send as `model`
  --served-model-name Qwen3-14B
  # address the HTTP server binds
  --host 0.0.0.0
  # TCP port of the HTTP server
  --port 8000
  # GPUs the model is split across
  --tensor-parallel-size 1
  # share of total GPU memory vLLM may use (weights + activations + KV)
  --gpu-memory-utilization 0.95
  # most sequences batched at once; lower it on OOM
  --max-num-seqs 8
  # context window (prompt + answer) in tokens
  --max-model-len 2048
  # skip CUDA graph capture: faster start, less memory
  --enforce-eager
  # dtype
  --dtype bfloat16
  # GiB of weights kept in CPU RAM (slow)
  --cpu-offload-gb 12
)

exec vllm serve Qwen/Qwen3-14B "${args[@]}" "$@"
