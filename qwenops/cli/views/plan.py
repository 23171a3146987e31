"""`plan`: the GPU budget, what takes it, the KV cache left and the verdict with its fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwenops.units import KIB

if TYPE_CHECKING:
    from rich.console import RenderableType

    from qwenops.planner.memory import Plan


def plan_view(p: Plan) -> RenderableType:
    from qwenops.cli.output import PlainGroup
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
    texts = [f"{'fits' if p.fits else 'DOES NOT FIT'}: {p.reason}"]
    if p.fix:
        texts.append(f"fix: {p.fix}")
    texts += [f"assumed: {note}" for note in p.assumptions]
    # Plain texts, drawn by rich (escaped) on a terminal and by emit() itself on a pipe, sparing rich's import.
    return PlainGroup(table(["", "value", "from"], rows, title=f"plan ({p.engine})"), *texts)
