"""`qwenops tune`: the profile with the most goodput under a latency SLO, measured on the real server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from qwenops.cli._common import finish, json_option, profile_option
from qwenops.results import CommandResult

if TYPE_CHECKING:
    from qwenops.tune.results import TuneResult


def _regular_file(path: Path | None, param: click.Parameter) -> Path | None:
    """PATH if it names a regular file, checked by stat before anything opens it: opening a FIFO waits for
    a writer forever, and a device or a directory is no workload or probe; each is one line naming the
    option, as is a path the system will not look up (too long, a symlink loop)."""
    if path is None:
        return None
    import stat

    from qwenops.errors import BadInputError

    option = max(param.opts, key=len) if isinstance(param, click.Option) else "FILE"
    text = str(path)
    shown = text if len(text) <= 160 else f"{text[:80]}…{text[-60:]} ({len(text):,} characters)"
    if not text or text == ".":
        raise BadInputError("the path is empty", field=option)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BadInputError(f"{shown} does not exist", field=option) from None
    except OSError as exc:
        raise BadInputError(f"cannot read {shown}: {exc.strerror or exc}", field=option) from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a named pipe" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "not a regular file")
        raise BadInputError(f"{shown} is {kind}, not a file", field=option)
    return path


def _plot_path(text: str | None) -> Path | None:
    """--plot FILE: checked before anything is measured (a sweep takes minutes; its chart must not fail at
    the end on a typo): not empty, not a directory or any other non-file, in a directory that exists and that
    this user may write (the chart is written beside it, then renamed over it)."""
    if text is None:
        return None
    import os
    import stat

    from qwenops.errors import BadInputError

    path = Path(text)  # after the check for a trailing separator, which Path drops
    shown = text if len(text) <= 160 else f"{text[:80]}…{text[-60:]} ({len(text):,} characters)"
    if not text or text == "." or text.endswith(os.sep):
        raise BadInputError(f"{shown or 'the path'} names no file", field="--plot", hint="e.g. --plot tune.svg")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise BadInputError(f"cannot use {shown}: {exc.strerror or exc}", field="--plot") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise BadInputError(f"{shown} is {kind}", field="--plot", hint="name the .svg file to write")
    parent = path.parent
    try:
        parent_mode = parent.stat().st_mode
    except OSError as exc:
        what = "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read: {exc.strerror or exc}"
        raise BadInputError(f"the directory of {shown} {what}", field="--plot") from None
    if not stat.S_ISDIR(parent_mode):
        raise BadInputError(f"the directory of {shown} is not a directory", field="--plot")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInputError(f"cannot write in the directory of {shown}", field="--plot")
    return path


@click.command()
@profile_option
@click.option("--slo-ttft-ms", type=float, required=True, help="Time to first token every good request meets (ms).")
@click.option("--slo-tpot-ms", type=float, required=True, help="Time per output token every good request meets (ms).")
@click.option("--workload", "workload_file", type=click.Path(path_type=Path), metavar="FILE",
              callback=lambda _c, p, v: _regular_file(v, p),
              help='JSONL of real requests, one {"messages": [...], "max_tokens": N} per line.')
@click.option("--prompt-tokens", type=int, help="Synthetic workload: prompt length in tokens (default 256).")
@click.option("--output-tokens", type=int,
              help="Synthetic workload: answer tokens (default: the profile's max_tokens).")
@click.option("--max-concurrency", type=int, default=16, show_default=True,
              help="Most requests in flight at once; concurrency doubles from 1 up to it.")
@click.option("--budget-min", type=float, default=30.0, show_default=True,
              help="Wall-clock budget in minutes; tune stops with the best candidate so far.")
@click.option("--max-num-seqs", "seqs", metavar="LIST",
              help="Values to try, e.g. 16,32,64 (default: around the profile's).")
@click.option("--max-num-batched-tokens", "batched", metavar="LIST",
              help="Values to try (default: around the profile's).")
@click.option("--max-model-len", "lengths", metavar="LIST",
              help="Values to try (default: the profile's, and a smaller one when the workload allows).")
@click.option("--requests", "requests_per_level", type=int, default=16, show_default=True,
              help="Requests per concurrency level (at least two per stream).")
@click.option("--port", type=int, help="Port the candidates serve on (overrides the profile).")
@click.option("--plan-only", is_flag=True,
              help="List the candidates, pruned and ordered by the planner; start nothing.")
@click.option("--probe-file", type=click.Path(path_type=Path), metavar="FACTS.json",
              callback=lambda _c, p, v: _regular_file(v, p),
              help="Plan on recorded host facts (a GPU) instead of this host.")
@click.option("--plot", "plot_text", type=click.Path(), metavar="FILE.svg",
              help="Also draw goodput against concurrency for each measured candidate, and TTFT/TPOT p99 "
                   "against the SLO, as an SVG.")
@json_option
def tune(*, profile: str | None, slo_ttft_ms: float, slo_tpot_ms: float, workload_file: Path | None,
         prompt_tokens: int | None, output_tokens: int | None, max_concurrency: int, budget_min: float,
         seqs: str | None, batched: str | None, lengths: str | None, requests_per_level: int, port: int | None,
         plan_only: bool, probe_file: Path | None, plot_text: str | None, json_mode: bool) -> None:
    """Find the profile with the most goodput (requests/s meeting both SLOs) on the real server and save it
    as NAME-tuned. Exit 0 with a pick (or with --plan-only), 1 when no candidate met the SLO, 2 on bad input."""
    from qwenops.cli.views.tune import SweepReporter, tune_view
    from qwenops.tune.options import parse_int_list, tune_options
    from qwenops.tune.run import run_tune

    if plot_text is not None and plan_only:
        from qwenops.errors import BadInputError

        raise BadInputError("--plan-only measures nothing to draw", field="--plot",
                            hint="plot a run that measures, or an earlier --json result with "
                                 "`python -m qwenops.tune.plot RESULT.json FILE.svg`")
    plot_file = _plot_path(plot_text)
    options = tune_options(
        profile=profile, slo_ttft_ms=slo_ttft_ms, slo_tpot_ms=slo_tpot_ms, workload_file=workload_file,
        prompt_tokens=prompt_tokens, output_tokens=output_tokens, max_concurrency=max_concurrency,
        budget_min=budget_min, max_num_seqs=parse_int_list(seqs, flag="--max-num-seqs"),
        max_num_batched_tokens=parse_int_list(batched, flag="--max-num-batched-tokens"),
        max_model_len=parse_int_list(lengths, flag="--max-model-len"), requests_per_level=requests_per_level,
        port=port, plan_only=plan_only, probe_file=probe_file)
    with SweepReporter() as reporter:
        result = run_tune(options, observer=reporter)
    command = CommandResult(command="tune", data=result, ok=result.ok)
    if plot_file is not None:
        command = _with_plot(command, result, plot_file)
    finish(command, json_mode=json_mode, view=tune_view)


def _with_plot(command: CommandResult, result: TuneResult, path: Path) -> CommandResult:
    """Draw the chart; a write that fails after the sweep (the disk filled, the directory went) still prints
    the table and saves the profile, and adds the error, naming --plot, with exit 2."""
    import dataclasses

    from qwenops.errors import ExitCode
    from qwenops.results import ErrorInfo
    from qwenops.tune.plot import write_plot

    try:
        write_plot(result, path)
    except OSError as exc:
        error = ErrorInfo(code="bad_input", message=f"cannot write {path}: {exc.strerror or exc}", field="--plot")
        return dataclasses.replace(command, ok=False, errors=(error,), failure_code=ExitCode.BAD_INPUT)
    return command
