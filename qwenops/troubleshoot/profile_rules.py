"""Findings the profile alone supports, before any request: the article's "incoherent content" and
"response interrupted" rows often start in the flags, not in the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qwenops.vllmlog.classify import Evidence, Finding

if TYPE_CHECKING:
    from qwenops.config.profile import Profile

# Qwen3's model card: non-thinking mode at temperature 0.7, top_p 0.8; thinking mode 0.6 / 0.95. Far
# outside that band answers wander (high) or loop (greedy decoding with thinking on).
TEMPERATURE_BAND = (0.5, 1.0)
TOP_P_MIN = 0.8
# A prompt needs room too: an answer budget that takes most of the context leaves prompts truncated
# or refused with "maximum context length" (request_too_long).
ANSWER_SHARE = 0.75


def _evidence(profile: Profile, text: str) -> tuple[Evidence, ...]:
    return (Evidence(f"profile {profile.name}", text),)


def profile_findings(profile: Profile) -> list[Finding]:
    found: list[Finding] = []
    length, answer = profile.max_model_len, profile.client.max_tokens
    if length is not None and answer >= length * ANSWER_SHARE:
        found.append(Finding(
            "request_too_long", "warning", "the answer budget leaves little room for the prompt",
            _evidence(profile, f"client.max_tokens {answer} of max_model_len {length}"),
            f"prompt + max_tokens must fit in {length}: a prompt over {max(length - answer, 0)} tokens is refused "
            f"or cut. Lower client.max_tokens, or raise max_model_len if the KV cache has room "
            f"(`qwenops plan --max-model-len N`) — the article's 'adjust max_model_len' row"))
    if profile.kv_cache_dtype in ("fp8", "fp8_e4m3", "fp8_e5m2") and "qwen3" in profile.model.lower():
        found.append(Finding(
            "incoherent_output", "warning", "an fp8 KV cache can cost Qwen3 answer quality",
            _evidence(profile, f"kv_cache_dtype {profile.kv_cache_dtype}"),
            "fp8 KV without calibrated scales loses precision on long contexts; if answers degrade, drop "
            "kv_cache_dtype (bf16 KV: 160 KiB per token for Qwen3-14B) and lower max_num_seqs to make room"))
    temperature, top_p = profile.client.temperature, profile.client.top_p
    low, high = TEMPERATURE_BAND
    if (temperature and not low <= temperature <= high) or top_p < TOP_P_MIN:
        found.append(Finding(
            "incoherent_output", "info", "sampling outside the range Qwen3 is tuned for",
            _evidence(profile, f"client.temperature {temperature:g}, client.top_p {top_p:g}"),
            f"Qwen3's card recommends temperature 0.6-0.7 and top_p 0.8-0.95; keep temperature within "
            f"{low:g}-{high:g} and top_p >= {TOP_P_MIN:g} unless a test needs greedy answers"))
    if profile.disable_log_stats:
        found.append(Finding(
            "metrics_unavailable", "info", "the server keeps no statistics: /metrics, status and the stall watchdog "
            "are blind", _evidence(profile, "disable_log_stats true"),
            "drop disable_log_stats (it also silences the periodic throughput line) to let `qwenops status`, "
            "`troubleshoot --base-url` and serve's progress watchdog see tokens and queues"))
    return found
