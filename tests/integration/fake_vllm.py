"""A stand-in for vLLM's OpenAI server, for real-process supervisor tests that need no engine.

Like vLLM it runs as a process tree: this "API server" forks an "engine" child (same process group)
and exits when the engine dies, printing vLLM-like boot lines on the way. Behaviour is chosen by flags:
  --port P                 serve /health and /v1/models on 127.0.0.1:P
  --ready-after S          seconds of "loading" before the HTTP server starts
  --model NAME             the name /v1/models lists
  --exit-after S           exit 1 S seconds after ready (a crash in service)
  --fatal-line TEXT        print TEXT and exit 1 before ever serving
  --ignore-sigterm         ignore SIGTERM (the supervisor must SIGKILL the group)
  --orphan-engine          the engine ignores SIGTERM too and outlives the API server
  --pid-file PATH          write "api_pid engine_pid" once running
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def say(text: str) -> None:
    print(f"(APIServer pid={os.getpid()}) {text}", flush=True)


def engine_main(ignore_term: bool) -> None:
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"(EngineCore pid={os.getpid()}) INFO [core.py:1] Initializing a V1 LLM engine (fake)", flush=True)
    while True:
        time.sleep(1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ready-after", type=float, default=0.3)
    parser.add_argument("--model", default="Qwen3-14B")
    parser.add_argument("--exit-after", type=float)
    parser.add_argument("--fatal-line")
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--orphan-engine", action="store_true")
    parser.add_argument("--pid-file")
    args = parser.parse_args()

    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    say(f"INFO [api_utils.py:286] non-default args: {{'port': {args.port}}}")
    engine = os.fork()
    if engine == 0:
        engine_main(args.ignore_sigterm or args.orphan_engine)
        return
    if args.pid_file:
        Path(args.pid_file).write_text(f"{os.getpid()} {engine}")
    # What vLLM would do with the key: serve /v1 only to clients that send it.
    say(f"INFO api key from VLLM_API_KEY: {'set' if os.environ.get('VLLM_API_KEY') else 'unset'}")
    say("INFO [model.py:733] Resolved architecture: Qwen3ForCausalLM")
    if args.fatal_line:
        say(args.fatal_line)
        os._exit(1)
    time.sleep(args.ready_after / 2)
    print(f"(Worker pid={engine}) INFO [cpu_model_runner.py:68] Starting to load model /fake...", flush=True)
    time.sleep(args.ready_after / 2)
    print(f"(EngineCore pid={engine}) INFO [kv_cache_utils.py:1] CPU KV cache size: 1,000 tokens", flush=True)

    model = args.model

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"object": "list", "data": [{"id": model, "object": "model"}]}).encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    say(f"INFO [entry.py:140] Starting vLLM server on http://127.0.0.1:{args.port}")
    print("INFO:     Application startup complete.", flush=True)
    ready_at = time.monotonic()
    while True:
        # Like vLLM: when the engine process dies, the API server reports it and exits.
        pid, _status = os.waitpid(engine, os.WNOHANG)
        if pid == engine:
            say("ERROR 11-25 16:08:41 [async_llm.py:906] vllm.v1.engine.exceptions.EngineDeadError: "
                "EngineCore encountered an issue.")
            os._exit(1)
        if args.exit_after is not None and time.monotonic() - ready_at >= args.exit_after:
            say("INFO exiting on cue")
            os._exit(1)
        time.sleep(0.02)


if __name__ == "__main__":
    main()
