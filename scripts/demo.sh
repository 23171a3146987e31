#!/usr/bin/env bash
# The README's first set-up command: qwenops' main job on the embedded default, end to end, on any
# machine (no GPU needed). It installs qwenops and vLLM's CPU engine into .venv, builds the tiny
# Qwen3-architecture model, serves it under supervision (`qwenops serve --profile cpu-tiny`), streams
# one answer with the SSE checks and latency numbers (`qwenops smoke-stream`), then stops the server
# with SIGTERM and checks that no process of it is left.
#   QWENOPS_DEMO_PORT=8000   port to serve on
set -euo pipefail
cd "$(dirname "$0")/.."

port=${QWENOPS_DEMO_PORT:-8000}
python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
echo "== install qwenops and the vLLM CPU engine into .venv"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
scripts/install_cpu_engine.sh .venv/bin/python
qwenops=.venv/bin/qwenops

echo "== build the tiny model (cached after the first run)"
"$qwenops" model build-tiny

echo "== serve it under supervision on port $port"
engines_before=$(pgrep -f '^VLLM::' | sort || true)
"$qwenops" serve --profile cpu-tiny --port "$port" --quiet &
serve_pid=$!
stop_server() {
  if kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM "$serve_pid"
    wait "$serve_pid" || true
  fi
}
trap stop_server EXIT

# Wait until the server answers, or until serve gives up (it prints why and exits 1).
for _ in $(seq 600); do
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    wait "$serve_pid" || exit $?
  fi
  if .venv/bin/python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$port/v1/models', timeout=2).status_code != 200)" 2>/dev/null; then
    break
  fi
  sleep 1
done

echo "== stream one answer and check it"
"$qwenops" smoke-stream --profile cpu-tiny --base-url "http://127.0.0.1:$port" --prompt "Tell me about the sea."

echo "== stop (SIGTERM) and check that nothing is left"
trap - EXIT
kill -TERM "$serve_pid"
status=0
wait "$serve_pid" || status=$?
engines_after=$(pgrep -f '^VLLM::' | sort || true)
left=$(comm -13 <(echo "$engines_before") <(echo "$engines_after") | grep . || true)
if pgrep -f "api_server.*--port $port" >/dev/null || [[ -n "$left" ]]; then
  echo "processes of the server are still running:" >&2
  pgrep -af "api_server.*--port $port" >&2 || true
  echo "$left" >&2
  exit 1
fi
echo "demo finished: served, streamed and stopped cleanly (serve exit status $status)"
exit "$status"
