"""`qwenops plan`: predict vLLM's memory layout and KV cache before launch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from qwenops.cli._common import finish, json_option, profile_option
from qwenops.units import KIB, MAX_GIB, MAX_TOKENS

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.planner.memory import Plan

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
    from qwenops.planner.inputs import FLAG_FIELDS, plan_request
    from qwenops.results import CommandResult

    overrides = {field: options.pop(field) for field in FLAG_FIELDS}
    result = plan_request(profile_name=profile, overrides=overrides, **options)
    finish(CommandResult(command="plan", data=result, ok=result.fits), json_mode=json_mode, view=_view)


def _view(p: Plan) -> RenderableType:
    from rich.console import Group

    from qwenops.cli.views.tables import table

    rows = [
        ("GPU budget", f"{p.budget_gib:.2f} GiB",
         f"gpu_memory_utilization {p.gpu_memory_utilization:g} x {p.gpu_total_gib:g} GiB"),
        ("- weights", f"{p.weights_gib:.2f} GiB", ""),
        ("- activation peak", f"{p.activation_gib:.2f} GiB", f"max_num_batched_tokens {p.max_num_batched_tokens}, "
                                                           f"max_num_seqs {p.max_num_seqs}"),
        ("- non-torch", f"{p.non_torch_gib:.2f} GiB", "cuBLAS workspace, allocator"),
        ("- CUDA graphs", f"{p.cudagraph_gib:.2f} GiB",
         "" if p.cudagraph_gib else "none reserved (enforce_eager, or vLLM < 0.21)"),
        ("= KV cache", f"{p.available_kv_gib:.2f} GiB", f"{p.kv_bytes_per_token // KIB} KiB/token"),
        ("KV tokens", f"{p.kv_tokens:,}", f"{p.num_blocks:,} blocks of 16"),
        ("max concurrency", f"{p.max_concurrency:g}", f"at max_model_len {p.max_model_len}"),
    ]
    lines: list[RenderableType] = [table(["", "value", "from"], rows, title=f"plan ({p.engine})")]
    from rich.markup import escape

    lines.append(escape(f"{'fits' if p.fits else 'DOES NOT FIT'}: {p.reason}"))
    if p.fix:
        lines.append(escape(f"fix: {p.fix}"))
    lines += [escape(f"assumed: {note}") for note in p.assumptions]
    return Group(*lines)
