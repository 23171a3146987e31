"""`qwenops plan`: predict vLLM's memory layout and KV cache before launch."""

from __future__ import annotations

from typing import Any

import click

from qwenops.cli._common import finish, json_option, profile_option
from qwenops.units import MAX_GIB, MAX_TOKENS

_GIB = click.FloatRange(min=0, max=MAX_GIB, min_open=True)
_TOKENS = click.IntRange(min=1, max=MAX_TOKENS)


@click.command("plan")
@profile_option
@click.option("--model", "model_dir", type=click.Path(file_okay=False), help="Local model directory.")
@click.option("--model-config", type=click.Path(dir_okay=False), help="A config.json (with --weights-gib).")
@click.option("--weights-gib", type=_GIB, help="GiB of weights vLLM loads (overrides the checkpoint size).")
@click.option("--gpu-total-gib", type=_GIB, help="Total GPU memory in GiB (default: this host's GPU).")
@click.option("--probe-file", type=click.Path(dir_okay=False), help="Plan on the GPU of a recorded probe.")
@click.option("--gpu-memory-utilization", type=click.FloatRange(0, 1, min_open=True))
@click.option("--max-model-len", type=_TOKENS)
@click.option("--max-num-seqs", type=_TOKENS)
@click.option("--max-num-batched-tokens", type=_TOKENS)
@click.option("--kv-cache-dtype", type=click.Choice(["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]))
@click.option("--enforce-eager", is_flag=True, default=False, help="No CUDA graphs (only turns it on).")
@click.option("--cpu-offload-gb", type=click.FloatRange(min=0, max=MAX_GIB))
@click.option("--vllm-version", help="vLLM version to model (default: the installed one; if none, the most cautious).")
@json_option
def plan(profile: str | None, json_mode: bool, **options: Any) -> None:
    """Predict weights, activations, KV cache tokens and whether a profile fits, before launch."""
    from qwenops.cli.views.plan import plan_view
    from qwenops.plan.run import plan_request
    from qwenops.planner.inputs import FLAG_FIELDS
    from qwenops.results import CommandResult

    overrides = {field: options.pop(field) for field in FLAG_FIELDS}
    result = plan_request(profile_name=profile, overrides=overrides, **options)
    finish(CommandResult(command="plan", data=result, ok=result.fits), json_mode=json_mode, view=plan_view)
