"""Generate the sync stream client from the async one: qwenops/stream/sync_client.py from
qwenops/stream/async_client.py, as httpcore generates its sync code (`async def` -> `def`, `await` and
`async` dropped, names renamed by the table below).

    python scripts/unasync_stream.py          # write qwenops/stream/sync_client.py
    python scripts/unasync_stream.py --check  # exit 1 where the committed file is not what this writes

The rewrite is `unasync`'s (PyPI, the tool httpcore uses; a dev dependency): it rewrites tokens, so
comments, docstrings and layout pass through as written. Its public API works on files (a rule maps an
`_async/` folder to a `_sync/` one), so `generate` runs it on a copy in a temporary folder and returns the
text; tests/unit/test_stream_sync_client.py compares that with the committed file, so the two cannot drift.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SOURCE = "qwenops/stream/async_client.py"
TARGET = "qwenops/stream/sync_client.py"
HEADER = (
    f"# generated from {SOURCE} by scripts/unasync_stream.py; do not edit\n"
    # What the rewrite makes of code that is right as async: the source's `async with` inside a `with`
    # becomes a `with` inside a `with`, and its `async for x in y: yield x` a loop `yield from` would be.
    "# ruff: noqa: SIM117, UP028\n"
)

# Beyond unasync's own table (__aenter__, __anext__, asynccontextmanager, AsyncIterator, AsyncGenerator,
# StopAsyncIteration, ...): httpx's and this package's async names. A name missing here that starts with
# "Async" would become "Sync..." (unasync's default); any other stays as it is.
RENAMES = {
    "AsyncClient": "Client",  # httpx
    "aiter_bytes": "iter_bytes",  # httpx.Response
    "aiter_raw": "iter_raw",
    "aclose": "close",
    "aclosing": "closing",  # contextlib
    "AsyncByteStream": "ByteStream",  # qwenops.stream.transport: the hand-written pairs
    "ahead_within": "head_within",
    "atrace": "trace",
    "AsyncOpenStream": "OpenStream",
    "aread_body": "read_body",
    "aevents": "events",
    "aopen_stream": "open_stream",
    "aopen_chat_stream": "open_chat_stream",
    "aread_events": "read_events",
    "astream_chat": "stream_chat",
    "aresumed": "resumed",  # qwenops.stream.resume: the sync one runs the async one in a worker thread
}


def generate(repo: Path = REPO) -> str:
    """The sync client's text as this script writes it, from the async client in `repo`."""
    import unasync

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "_async", "client.py")
        source.parent.mkdir()
        shutil.copyfile(repo / SOURCE, source)
        unasync.unasync_files([str(source)], [unasync.Rule("/_async/", "/_sync/", additional_replacements=RENAMES)])
        return HEADER + Path(tmp, "_sync", "client.py").read_text(encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs")
    args = parser.parse_args()
    text, target = generate(), REPO / TARGET
    if args.check:
        if target.read_text(encoding="utf-8") != text:
            print(f"{TARGET} is not what scripts/unasync_stream.py generates: run it", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
