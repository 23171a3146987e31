"""What one gateway runs with: checked in full before a socket is bound.

`resolve_config` takes the command line, the settings (QWENOPS_GATEWAY_TOKEN, QWENOPS_BASE_URL,
QWENOPS_API_KEY) and the profile (the server's host, port and served model name, the client's read
timeout), and returns a `GatewayConfig` or raises one line of bad input naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_serializer, field_validator
from pydantic_core import PydanticCustomError

from qwenops.errors import BadInputError
from qwenops.net import loopback_host
from qwenops.render.deploy import GATEWAY_DRAIN_S, GATEWAY_PORT

if TYPE_CHECKING:
    from qwenops.config.target import ConfiguredServer

TOKEN_VARIABLE = "QWENOPS_GATEWAY_TOKEN"
# A token travels in a Sec-WebSocket-Protocol value for browsers, so it must be an HTTP "token" there;
# base64url and hex (what `openssl rand` and `secrets.token_urlsafe` give) are.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def valid_token(value: str) -> bool:
    """Whether VALUE may be a gateway token (`qwenops install systemd --gateway` checks a kept one with it)."""
    return _TOKEN_CHARS.fullmatch(value) is not None


# ------------------------------------------------------------------------------------ hosts and origins
#
# DNS rebinding: a page on evil.example can make its own name resolve to 127.0.0.1, and its requests then
# reach the gateway carrying `Host: evil.example:PORT` and `Origin: http://evil.example:PORT`. The Origin
# check (Origin's host:port == Host) passes them: the attacker controls both. Only the Host value tells
# this machine's names from the attacker's, so the gateway accepts, as Jupyter and the Docker daemon do,
# the names no DNS answer can give: loopback addresses (127.0.0.0/8, ::1) and `localhost` with every name
# under it (RFC 6761 6.3: resolvers answer them with loopback themselves, browsers never ask DNS), plus
# what the operator names: --allow-host and the address bound. With a token and no --allow-host any Host is
# accepted: a rebinding page cannot present the token (browsers add no credential to a WebSocket), and the
# deployments bind 0.0.0.0 and are reached by names the gateway cannot know (a Service, a published port).

_HOST_AND_PORT = re.compile(r"(\[[^\[\]]*\]|[^\[\]:]*)(?::([0-9]{1,5}))?")
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"  # letters, digits, '-' inside; '_' as in compose service names
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# What a URL parser reads as an IPv4 address (WHATWG's "ends in a number": 127.1, 0x7f.0.0.1, 2130706433):
# browsers rewrite those to the dotted quad before sending, so no browser sends them as names.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_WILDCARDS = ("0.0.0.0", "::")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normal_host(value: str, *, with_port: bool = False) -> str | None:
    """VALUE as one canonical text, or None if it is neither an IP address nor a DNS name: IPv4 as its
    dotted quad, IPv6 compressed without brackets, a name in lower case without its trailing dot. WITH_PORT:
    a Host header, whose `:port` (1-65535) may follow and is dropped. Strict on purpose: `ipaddress` takes
    only canonical forms, and whatever a browser would not send is refused rather than interpreted."""
    if with_port:
        match = _HOST_AND_PORT.fullmatch(value)
        if match is None or (match[2] is not None and not 0 < int(match[2]) < 65536):
            return None
        value = match[1]
    bracketed = value.startswith("[") and value.endswith("]")
    host = value[1:-1] if bracketed else value
    if not host.isascii():  # IDNs travel as punycode (xn--...); raw bytes are no name
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None if bracketed else _normal_name(host)
    # Brackets hold IPv6 only and a Host header must bracket it; a zone (fe80::1%eth0) no browser sends.
    if (bracketed != (address.version == 6) and (bracketed or with_port)) or getattr(address, "scope_id", None):
        return None
    return str(address)


def _normal_name(host: str) -> str | None:
    name = host.lower().removesuffix(".")
    if len(name) > 253 or not _NAME.fullmatch(name) or _NUMERIC_LABEL.fullmatch(name.rsplit(".", 1)[-1]):
        return None
    return name


def origin_problem(value: str) -> str | None:  # noqa: PLR0911 -- one return per way a value is not an origin
    """Why VALUE can never equal a browser's Origin header (so that listing it allows nothing, or what it
    was not meant to), or None. A browser sends scheme://host[:port]: lower case, no default port, no
    path, no trailing '/', no credentials."""
    if value == "*":
        return None
    if value == "null":
        return ("'null' is the Origin of sandboxed frames, local files and some redirects, which any page can "
                "take on; list '*' to allow any origin")
    from qwenops.untrusted import mask_url

    shown = repr(mask_url(value)[:80])
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{shown} is not an origin ({exc})"
    hostname = parts.hostname or ""
    host = normal_host(hostname)
    if not parts.scheme or host is None:
        return f"{shown} is not an origin: scheme://host[:port], as a browser sends it"
    if parts.username is not None or parts.password is not None:
        return "an origin has no user name or password"
    netloc = f"[{host}]" if ":" in host else host + ("." if hostname.endswith(".") else "")
    scheme = parts.scheme.lower()
    canonical = f"{scheme}://{netloc}" + (f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else "")
    if value != canonical:
        return f"a browser sends this origin as {canonical} (no path, no trailing '/', lower case, no default port)"
    return None


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("gateway", "{message}", {"message": message})


class GatewayConfig(BaseModel):
    """Every value the gateway runs with; `qwenops gateway --help` shows the flags that set them."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    upstream: str = Field(description="The vLLM server's root URL (no /v1).")
    model: str = Field(min_length=1, description="The served model name sent upstream.")
    api_key: SecretStr | None = Field(None, description="Sent upstream as a bearer token (QWENOPS_API_KEY).")
    token: SecretStr | None = Field(None, description="Clients must present it (QWENOPS_GATEWAY_TOKEN).")
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(GATEWAY_PORT, ge=1, le=65535, description="Port to bind.")
    allowed_origins: tuple[str, ...] = Field(
        (), description="Browser origins allowed besides the gateway's own ('*': any). Clients without an "
        "Origin header (not browsers) are allowed.")
    allowed_hosts: tuple[str, ...] = Field(
        (), description="Host names and addresses clients may reach the gateway by, besides loopback and the "
        "bind address (DNS rebinding); kept in canonical form. Without a token they are all that is accepted; "
        "with a token and none listed, any Host is.")
    max_frame_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024,
                                 description="Largest client frame answered; larger ones get bad_request.")
    max_chats: int = Field(64, ge=1, le=10_000, description="Chats at once over all connections.")
    max_chats_per_connection: int = Field(8, ge=1, le=1000, description="Chats at once on one connection.")
    send_queue_bytes: int = Field(1024 * 1024, ge=4096, le=256 * 1024 * 1024,
                                  description="Bytes waiting for one slow client before its chats are cancelled.")
    socket_buffer_bytes: int | None = Field(
        None, ge=4096, le=64 * 1024 * 1024,
        description="SO_SNDBUF of client connections: what the kernel holds for a client that does not read, "
        "before the send queue starts to fill (None: the kernel's autotuning, up to net.ipv4.tcp_wmem's "
        "maximum; Linux doubles the value set and caps it at net.core.wmem_max).")
    idle_timeout_s: float = Field(300.0, gt=0, le=86400.0,
                                  description="A connection with no frame and no chat for this long is closed.")
    ping_interval_s: float = Field(20.0, gt=0, le=3600.0,
                                   description="WebSocket pings; a client that misses one for as long is closed.")
    drain_s: float = Field(float(GATEWAY_DRAIN_S), ge=0, le=3600.0,
                           description="On SIGTERM, running chats may finish for this long, then are cancelled.")
    read_timeout_s: float = Field(120.0, gt=0, le=86400.0,
                                  description="Longest wait for the server's next event (profile client.timeout_s).")
    chat_deadline_s: float = Field(3600.0, gt=0, le=7 * 86400.0,
                                   description="Longest one chat's answer may stream, resumed parts included; then it "
                                   "ends `timeout` (a server that streams forever, empty chunks included, holds a "
                                   "chat slot no longer).")
    resume: bool = Field(True, description="Continue a cut answer from its token ids (qwenops.stream.resume); "
                         "chats that can never be resumed (tools, logprobs, ...) are relayed as without it.")
    queue_size: int = Field(64, ge=0, le=10_000,
                            description="Chats that may wait at once for a server that is unreachable or restarting "
                            "(0: none wait, they fail unreachable at once).")
    queue_deadline_s: float = Field(300.0, gt=0, le=86400.0,
                                    description="Longest a chat waits for the server to be ready again, in the queue "
                                    "or to resume a cut answer; then it ends interrupted.")
    serve_state_dir: str | None = Field(None, description="The state directory of the `qwenops serve` that runs the "
                                        "upstream, whose records say when it gave up (FATAL) or stopped.")
    serve_profile: str | None = Field(None, description="That serve's profile name (its records are named after it).")

    @field_validator("host")
    @classmethod
    def _bindable(cls, value: str) -> str:
        if normal_host(value) is None:
            raise _refuse(f"{value[:80]!r} is not an IP address or a host name")
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        normal = []
        for value in values:
            host = normal_host(value)
            if host is None:
                raise _refuse(f"{value[:80]!r} is not an IP address or a host name (no port, no scheme; an "
                              "international name as its xn-- form)")
            normal.append(host)
        return tuple(dict.fromkeys(normal))

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        for value in values:
            problem = origin_problem(value)
            if problem is not None:
                raise _refuse(problem)
        return values

    @field_serializer("upstream", when_used="json")
    def _masked(self, upstream: str) -> str:
        from qwenops.untrusted import mask_url

        return mask_url(upstream)

    def host_allowed(self, values: Sequence[str]) -> bool:
        """Whether a handshake's Host header (VALUES: each Host line it had) names this gateway. Exactly one,
        well formed; then, unless a token guards the gateway and no --allow-host was given: loopback, a
        listed host or the address bound (not a wildcard)."""
        if len(values) != 1:
            return False
        host = normal_host(values[0], with_port=True)
        if host is None:
            return False
        if self.token is not None and not self.allowed_hosts:
            return True
        bound = normal_host(self.host) if self.host not in _WILDCARDS else None
        return loopback_host(host) or host in self.allowed_hosts or host == bound


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_FLAG = {"port": "--port", "host": "--host", "max_chats": "--max-chats", "drain_s": "--drain",
         "max_chats_per_connection": "--max-chats-per-connection", "allowed_origins": "--allow-origin",
         "max_frame_bytes": "--max-frame-bytes", "idle_timeout_s": "--idle-timeout",
         "send_queue_bytes": "--send-queue-bytes", "ping_interval_s": "--ping-interval",
         "socket_buffer_bytes": "--socket-buffer-bytes", "allowed_hosts": "--allow-host",
         "resume": "--no-resume", "queue_size": "--queue-size", "queue_deadline_s": "--queue-deadline"}


def build_config(**values: Any) -> GatewayConfig:
    """Validate; the first problem is one line naming the flag (or field) and what is allowed."""
    try:
        config = GatewayConfig(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "gateway"
        raise BadInputError(error["msg"], field=_FLAG.get(name, name)) from None
    if config.token is not None and not valid_token(config.token.get_secret_value()):
        raise BadInputError("must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ - (it travels in a "
                            "Sec-WebSocket-Protocol header for browsers)", field=TOKEN_VARIABLE,
                            hint="e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    if config.token is None and not is_loopback(config.host):
        raise BadInputError(f"binding {config.host} (beyond loopback) needs a token: anyone who can reach "
                            "the port could use the GPU", field=TOKEN_VARIABLE,
                            hint=f"set {TOKEN_VARIABLE} (environment or env file), or bind 127.0.0.1")
    return config


def resolve_config(*, profile: str | None, upstream: str | None, **flags: Any) -> GatewayConfig:
    """Flags, then settings, then the profile; None flags are left to the defaults."""
    from qwenops.config.target import configured_server

    server = configured_server(profile, upstream, field="--upstream")
    values: dict[str, Any] = {key: value for key, value in flags.items() if value is not None}
    for key in ("allowed_origins", "allowed_hosts"):
        if key in values:
            values[key] = tuple(values[key])
    return build_config(
        upstream=server.url, model=server.model, api_key=server.api_key, token=server.settings.gateway_token,
        read_timeout_s=server.read_timeout_s, **_serve_records(server), **values)


def _serve_records(server: ConfiguredServer) -> dict[str, Any]:
    """Where `qwenops serve` keeps its records when the upstream is the profile's own server (its host and
    port): a serve of that profile runs it. Another upstream has no supervisor the gateway can know of."""
    from qwenops.net import base_url as server_url
    from qwenops.net import normalize_base_url

    profile = server.profile
    try:
        own = normalize_base_url(server_url(profile.host, profile.port), field="profile")
    except BadInputError:
        return {}
    if server.url != own:
        return {}
    return {"serve_state_dir": str(server.settings.state_dir), "serve_profile": profile.name}


# ------------------------------------------------------------------------------------ qwenops serve's records
#
# What the gateway can know of the `qwenops serve` that runs its upstream, from the records serve keeps in
# its state directory (the gateway and serve share a host and `QWENOPS_STATE_DIR`, as the systemd units do):
#
# - `serve-PROFILE.fatal.json`: `{"cause": ..., "at": unix seconds}`, written when the supervisor gives up
#   (FATAL). A record written after a chat began means the server that chat waits for is not coming back:
#   the chat ends `interrupted` with the supervisor's cause at once, not at a timeout.
# - `run/serve-PROFILE.json`: who runs the profile's server now (`qwenops_pid`, `qwenops_started`); serve
#   removes it when it exits. Only said in a message (a chat that waited its whole deadline is told whether
#   serve still runs); a missing record is not taken for a FATAL, since `systemctl restart` removes it too.
#
# Both are read bounded (4 KiB) and checked (supervisor/lifetime.py, which writes them); anything else
# there (no file, another shape) is no signal. serve's metrics listener is not used: serve closes it when
# it exits on FATAL, and it is off unless the profile turns it on.


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
        from qwenops.supervisor.lifetime import fatal_record

        return fatal_record(self.state_dir, self.profile)

    @property
    def run_path(self) -> Path:
        from qwenops.supervisor.lifetime import run_record

        return run_record(self.state_dir, self.profile)

    def fatal(self) -> Fatal | None:
        """The last FATAL serve recorded for the profile, or None."""
        from qwenops.supervisor.lifetime import read_last_fatal

        found = read_last_fatal(self.fatal_path)
        return Fatal(*found) if found is not None else None

    def gave_up_since(self, since: float) -> Fatal | None:
        """A FATAL recorded at or after SINCE (Unix seconds): the supervisor gave up while a chat waited."""
        fatal = self.fatal()
        return fatal if fatal is not None and fatal.at >= since else None

    def running(self) -> bool:
        """Whether a qwenops serve of the profile runs now (its run record names a live process)."""
        from qwenops.supervisor.lifetime import recorder_running

        return recorder_running(self.run_path)

    def describe(self) -> str:
        """What the records say now, for a message: 'qwenops serve --profile P is running' or not."""
        name = f"qwenops serve --profile {self.profile}"
        return f"{name} is running" if self.running() else f"{name} is not running"
