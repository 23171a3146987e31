#!/usr/bin/env bash
# The README's first set-up command: qwenops' main job on the embedded default, end to end, on any
# machine (no GPU needed). It installs qwenops and vLLM's CPU engine into .venv, builds the tiny
# Qwen3-architecture model, serves it under supervision (`qwenops serve --profile cpu-tiny`), streams
# one answer with the SSE checks and latency numbers (`qwenops smoke-stream`), then stops the server
# with SIGTERM and checks that no process of it is left.
# Each phase prints one line with its time, and the clock since the start ("at N s"); the installers'
# own output is hidden unless --verbose (or QWENOPS_VERBOSE=1), and shown when a step fails.
#   QWENOPS_DEMO_PORT=8000   port to serve on
#   QWENOPS_INSTALLER=pip    install with pip even where uv could be had (scripts/install_cpu_engine.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

install_opts=()
case ${1:-} in
  --verbose | -v) install_opts+=(--verbose) ;;
  "") ;;
  *) echo "usage: scripts/demo.sh [--verbose]" >&2; exit 2 ;;
esac
port=${QWENOPS_DEMO_PORT:-8000}
python=${PYTHON:-python3}
# Bytecode is written into this checkout's .venv even where the environment says not to
# (PYTHONDONTWRITEBYTECODE): else each of the server's two processes compiles torch and vLLM anew when it
# starts (~16 s each to import instead of ~8 s).
unset PYTHONDONTWRITEBYTECODE
started=$SECONDS
at() { echo "at $((SECONDS - started)) s"; }
if [[ ! -x .venv/bin/python ]]; then
  t0=$SECONDS
  "$python" -m venv .venv
  echo "== venv: .venv from $python, $((SECONDS - t0)) s"
fi
# qwenops and the engine in one resolution, with uv where it can be had (falls back to pip).
scripts/install_cpu_engine.sh "${install_opts[@]}" --editable . .venv/bin/python
qwenops=.venv/bin/qwenops

t0=$SECONDS
model_log=$(mktemp)
if ! "$qwenops" model build-tiny >"$model_log" 2>&1; then
  cat "$model_log" >&2; rm -f "$model_log"; exit 1
fi
if [[ ${install_opts[*]:-} == --verbose ]]; then cat "$model_log"; fi
rm -f "$model_log"
echo "== tiny model: built or found (cached after the first run), $((SECONDS - t0)) s, $(at)"

echo "== serve it under supervision on port $port ($(at))"
serve_t0=$SECONDS
"$qwenops" serve --profile cpu-tiny --port "$port" --quiet &
serve_pid=$!
# shellcheck disable=SC2317  # called by the trap
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
echo "== ready: answers on port $port after $((SECONDS - serve_t0)) s, $(at)"

echo "== stream one answer and check it ($(at); the first token follows within its ttft below)"
"$qwenops" smoke-stream --profile cpu-tiny --base-url "http://127.0.0.1:$port" --prompt "Tell me about the sea."

echo "== stop (SIGTERM) and check that nothing is left"
# The server's own processes (API server, EngineCore, workers), recorded while it runs: on a shared machine
# other vLLM servers start and stop meanwhile, and a VLLM:: process of theirs is not one of ours left over.
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}
server_pids=$(descendants "$serve_pid")
trap - EXIT
kill -TERM "$serve_pid"
status=0
wait "$serve_pid" || status=$?
# A zombie (state Z) has exited and only waits to be reaped by whoever inherited it: not left running.
left=$(for pid in $server_pids; do ps -o pid=,stat=,args= -p "$pid" || true; done | awk '$2 !~ /^Z/' || true)
if pgrep -f "api_server.*--port $port" >/dev/null || [[ -n "$left" ]]; then
  echo "processes of the server are still running:" >&2
  pgrep -af "api_server.*--port $port" >&2 || true
  echo "$left" >&2
  exit 1
fi
echo "demo finished: served, streamed and stopped cleanly (serve exit status $status), $(at) in all"
exit "$status"
