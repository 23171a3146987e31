"""Excerpts cut before their exception line: the traceback's frames, and the code line under the last frame,
still say what vLLM was doing. Each case is a real dev-half log (collected/, public/, corpus/dev*, or a corpus
thread in the dev half) cut just before its first exception line, as users' pastes so often are."""

from __future__ import annotations

import re

import pytest

from qwenops.vllmlog.classify import (
    CODE,
    RAISE,
    classify_text,
    code_frames,
    frame_phase,
)
from qwenops.vllmlog.lines import normalise
from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers

_EXCEPTION = re.compile(r"^(?:(?:ERROR|CRITICAL) \d\d-\d\d [\d:.]+ \[?[\w./-]+:\d+\] ?)?(?:[\w.]+\.)?[A-Z]\w*"
                        r"(?:Error|Exception)(?:: |$)")


def cut_before_the_exception(name: str) -> str:
    lines = (LOGS / name).read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(lines) if _EXCEPTION.match(normalise(line).strip()))
    return "\n".join(lines[:first]) + "\n"


def named(text: str) -> list[str]:
    return [f.category for f in findings_of_both_readers(text)]


@pytest.mark.parametrize(("name", "category"), [
    # vllm-project/vllm (0.5, OpenAI server): `sock.bind(("", args.port))` under run_server, OSError cut off.
    ("collected/port_in_use/02_v0_sock_bind_after_crash.log", "port_in_use"),
    # vLLM's get_open_port: `s.bind(("", 0))`.
    ("collected/port_in_use/04_v0_internal_port_get_open_port.log", "port_in_use"),
    # OpenSQZ/MiniCPM-V-CookBook#51 (dev2 003) and its API-server twin (dev2 004): `return ModelConfig(` and
    # pydantic's dataclass validator: vLLM checking its configuration.
    ("corpus/dev2/invalid_config/003_modelconfig_validation_minicpm_v45.log", "invalid_config"),
    ("corpus/dev2/invalid_config/004_modelconfig_validation_apiserver_prefix.log", "invalid_config"),
    # the V1 processor's _validate_model_input: a request's prompt checked against max_model_len.
    ("corpus/b/request_too_long/036_tunix_v1_processor_prompt_44_vs_16.log", "request_too_long"),
    # gpu_worker.init_device `raise ValueError(`: the free-memory check, the one ValueError it raises.
    ("collected/insufficient_free_memory/02_v1_engcore0_h200_mixtral.log", "insufficient_free_memory"),
    # the KV check with no figure before it: the longer max_model_len is the common cause (vLLM's fix for both:
    # gpu_memory_utilization), not "no blocks".
    ("collected/max_len_exceeds_kv/04_v1_tpu_estimate_5632.log", "max_len_exceeds_kv"),
    ("corpus/a/max_len_exceeds_kv/008_gpustack_v0_qwen25vl7b_3090_8192_vs_2400.log", "max_len_exceeds_kv"),
    # vllm-project/vllm#41530 (dev3 019): the engine's executor waiting on a worker (shm_broadcast dequeue).
    ("corpus/dev3/engine_stalled/019_v1_tp8_worker_hang_shm_dequeue_timeout_padded.log", "engine_stalled"),
    # vllm-project/vllm#40856 (corpus/b 039): an aiohttp read in vLLM's own API server: its media download.
    ("corpus/b/media_fetch_error/039_v1_2026_qwen36_image_url_download_content_length.log", "media_fetch_error"),
    # the API server reading a dead engine core's outputs (get_output_async, output_handler).
    ("public/23_engine_dead.log", "engine_dead"),
    ("collected/engine_dead/02_v1_0202_api_router_500_shutdown.log", "engine_dead"),
])
def test_a_traceback_cut_before_its_exception_names_the_common_cause_there(name: str, category: str) -> None:
    assert named(cut_before_the_exception(name))[0] == category


def test_a_code_line_names_the_call_its_frame_made_and_what_it_raises() -> None:
    """The lines under the last frames of the logs above."""
    assert code_frames('    sock.bind(("", args.port))') == [(CODE, "bind")]
    assert code_frames("ERROR 05-12 01:48:42 [api_router.py:72]     result = await self.render_chat_request(r)") == [
        (CODE, "render_chat_request")]
    assert code_frames("    raise ValueError(") == [(RAISE, "ValueError")]
    assert code_frames("    raise self.engine_client.dead_error") == [(RAISE, "dead_error")]
    assert code_frames("    raise e") == []
    assert code_frames("ValueError: No available memory for the cache blocks.") == []
    assert frame_phase([("/v/vllm/utils.py", "run_server"), (CODE, "bind")]) == "bind"
    assert frame_phase([("/v/vllm/v1/engine/core_client.py", "x"), (RAISE, "dead_error")]) == "engine_client"
    assert frame_phase([(RAISE, "ValueError")]) is None


def test_a_kv_check_after_vllms_figures_is_named_by_them() -> None:
    """vLLM's own figures before the KV check decide between its two errors: no memory left for the cache
    (kv_cache_no_blocks, as in collected/kv_cache_no_blocks/01) or a max_model_len longer than the room."""
    check = ['  File "/v/vllm/v1/core/kv_cache_utils.py", line 616, in _check_enough_kv_cache_memory',
             "    raise ValueError("]
    none_left = ["INFO 01-01 00:00:00 [gpu_worker.py:1] Available KV cache memory: -2.1 GiB", "Traceback "
                 "(most recent call last):", *check]
    some = ["INFO 01-01 00:00:00 [gpu_worker.py:1] Available KV cache memory: 4.25 GiB", "Traceback "
            "(most recent call last):", *check]
    assert next(f.category for f in classify_text(none_left)) == "kv_cache_no_blocks"
    assert next(f.category for f in classify_text(some)) == "max_len_exceeds_kv"


def test_each_processs_traceback_is_read_apart_when_their_lines_interleave() -> None:
    """vLLM's processes print at once into one log (corpus/dev3/engine_dead/051, vllm-project/vllm#40756: the engine
    core's shutdown traceback interleaved line by line with the API server's stream generator's). Each process's
    traceback is read from its own lines, by the name in its tag: two cut tracebacks (collected/port_in_use/02's
    bind, dev2 003's configuration check, OpenSQZ/MiniCPM-V-CookBook#51) interleaved name both causes."""
    bind = ["(EngineCore_DP0 pid=7) " + line for line in
            cut_before_the_exception("collected/port_in_use/02_v0_sock_bind_after_crash.log").splitlines()]
    config = ["(APIServer pid=1) " + line for line in cut_before_the_exception(
        "corpus/dev2/invalid_config/003_modelconfig_validation_minicpm_v45.log").splitlines()]
    mixed = [line for pair in zip(bind, config, strict=False) for line in pair]
    mixed += bind[len(config):] + config[len(bind):]
    found = named("\n".join(mixed) + "\n")
    assert {"port_in_use", "invalid_config"} <= set(found)
    interleaved = LOGS / "corpus/dev3/engine_dead/051_v0191_mtp_long_seq_illegal_memory_interleaved_shutdown.log"
    assert named(interleaved.read_text(encoding="utf-8"))[0] == "engine_dead"
