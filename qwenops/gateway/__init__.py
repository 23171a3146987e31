"""`qwenops gateway`: a WebSocket chat relay in front of vLLM's OpenAI-compatible server.

protocol.py (frames in and out, sans-IO), config.py (what a gateway runs with, validated before a
socket is bound), app.py (the Starlette app: /ws/chat, the page at /, /healthz), server.py (uvicorn
with a drain on SIGTERM). Needs the `gateway` extra (Starlette, uvicorn, websockets); nothing here is
imported by `qwenops --help`.
"""
