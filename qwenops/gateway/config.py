"""What one gateway runs with: checked in full before a socket is bound.

`resolve_config` takes the command line, the settings (QWENOPS_GATEWAY_TOKEN, QWENOPS_BASE_URL,
QWENOPS_API_KEY) and the profile (the server's host, port and served model name, the client's read
timeout), and returns a `GatewayConfig` or raises one line of bad input naming the field.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from qwenops.errors import BadInputError
from qwenops.render.deploy import GATEWAY_DRAIN_S, GATEWAY_PORT

TOKEN_VARIABLE = "QWENOPS_GATEWAY_TOKEN"
# A token travels in a Sec-WebSocket-Protocol value for browsers, so it must be an HTTP "token" there;
# base64url and hex (what `openssl rand` and `secrets.token_urlsafe` give) are.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def valid_token(value: str) -> bool:
    """Whether VALUE may be a gateway token (`qwenops install systemd --gateway` checks a kept one with it)."""
    return _TOKEN_CHARS.fullmatch(value) is not None


class GatewayConfig(BaseModel):
    """Every value the gateway runs with; `qwenops gateway --help` shows the flags that set them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    upstream: str = Field(description="The vLLM server's root URL (no /v1).")
    model: str = Field(min_length=1, description="The served model name sent upstream.")
    api_key: SecretStr | None = Field(None, description="Sent upstream as a bearer token (QWENOPS_API_KEY).")
    token: SecretStr | None = Field(None, description="Clients must present it (QWENOPS_GATEWAY_TOKEN).")
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(GATEWAY_PORT, ge=1, le=65535, description="Port to bind.")
    allowed_origins: tuple[str, ...] = Field(
        (), description="Browser origins allowed besides the gateway's own ('*': any). Clients without an "
        "Origin header (not browsers) are allowed.")
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
         "socket_buffer_bytes": "--socket-buffer-bytes"}


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
    if "allowed_origins" in values:
        values["allowed_origins"] = tuple(values["allowed_origins"])
    return build_config(
        upstream=server.url, model=server.model, api_key=server.api_key, token=server.settings.gateway_token,
        read_timeout_s=server.read_timeout_s, **values)
