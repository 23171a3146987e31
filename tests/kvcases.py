"""The public start-up cases (tests/data/kv_cases_public.json) as planner inputs: what vLLM reported
on a real GPU, read the same way by the planner's accuracy test and its benchmark (benchmarks may
import from tests/, never the other way)."""

from __future__ import annotations

from typing import Any

from qwenops.modelinfo import parse_config
from qwenops.planner.memory import Plan, PlanInput, plan


def predict(case: dict[str, Any]) -> Plan:
    """The planner's plan for a recorded case, from its inputs only (config, weights, GPU, flags, version)."""
    # The cases carry the architecture numbers, not the config.json: restore the two keys
    # parse_config needs (any supported dense architecture name; max_model_len is in the flags).
    raw = {"architectures": ["LlamaForCausalLM"], "max_position_embeddings": case["max_model_len"] or 32768,
           **case["config"]}
    return plan(PlanInput(
        config=parse_config(raw, origin=case["id"]), weights_gib=case["weights_gib"],
        gpu_total_gib=case["gpu_total_gib"], gpu_name=case["gpu"],
        gpu_memory_utilization=case["gpu_memory_utilization"], max_model_len=case["max_model_len"],
        max_num_seqs=case["max_num_seqs"], max_num_batched_tokens=case["max_num_batched_tokens"],
        enforce_eager=bool(case["enforce_eager"]), kv_cache_dtype=case["kv_cache_dtype"],
        vllm_version=case["vllm_version"],
    ))
