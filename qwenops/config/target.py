"""The configured server: one rule for every command that talks to the running vLLM server.

The URL is the command line's (`--base-url`, `--upstream`), else QWENOPS_BASE_URL, else the profile's
host and port. QWENOPS_API_KEY goes only to the server it was configured for (`key_for`): a URL typed
on the command line for another scheme, host, port or path gets no key. `ConfiguredServer` is the one
value a command passes around for "the server and its key" (and its profile, for the model, the client's
sampling and the flags in force): smoke-stream, status, troubleshoot (its reads and its probes) and tune's
load send `bearer` with every request to `url`, and never to another host (qwenops.httpread). A server
qwenops starts itself (tune's candidates) gets one too, built in one place (tune.launch.started_server).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qwenops.errors import BadInputError

if TYPE_CHECKING:
    from pydantic import SecretStr

    from qwenops.config.profile import Profile
    from qwenops.config.settings import Settings


def _server_id(url: str) -> tuple[str, str, int, str] | None:
    """What makes two base URLs the same server for an API key: scheme, host, port and path."""
    from qwenops.net import normalize_base_url

    try:
        parts = urlsplit(normalize_base_url(url))
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except (BadInputError, ValueError):
        return None
    return parts.scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/")


def key_for(url: str, configured_url: str) -> bool:
    """The rule for QWENOPS_API_KEY: it is sent only to the server it was configured with, i.e. when
    `url` has the scheme, host, port and path of QWENOPS_BASE_URL (else of the profile's host and port);
    a trailing / or /v1 does not matter, credentials in the URL do not count, localhost and 127.0.0.1
    are different hosts."""
    mine = _server_id(url)
    return mine is not None and mine == _server_id(configured_url)


@dataclass(frozen=True)
class ConfiguredServer:
    url: str  # normalised: no trailing / or /v1
    configured: str  # QWENOPS_BASE_URL, else the profile's host and port
    configured_from: str  # "QWENOPS_BASE_URL" or "profile NAME (host, port)"
    profile: Profile
    settings: Settings

    @property
    def model(self) -> str:
        return self.profile.api_model_name

    @property
    def read_timeout_s(self) -> float:
        return self.profile.client.timeout_s

    @property
    def key_applies(self) -> bool:
        return key_for(self.url, self.configured)

    @property
    def api_key(self) -> SecretStr | None:
        """QWENOPS_API_KEY when this is the server it was configured for, else None."""
        return self.settings.api_key if self.key_applies else None

    @property
    def bearer(self) -> str | None:
        """The key to send as `Authorization: Bearer`, to this server only."""
        key = self.api_key
        return key.get_secret_value() if key is not None else None

    @property
    def shown(self) -> str:
        """The URL as every message and report shows it (credentials masked)."""
        from qwenops.untrusted import mask_url

        return mask_url(self.url)

    def key_state(self) -> str:
        """Where QWENOPS_API_KEY stands for this server, in words, for a finding's evidence and fix."""
        from qwenops.untrusted import mask_url

        if self.settings.api_key is None:
            return "QWENOPS_API_KEY is not set, so no key was sent"
        if not self.key_applies:
            return (f"QWENOPS_API_KEY is set for {mask_url(self.configured)} ({self.configured_from}), not for "
                    f"{self.shown}, so it was not sent")
        return "QWENOPS_API_KEY was sent (Authorization: Bearer)"


def url_and_key(server: ConfiguredServer | str) -> tuple[str, str | None]:
    """The URL and the key that goes with it; a bare URL (a caller that has no settings) gets none."""
    if isinstance(server, str):
        return server, None
    return server.url, server.bearer


def check_host(url: str, *, field: str) -> None:
    """A host name that can be looked up: IDNA refuses an empty label ("a..b") or one of 64 letters,
    and the lookup would fail with a Unicode error instead of a message."""
    from qwenops.untrusted import mask_url

    host = urlsplit(url).hostname or ""
    if host.startswith("[") or ":" in host:
        return  # an IPv6 literal
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise BadInputError(f"{mask_url(url)!r} has a host name that cannot be looked up ({exc})", field=field,
                            hint="check the host: no empty part between dots, at most 63 characters a part") from None


def _check_configured_key(key: str) -> None:
    """QWENOPS_API_KEY must be what an HTTP header can carry, checked once for every command here, before
    any request: a key with a line break (`export KEY=$(cat file)` of a CRLF file keeps the CR) made httpx
    refuse the header with the key in its message, which status and troubleshoot printed (audit 4)."""
    from qwenops.config.settings import environment
    from qwenops.errors import BadInputError
    from qwenops.net import check_api_key

    try:
        check_api_key(key)
    except BadInputError as exc:
        found = environment().get("QWENOPS_API_KEY")
        source = found.source if found else "the settings"
        raise BadInputError(f"QWENOPS_API_KEY (from {source}): {exc.message}", field="api_key",
                            hint=exc.hint) from None


def configured_server(profile: str | None, url: str | None, *, field: str = "--base-url") -> ConfiguredServer:
    """The server a command talks to: URL from FIELD, else QWENOPS_BASE_URL, else the profile's host:port."""
    from qwenops.config.loader import resolve_profile
    from qwenops.config.settings import load_settings
    from qwenops.net import base_url as server_url
    from qwenops.net import normalize_base_url

    settings = load_settings()
    if settings.api_key:
        _check_configured_key(settings.api_key.get_secret_value())
    chosen = resolve_profile(profile).profile
    if settings.base_url:
        configured, configured_from = settings.base_url, "QWENOPS_BASE_URL"
    else:
        configured, configured_from = server_url(chosen.host, chosen.port), f"profile {chosen.name} (host, port)"
    checked = normalize_base_url(url if url is not None else configured,
                                 field=field if url is not None else configured_from)
    check_host(checked, field=field if url is not None else configured_from)
    return ConfiguredServer(checked, configured, configured_from, chosen, settings)
