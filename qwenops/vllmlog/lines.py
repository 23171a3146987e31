"""Any vLLM log, as clean lines: streamed with bounded memory, whatever its size or encoding.

vLLM's own messages are what the classifier anchors on; everything wrapped around them differs by
where the log came from, and is stripped here, outermost first:
- a timestamp added by `docker logs -t` or `kubectl logs --timestamps` (RFC 3339);
- journald's `Nov 28 07:00:00 host unit[123]: ` (journalctl's default "short" format; short-precise and
  short-iso too), a CRI log file's `stderr F ` after its timestamp, `kubectl logs --prefix`'s `[pod/…] `;
- docker compose's `vllm-1  | `;
- a CI runner's `[2024-09-05T00:38:34Z] ` and a bare `2024-02-02 21:44:03.976 ` timestamp;
- vLLM's process tag (`(APIServer pid=1)`, `(EngineCore_DP0 pid=7)`, `(RayWorkerWrapper pid=3, ip=10.0.0.2)`,
  `(VllmWorkerProcess pid=9)`, `(VllmWorker rank=3 pid=9)`, old Ray's `(pid=9)`), which vLLM prints once per
  process hop; torch.distributed's `[rank0]: `; mpirun's `[1,0]<stderr>:`; a markdown quote's `> `;
- ANSI colour codes (a paste that dropped their ESC leaves `[36m`: that goes too), carriage returns, and
  Ray's `[repeated 30x across cluster]` suffix.
Wrappers nest in any order (compose around a CI timestamp around a process tag), so they are stripped
until none is left. Bytes that are not UTF-8 become U+FFFD: a log is evidence, and a stray byte must
not hide the rest.

Logs as users paste them are often hard-wrapped by a terminal (at 80 columns, or whatever its width):
a line that continues the one before it is joined back to it, so a message cut in the middle of a word
still reads whole. Where the log shows the terminal's width (many lines exactly W columns wide and none
wider: `wrap_width`), a line exactly W wide is continued by the next one unless that one starts a new
record (a logger's level and time, a wrapper, a traceback's head): the cut falls anywhere, before a
digit, a colon or an exception's name alike. Otherwise a line continues a long one when it does not
start like a log record, a traceback line or an exception. Both readers (every line, or the block
scanner's candidates) measure the width on the same first block and join alike. A paste indented as a
whole (a markdown code block, a list item) loses the indentation all its lines share, measured alike.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain, pairwise
from typing import IO, Any, Protocol, cast

# Longer lines (a base64 image in a request log, a tensor dump) are cut here and never buffered whole.
MAX_LINE_CHARS = 4096
_READ_BYTES = 1 << 16
_BLOCK_BYTES = 1 << 20  # scan_log's block; the terminal's width is measured on the first
_PASTE_BYTES = 1 << 18  # a log this small (a paste) is joined line by line before it is matched

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# (No leading `\s*`: searched from every blank of a long run, that was quadratic in the run; the blanks before it go
# by rstrip. Audit 10.)
_REPEATED = re.compile(r"\[repeated \d+x across cluster\]\s*$")
# The wrappers that only ever start a record (a timestamp, a process's tag), then the ones that may also stand
# inside a line a terminal cut (`| ` of a progress bar, `> `): a continuation never starts with the first kind.
_RECORD_WRAPPERS = (
    # journalctl -o short-iso / short-precise: `2024-11-28T07:00:00+0000 host unit[123]: `
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d) \S+ [^\s:\[]+\[\d+\]: "
    r"|\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?(?: |$)"  # docker -t, kubectl, Go
    r"|\[\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\] ?"  # CI runners
    r"|\d\d:\d\d:\d\d[.,]\d+ "  # a time alone
    # Python logging's `- name - LEVEL - ` and FastChat's `| LEVEL | name | ` after their timestamp
    r"|- [\w.]+ - (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) - |\| (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \| [\w.-]+ \| ?"
    r"|[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ [^\s:\[]+(?:\[\d+\])?: "  # journald short(-precise)
    r"|(?:stdout|stderr) [FP] "  # a CRI log file's stream and tag (/var/log/pods/...), after its timestamp
    r"|\[pod/[^\]\s]{1,200}\] ?"  # kubectl logs --prefix
    r"|[A-Za-z0-9][\w.-]*\s+\| ?"  # docker compose: `vllm-1  | `
    # vLLM's / Ray's process tag (Ray Serve's names have colons: `(ServeReplica:default:VLLMDeployment pid=9)`)
    r"|\((?:[A-Za-z_][\w.:-]*(?: rank=\d+)? )?pid=\d+(?:, ip=[0-9a-fA-F.:]+)?\)\s?"
    r"|\((?:raylet|gcs_server|autoscaler|monitor)(?:, ip=[0-9a-fA-F.:]+)?\)\s?"  # Ray's own processes
    r"|\[rank\d+\]: ?|\[\d+(?:,\d+)?\]<std(?:out|err)>: ?"  # torch.distributed, mpirun
)
# ... then compose's bar with its name lost, a markdown quote, a list's bullet.
# A terminal UI's frame (k9s: `│ ` before, padding and ` │` after) goes too.
# ... and a progress bar a log record was glued to (tqdm wrote no newline before it).
# An ANSI colour code whose ESC a paste dropped (GitHub keeps `[36m(RayWorkerWrapper pid=1)[0m`) goes as well.
_WRAPPERS = re.compile(f"^(?:{_RECORD_WRAPPERS}" r"|\[\d{0,3}(?:;\d{1,3}){0,4}m\s?"
                       r"|\s*\| (?=\S)|>(?: |$)|[-*\u2022] (?=\S)|[\u2502\u2503\u2551] ?|"
                       r"[^\[\]|]{0,120}\d{1,3}%(?:\||\s+Completed\s*\|)[^\[\]]{0,200}\[[^\]]{0,80}\]\s*"
                       r"(?=(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b|Traceback \(|\(\w+ pid=|\[rank\d))")
# The dashes and quotes a chat app or an editor curled in a paste, back to what vLLM printed.
_TYPOGRAPHY = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_RECORD_WRAPPER = re.compile(f"^(?:{_RECORD_WRAPPERS})")


def normalise(line: str) -> str:
    """One raw line (without its newline) as vLLM wrote it: no wrappers, colours or trailing blanks."""
    return normalise_tagged(line)[0]


# A progress bar's redraw (tqdm: `50%|#####     | 8/16 [00:01<00:01,  4.2it/s]`, vLLM's `100% Completed | 4/4`).
_PROGRESS_BAR = re.compile(r"\d{1,3}%(?:\||\s+Completed\s*\|)|\d(?:it/s|s/it)\]")


def _docker_json(line: str) -> str:
    """A line of docker's json-file log (`{"log":"...\\n","stream":"stderr","time":"..."}`): its log text."""
    try:
        entry = json.loads(line)
    except (ValueError, RecursionError):  # not JSON, or nested past the C parser's limit ('{"log":' + '[' * 3000)
        return line
    text = entry.get("log") if isinstance(entry, dict) else None
    return text.rstrip("\n") if isinstance(text, str) else line


def _displayed(line: str) -> str:
    """A line with carriage returns, as a terminal left it: each `\r` redraws the line, so the last part
    stands, unless it is a progress bar's redraw and a log record was written before it on the same line."""
    parts = [part for part in line.split("\r") if part.strip()]
    if not parts:
        return ""
    return next((part for part in reversed(parts) if not _PROGRESS_BAR.search(part)), parts[-1])


_PROCESS_TAG = re.compile(r"^\((?P<name>[A-Za-z_][\w.:-]*)(?: rank=\d+)? pid=")


def normalise_tagged(line: str) -> tuple[str, str]:
    """normalise, and the name in the innermost vLLM process tag it took off (`EngineCore_DP0`, `APIServer`,
    `VllmWorker`; "" for none): which process wrote the line."""
    if "\r" in line:
        line = _displayed(line)
    if line.startswith('{"log":'):
        line = _docker_json(line)
    if "&" in line and ";" in line:
        line = html.unescape(line)
    line = _ANSI.sub("", line)
    process = ""
    for _ in range(6):  # nested wrappers, outermost first; a bound, not a loop on adversarial input
        stripped = _WRAPPERS.sub("", line, count=1)
        if stripped == line:
            break
        if line.startswith("("):
            tag = _PROCESS_TAG.match(line)
            process = tag.group("name") if tag else process
        line = stripped
    repeated = _REPEATED.search(line) if "[repeated " in line else None
    line = (line[:repeated.start()] if repeated else line).rstrip()
    if not line.isascii():
        line = line.translate(_TYPOGRAPHY)
        if line.endswith(("\u2502", "\u2503", "\u2551")) and line[-2:-1].isspace():
            line = line[:-1].rstrip()  # the frame's right edge and its padding (not a regex: `\s+X$` is quadratic)
    return line, process


# A line that starts like something a log holds: a logger record, a traceback's parts, an exception, a
# progress bar, a bracketed or quoted tag, a timestamp. Anything else after a long line continues it.
_RECORD_START = re.compile(
    r"^(?:\s|(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|NOTICE|TRACE)\b|Traceback \(|During handling|"
    r"The above exception|[\w.]*(?:Error|Exception|Warning|Exit|Interrupt|Fault)\b|\d\d?[-/:.]\d\d|"
    r"[\[(<{#\"'`|>*=+~^\u2500-\u257f-]|[A-Z][a-z]{2} [ \d]\d |[^\s:]+(?: [^\s:]+){0,3}:(?:\s|$)|"
    r"usage:|Process |Loading |Processed |Fatal Python|Segmentation fault|Aborted|Killed|File (?:\"|\u201c|&quot;))")
WRAP_MIN_CHARS = 79  # a terminal wraps at its width, 80 columns or more: only a line that long was wrapped


_FRAME_LINE = re.compile(r'File "[^"]*", line \d+, in [\w<>.]+$')
_NAME_REST = re.compile(r"[\w<>.]+$")
# pydantic prints what failed on the indented line under "N validation error(s) for Model": vLLM's reason
# ("Value error, User-specified max_model_len ...") or the field's name. It belongs to that line.
_PYDANTIC_HEAD = re.compile(r"(?<!\d)\d{1,9} validation errors? for [\w.]+\s*$")  # (?<!\d): linear in a digit run
# A wrapped line's rest may start with "(" when the terminal cut it at a blank: "... the derived max_model_len "
# then "(max_position_embeddings=8192 ...". vLLM's own "(APIServer pid=1) " tags are gone by then (normalise).
_OPEN_PAREN = re.compile(r"\((?![\w.-]*(?: rank=\d+)? ?pid=)")


# What starts a new record even right after a line as wide as the terminal: a logger's level and time (vLLM's,
# uvicorn's, glog's `E0822 16:31:16.13`), a traceback's head or frame, Python's chaining sentences.
_NEW_RECORD = re.compile(
    r"^\s*(?:(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL) (?:\d\d-\d\d \d\d:|\[)|(?:INFO|WARNING|ERROR|DEBUG):\s|"
    r"\[?[EWIF]\d{4} \d\d:\d\d:\d\d|Traceback \(most recent call last\)|File \"|During handling of the|"
    r"The above exception was)")
WRAP_WIDTH_MIN = 60  # narrower than any terminal a log is read in
_WRAP_WIDTH_MAX = 400  # wider than any terminal a log is pasted from
_STANDARD_WIDTHS = frozenset({80, 100, 120, 132, 160, 200})


def columns(line: str) -> int:
    """How many terminal columns LINE takes: East Asian wide characters take two, colour codes none."""
    line = _ANSI.sub("", line) if "\x1b" in line else line
    if line.isascii():
        return len(line)
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in line)


def _wrapped_record(raw: str) -> bool:
    """Whether RAW starts with a wrapper that only ever starts a record (a timestamp, a process's tag)."""
    return bool(_RECORD_WRAPPER.match(_ANSI.sub("", raw) if "\x1b" in raw else raw))


@dataclass(frozen=True)
class Shape:
    """What a paste did to a whole log, measured on its first block: the width a terminal hard-wrapped it at,
    the indentation all its lines share, and whether a blank line follows every line (double-spaced: a
    wrapped line's parts then stand a blank line apart)."""

    width: int | None = None
    indent: str = ""
    double: bool = False

    def dedent(self, raw: str) -> str:
        return raw[len(self.indent):] if self.indent and raw.startswith(self.indent) else raw


_MAX_INDENT = 16
_SHAPE_LINES = 4096


def shape_of(lines: Sequence[str]) -> Shape:
    """The Shape of these raw lines (the first block's; its first _SHAPE_LINES lines: a paste shows its shape
    at once, and a block of a million empty lines costs no more than this)."""
    lines = lines[:_SHAPE_LINES]
    indent: str | None = None
    for line in lines:
        if not line.strip():
            continue
        lead = line[:len(line) - len(line.lstrip(" \t"))][:_MAX_INDENT]
        indent = lead if indent is None else _common(indent, lead)
        if not indent:
            break
    indent = indent or ""
    double = _double(lines)
    if double:
        lines = [line for line in lines if line.strip()]
    return Shape(wrap_width([line[len(indent):] for line in lines] if indent else lines), indent, double)


def _double(lines: Sequence[str]) -> bool:
    """Whether nearly every line with text is followed by a blank one (at least two of them)."""
    texts = spaced = 0
    for line, following in pairwise(lines):
        if line.strip():
            texts += 1
            spaced += not following.strip()
    return texts >= _DOUBLE_MIN and spaced * 10 >= texts * 9


_DOUBLE_MIN = 2


def _common(first: str, second: str) -> str:
    size = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        size += 1
    return first[:size]


def wrap_width(lines: Sequence[str]) -> int | None:
    """The width a terminal hard-wrapped these raw lines at, or None when they do not show one: the width
    most lines sit at exactly (at least two of them, or one at a common terminal width) with hardly any line
    wider (at most a quarter as many: a line of wide characters, a colour code the terminal did not count),
    and where the lines after them are mostly not new records (throughput lines that happen to be alike
    long are each followed by the next record, not by the rest of a cut)."""
    widths = [columns(line) if len(line) >= WRAP_WIDTH_MIN // 2 else 0 for line in lines]
    counts = Counter(width for width in widths if WRAP_WIDTH_MIN <= width <= _WRAP_WIDTH_MAX)
    best: tuple[int, int] | None = None  # (lines at the width, the width)
    wider = 0
    for width in sorted(counts, reverse=True):
        count = counts[width]
        if (count >= 2 or (width in _STANDARD_WIDTHS and wider == 0)) and wider * 4 <= count \
                and _cut_after(lines, widths, width):
            best = max(best or (count, width), (count, width))
        wider += count
    return best[1] if best else None


def _cut_after(lines: Sequence[str], widths: list[int], width: int) -> bool:
    """Whether most lines after the lines WIDTH wide go on with what was cut, rather than start a record."""
    after = [lines[index + 1] for index, seen in enumerate(widths[:-1]) if seen == width][:_WIDTH_SAMPLE]
    records = sum(1 for raw in after if not raw.strip() or _wrapped_record(raw) or _NEW_RECORD.match(normalise(raw)))
    return bool(after) and records * 2 < len(after)


_WIDTH_SAMPLE = 64  # followers looked at per width: enough to tell, bounded on a long log


def continues(previous: str, text: str, width: int | None = None, raw: str | None = None) -> bool:
    """Whether TEXT (normalised from RAW, when given) continues PREVIOUS (raw), a line that a terminal
    hard-wrapped (at WIDTH columns, when the log shows it). A line that had a wrapper (a process tag, a
    timestamp) starts a record of its own. A traceback's frame line is continued only by the rest of its
    function's name: a code line under it that lost its indentation in a paste is not a continuation."""
    if not text:
        return False
    if "\x1b" in previous:
        previous = _ANSI.sub("", previous)
    if text[:1].isspace() and _PYDANTIC_HEAD.search(previous):
        return True
    if len(previous) < WRAP_MIN_CHARS and (width is None or len(previous) < width // 2):
        return False
    if width is not None and _cut_at(previous, width):
        starts = (raw is not None and _wrapped_record(raw)) or bool(_NEW_RECORD.match(text))
    else:
        starts = len(previous) < WRAP_MIN_CHARS or bool(
            _RECORD_START.match(text) and not (previous[-1:].isspace() and _OPEN_PAREN.match(text)))
    return not starts and (not _FRAME_LINE.search(previous) or bool(_NAME_REST.match(text)))


@dataclass(frozen=True)
class LogLine:
    number: int  # 1-based, as an editor shows it (the first of the lines a wrapped one was joined from)
    text: str  # normalised; a hard-wrapped line joined back as the terminal cut it
    served_before: bool = False  # scan_log: a request or access-log line stood just before this one
    spaced: str = ""  # a joined line's parts joined by spaces instead (where a paste lost a space at the cut)
    code: str = ""  # a traceback's frame line: the (normalised) line under it, the code the frame ran
    process: str = ""  # the vLLM process whose tag stood on the line (`APIServer`, `EngineCore_DP0`), if any


# A traceback's frame line, as Python prints it (also with the quotes a paste curls or escapes): the line under
# it is the code that frame ran, which names the call a cut excerpt lost the frame of.
_CODE_ABOVE = re.compile('File (?:"|\u201c|&quot;)[^"\u201d&]+(?:"|\u201d|&quot;), line \\d+, in [\\w<>.]+')


def _with_code(lines: Iterable[LogLine]) -> Iterator[LogLine]:
    """LINES with each frame line's code line attached (`code`), read one line ahead."""
    held: LogLine | None = None
    for line in lines:
        if held is not None:
            if line.text and _CODE_ABOVE.search(held.text) and not _CODE_ABOVE.search(line.text):
                held = replace(held, code=line.text)
            yield held
        held = line
    if held is not None:
        yield held


def _join(parts: list[tuple[str, bool]]) -> tuple[str, str]:
    """The parts of one wrapped line (text, whether its raw line ended in a blank): as cut, and spaced."""
    text = parts[0][0]
    for (_, blank), (part, _) in pairwise(parts):
        text += (" " if blank else "") + part
    spaced = " ".join(part for part, _ in parts) if len(parts) > 1 else ""
    return text[:MAX_LINE_CHARS], spaced[:MAX_LINE_CHARS]


def _cut_at(raw: str, width: int) -> bool:
    """Whether RAW was cut by a terminal WIDTH columns wide: it fills the width, or lacks only the blank it was
    cut at, which a paste trimmed."""
    used = columns(raw)
    return used == width or (used == width - 1 and not raw[-1:].isspace())


def _ends_blank(raw: str, width: int | None) -> bool:
    """Whether RAW, the part of a wrapped line, was cut at a blank (kept, or trimmed by the paste)."""
    return raw[-1:].isspace() or (width is not None and columns(raw) == width - 1)


def _unwrapped(numbered: Iterable[tuple[int, str]], shape: Shape = Shape()) -> Iterator[LogLine]:
    """Logical lines from (number, raw text) pairs: hard-wrapped continuations joined to their line."""
    first = 0
    parts: list[tuple[str, bool]] = []
    previous = ""
    width = shape.width
    process = ""
    for number, indented in numbered:
        raw = shape.dedent(indented)
        text, tag = normalise_tagged(raw)
        if shape.double and not text:
            continue  # the blank a double-spaced paste put after every line: neither a line nor a cut
        if parts and continues(previous, text, width, raw) and len(parts) < _MAX_PARTS:
            parts.append((text, _ends_blank(raw, width)))
        else:
            if parts:
                joined, spaced = _join(parts)
                yield LogLine(first, joined, spaced=spaced, process=process)
            first, parts, process = number, [(text, _ends_blank(raw, width))], tag
        previous = raw
    if parts:
        joined, spaced = _join(parts)
        yield LogLine(first, joined, spaced=spaced, process=process)


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
    """Every line of STREAM, numbered and normalised, read 64 KiB at a time (the first block whole: the
    terminal's width is measured on it, as scan_log does)."""
    head = stream.read(_BLOCK_BYTES)
    after = stream.read(_READ_BYTES)  # nothing: the head is the whole stream, and its last line is whole too
    shape = block_shape(head + b"\n" if not after and not head.endswith(b"\n") else head[:head.rfind(b"\n") + 1])
    chunks = chain((head, after), iter(lambda: stream.read(_READ_BYTES), b""))
    yield from _with_code(_unwrapped(((number, raw.decode("utf-8", errors="replace")[:MAX_LINE_CHARS].rstrip("\r"))
                                      for number, raw in enumerate(_raw_lines(chunks), start=1)), shape))


def lines_of(text: Iterable[str]) -> Iterator[LogLine]:
    """Already-decoded lines (tests, a launch's captured output), numbered and normalised; the terminal's
    width is measured on the lines of the first block's size."""
    numbered = ((number, raw.rstrip("\n")[:MAX_LINE_CHARS].rstrip("\r")) for number, raw in enumerate(text, start=1))
    head: list[tuple[int, str]] = []
    size = 0
    for pair in numbered:
        head.append(pair)
        size += len(pair[1]) + 1
        if size >= _BLOCK_BYTES:
            break
    yield from _with_code(_unwrapped(chain(head, numbered), shape_of([raw for _, raw in head])))


def block_shape(block: bytes) -> Shape:
    """shape_of a block's whole lines."""
    return shape_of([_decoded(line) for line in block.split(b"\n", _SHAPE_LINES)[:-1]])  # whole lines only


class BytesPattern(Protocol):
    """A compiled bytes pattern: Python's `re` or RE2 (google-re2), which has the same API."""

    def search(self, string: bytes, pos: int = ..., endpos: int = ...) -> Any: ...


# RE2's budget for one automaton (its default is 8 MiB). The scanner's one alternation of every rule's
# candidate words is thousands of states: under the default, RE2's DFA ran out of memory on ordinary logs,
# printed "DFA out of memory" to stderr once per block and fell back to its slower NFA.
RE2_MAX_MEM = 64 << 20  # the scanner needs ~12 MiB today


def compile_scanner(pattern: bytes) -> BytesPattern:
    """PATTERN compiled with RE2 (google-re2, a dependency) and a budget its DFA fits in; Python's `re` where
    RE2 is not installed."""
    try:
        import re2
    except ImportError:
        return re.compile(pattern)
    options = re2.Options()
    options.max_mem = RE2_MAX_MEM
    return cast("BytesPattern", re2.compile(pattern, options))


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
    following = stream.read(_BLOCK_BYTES)
    while following:
        # One block read ahead: at the end of the stream a last line without its newline is given one, so it is
        # read in its block, as read_log reads it (a paste's last line joined to the one a terminal cut it from).
        data, following = carry + following, stream.read(_BLOCK_BYTES)
        if not following and not data.endswith(b"\n"):
            data += b"\n"
        end = data.rfind(b"\n")
        if end < 0:
            # One line longer than a block: keep its head, drop the rest.
            carry = data[:MAX_LINE_CHARS * 4] if len(data) > _BLOCK_BYTES else data
            continue
        last = data.rfind(b"\n", 0, end) + 1
        if following and last > 0 and _CODE_ABOVE.search(_decoded(data[last:end])):
            end = last - 1  # a frame's code line is the next line, not read yet: the frame waits for it
        block, carry = data[:end + 1], data[end + 1:]
        if state.shape is None:
            state.shape = block_shape(block)
            if len(block) <= _PASTE_BYTES or state.shape.width is not None or state.shape.double:
                yield from _joined_candidates(block, candidate, served, state)
                continue
        yield from _candidates(block, candidate, served, state)
    if carry:  # the head of a line longer than a block, the stream's last
        yield from _candidates(carry if carry.endswith(b"\n") else carry + b"\n", candidate, served, state)
    yield LogLine(state.lines, "", state.served)


@dataclass
class _ScanState:
    lines: int = 0  # lines before the current block
    served: bool = False  # a request line stood since the last candidate
    shape: Shape | None = None  # measured on the first block


def _candidates(block: bytes, candidate: BytesPattern, served: re.Pattern[bytes],
                state: _ScanState) -> Iterator[LogLine]:
    """Yield the candidate lines of BLOCK (whole lines, each ending in a newline), each joined with the
    lines that continue it when a terminal hard-wrapped it; count all of them."""
    counted_to, gap_from, consumed_to = 0, 0, 0
    shape = state.shape or Shape()
    width = shape.width
    # One search from the end of the last line yielded, not finditer: finditer visits every match, and a
    # line can hold tens of thousands ('CUDA out of memory. ' * 50000: RE2 took ~0.15 ms a match, 78 s
    # for that 1 MB line); a search skips the rest of a yielded line (and the continuations joined to it).
    while (match := candidate.search(block, consumed_to)) is not None:
        start = block.rfind(b"\n", 0, match.start()) + 1
        stop = block.find(b"\n", match.start())
        raw = shape.dedent(_decoded(block[start:stop]))
        text = normalise(raw)
        for _ in range(_MAX_PARTS):  # a match on a continuation: its line starts further up
            if start - 1 <= consumed_to:
                break
            before = block.rfind(b"\n", 0, start - 1) + 1
            previous = shape.dedent(_decoded(block[before:start - 1]))
            if not continues(previous, text, width, raw):
                break
            start, raw, text = before, previous, normalise(previous)
        state.lines += block.count(b"\n", counted_to, start)
        served_before = state.served or served.search(block, gap_from, start) is not None
        joined, spaced, stop, extra, process = _logical(block, start, shape)
        number = state.lines + 1
        state.lines += 1 + extra
        counted_to, gap_from, consumed_to, state.served = stop + 1, stop + 1, stop + 1, False
        code = _code_line(block, stop + 1, shape) if stop + 1 < len(block) and _CODE_ABOVE.search(joined) else ""
        yield LogLine(number, joined, served_before, spaced,
                      code if code and not _CODE_ABOVE.search(code) else "", process)
    state.lines += block.count(b"\n", counted_to)
    state.served = state.served or served.search(block, gap_from) is not None


def _code_line(block: bytes, start: int, shape: Shape) -> str:
    """The (normalised) line at START: a frame's code line, which a terminal rarely wraps (not joined here)."""
    return normalise(shape.dedent(_decoded(block[start:block.find(b"\n", start)])))


def _logical(block: bytes, start: int, shape: Shape) -> tuple[str, str, int, int, str]:
    """The logical line that starts at START in BLOCK, its continuations joined: (text, spaced, the offset of
    its last newline, how many continuations, the process tag's name)."""
    stop = block.find(b"\n", start)
    raw = shape.dedent(_decoded(block[start:stop]))
    text, process = normalise_tagged(raw)
    parts = [(text, _ends_blank(raw, shape.width))]
    extra = 0
    while stop + 1 < len(block) and len(parts) < _MAX_PARTS:
        following = block.find(b"\n", stop + 1)
        next_raw = shape.dedent(_decoded(block[stop + 1:following]))
        next_text = normalise(next_raw)
        if not continues(raw, next_text, shape.width, next_raw):
            break
        parts.append((next_text, _ends_blank(next_raw, shape.width)))
        raw, stop, extra = next_raw, following, extra + 1
    joined, spaced = _join(parts)
    return joined, spaced, stop, extra, process


def _joined_candidates(block: bytes, candidate: BytesPattern, served: re.Pattern[bytes],
                       state: _ScanState) -> Iterator[LogLine]:
    """The candidates of a paste (a first block of at most _PASTE_BYTES, or one a terminal hard-wrapped or a
    paste double-spaced): its lines are joined first, then matched, since a message cut anywhere may leave no
    part that matches alone. Line by line, as read_log reads, but on this one block (at most 1 MiB): a big
    log keeps the automaton's fast path for the rest."""
    lines = block.split(b"\n")[:-1]
    numbered = ((state.lines + index, _decoded(raw)) for index, raw in enumerate(lines, start=1))
    for line in _with_code(_unwrapped(numbered, state.shape or Shape())):
        text = line.text.encode()
        if candidate.search(text) or (line.spaced and candidate.search(line.spaced.encode())):
            yield replace(line, served_before=state.served)
            state.served = False
        elif served.search(text):
            state.served = True
    state.lines += len(lines)


def _decoded(raw: bytes) -> str:
    return raw[:MAX_LINE_CHARS * 4].decode("utf-8", errors="replace")[:MAX_LINE_CHARS].rstrip("\r")
