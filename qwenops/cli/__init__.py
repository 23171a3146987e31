"""The `qwenops` root command: lazy subcommand loading and the one error boundary.

Subcommands are named here as "module:attribute" strings and imported only when invoked (or when
`--help` lists them, which imports just the thin command modules), so `qwenops --help` never imports
torch, vLLM, pynvml, FastAPI or transformers. Register a command here only once it really works.
"""

from __future__ import annotations

import os
from typing import Any

import click

from qwenops import __version__
from qwenops.cli._lazy import LazyGroup
from qwenops.errors import ExitCode, QwenopsError

COMMANDS: dict[str, str] = {
    "doctor": "qwenops.cli.doctor:doctor",
    "model": "qwenops.cli.model:model",
    "plan": "qwenops.cli.plan:plan",
    "profiles": "qwenops.cli.profiles:profiles",
    "render": "qwenops.cli.render:render",
    "serve": "qwenops.cli.serve:serve",
    "smoke-stream": "qwenops.cli.smoke:smoke_stream",
}


class RootGroup(LazyGroup):
    """Maps every QwenopsError (and any bug) to one line and a documented exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from qwenops.cli._common import ARGV_KEY

        ctx.meta[ARGV_KEY] = tuple(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            # A root-level usage error (`qwenops --bogus ... --json`) never reaches invoke().
            if "--json" not in ctx.meta[ARGV_KEY]:  # `args` itself is consumed by the parser
                raise
            from qwenops.cli.output import emit_error
            from qwenops.errors import BadInputError

            emit_error("qwenops", BadInputError(exc.format_message()), json_mode=True)
            ctx.exit(int(ExitCode.BAD_INPUT))

    def invoke(self, ctx: click.Context) -> Any:
        from qwenops.cli._common import command_name, json_requested

        try:
            return super().invoke(ctx)
        except QwenopsError as exc:
            from qwenops.cli.output import emit_error

            emit_error(command_name(ctx), exc, json_mode=json_requested(ctx))
            ctx.exit(int(exc.exit_code))
        except click.UsageError as exc:
            if not json_requested(ctx):
                raise
            from qwenops.cli.output import emit_error
            from qwenops.errors import BadInputError

            emit_error(command_name(ctx), BadInputError(exc.format_message()), json_mode=True)
            ctx.exit(int(ExitCode.BAD_INPUT))
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as exc:  # the boundary: a bug must still end in one line and exit 4
            if os.environ.get("QWENOPS_DEBUG"):
                raise
            from qwenops.cli.output import emit_error

            bug = QwenopsError(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="set QWENOPS_DEBUG=1 for the traceback and report it",
            )
            emit_error(command_name(ctx), bug, json_mode=json_requested(ctx))
            ctx.exit(int(ExitCode.INTERNAL))


@click.group(cls=RootGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="qwenops")
def cli() -> None:
    """Serve Qwen3-14B on vLLM from one GPU host, and keep it healthy.

    Exit codes: 0 ok, 1 a check failed, 2 bad input, 3 unreachable, 4 internal error.
    """


def main() -> None:
    cli.main(prog_name="qwenops")


if __name__ == "__main__":  # pragma: no cover
    main()
