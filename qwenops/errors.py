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


class UnreachableError(QwenopsError):
    """A server, socket or device that could not be reached."""

    exit_code = ExitCode.UNREACHABLE
    code = "unreachable"


class CheckFailedError(QwenopsError):
    """The command ran and what it checked failed."""

    exit_code = ExitCode.CHECK_FAILED
    code = "check_failed"
