"""`qwenops serve`: run the profile's vLLM server under supervision until SIGTERM/SIGINT/SIGHUP/SIGQUIT."""

from __future__ import annotations

import click

from qwenops.cli._common import finish, json_option, override_option, profile_option
from qwenops.results import CommandResult


@click.command()
@profile_option
@click.option("--host", help="Address to bind (overrides the profile).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to bind (overrides the profile).")
@override_option
@click.option("--dry-run", is_flag=True, help="Print the command and environment that would run, then exit.")
@click.option("--quiet", is_flag=True, help="Keep the server's own output in the log file only.")
@click.option("--auto-fit", is_flag=True,
              help="After a start-up failure with a bounded fix (vLLM's own estimate of max_model_len, free GPU "
                   "memory, enforce_eager), apply it, save NAME-fitted in the state dir, and start again.")
@json_option
def serve(*, profile: str | None, host: str | None, port: int | None, overrides: tuple[str, ...], dry_run: bool,
          quiet: bool, auto_fit: bool, json_mode: bool) -> None:
    """Start vLLM's OpenAI-compatible server and keep it healthy (restart with backoff, FATAL on a
    config error). Exit 0 after SIGTERM/SIGINT/SIGHUP/SIGQUIT, 1 when it gave up (FATAL), 2 on bad input
    or a taken port."""
    from qwenops.cli.views.serve import serve_plan_view, serve_result_view
    from qwenops.config.loader import parse_overrides
    from qwenops.serve.run import plan_serve
    from qwenops.serve.run import serve as run

    plan = plan_serve(profile, host=host, port=port, overrides=parse_overrides(overrides), auto_fit=auto_fit)
    if dry_run:
        finish(CommandResult(command="serve", data=plan), json_mode=json_mode, view=serve_plan_view)
        return
    from qwenops.cli.views.serve import ConsoleReporter

    reporter = ConsoleReporter(echo_server=not quiet)
    try:
        result = run(plan, observer=reporter, echo=reporter.server_line)
    finally:
        reporter.close()
    finish(CommandResult(command="serve", data=result, ok=result.ok), json_mode=json_mode, view=serve_result_view)
