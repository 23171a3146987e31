"""Errors and exit codes: the one vocabulary the CLI boundary maps to messages.

Core code raises a `QwenopsError` subclass and never prints or exits; only the root command
(`qwenops.cli`) turns an error into a one-line message (or a JSON envelope) and an `ExitCode`.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (README "Exit codes"; pinned by tests/unit/test_contract.py)."""

    OK = 0
    CHECK_FAILED = 1  # the command ran and found a failure (doctor fail, smoke fail, error finding)
    BAD_INPUT = 2  # bad usage or bad input: unknown profile, invalid value, malformed file
    UNREACHABLE = 3  # the target (server, socket, GPU driver) could not be reached
    INTERNAL = 4  # a bug in qwenops: report it
    INTERRUPTED = 130  # stopped by Ctrl-C (SIGINT), the shell's 128 + signal number


class QwenopsError(Exception):
    """Base class: an error with a one-line message, the field it concerns and a fix."""

    exit_code: ExitCode = ExitCode.INTERNAL
    code: str = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.hint = hint

    def one_line(self) -> str:
        """The message as the user sees it: field, message and fix on one line."""
        text = f"{self.field}: {self.message}" if self.field else self.message
        if self.hint:
            text = f"{text} ({self.hint})"
        return " ".join(text.split())


class BadInputError(QwenopsError):
    """Input that qwenops cannot accept: a value, a file, a flag or an environment variable."""

    exit_code = ExitCode.BAD_INPUT
    code = "bad_input"


class ProfileNotFoundError(BadInputError):
    """No profile of that name in any profile directory."""

    code = "profile_not_found"


class ProfileInvalidError(BadInputError):
    """A profile file that does not parse or does not validate."""

    code = "profile_invalid"


class SettingsError(BadInputError):
    """A QWENOPS_* environment variable or config file value that does not validate."""

    code = "settings_invalid"


class EngineMissingError(BadInputError):
    """The inference engine a profile needs is not installed in this Python environment."""

    code = "engine_missing"


class PortInUseError(BadInputError):
    """A host:port that a server (vLLM, the gateway, serve's metrics) must bind is already bound."""

    code = "port_in_use"


class UsageError(BadInputError):
    """A command line Click could not parse: an unknown option, a bad or missing value."""

    code = "usage"


class InterruptedByUser(QwenopsError):
    """The user pressed Ctrl-C before the command finished."""

    exit_code = ExitCode.INTERRUPTED
    code = "interrupted"


class UnreachableError(QwenopsError):
    """A server, socket or device that could not be reached."""

    exit_code = ExitCode.UNREACHABLE
    code = "unreachable"


class CheckFailedError(QwenopsError):
    """The command ran and what it checked failed."""

    exit_code = ExitCode.CHECK_FAILED
    code = "check_failed"


class StreamError(QwenopsError):
    """A streamed answer that did not complete; the subclass says why."""

    exit_code = ExitCode.CHECK_FAILED
    code = "stream_error"


class HTTPStatusError(StreamError):
    """The server answered the request with an HTTP error status instead of a stream."""

    code = "http_error"

    def __init__(
        self, message: str, *, status_code: int, body: str, hint: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code
        self.body = body
        if code is not None:
            self.code = code  # a sharper name for a known cause: unauthorized, model_not_found


class InBandError(StreamError):
    """The server sent `data: {"error": ...}` inside an HTTP 200 stream (vLLM does when its engine dies)."""

    code = "in_band_error"

    def __init__(self, message: str, *, error: dict[str, object], text_so_far: str, chunks: int) -> None:
        super().__init__(message)
        self.error = error
        self.text_so_far = text_so_far
        self.chunks = chunks


class StreamInterrupted(StreamError):
    """The connection ended before `data: [DONE]`; what arrived so far is kept on the error."""

    code = "stream_interrupted"

    def __init__(self, message: str, *, text_so_far: str, chunks: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.text_so_far = text_so_far
        self.chunks = chunks


class StreamTimeout(StreamError):
    """No bytes arrived within the read timeout."""

    code = "client_timeout"


class NotEventStream(StreamError):
    """The server answered HTTP 200, but with a body that is not an event stream."""

    code = "not_event_stream"


class NotHTTPError(UnreachableError):
    """Something listens there, but does not answer in HTTP."""

    code = "not_http"


class RunawayStream(StreamError):
    """The server kept sending past any answer `max_tokens` allows, or sent an event without end."""

    code = "runaway_stream"
