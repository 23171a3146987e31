"""systemd's sd_notify protocol without libsystemd: one datagram per message to $NOTIFY_SOCKET.

Hand-written because the protocol is a single sendto() of `KEY=value` lines (sd_notify(3)) and the
Python bindings (python-systemd, sdnotify) either need libsystemd or do not handle the abstract
`@` address form that systemd itself uses for Type=notify services.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

# The service manager's variables belong to the process systemd watches (qwenops); a child that inherited
# them could send READY=1 on its behalf (with NotifyAccess=all) before anything was checked.
MANAGER_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends READY=1 / STATUS= / WATCHDOG=1 / STOPPING=1 to the service manager, if there is one.

    Outside systemd (no $NOTIFY_SOCKET) every method is a no-op, so callers never branch on it.
    """

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_interval_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._socket: socket.socket | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        # WATCHDOG_PID names the process systemd expects pings from; ignore a watchdog meant for another.
        watchdog_pid = env.get("WATCHDOG_PID")
        ours = not watchdog_pid or watchdog_pid == str(os.getpid())
        watchdog = int(usec) if usec.isdigit() and ours else None
        return cls(address, watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one message of KEY=value lines; False when there is no socket or it is gone."""
        if self.address is None:
            return False
        payload = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        # A leading '@' is systemd's spelling of a Linux abstract socket name (leading NUL byte).
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # MSG_DONTWAIT: a manager that stopped reading (its queue holds ~10 datagrams) must
            # never stall the supervision loop; a dropped STATUS= is harmless, a hung loop is not.
            self._socket.sendto(payload, socket.MSG_DONTWAIT, target)
        except OSError:
            # The manager went away, never listened, or its queue is full: best effort by design.
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def stopping(self, status: str) -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
