"""What the gateway can know of the `qwenops serve` that runs its upstream, from the records serve keeps in
its state directory (the gateway and serve share a host and `QWENOPS_STATE_DIR`, as the systemd units do):

- `serve-PROFILE.fatal.json`: `{"cause": ..., "at": unix seconds}`, written when the supervisor gives up
  (FATAL). A record written after a chat began means the server that chat waits for is not coming back:
  the chat ends `interrupted` with the supervisor's cause at once, not at a timeout.
- `run/serve-PROFILE.json`: who runs the profile's server now (`qwenops_pid`, `qwenops_started`); serve
  removes it when it exits. Only said in a message (a chat that waited its whole deadline is told whether
  serve still runs); a missing record is not taken for a FATAL, since `systemctl restart` removes it too.

Both are read bounded (4 KiB) and checked; anything else there (no file, another shape) is no signal.
The serve metrics listener (supervise.metrics) is not used: serve closes it when it exits on FATAL.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_RECORD_BYTES = 4096


def _read(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def _seconds(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value < 1e11:
        return float(value)
    return None


@dataclass(frozen=True)
class Fatal:
    cause: str
    at: float  # Unix seconds


@dataclass(frozen=True)
class ServeRecords:
    state_dir: Path
    profile: str

    @property
    def fatal_path(self) -> Path:
        return self.state_dir / f"serve-{self.profile}.fatal.json"  # supervisor/metrics.fatal_record

    @property
    def run_path(self) -> Path:
        return self.state_dir / "run" / f"serve-{self.profile}.json"  # serve._run_record

    def fatal(self) -> Fatal | None:
        """The last FATAL serve recorded for the profile, or None."""
        data = _read(self.fatal_path)
        if not isinstance(data, dict):
            return None
        cause, at = data.get("cause"), _seconds(data.get("at"))
        if not (isinstance(cause, str) and 0 < len(cause) <= 64 and cause.isascii()
                and cause.replace("_", "").isalnum()) or at is None:
            return None
        return Fatal(cause, at)

    def gave_up_since(self, since: float) -> Fatal | None:
        """A FATAL recorded at or after SINCE (Unix seconds): the supervisor gave up while a chat waited."""
        fatal = self.fatal()
        return fatal if fatal is not None and fatal.at >= since else None

    def running(self) -> bool:
        """Whether a qwenops serve of the profile runs now (its run record names a live process)."""
        import psutil

        data = _read(self.run_path)
        if not isinstance(data, dict):
            return False
        pid, started = data.get("qwenops_pid"), _seconds(data.get("qwenops_started"))
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or started is None:
            return False
        try:
            return abs(psutil.Process(pid).create_time() - started) < 1.0
        except (psutil.Error, OSError, ValueError):
            return False

    def describe(self) -> str:
        """What the records say now, for a message: 'qwenops serve --profile P is running' or not."""
        name = f"qwenops serve --profile {self.profile}"
        return f"{name} is running" if self.running() else f"{name} is not running"
