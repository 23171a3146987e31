"""Any vLLM log, as clean lines: streamed with bounded memory, whatever its size or encoding.

vLLM's own messages are what the classifier anchors on; everything wrapped around them differs by
where the log came from, and is stripped here, outermost first:
- a timestamp added by `docker logs -t` or `kubectl logs --timestamps` (RFC 3339);
- journald's `Nov 28 07:00:00 host unit[123]: ` (journalctl's default "short" format);
- docker compose's `vllm-1  | `;
- vLLM's process tag (`(APIServer pid=1)`, `(EngineCore_DP0 pid=7)`, `(RayWorkerWrapper pid=3, ip=10.0.0.2)`,
  `(VllmWorkerProcess pid=9)`), which vLLM prints once per process hop;
- ANSI colour codes, carriage returns, and Ray's `[repeated 30x across cluster]` suffix.
Bytes that are not UTF-8 become U+FFFD: a log is evidence, and a stray byte must not hide the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

# Longer lines (a base64 image in a request log, a tensor dump) are cut here and never buffered whole.
MAX_LINE_CHARS = 4096
_READ_BYTES = 1 << 16

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_REPEATED = re.compile(r"\s*\[repeated \d+x across cluster\]\s*$")
_WRAPPERS = (
    re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? "),  # docker -t / kubectl
    re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [^\s:\[]+(?:\[\d+\])?: "),  # journald short
    re.compile(r"^[A-Za-z0-9][\w.-]*\s+\| ?"),  # docker compose: `vllm-1  | `
    re.compile(r"^\([A-Za-z_]\w* pid=\d+(?:, ip=[0-9a-fA-F.:]+)?\)\s?"),  # vLLM's process tag
)


def normalise(line: str) -> str:
    """One raw line (without its newline) as vLLM wrote it: no wrappers, colours or trailing blanks."""
    line = _ANSI.sub("", line.replace("\r", ""))
    for wrapper in _WRAPPERS:
        line = wrapper.sub("", line, count=1)
    return _REPEATED.sub("", line).rstrip()


@dataclass(frozen=True)
class LogLine:
    number: int  # 1-based, as an editor shows it
    text: str  # normalised
    served_before: bool = False  # scan_log: a request or access-log line stood just before this one


def _raw_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream into lines, keeping at most MAX_LINE_CHARS*4 bytes of any one line."""
    limit = MAX_LINE_CHARS * 4  # UTF-8 needs at most 4 bytes a character
    pending = b""
    skipping = False  # inside an over-long line whose head was already yielded
    for chunk in chunks:
        parts = (pending + chunk).split(b"\n")
        pending = parts.pop()
        for part in parts:
            if skipping:  # the rest of the over-long line
                skipping = False
                continue
            yield part[:limit]
        if len(pending) > limit:
            if not skipping:
                yield pending[:limit]
                skipping = True
            pending = b""
    if pending and not skipping:
        yield pending


def read_log(stream: IO[bytes]) -> Iterator[LogLine]:
    """Every line of STREAM, numbered and normalised, read 64 KiB at a time."""
    chunks = iter(lambda: stream.read(_READ_BYTES), b"")
    for number, raw in enumerate(_raw_lines(chunks), start=1):
        yield LogLine(number, normalise(raw.decode("utf-8", errors="replace")[:MAX_LINE_CHARS]))


def lines_of(text: Iterable[str]) -> Iterator[LogLine]:
    """Already-decoded lines (the supervisor's pipe, tests), numbered and normalised."""
    for number, raw in enumerate(text, start=1):
        yield LogLine(number, normalise(raw.rstrip("\n")[:MAX_LINE_CHARS]))


_BLOCK_BYTES = 1 << 20


class BytesPattern(Protocol):
    """A compiled bytes pattern: Python's `re` or RE2 (google-re2), which has the same API."""

    def finditer(self, string: bytes) -> Iterator[Any]: ...

    def search(self, string: bytes, pos: int = ..., endpos: int = ...) -> Any: ...


def scan_log(stream: IO[bytes], candidate: BytesPattern, served: re.Pattern[bytes]) -> Iterator[LogLine]:
    """The lines of STREAM in which CANDIDATE matches, numbered and normalised; other lines are counted,
    not built. On a 200 MB log almost every line is an access-log or throughput line; finding the few
    that matter with one automaton over a whole block (RE2, like grep) runs at hundreds of MB/s, where
    Python's backtracking `re` manages a few MB/s on the same alternation, and per-line Python less.

    SERVED marks request and access-log lines; a candidate line says whether one stood since the last
    candidate (`served_before`), which is all the classifier needs of those lines. The last LogLine
    yielded is always a sentinel with empty text and the total number of lines.
    """
    carry = b""
    state = _ScanState()
    while True:
        data = stream.read(_BLOCK_BYTES)
        if not data:
            break
        data = carry + data
        end = data.rfind(b"\n")
        if end < 0:
            # One line longer than a block: keep its head, drop the rest.
            carry = data[:MAX_LINE_CHARS * 4] if len(data) > _BLOCK_BYTES else data
            continue
        block, carry = data[:end + 1], data[end + 1:]
        yield from _candidates(block, candidate, served, state)
    if carry:
        yield from _candidates(carry + b"\n", candidate, served, state)
    yield LogLine(state.lines, "", state.served)


@dataclass
class _ScanState:
    lines: int = 0  # lines before the current block
    served: bool = False  # a request line stood since the last candidate


def _candidates(block: bytes, candidate: BytesPattern, served: re.Pattern[bytes],
                state: _ScanState) -> Iterator[LogLine]:
    """Yield the candidate lines of BLOCK (whole lines, each ending in a newline); count all of them."""
    counted_to, gap_from, line_start = 0, 0, -1
    for match in candidate.finditer(block):
        start = block.rfind(b"\n", 0, match.start()) + 1
        if start == line_start:
            continue  # a second match on a line already yielded
        stop = block.find(b"\n", match.start())
        state.lines += block.count(b"\n", counted_to, start)
        served_before = state.served or served.search(block, gap_from, start) is not None
        counted_to, gap_from, line_start, state.served = start, stop + 1, start, False
        text = block[start:stop][:MAX_LINE_CHARS * 4].decode("utf-8", errors="replace")[:MAX_LINE_CHARS]
        yield LogLine(state.lines + 1, normalise(text), served_before)
    state.lines += block.count(b"\n", counted_to)
    state.served = state.served or served.search(block, gap_from) is not None
