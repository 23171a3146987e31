"""sd_notify on real datagram sockets, in both address forms systemd uses."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwenops.supervisor.notify import Notifier


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        name = f"qwenops-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    sock.settimeout(2)
    yield sock, address
    sock.close()


def test_messages_arrive_in_order_as_key_value_lines(listener: tuple[socket.socket, str]) -> None:
    sock, address = listener
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.status("starting: loading weights")
    assert notifier.ready("serving")
    assert notifier.watchdog()
    assert notifier.stopping("stopping: SIGTERM")
    got = [sock.recv(4096).decode() for _ in range(4)]
    assert got == [
        "STATUS=starting: loading weights",
        "READY=1\nSTATUS=serving",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping: SIGTERM",
    ]
    notifier.close()


def test_without_notify_socket_every_call_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("serving") is False


def test_a_manager_that_stopped_reading_never_blocks_the_sender(listener: tuple[socket.socket, str]) -> None:
    _sock, address = listener
    notifier = Notifier(address)
    results = [notifier.watchdog() for _ in range(500)]  # far beyond the socket's queue
    assert results[0] is True and results[-1] is False


def test_a_vanished_manager_socket_is_not_an_error(tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "gone.sock")).ready("serving") is False


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 4.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 4.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_from_the_environment(env: dict[str, str], interval: float | None) -> None:
    assert Notifier.from_env({"NOTIFY_SOCKET": "@x", **env}).watchdog_interval_s == interval
