"""The `qwenops` root command: lazy subcommand loading and the one error boundary.

Subcommands are named here as "module:attribute" strings and imported only when invoked (or when
`--help` lists them, which imports just the thin command modules), so `qwenops --help` never imports
torch, vLLM, pynvml, FastAPI or transformers. Register a command here only once it really works.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import click

from qwenops import __version__
from qwenops.cli._lazy import LazyGroup
from qwenops.errors import QwenopsError

COMMANDS: dict[str, str] = {
    "doctor": "qwenops.cli.doctor:doctor",
    "gateway": "qwenops.cli.gateway:gateway",
    "install": "qwenops.cli.install:install",
    "model": "qwenops.cli.model:model",
    "plan": "qwenops.cli.plan:plan",
    "profiles": "qwenops.cli.profiles:profiles",
    "render": "qwenops.cli.render:render",
    "serve": "qwenops.cli.serve:serve",
    "smoke-stream": "qwenops.cli.smoke:smoke_stream",
    "status": "qwenops.cli.status:status",
    "troubleshoot": "qwenops.cli.troubleshoot:troubleshoot",
    "tune": "qwenops.cli.tune:tune",
    "uninstall": "qwenops.cli.install:uninstall",
}


class RootGroup(LazyGroup):
    """Maps every QwenopsError, usage error, Ctrl-C (and any bug) to one line and a documented exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from qwenops.cli._common import ARGV_KEY

        ctx.meta[ARGV_KEY] = tuple(args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            # A root-level usage error (`qwenops --bogus`) never reaches invoke().
            _report(ctx, usage_error(exc, ctx))
            raise AssertionError("unreachable") from None  # _report exits

    def invoke(self, ctx: click.Context) -> Any:
        from qwenops.config.settings import read_once

        try:
            with _warnings_as_lines(), read_once():  # one read of the env file per command
                return super().invoke(ctx)
        except QwenopsError as exc:
            _report(ctx, exc)
        except click.UsageError as exc:
            _report(ctx, usage_error(exc, ctx))
        except KeyboardInterrupt:
            from qwenops.errors import InterruptedByUser

            _report(ctx, InterruptedByUser("interrupted", hint="results so far are not reported"))
        except (click.exceptions.Exit, click.Abort, click.ClickException):
            raise
        except Exception as exc:  # the boundary: a bug must still end in one line and exit 4
            if os.environ.get("QWENOPS_DEBUG"):
                raise
            bug = QwenopsError(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="set QWENOPS_DEBUG=1 for the traceback and report it",
            )
            _report(ctx, bug)


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """qwenops' own warnings (a category with `qwenops_warning`, e.g. a misspelled QWENOPS_* name) become
    one `warning: ...` line on stderr, each once however often it is raised, its text made printable;
    any other warning is shown as Python would."""
    import warnings

    shown: set[str] = set()
    original = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,  # noqa: PLR0917
             # (warnings.showwarning's own signature)
             file: Any = None, line: str | None = None) -> None:
        if not getattr(category, "qwenops_warning", False):
            original(message, category, filename, lineno, file, line)
            return
        text = str(message)
        if text not in shown:
            shown.add(text)
            from qwenops.untrusted import printable

            sys.stderr.write(f"warning: {' '.join(printable(text, keep_newlines=False).split())}\n")
            sys.stderr.flush()

    from qwenops.config.settings import SettingsWarning

    with warnings.catch_warnings():
        warnings.simplefilter("always", SettingsWarning)  # shown once each by `show`, not once per place
        warnings.showwarning = show
        yield


def _report(ctx: click.Context, error: QwenopsError) -> None:
    """Print ERROR as one line (or the JSON envelope with --json) and exit with its code."""
    from qwenops.cli._common import command_name, json_requested
    from qwenops.cli.output import emit_error

    emit_error(command_name(ctx), error, json_mode=json_requested(ctx))
    ctx.exit(int(error.exit_code))


def usage_error(exc: click.UsageError, root: click.Context) -> QwenopsError:
    """Click's usage error as our one line: the option (or argument) it concerns, what is wrong, and where
    the help is; instead of Click's three-line `Usage: … Try … Error: …`."""
    from qwenops.cli._common import command_name
    from qwenops.errors import UsageError

    field: str | None = None
    message, suggestion = exc.message, ""
    if isinstance(exc, click.NoSuchOption):
        field, message = exc.option_name, "no such option"
        if exc.possibilities:
            suggestion = f"did you mean {' or '.join(sorted(exc.possibilities))}? "
    elif isinstance(exc, click.MissingParameter) and exc.param is not None:
        field, message = _param_name(exc.param), "missing"
    elif isinstance(exc, click.BadParameter) and exc.param is not None:
        field = _param_name(exc.param)
    elif isinstance(exc, click.BadOptionUsage):
        field = exc.option_name
    if field is not None and message.startswith(f"Option '{field}' "):
        message = message[len(f"Option '{field}' "):]
    name = command_name(root)
    command = "qwenops" if name == "qwenops" else f"qwenops {name}"
    return UsageError(_lower_first(message.rstrip(".")), field=field, hint=f"{suggestion}see `{command} --help`")


def _param_name(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return (param.human_readable_name or "argument").upper()


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


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
