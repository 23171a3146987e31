"""`qwenops gateway`: a WebSocket chat relay in front of the profile's vLLM server."""

from __future__ import annotations

import math
from typing import Any

import click

from qwenops.cli._common import finish, json_option, profile_option


class _Seconds(click.FloatRange):
    """A finite number of seconds in a range. click's FloatRange lets nan through (no comparison with nan is
    true) and calls inf merely out of range; both are named for what they are here."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        return super().convert(number, param, ctx)


_COUNT = click.IntRange(min=1)
_SECONDS = _Seconds(min=0.001, max=86400)


@click.command("gateway")
@profile_option
@click.option("--upstream", metavar="URL",
              help="The vLLM server (default: QWENOPS_BASE_URL, else the profile's host and port). QWENOPS_API_KEY "
              "is sent only to the server it was configured for.")
@click.option("--host", metavar="ADDR", help="Address to bind [default: 127.0.0.1]. Beyond loopback, "
              "QWENOPS_GATEWAY_TOKEN must be set.")
@click.option("--allow-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A name or address clients reach the gateway by (their Host header), besides loopback and the "
              "bound address: refusing others stops DNS rebinding. Without a token only these are accepted; with a "
              "token and none given, any (repeatable).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to bind [default: 8090].")
@click.option("--allow-origin", "allowed_origins", multiple=True, metavar="ORIGIN",
              help="A browser origin allowed besides the gateway's own, e.g. https://chat.example.com; '*' allows "
              "any (repeatable).")
@click.option("--max-chats", type=_COUNT, help="Chats at once over all connections [default: 64].")
@click.option("--max-chats-per-connection", type=_COUNT, help="Chats at once on one connection [default: 8].")
@click.option("--max-frame-bytes", type=_COUNT, help="Largest client frame [default: 262144].")
@click.option("--send-queue-bytes", type=_COUNT,
              help="Bytes queued for a slow client before its chats are cancelled [default: 1048576].")
@click.option("--socket-buffer-bytes", type=_COUNT,
              help="The kernel's send buffer per client connection (SO_SNDBUF), which fills before the send "
              "queue does [default: the kernel's autotuning, up to 4 MiB].")
@click.option("--idle-timeout", "idle_timeout_s", type=_SECONDS,
              help="Close a connection with no frame and no chat for this many seconds [default: 300].")
@click.option("--ping-interval", "ping_interval_s", type=_SECONDS, help="Seconds between pings [default: 20].")
@click.option("--drain", "drain_s", type=_Seconds(0, 3600),
              help="On SIGTERM, seconds running chats may take to finish [default: 30].")
@click.option("--chat-deadline", "chat_deadline_s", type=_Seconds(1, 7 * 86400),
              help="Seconds one chat's answer may stream in all, then it ends `timeout` [default: 3600].")
@click.option("--resume/--no-resume", "resume", default=None,
              help="Continue an answer cut by a server restart from its token ids, one `resumed` frame marking "
              "where (chats with tools, logprobs, n > 1, ... are never resumed) [default: --resume].")
@click.option("--queue-size", type=click.IntRange(min=0),
              help="Chats that may wait for a server that is unreachable or restarting, instead of failing "
              "`unreachable`; 0: none [default: 64].")
@click.option("--queue-deadline", "queue_deadline_s", type=_SECONDS,
              help="Seconds a chat waits for the server to be ready again (queued, or to resume a cut answer) "
              "before it ends `interrupted` [default: 300].")
@click.option("--check", is_flag=True, help="Validate the settings and print them; serve nothing.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@json_option
def gateway(*, profile: str | None, upstream: str | None, check: bool, log_level: str, json_mode: bool,
            **flags: object) -> None:
    """Serve /ws/chat: chats relayed to the server's streamed chat completions, several at once per
    connection, cancel and disconnect aborting upstream, and a chat page at /. Protocol: docs/gateway.md.

    Needs the gateway extra: pip install 'qwenops[gateway]'."""
    from qwenops.cli.views.gateway import config_view, run_view, start_line
    from qwenops.gateway.config import resolve_config
    from qwenops.results import CommandResult

    config = resolve_config(profile=profile, upstream=upstream, **flags)
    if check:
        finish(CommandResult(command="gateway", data=config), json_mode=json_mode, view=config_view)
        return
    _require_extra()
    from qwenops.gateway.run import run_gateway

    if not json_mode:
        click.echo(start_line(config), err=True)
    result = run_gateway(config, log_level=log_level)
    finish(CommandResult(command="gateway", data=result), json_mode=json_mode, view=run_view)


def _require_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ImportError as exc:
        from qwenops.errors import BadInputError

        raise BadInputError(f"the gateway needs {exc.name}, which is not installed", field="gateway",
                            hint="pip install 'qwenops[gateway]'") from None
