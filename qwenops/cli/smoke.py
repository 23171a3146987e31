"""`qwenops smoke-stream`: prove the server's SSE stream is right, and measure it."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from qwenops.cli._common import finish, json_option, profile_option
from qwenops.errors import BadInputError
from qwenops.results import CommandResult
from qwenops.units import MAX_TOKENS
from qwenops.untrusted import MAX_RESUME_ATTEMPTS, MAX_SMOKE_REQUESTS, MAX_SMOKE_STREAMS

if TYPE_CHECKING:
    _FloatParam = click.ParamType[float, Any]  # generic from click 8.3; a plain class before
else:
    _FloatParam = click.ParamType

_COUNT = click.IntRange(min=1)
# Streams this process opens and tokens it asks for: bounded like every other input (docs/security.md).
_STREAMS = click.IntRange(min=1, max=MAX_SMOKE_STREAMS)
_REQUESTS = click.IntRange(min=1, max=MAX_SMOKE_REQUESTS)
_TOKENS = click.IntRange(min=1, max=MAX_TOKENS)
_ATTEMPTS = click.IntRange(min=1, max=MAX_RESUME_ATTEMPTS)


class _Positive(_FloatParam):
    """A finite number > 0; anything else (nan, inf, 0, "x") is one line of bad input naming the option."""

    name = "float"

    def __init__(self, example: str) -> None:
        self.example = example

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        option = param.opts[0] if param is not None and param.opts else "value"
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise BadInputError(
                f"must be a finite number greater than 0, got {value!r}",
                field=option,
                hint=f"e.g. {option} {self.example}",
            )
        return number


@click.command("smoke-stream")
@click.option(
    "--base-url", metavar="URL",
    help="Server URL, without /v1 [default: QWENOPS_BASE_URL, else the profile's host and port]. "
    "QWENOPS_API_KEY is sent only to the server it was configured for: a --base-url with another scheme, host, "
    "port or path gets no key (set QWENOPS_BASE_URL to the URL instead to send it there).",
)
@profile_option
@click.option("--model", metavar="NAME", help="Model name to send [default: the profile's served name].")
@click.option("--prompt", metavar="TEXT", help="User message [default: a known prompt of the tiny model].")
@click.option("--max-tokens", type=_TOKENS, help="Most tokens per answer [default: the profile's].")
@click.option("--concurrency", type=_STREAMS, default=1, show_default=True, help="Streams at once.")
@click.option("--requests", type=_REQUESTS, help="Streams in all [default: --concurrency].")
@click.option("--max-ttft", type=_Positive("2"), help="Fail if any stream's TTFT exceeds this many seconds.")
@click.option("--min-tokens-per-s", type=_Positive("20"), help="Fail if any stream is slower (output tokens/s).")
@click.option(
    "--timeout", type=_Positive("60"), default=60.0, show_default=True,
    help="Fail a stream when no event arrives for this many seconds (keep-alive comments do not count).",
)
@click.option(
    "--deadline", type=_Positive("600"), default=300.0, show_default=True,
    help="Fail a stream whose whole answer takes longer than this many seconds from sending the request.",
)
@click.option("--ignore-eos", is_flag=True, help="Generate exactly --max-tokens tokens (vLLM's ignore_eos).")
@click.option(
    "--resume", is_flag=True,
    help="Continue a cut stream from its token ids (the stream library's resume=Resume()) and check the "
    "stitched stream; the report says where each stream was resumed, or why not.",
)
@click.option(
    "--resume-attempts", type=_ATTEMPTS, metavar="N",
    help="With --resume: most re-requests per stream [default: 3].",
)
@click.option(
    "--resume-wait", type=_Positive("180"), metavar="S",
    help="With --resume: most seconds to wait for the server to be ready again before each re-request "
    "[default: 180].",
)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Also write JUnit XML here.")
@json_option
def smoke_stream(  # noqa: PLR0917 -- Click passes every option as a keyword; the count is the flag set
    base_url: str | None, profile: str | None, model: str | None, prompt: str | None, max_tokens: int | None,
    concurrency: int, requests: int | None, max_ttft: float | None, min_tokens_per_s: float | None,
    timeout: float, deadline: float, ignore_eos: bool, resume: bool, resume_attempts: int | None,
    resume_wait: float | None, junit: Path | None, json_mode: bool,
) -> None:
    """Stream chat completions and check every chunk; exit 1 on a failed check, 3 if unreachable,
    130 on Ctrl-C."""
    from qwenops.cli.views.smoke import run_smoke_in_terminal, smoke_summary
    from qwenops.smoke.run import resolve_options

    options = resolve_options(
        profile=profile, base_url=base_url, model=model, prompt=prompt, max_tokens=max_tokens,
        concurrency=concurrency, requests=requests, max_ttft_s=max_ttft, min_tokens_per_s=min_tokens_per_s,
        timeout_s=timeout, deadline_s=deadline, ignore_eos=ignore_eos,
        resume=resume, resume_attempts=resume_attempts, resume_wait_s=resume_wait,
    )
    live = not json_mode and sys.stdout.isatty() and sys.stderr.isatty()
    # Ctrl-C: the root error boundary prints one line (or the envelope) and exits 130.
    report = run_smoke_in_terminal(options, live=live, junit_path=junit)
    result = CommandResult(command="smoke-stream", data=report, ok=report.ok, errors=report.errors)
    finish(result, json_mode=json_mode, view=smoke_summary)
