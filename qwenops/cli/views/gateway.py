"""`gateway`: the line on stderr when it starts, `--check`'s settings, and how the run ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.gateway.config import GatewayConfig
    from qwenops.gateway.run import GatewayRun


def start_line(config: GatewayConfig) -> str:
    """The line on stderr when the gateway starts (the upstream's password, if any, masked)."""
    from qwenops.gateway.run import ws_url
    from qwenops.untrusted import mask_url, printable

    return printable(f"gateway on {ws_url(config)} -> {mask_url(config.upstream)} (model {config.model}); "
                     f"token {'required' if config.token else 'not required (loopback)'}", keep_newlines=False)


def config_view(config: object) -> RenderableType:
    from qwenops.gateway.config import GatewayConfig

    assert isinstance(config, GatewayConfig)
    from qwenops.untrusted import printable

    shown = config.model_dump(mode="json")  # the upstream's password masked (GatewayConfig's serializer)
    shown["api_key"] = "set" if config.api_key else "not set"
    shown["token"] = "set" if config.token else "not set"
    return "\n".join(printable(f"{key}: {value}", keep_newlines=False) for key, value in shown.items())


def run_view(run: GatewayRun) -> RenderableType:
    how = "drained" if run.drained else "stopped"
    return (f"gateway {how}: {run.chats_started} chats ({run.chats_done} done, {run.chats_failed} ended with an "
            "error)")
