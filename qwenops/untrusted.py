"""Untrusted input: the one place for its limits and for the rules that make its text safe to show.

Every value qwenops did not write itself is hostile until checked: profile values, environment
variables, flags, files, HTTP bodies and headers, WebSocket frames, logs. The limits below bound what
any of it may cost (bytes, series, nesting, seconds); docs/security.md lists them with their values and
why. Text from untrusted sources is data: renders quote it for their target (qwenops.render), and text
shown on a terminal first loses every control sequence (`printable`).

Pure: no imports beyond the standard library, so every layer may use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from qwenops.units import GIB, KIB, MIB

# ----------------------------------------------------------------------------------------- limits

# Files qwenops reads as configuration: a profile or an env file is a screenful of text.
MAX_PROFILE_BYTES = 1 * MIB
MAX_ENV_FILE_BYTES = 1 * MIB
MAX_ENV_FILE_ENTRIES = 4096  # lines of settings (bindings, comments and blank lines apart)

# A server's /metrics page (decoded bytes and samples). vLLM's own page for one model is ~60 KiB and
# ~600 samples; production-stack's routers a few thousand. Far above that is not a vLLM server.
MAX_METRICS_BYTES = 8 * MIB
MAX_METRICS_SAMPLES = 100_000
# One line of /metrics (vLLM's longest are LoRA info gauges naming adapters): prometheus_client's label
# parser re-reads the rest of a line for each label, so a line of 700,000 labels took minutes.
MAX_METRICS_LINE_CHARS = 16 * 1024
# Label sets of one reading (vLLM has one per model and engine, and one per finish reason: a handful); more is
# not one server's page, and their sum is no reading.
MAX_METRIC_SERIES = 256
# Profiles a profile's `extends` chain may pass through (the shipped ones use one or two).
MAX_EXTENDS_DEPTH = 32

# Any other HTTP body read whole (a /health answer, /v1/models, an error body).
MAX_HTTP_BODY_BYTES = 1 * MIB

# Every request qwenops makes to a server it reports on (status, troubleshoot, doctor, gateway --check):
# a total deadline for the whole exchange, connection to last byte, so a trickling server cannot hang it.
HTTP_TOTAL_DEADLINE_S = 30.0

# An external tool whose output qwenops reads (journalctl, docker logs): its whole run.
TOOL_DEADLINE_S = 60.0

# JSON nesting accepted from a client (a WebSocket frame, a chat parameter). A chat request is at most
# ~5 deep (params -> messages -> content parts -> image_url -> url); recursion in Python stops near 1000.
MAX_JSON_DEPTH = 32

# Lines and bytes of a log that troubleshoot reads (it keeps the tail beyond that).
MAX_LOG_BYTES = 64 * MIB

# One text field of a profile (description, names, hosts): one line of prose at most.
MAX_TEXT_FIELD_CHARS = 4 * KIB

# ----------------------------------------------------------------------------------------- URLs

USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#]*)@")


_QUERY = re.compile(r"([?#]).*\Z", re.DOTALL)


def mask_url(url: str) -> str:
    """The URL with any user:password@ part masked as ***@, and a ?query or #fragment as ?***: the one rule
    for every message, report and --json document that shows a URL (a server's URL never needs a query,
    and one such as ?api_key=... is a secret)."""
    return _QUERY.sub(r"\1***", USERINFO.sub(r"\1***@", url))


# ---------------------------------------------------------------------------------- secrets

# Environment names whose values are secrets by their name: HF_TOKEN, AWS_SECRET_ACCESS_KEY, a proxy's PASSWORD...
_SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASS|PWD|(?:^|_)PAT(?:_|$)|DSN|PRIVATE|CREDENTIAL|AUTH|COOKIE|SESSION",
                          re.IGNORECASE)
# A URL's user:password@ anywhere in a value (a proxy's, a database's), as mask_url masks it in a URL alone.
_USERINFO_ANYWHERE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s]*@")


def masked_env(env: Mapping[str, str]) -> dict[str, str]:
    """ENV as a view, --json or a dry run shows it: each value whose name says it is a secret as `***` (audit 8:
    `profiles show` and `serve --dry-run` printed a profile's HF_TOKEN whole), and the credentials of any URL in the
    others as `***@` (audit 9: HTTPS_PROXY=http://user:pw@proxy, DATABASE_URL). The process itself gets the values."""
    return {name: "***" if _SECRET_NAME.search(name) else _USERINFO_ANYWHERE.sub(r"\1***@", value)
            for name, value in env.items()}


# --------------------------------------------------------------------------- text shown to people

# ECMA-48: CSI (ESC [ ... final), OSC/DCS/SOS/PM/APC strings (up to BEL or ST), two-byte ESC sequences,
# and their 8-bit C1 forms (U+009B CSI, U+009D OSC ...). Written by hand: no maintained library strips
# the whole family (rich's Text.from_ansi keeps OSC 8 hyperlinks on purpose; strip-ansi ports stop at SGR).
_CONTROL_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?"  # CSI: colours, cursor moves, erase
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC, DCS, SOS, PM, APC
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]?"  # other ESC sequences (charset switches, RIS ...)
)
# C0 controls but tab and newline, DEL, C1 controls; and the bidirectional overrides that reorder
# what a terminal shows (Trojan Source, CVE-2021-42574).
_CONTROL_CHAR = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Every format character (Unicode category Cf): zero-width spaces and joiners, direction marks, the word
# joiner, the BOM, tag characters. A terminal shows them as nothing, so a model name or a GPU name holding
# one looks like another (spoofing). Listed by hand (Unicode 15.1), not built from unicodedata at import,
# which walks all 1.1 million code points (~0.1 s on every command); a test checks it against unicodedata.
_INVISIBLE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")
# A lone surrogate is how Python carries a byte that was not UTF-8 (a file name, argv): it cannot be
# written to a UTF-8 terminal at all, so printing one would crash the command.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """TEXT without terminal control sequences, control characters or invisible format characters, for a
    terminal (text mode; JSON escapes them itself). Tabs stay; a line or paragraph separator is a newline;
    newlines stay unless keep_newlines is False (then each becomes a space, for one-line messages). A lone
    surrogate (an undecodable byte of a file name) becomes U+FFFD."""
    text = _CONTROL_SEQUENCE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n")
    text = _INVISIBLE.sub("", _CONTROL_CHAR.sub("", text))
    text = _SURROGATE.sub("\ufffd", text)
    return text if keep_newlines else text.replace("\n", " ")


def control_character(text: str) -> str | None:
    """The first control character in TEXT as a readable name ('a line break', 'U+001B'), or None.
    A one-line field (a profile's description, a name, a host) with one is refused, whatever its use."""
    for char in text:
        if char in "\r\n":
            return "a line break"
        if char == "\t":
            return "a tab"
        if _CONTROL_CHAR.match(char) or char in "\u2028\u2029\x85":
            return f"the control character U+{ord(char):04X}"
    return None


# Names that become file names, unit names, argv words and Kubernetes label values. At most 56 characters,
# so the names qwenops derives (NAME-fitted, NAME-tuned) stay within a label's 63; first and last a letter
# or digit, as a label value must be (`x_` was rendered, and refused by the API server). Match it with
# re.fullmatch: with re.match, Python's `$` also matches before a final newline.
NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,54}[A-Za-z0-9])?$"
NAME_RULE = ("letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 56 "
             "characters")


# ------------------------------------------------------------------- appended: logs, env file, tune

# A log read from a pipe (stdin, a FIFO, a device, journalctl's or docker's output) has no size to seek
# by: it is read to its end, keeping only the last MAX_LOG_BYTES. More than MAX_LOG_READ_BYTES in all is
# a runaway, not a log (save it to a file: qwenops seeks to a file's last MAX_LOG_BYTES), and a pipe
# must end within LOG_PIPE_DEADLINE_S (a tool within TOOL_DEADLINE_S).
MAX_LOG_READ_BYTES = 1 * GIB
LOG_PIPE_DEADLINE_S = 300.0
# What troubleshoot asks journalctl (-n) and docker logs (--tail) for: the most recent lines, read from
# the end by the tool itself, so a unit that has logged for a year is not read from its first day.
LOG_TOOL_TAIL_LINES = 500_000

# tune's grid: values per flag (--max-num-seqs, --max-num-batched-tokens, --max-model-len), candidates in
# all (each one is a server start of a minute or more), and the largest token count any of its options
# takes (--prompt-tokens, --output-tokens, every grid value): 2**20, above any context vLLM serves today.
MAX_TUNE_VALUES = 16
MAX_TUNE_CANDIDATES = 256
MAX_TUNE_TOKENS = 1 << 20

# ------------------------------------------------------------- reading a server (qwenops.httpread)

# Each network read of such a request: connecting, and the longest wait for the next byte. The total
# deadline above bounds the whole exchange whatever these are.
HTTP_CONNECT_TIMEOUT_S = 5.0
HTTP_READ_TIMEOUT_S = 5.0

# Redirects followed, and only on the server's own scheme, host and port; one elsewhere is reported.
MAX_REDIRECTS = 3

# The largest gauge or counter value taken as a fact from /metrics: 10^15 tokens at 10^5 tokens/s is
# three centuries. A value above it, negative, NaN or infinite is shown as n/a with the reason.
MAX_METRIC_VALUE = 1e15

# Model names a server lists in /v1/models that a report shows, and the characters of each.
MAX_MODELS_SHOWN = 16
MAX_MODEL_NAME_CHARS = 200


# ------------------------------------------------------------------------------ limits added later

# Digits of one integer in client JSON (a WebSocket frame). A 64-bit seed needs 20; Python refuses to
# convert an int of more than 4,300 digits to text (sending it on would fail). Other numbers must be finite.
MAX_JSON_INT_DIGITS = 100

# smoke-stream: streams open at once (each a connection and a task) and in all, and re-requests of one
# cut stream (--resume-attempts). Far above any load a smoke test is for; a typo of 10**6 is not a test.
# The gateway: a client has this long to send a request's headers (the first, and each on a kept-alive
# connection), and at most this many connections are open at once (fewer where the process's file limit
# is lower: GATEWAY_SPARE_FDS stay for the upstream's connections and the gateway's own files). Without
# them, clients that never finish their headers (no token is checked before) held connections and file
# descriptors for ever.
GATEWAY_HEADER_DEADLINE_S = 10.0
# ... and a request's line and headers at most this many bytes (browsers send under 16 KiB; httptools has no limit
# and builds a header's value by `+=`: one endless header stalled the gateway's loop, audit 10).
GATEWAY_MAX_HEADER_BYTES = 64 * 1024
GATEWAY_MAX_CONNECTIONS = 10_000
GATEWAY_SPARE_FDS = 256
MAX_SMOKE_STREAMS = 1024
MAX_SMOKE_REQUESTS = 100_000
MAX_RESUME_ATTEMPTS = 100
# A token count (`usage`) or token id in a server's chunk: vLLM's are far below; anything past is malformed.
MAX_WIRE_COUNT = 2**31 - 1
# One line of a supervised server's output, as serve logs and shows it (vLLM's longest, a config dump, are a
# few KiB); the rest of a longer line is dropped.
MAX_SERVER_LINE_BYTES = 64 * KIB
# troubleshoot --probe's concurrency ramp (to the profile's max_num_seqs): a thread and a connection per answer.
MAX_PROBE_CONCURRENCY = 1024
