"""Any vLLM log, as clean lines: streamed with bounded memory, whatever its size or encoding.

vLLM's own messages are what the classifier anchors on; everything wrapped around them differs by
where the log came from, and is stripped here, outermost first:
- a timestamp added by `docker logs -t` or `kubectl logs --timestamps` (RFC 3339);
- journald's `Nov 28 07:00:00 host unit[123]: ` (journalctl's default "short" format);
- docker compose's `vllm-1  | `;
- a CI runner's `[2024-09-05T00:38:34Z] ` and a bare `2024-02-02 21:44:03.976 ` timestamp;
- vLLM's process tag (`(APIServer pid=1)`, `(EngineCore_DP0 pid=7)`, `(RayWorkerWrapper pid=3, ip=10.0.0.2)`,
  `(VllmWorkerProcess pid=9)`, `(VllmWorker rank=3 pid=9)`, old Ray's `(pid=9)`), which vLLM prints once per
  process hop; torch.distributed's `[rank0]: `; mpirun's `[1,0]<stderr>:`; a markdown quote's `> `;
- ANSI colour codes, carriage returns, and Ray's `[repeated 30x across cluster]` suffix.
Wrappers nest in any order (compose around a CI timestamp around a process tag), so they are stripped
until none is left. Bytes that are not UTF-8 become U+FFFD: a log is evidence, and a stray byte must
not hide the rest.

Logs as users paste them are often hard-wrapped by a terminal (at 80 columns, or whatever its width):
a line that continues the one before it (it does not start like a log record, a traceback line or an
exception, and the line before was long) is joined back to it, so a message cut in the middle of a
word still reads whole. Both readers (every line, or the block scanner's candidates) join alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import IO, Any, Protocol

# Longer lines (a base64 image in a request log, a tensor dump) are cut here and never buffered whole.
MAX_LINE_CHARS = 4096
_READ_BYTES = 1 << 16

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_REPEATED = re.compile(r"\s*\[repeated \d+x across cluster\]\s*$")
_WRAPPERS = re.compile(
    r"^(?:"
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?(?: |$)"  # docker -t / kubectl / bare
    r"|\[\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\] ?"  # CI runners
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ [^\s:\[]+(?:\[\d+\])?: "  # journald short
    r"|[A-Za-z0-9][\w.-]*\s+\| ?|\s*\| (?=\S)"  # docker compose: `vllm-1  | ` (or its name lost)
    r"|\((?:[A-Za-z_][\w.-]*(?: rank=\d+)? )?pid=\d+(?:, ip=[0-9a-fA-F.:]+)?\)\s?"  # vLLM's / Ray's process tag
    r"|\[rank\d+\]: ?|\[\d+,\d+\]<std(?:out|err)>: ?|> (?=\S)"  # torch.distributed, mpirun, a quote
    r")"
)


def normalise(line: str) -> str:
    """One raw line (without its newline) as vLLM wrote it: no wrappers, colours or trailing blanks."""
    line = _ANSI.sub("", line.replace("\r", ""))
    for _ in range(6):  # nested wrappers, outermost first; a bound, not a loop on adversarial input
        stripped = _WRAPPERS.sub("", line, count=1)
        if stripped == line:
            break
        line = stripped
    return _REPEATED.sub("", line).rstrip()


# A line that starts like something a log holds: a logger record, a traceback's parts, an exception, a
# progress bar, a bracketed or quoted tag, a timestamp. Anything else after a long line continues it.
_RECORD_START = re.compile(
    r"^(?:\s|(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|NOTICE|TRACE)\b|Traceback \(|During handling|"
    r"The above exception|[\w.]*(?:Error|Exception|Warning|Exit|Interrupt|Fault)\b|\d\d?[-/:.]\d\d|"
    r"[\[(<{#\"'`|>*=+~^\u2500-\u257f-]|[A-Z][a-z]{2} [ \d]\d |[^\s:]+(?: [^\s:]+){0,3}:(?:\s|$)|"
    r"usage:|Process |Loading |Processed |Fatal Python|Segmentation fault|Aborted|Killed)")
WRAP_MIN_CHARS = 79  # a terminal wraps at its width, 80 columns or more: only a line that long was wrapped


_FRAME_LINE = re.compile(r'File "[^"]*", line \d+, in [\w<>.]+$')
_NAME_REST = re.compile(r"[\w<>.]+$")
# pydantic prints what failed on the indented line under "N validation error(s) for Model": vLLM's reason
# ("Value error, User-specified max_model_len ...") or the field's name. It belongs to that line.
_PYDANTIC_HEAD = re.compile(r"\d+ validation errors? for [\w.]+\s*$")
# A wrapped line's rest may start with "(" when the terminal cut it at a blank: "... the derived max_model_len "
# then "(max_position_embeddings=8192 ...". vLLM's own "(APIServer pid=1) " tags are gone by then (normalise).
_OPEN_PAREN = re.compile(r"\((?![\w.-]*(?: rank=\d+)? ?pid=)")


def continues(previous: str, text: str) -> bool:
    """Whether TEXT (normalised) continues PREVIOUS (raw), a line that a terminal hard-wrapped. A traceback's
    frame line is continued only by the rest of its function's name: a code line under it that lost its
    indentation in a paste is not a continuation."""
    if not text:
        return False
    if text[:1].isspace() and _PYDANTIC_HEAD.search(previous):
        return True
    if len(previous) < WRAP_MIN_CHARS:
        return False
    if _RECORD_START.match(text) and not (previous[-1:].isspace() and _OPEN_PAREN.match(text)):
        return False
    return not _FRAME_LINE.search(previous) or bool(_NAME_REST.match(text))


@dataclass(frozen=True)
class LogLine:
    number: int  # 1-based, as an editor shows it (the first of the lines a wrapped one was joined from)
    text: str  # normalised; a hard-wrapped line joined back as the terminal cut it
    served_before: bool = False  # scan_log: a request or access-log line stood just before this one
    spaced: str = ""  # a joined line's parts joined by spaces instead (where a paste lost a space at the cut)


def _join(parts: list[tuple[str, bool]]) -> tuple[str, str]:
    """The parts of one wrapped line (text, whether its raw line ended in a blank): as cut, and spaced."""
    text = parts[0][0]
    for (_, blank), (part, _) in pairwise(parts):
        text += (" " if blank else "") + part
    spaced = " ".join(part for part, _ in parts) if len(parts) > 1 else ""
    return text[:MAX_LINE_CHARS], spaced[:MAX_LINE_CHARS]


def _unwrapped(numbered: Iterable[tuple[int, str]]) -> Iterator[LogLine]:
    """Logical lines from (number, raw text) pairs: hard-wrapped continuations joined to their line."""
    first = 0
    parts: list[tuple[str, bool]] = []
    previous = ""
    for number, raw in numbered:
        text = normalise(raw)
        if parts and continues(previous, text) and len(parts) < _MAX_PARTS:
            parts.append((text, raw[-1:].isspace()))
        else:
            if parts:
                joined, spaced = _join(parts)
                yield LogLine(first, joined, spaced=spaced)
            first, parts = number, [(text, raw[-1:].isspace())]
        previous = raw
    if parts:
        joined, spaced = _join(parts)
        yield LogLine(first, joined, spaced=spaced)


_MAX_PARTS = 16  # a wrapped message longer than this many terminal lines is cut: MAX_LINE_CHARS bounds it anyway


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
    yield from _unwrapped((number, raw.decode("utf-8", errors="replace")[:MAX_LINE_CHARS].rstrip("\r"))
                          for number, raw in enumerate(_raw_lines(chunks), start=1))


def lines_of(text: Iterable[str]) -> Iterator[LogLine]:
    """Already-decoded lines (the supervisor's pipe, tests), numbered and normalised."""
    yield from _unwrapped((number, raw.rstrip("\n")[:MAX_LINE_CHARS].rstrip("\r"))
                          for number, raw in enumerate(text, start=1))


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
    """Yield the candidate lines of BLOCK (whole lines, each ending in a newline), each joined with the
    lines that continue it when a terminal hard-wrapped it; count all of them."""
    counted_to, gap_from, consumed_to = 0, 0, 0
    for match in candidate.finditer(block):
        if match.start() < consumed_to:
            continue  # on a line already yielded (a second match, or a continuation joined to a line)
        start = block.rfind(b"\n", 0, match.start()) + 1
        stop = block.find(b"\n", match.start())
        raw = _decoded(block[start:stop])
        text = normalise(raw)
        for _ in range(_MAX_PARTS):  # a match on a continuation: its line starts further up
            if start - 1 <= consumed_to:
                break
            before = block.rfind(b"\n", 0, start - 1) + 1
            previous = _decoded(block[before:start - 1])
            if not continues(previous, text):
                break
            start, raw, text = before, previous, normalise(previous)
        stop = block.find(b"\n", start)
        state.lines += block.count(b"\n", counted_to, start)
        served_before = state.served or served.search(block, gap_from, start) is not None
        parts = [(text, raw[-1:].isspace())]
        extra = 0
        while stop + 1 < len(block) and len(parts) < _MAX_PARTS:
            following = block.find(b"\n", stop + 1)
            next_raw = _decoded(block[stop + 1:following])
            next_text = normalise(next_raw)
            if not continues(raw, next_text):
                break
            parts.append((next_text, next_raw[-1:].isspace()))
            raw, stop, extra = next_raw, following, extra + 1
        number = state.lines + 1
        state.lines += 1 + extra
        counted_to, gap_from, consumed_to, state.served = stop + 1, stop + 1, stop + 1, False
        joined, spaced = _join(parts)
        yield LogLine(number, joined, served_before, spaced)
    state.lines += block.count(b"\n", counted_to)
    state.served = state.served or served.search(block, gap_from) is not None


def _decoded(raw: bytes) -> str:
    return raw[:MAX_LINE_CHARS * 4].decode("utf-8", errors="replace")[:MAX_LINE_CHARS].rstrip("\r")
