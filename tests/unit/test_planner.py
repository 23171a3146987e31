"""The memory planner against hand-computed Qwen3-14B numbers, the public vLLM cases, and bad input."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from qwenops.cli import cli
from qwenops.modelinfo import from_catalog
from qwenops.planner.memory import GpuProcess, PlanInput, kv_bytes_per_token, plan
from qwenops.units import GIB, MAX_TOKENS

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "data" / "kv_cases_public.json"
QWEN3_14B = from_catalog("Qwen/Qwen3-14B")
assert QWEN3_14B is not None
CONFIG = QWEN3_14B.config


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_kv_bytes_per_token_qwen3_14b() -> None:
    # 2 (K and V) x 40 layers x 8 KV heads x 128 head_dim x 2 bytes = 163,840 B = 160 KiB.
    assert kv_bytes_per_token(CONFIG, None) == 163_840 == 160 * 1024
    assert kv_bytes_per_token(CONFIG, "auto") == 163_840
    assert kv_bytes_per_token(CONFIG, "fp8") == 81_920  # fp8 KV halves it
    assert kv_bytes_per_token(CONFIG, "fp8_e5m2") == 81_920


def test_awq_on_the_4090d_by_hand() -> None:
    p = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=23.99, gpu_memory_utilization=0.95,
                       max_model_len=2048, max_num_seqs=32, enforce_eager=True, vllm_version="0.8.5"))
    # budget 0.95 x 23.99 = 22.7905 GiB
    assert p.budget_gib == pytest.approx(22.7905, abs=1e-3)
    # forward peak: 2048 tokens x (3 x 17408 + 3 x 5120) x 2 B = 276,824,064 B = 0.2578 GiB, larger than the
    # sampler's 32 x 151936 x 16 B + 2048 x 5120 x 2 B = 98,762,752 B.
    assert p.activation_gib == pytest.approx(276_824_064 / GIB, abs=1e-3)
    # KV = 22.7905 - 9.4 - 0.2578 - 0.35 = 12.7827 GiB; blocks = floor(12.7827 GiB / (16 x 163840 B)) = 5235
    assert p.available_kv_gib == pytest.approx(12.7827, abs=1e-3)
    assert p.num_blocks == 5235 and p.kv_tokens == 83_760
    assert p.max_concurrency == pytest.approx(83_760 / 2048, abs=0.01)
    assert p.fits and p.verdict == "fits" and p.cudagraph_gib == 0


def test_bf16_does_not_fit_24gb_and_the_fix_names_the_quantized_checkpoints() -> None:
    p = plan(PlanInput(config=CONFIG, weights_gib=27.51, gpu_total_gib=23.99, gpu_memory_utilization=0.95,
                       max_model_len=2048, enforce_eager=True, vllm_version="0.8.5"))
    assert not p.fits and p.verdict == "weights_dont_fit"
    assert "27.5 GiB" in p.reason
    assert p.fix is not None
    assert "Qwen/Qwen3-14B-AWQ (9.4 GiB)" in p.fix and "Qwen/Qwen3-14B-FP8 (15.2 GiB)" in p.fix
    assert "cpu_offload_gb" in p.fix
    # ... and the offload it names really does fit.
    needed = float(p.fix.split("cpu_offload_gb ")[1].split()[0])
    offloaded = plan(PlanInput(config=CONFIG, weights_gib=27.51, gpu_total_gib=23.99, gpu_memory_utilization=0.95,
                               max_model_len=2048, enforce_eager=True, cpu_offload_gb=needed, vllm_version="0.8.5"))
    assert offloaded.fits


def test_kv_smaller_than_max_model_len_gives_the_largest_that_fits() -> None:
    p = plan(PlanInput(config=CONFIG, weights_gib=15.2, gpu_total_gib=23.99, gpu_memory_utilization=0.8,
                       max_model_len=40960, enforce_eager=True, vllm_version="0.8.5"))
    assert p.verdict == "max_len_exceeds_kv" and not p.fits
    assert p.largest_max_model_len == p.kv_tokens < 40960
    assert p.fix is not None and f"max_model_len <= {p.kv_tokens}" in p.fix
    fp8_kv = plan(PlanInput(config=CONFIG, weights_gib=15.2, gpu_total_gib=23.99, gpu_memory_utilization=0.8,
                            max_model_len=40960, enforce_eager=True, kv_cache_dtype="fp8", vllm_version="0.8.5"))
    assert fp8_kv.kv_tokens == pytest.approx(2 * p.kv_tokens, abs=16)


def test_free_memory_below_target_names_the_processes() -> None:
    p = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=23.99, gpu_free_gib=5.1,
                       gpu_processes=(GpuProcess(pid=20417, name="python3", used_gib=18.1),),
                       gpu_memory_utilization=0.95, max_model_len=2048, enforce_eager=True, vllm_version="0.8.5"))
    assert p.verdict == "insufficient_free_memory"
    assert "python3 (pid 20417, 18.1 GiB)" in p.reason
    assert p.fix is not None and "python3" in p.fix


def test_vllm_defaults_follow_the_gpu() -> None:
    h100 = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=79.19, gpu_name="NVIDIA H100 80GB HBM3",
                          vllm_version="0.19.0", max_model_len=8192))
    assert (h100.max_num_seqs, h100.max_num_batched_tokens) == (1024, 8192)
    a100 = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=79.15, gpu_name="NVIDIA A100-SXM4-80GB",
                          vllm_version="0.19.0", max_model_len=8192))
    assert (a100.max_num_seqs, a100.max_num_batched_tokens) == (256, 2048)
    assert h100.gpu_memory_utilization == 0.9  # vLLM's default


def test_cuda_graph_memory_is_reserved_only_where_vllm_reserves_it() -> None:
    base = {"config": CONFIG, "weights_gib": 9.4, "gpu_total_gib": 23.99, "max_model_len": 2048, "max_num_seqs": 32}
    current = plan(PlanInput.model_validate({**base, "vllm_version": "0.32.0"}))
    before = plan(PlanInput.model_validate({**base, "vllm_version": "0.20.1"}))
    eager = plan(PlanInput.model_validate({**base, "vllm_version": "0.32.0", "enforce_eager": True}))
    assert current.cudagraph_gib > 0 == before.cudagraph_gib == eager.cudagraph_gib
    assert current.kv_tokens < before.kv_tokens


def test_unknown_version_plans_the_generation_with_the_least_kv() -> None:
    inp = {"config": CONFIG, "weights_gib": 9.4, "gpu_total_gib": 23.99, "max_model_len": 20000}
    unknown = plan(PlanInput.model_validate(inp))
    known = [plan(PlanInput.model_validate({**inp, "vllm_version": v})) for v in ("0.7.3", "0.20.0", "0.32.0")]
    assert unknown.kv_tokens == min(p.kv_tokens for p in known)
    assert unknown.assumptions[0].startswith("vLLM version unknown")


def test_public_cases_within_the_accuracy_goal() -> None:
    from tests.kvcases import predict

    cases = json.loads(CASES.read_text())["cases"]
    errors = [abs(predict(c).kv_tokens - c["observed_kv_tokens"]) / c["observed_kv_tokens"] for c in cases]
    assert statistics.median(errors) <= 0.05
    assert max(errors) <= 0.15


# ------------------------------------------------------------------------------------------ the command


def test_plan_json_contract() -> None:
    result = invoke("plan", "--profile", "4090d", "--gpu-total-gib", "23.99", "--vllm-version", "0.8.5", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    assert {"weights_gib", "kv_bytes_per_token", "available_kv_gib", "kv_tokens", "max_concurrency", "fits",
            "reason"} <= set(data)
    assert data["kv_tokens"] == 83_760 and data["fits"] is True


def test_plan_text_matches_golden(golden: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    result = invoke("plan", "--profile", "4090d-bf16-offload", "--cpu-offload-gb", "0", "--gpu-total-gib", "23.99",
                    "--vllm-version", "0.8.5")
    assert result.exit_code == 1  # the check ran and found that it does not fit
    golden("doctor/plan-4090d-bf16-no-offload.txt", result.stdout)


def test_plan_flag_overrides_win_over_the_profile() -> None:
    result = invoke("plan", "--profile", "4090d", "--gpu-total-gib", "23.99", "--max-model-len", "40960",
                    "--kv-cache-dtype", "fp8", "--vllm-version", "0.8.5", "--json")
    data = json.loads(result.stdout)["data"]
    assert data["max_model_len"] == 40960 and data["kv_bytes_per_token"] == 81_920


def test_plan_from_a_model_config_and_weights(tmp_path: Path) -> None:
    result = invoke("plan", "--model-config", str(REPO / "configs" / "models" / "qwen3-14b.json"),
                    "--weights-gib", "15.2", "--gpu-total-gib", "79.19", "--json")
    data = json.loads(result.stdout)["data"]
    assert data["weights_gib"] == 15.2 and data["max_model_len"] == 40960 and data["fits"] is True


def test_plan_on_a_recorded_probe() -> None:
    probe = REPO / "tests" / "data" / "probes" / "rtx4090-cuda122.json"
    result = invoke("plan", "--profile", "4090d", "--probe-file", str(probe), "--json")
    data = json.loads(result.stdout)["data"]
    assert result.exit_code == 1 and data["verdict"] == "insufficient_free_memory"
    assert "python3 (pid 20417" in data["reason"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--profile", "4090d", "--gpu-total-gib", "0"], "--gpu-total-gib"),
        (["--profile", "4090d", "--gpu-total-gib", "-24"], "--gpu-total-gib"),
        (["--profile", "4090d", "--gpu-memory-utilization", "1.5"], "--gpu-memory-utilization"),
        (["--profile", "4090d", "--max-model-len", "0"], "--max-model-len"),
        (["--profile", "4090d", "--kv-cache-dtype", "int3"], "--kv-cache-dtype"),
        (["--profile", "4090d", "--vllm-version", "banana"], "vllm_version"),
        (["--profile", "cpu-tiny"], "profile"),
        (["--profile", "nope"], "profile"),
        (["--model-config", "configs/models/qwen3-14b.json"], "weights-gib"),
        (["--model-config", "/does/not/exist.json", "--weights-gib", "3"], "error: model-config: "),
        (["--model", "configs/models", "--model-config", "configs/models/qwen3-14b.json", "--weights-gib", "9.4",
          "--gpu-total-gib", "24"], "error: model, model-config: --model and --model-config both name the model"),
        (["--profile", "4090d", "--gpu-total-gib", "1000", "--cpu-offload-gb", "1000"],
         "error: cpu_offload_gb: 1000 GiB is more than the 9.4 GiB of weights there are to offload "
         "(set cpu_offload_gb <= 9.4, or leave it unset)"),
        (["--model", "/does/not/exist", "--gpu-total-gib", "24"], "model"),
        # Non-finite and absurd sizes used to overflow int(available x GIB) into an internal error.
        (["--profile", "4090d", "--gpu-total-gib", "inf"], "--gpu-total-gib"),
        (["--profile", "4090d", "--gpu-total-gib", "1e308"], "--gpu-total-gib"),
        (["--profile", "4090d", "--gpu-total-gib", "nan"], "gpu_total_gib"),
        (["--profile", "4090d", "--gpu-total-gib", "24", "--weights-gib", "1e308"], "--weights-gib"),
        (["--profile", "4090d", "--gpu-total-gib", "24", "--cpu-offload-gb", "inf"], "--cpu-offload-gb"),
        (["--profile", "4090d", "--gpu-total-gib", "24", "--gpu-memory-utilization", "nan"],
         "gpu_memory_utilization"),
        (["--profile", "4090d", "--gpu-total-gib", "24", "--max-num-batched-tokens", "1" + "0" * 400],
         "--max-num-batched-tokens"),
    ],
)
def test_plan_bad_input_is_one_line_and_exit_2(args: list[str], needle: str) -> None:
    result = invoke("plan", *args)
    assert result.exit_code == 2, result.stdout
    assert needle in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("field", ["gpu_total_gib", "weights_gib", "gpu_free_gib", "cpu_offload_gb"])
@pytest.mark.parametrize("value", [math.inf, math.nan, 1e308])
def test_plan_input_refuses_sizes_the_arithmetic_cannot_hold(field: str, value: float) -> None:
    base: dict[str, Any] = {"config": CONFIG, "weights_gib": 9.0, "gpu_total_gib": 24.0}
    with pytest.raises(ValidationError):
        PlanInput.model_validate({**base, field: value})


@pytest.mark.parametrize("field", ["max_model_len", "max_num_seqs", "max_num_batched_tokens"])
def test_one_bound_for_profiles_flags_and_the_planner(field: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    too_many = str(MAX_TOKENS + 1)
    flag = invoke("plan", "--profile", "4090d", "--gpu-total-gib", "24", f"--{field.replace('_', '-')}", too_many)
    assert flag.exit_code == 2
    (tmp_path / "big.yaml").write_text(f"extends: 4090d\n{field}: {too_many}\n")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(tmp_path))
    profile = invoke("plan", "--profile", "big", "--gpu-total-gib", "24")
    assert profile.exit_code == 2
    assert f"{field}: must be >= 1 and <= {MAX_TOKENS}" in profile.stderr
    with pytest.raises(ValidationError):
        PlanInput.model_validate({"config": CONFIG, "weights_gib": 9.4, "gpu_total_gib": 24, field: MAX_TOKENS + 1})


def test_tensor_parallel_profiles_are_refused_not_misplanned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_TENSOR_PARALLEL_SIZE", "2")
    result = invoke("plan", "--profile", "4090d", "--gpu-total-gib", "24")
    assert result.exit_code == 2 and "tensor_parallel_size" in result.stderr


@given(util=st.floats(0.3, 0.99), weights=st.floats(1.0, 30.0), total=st.floats(8.0, 200.0),
       tokens=st.integers(256, 32768), seqs=st.integers(1, 1024), eager=st.booleans())
def test_plan_moves_the_right_way(*, util: float, weights: float, total: float, tokens: int, seqs: int,
                                  eager: bool) -> None:
    """More memory never means less KV cache; more weights never means more."""
    base = {"config": CONFIG, "gpu_total_gib": total, "max_model_len": 2048, "max_num_seqs": seqs,
            "max_num_batched_tokens": max(tokens, seqs), "enforce_eager": eager, "vllm_version": "0.32.0"}

    def at(weights_gib: float, utilization: float) -> Any:
        return plan(PlanInput.model_validate({**base, "weights_gib": weights_gib,
                                              "gpu_memory_utilization": utilization}))

    p, more_util, more_weights = at(weights, util), at(weights, min(util + 0.01, 1)), at(weights + 1, util)
    assert more_util.kv_tokens >= p.kv_tokens >= more_weights.kv_tokens
    assert p.kv_tokens % 16 == 0 and p.kv_tokens >= 0
    assert p.fits == (p.verdict == "fits")
    if p.fits:
        assert p.kv_tokens >= p.max_model_len


def test_edge_cases_say_what_no_setting_can_fix() -> None:
    tiny_gpu = plan(PlanInput(config=CONFIG, weights_gib=27.51, gpu_total_gib=2.0, max_model_len=40960,
                              enforce_eager=True, vllm_version="0.8.5"))
    assert tiny_gpu.verdict == "weights_dont_fit"
    assert tiny_gpu.fix is not None and "no cpu_offload_gb helps" in tiny_gpu.fix
    too_long = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=79.19, max_model_len=65536,
                              vllm_version="0.8.5", allow_long_max_model_len=True))
    assert any("VLLM_ALLOW_LONG_MAX_MODEL_LEN" in note for note in too_long.assumptions)


def test_v0_logs_beyond_the_public_case_file() -> None:
    """Two more start-ups from the same public log thread (vllm-project/vllm#10517, RTX 3090, Llama-3.1-8B,
    vLLM v0): at max_model_len 29000 vLLM printed kv_cache_size 2.89 GiB and 1478 blocks (23,648 tokens); at
    35000 chunked prefill turned on and peak_torch_memory fell to 15.05 GiB, 0.06 GiB above the weights."""
    llama = {"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 32, "num_attention_heads": 32,
             "num_key_value_heads": 8, "head_dim": 128, "hidden_size": 4096, "intermediate_size": 14336,
             "vocab_size": 128256, "max_position_embeddings": 131072}
    from qwenops.modelinfo import parse_config

    config = parse_config(llama, origin="llama-3.1-8b")
    at_29k = plan(PlanInput(config=config, weights_gib=14.9888, gpu_total_gib=23.58, gpu_memory_utilization=0.9,
                            max_model_len=29000, vllm_version="0.6.4"))
    assert abs(at_29k.kv_tokens - 23_648) / 23_648 < 0.02
    at_35k = plan(PlanInput(config=config, weights_gib=14.9888, gpu_total_gib=23.58, gpu_memory_utilization=0.9,
                            max_model_len=35000, vllm_version="0.6.4"))
    assert at_35k.max_num_batched_tokens == 512
    assert at_35k.activation_gib == pytest.approx(15.05 - 14.9888, abs=0.02)


def test_max_model_len_beyond_the_model_is_not_a_fit_however_large_the_gpu() -> None:
    # vLLM refuses it while building its config ("User-specified max_model_len ... is greater than the
    # derived max_model_len"), before any memory is counted.
    refused = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=1000, max_model_len=1_000_000))
    assert (refused.fits, refused.verdict) == (False, "max_len_exceeds_model")
    assert "max_model_len 1,000,000 is more than the model's max_position_embeddings 40960" in refused.reason
    assert refused.fix is not None and refused.fix.startswith("set max_model_len <= 40960")
    assert plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=1000, max_model_len=40960)).fits
    allowed = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=1000, max_model_len=65536,
                             allow_long_max_model_len=True))
    assert allowed.fits and any("only because VLLM_ALLOW_LONG_MAX_MODEL_LEN=1" in n for n in allowed.assumptions)


def test_plan_cli_max_model_len_beyond_the_model_is_exit_1() -> None:
    result = invoke("plan", "-p", "4090d", "--max-model-len", "1000000", "--gpu-total-gib", "1000", "--json")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)["data"]
    assert data["verdict"] == "max_len_exceeds_model" and data["fits"] is False


def test_rope_scaling_stretches_the_longest_max_model_len() -> None:
    from qwenops.modelinfo import parse_config

    raw = json.loads((REPO / "configs" / "models" / "qwen3-14b.json").read_text())
    yarn = parse_config({**raw, "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                                                 "original_max_position_embeddings": 32768}}, origin="yarn")
    assert yarn.derived_max_model_len == 131072  # the Qwen3 model card's YaRN setting
    at_limit = plan(PlanInput(config=yarn, weights_gib=9.4, gpu_total_gib=1000, max_model_len=131072))
    assert at_limit.fits
    assert plan(PlanInput(config=yarn, weights_gib=9.4, gpu_total_gib=1000)).max_model_len == 131072
    beyond = plan(PlanInput(config=yarn, weights_gib=9.4, gpu_total_gib=1000, max_model_len=131073))
    assert beyond.verdict == "max_len_exceeds_model" and "as rope_scaling stretches it, 131072" in beyond.reason
    llama3 = parse_config({**raw, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, origin="llama3")
    assert llama3.derived_max_model_len == 40960  # llama3 scaling is already in max_position_embeddings
    linear = parse_config({**raw, "rope_scaling": {"type": "linear", "factor": 2}}, origin="linear")
    assert linear.derived_max_model_len == 81920


def test_cpu_offload_up_to_the_weights_is_accepted() -> None:
    everything = plan(PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=24, cpu_offload_gb=9.4))
    assert everything.weights_gib == 0
    with pytest.raises(ValidationError, match=r"9\.41 GiB is more than the 9\.4 GiB"):
        PlanInput(config=CONFIG, weights_gib=9.4, gpu_total_gib=24, cpu_offload_gb=9.41)


def test_doctor_refuses_a_profile_offloading_more_than_its_weights() -> None:
    from qwenops.config.loader import load_profile
    from qwenops.doctor.checks import diagnose
    from qwenops.errors import BadInputError
    from qwenops.hardware.facts import load_facts
    from qwenops.modelinfo import resolve_model

    facts = load_facts(REPO / "tests" / "data" / "probes" / "rtx4090d-cuda124.json")
    profile = load_profile("4090d").model_copy(update={"cpu_offload_gb": 50.0})
    with pytest.raises(BadInputError) as err:
        diagnose(facts, profile, resolve_model("Qwen/Qwen3-14B-AWQ"))
    assert err.value.field == "cpu_offload_gb" and "50 GiB is more than the 9.4 GiB" in err.value.message


def test_two_gpus_to_plan_on_is_bad_input() -> None:
    probe = str(REPO / "tests" / "data" / "probes" / "rtx4090d-cuda124.json")
    result = invoke("plan", "--profile", "4090d", "--gpu-total-gib", "24", "--probe-file", probe)
    assert result.exit_code == 2 and result.stderr.startswith("error: gpu-total-gib, probe-file: ")


def test_a_named_pipe_as_probe_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "facts.json"
    os.mkfifo(fifo)
    result = invoke("plan", "--profile", "4090d", "--probe-file", str(fifo))
    assert result.exit_code == 2 and "is a named pipe" in result.stderr


def test_fit_batch_gives_back_the_activations_the_kv_cache_needed() -> None:
    """auto-fit's change after "No available memory for the cache blocks": a batch the planner says fits."""
    from qwenops.config.loader import load_profile
    from qwenops.hardware.facts import GpuDevice
    from qwenops.planner.inputs import fit_batch, plan_on_device

    profile = load_profile("4090d-fp8", env={}, cli_overrides={"max_num_batched_tokens": "16384",
                                                                "max_num_seqs": "32"})
    model = from_catalog(profile.model)
    card = GpuDevice(index=0, name="a 19 GB card", memory_total_mib=19000)
    before = plan_on_device(profile, model, card, None)
    assert before is not None and not before.fits  # one 16k-token step's activations leave the cache nothing
    change = fit_batch(profile, model, card)
    assert change == {"max_num_batched_tokens": 8192, "max_num_seqs": 32}  # the largest batch that fits
    after = plan_on_device(profile.model_copy(update=change), model, card, None)
    assert after is not None and after.fits
    tiny = GpuDevice(index=0, name="too small", memory_total_mib=8000)
    assert fit_batch(profile, model, tiny) is None  # the weights alone do not fit: no batch helps


def test_the_vllm_version_planned_for_is_importlib_metadatas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # plan/run.py looks for a vllm distribution itself before it imports importlib.metadata: it must never
    # miss one that importlib.metadata finds.
    import re
    from importlib import metadata

    from qwenops.plan import run

    names = {(dist.metadata["Name"] or "").lower() for dist in metadata.distributions()}
    plain = [name for name in names if re.fullmatch(r"[a-z0-9]+", name)]
    assert plain and all(run._may_have_distribution(name) for name in plain)
    assert not run._may_have_distribution("nosuchdistributionanywhere")
    try:
        expected: str | None = metadata.version("vllm")
    except metadata.PackageNotFoundError:
        expected = None
    assert run.installed_vllm_version() == expected
    info = tmp_path / "VLLM-0.11.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vllm\nVersion: 0.11.2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run.installed_vllm_version() == "0.11.2" == metadata.version("vllm")
