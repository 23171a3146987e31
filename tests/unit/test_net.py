"""The one port check (doctor and serve) and the one bind-host -> URL rule (serve and smoke-stream)."""

from __future__ import annotations

import os
import socket

import pytest

from qwenops.hardware.host import port_status
from qwenops.net import base_url, connect_host


@pytest.mark.parametrize(("bind_host", "url"), [
    ("0.0.0.0", "http://127.0.0.1:8000"),
    ("", "http://127.0.0.1:8000"),
    ("::", "http://[::1]:8000"),
    ("::1", "http://[::1]:8000"),
    ("fe80::1%eth0", "http://[fe80::1%eth0]:8000"),
    ("[::1]", "http://[::1]:8000"),
    ("10.0.0.5", "http://10.0.0.5:8000"),
    ("gpu-box", "http://gpu-box:8000"),
])
def test_a_bind_host_becomes_a_url_host_with_ipv6_in_brackets(bind_host: str, url: str) -> None:
    assert base_url(bind_host, 8000) == url


def test_serve_and_smoke_stream_share_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwenops.serve.run import plan_serve
    from qwenops.smoke.run import resolve_options

    monkeypatch.delenv("QWENOPS_BASE_URL", raising=False)
    monkeypatch.setenv("QWENOPS_HOST", "::1")
    monkeypatch.setenv("QWENOPS_PORT", "18345")
    assert plan_serve("cpu-tiny").base_url == "http://[::1]:18345"
    smoke = resolve_options(profile="cpu-tiny", base_url=None, model=None, prompt=None, max_tokens=None, concurrency=1,
                            requests=None, max_ttft_s=None, min_tokens_per_s=None, timeout_s=60)
    assert smoke.base_url == "http://[::1]:18345"
    assert connect_host("::") == "[::1]"


def _listening(family: socket.AddressFamily, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen()
    return sock


def test_a_listening_port_is_taken_and_names_its_holder() -> None:
    with _listening(socket.AF_INET, "127.0.0.1") as sock:
        port = sock.getsockname()[1]
        facts = port_status("127.0.0.1", port)
        assert (facts.free, facts.error) == (False, None)
        if facts.holder_pid is not None:  # psutil may not see other users' sockets without root
            assert facts.holder_pid == os.getpid() and facts.holder_name
        assert port_status("0.0.0.0", port).free is False  # the wildcard conflicts with it too
    assert port_status("127.0.0.1", port).free is True


def test_an_address_this_machine_lacks_is_a_bind_error_not_a_taken_port() -> None:
    facts = port_status("10.99.99.99", 18346)  # TEST-NET-like address no interface here has
    assert facts.free is False and facts.holder_pid is None
    assert facts.error is not None and facts.error.startswith("cannot bind 10.99.99.99:18346: ")
    assert "address" in facts.error.lower()


def test_a_name_that_does_not_resolve_is_an_error() -> None:
    facts = port_status("no-such-host.invalid", 18346)
    assert facts.free is False and facts.error is not None and "cannot resolve" in facts.error


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 in this Python build")
def test_ipv6_loopback_is_checked_over_ipv6() -> None:
    try:
        listener = _listening(socket.AF_INET6, "::1")
    except OSError:
        pytest.skip("IPv6 loopback is switched off on this host")
    with listener:
        port = listener.getsockname()[1]
        assert port_status("::1", port).free is False
        assert port_status("::1", port).error is None
    assert port_status("::1", port).free is True
