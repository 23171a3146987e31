"""Every value of a probe file, one at a time, replaced by what a hostile or broken file can hold (null, a negative,
a huge number, a string, a list): `doctor` and `plan` either judge the facts or refuse the file as bad input (exit 2,
one line naming the field), never an internal error. Audit 6 found the one that was: `"weights_gib": null` for a model
that is not downloaded, which the schema allows and a check formatted as a number. A sweep finds the next one."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops.cli import cli

PROBES = Path(__file__).resolve().parents[1] / "data" / "probes"
# A probe as `doctor --save-probe` records it where the 4090d profile's model is not downloaded (catalog numbers).
MODEL = {"requested": "Qwen/Qwen3-14B-AWQ", "error": None, "info": {
    "source": "Qwen/Qwen3-14B-AWQ", "weights_gib": 9.4, "weights_source": "catalog", "is_directory": False,
    "tokenizer_present": None, "chat_template_present": None, "shards": None,
    "config": {"architecture": "Qwen3ForCausalLM", "num_hidden_layers": 40, "num_attention_heads": 40,
               "num_key_value_heads": 8, "hidden_size": 5120, "intermediate_size": 17408, "vocab_size": 151936,
               "head_dim": 128, "max_position_embeddings": 40960, "torch_dtype": "bfloat16",
               "quantization": {"method": "awq", "bits": None},
               "rope_max_model_len": None}}}
VALUES: tuple[object, ...] = (None, -1, 10**30, 1e308, "x", [], {})


def leaves(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves(inner, (*path, key))
    elif isinstance(value, list) and value:
        for index, inner in enumerate(value):
            yield from leaves(inner, (*path, index))
    else:
        yield path


def replaced(document: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    inner: Any = changed
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return changed


@pytest.mark.parametrize("fixture", ["rtx4090d-cuda124", "gpu-lost", "no-driver"])
def test_no_value_of_a_probe_file_is_an_internal_error(fixture: str, tmp_path: Path) -> None:
    base = json.loads((PROBES / f"{fixture}.json").read_text())
    base["model"] = MODEL
    runner, path, failures = CliRunner(), tmp_path / "probe.json", []
    path.write_text(json.dumps(base))
    assert runner.invoke(cli, ["doctor", "--profile", "4090d", "--probe-file", str(path)]).exit_code in (0, 1)
    for where in leaves(base):
        for value in VALUES:
            path.write_text(json.dumps(replaced(base, where, value)))
            for args in (["doctor", "--profile", "4090d"], ["doctor", "--profile", "4090d", "--json"],
                         ["plan", "--profile", "4090d"]):
                result = runner.invoke(cli, [*args, "--probe-file", str(path)])
                many_lines = len(result.stderr.strip().splitlines()) > 1 and "--json" not in args
                if result.exit_code not in (0, 1, 2) or (result.exit_code == 2 and many_lines):
                    failures.append(f"{'.'.join(map(str, where))} = {value!r}: {' '.join(args)} -> "
                                    f"{result.exit_code} {result.stderr.strip()[:200]!r}")
    assert not failures, "\n".join(failures[:20])


def test_no_value_of_a_model_config_is_an_internal_error(tmp_path: Path) -> None:
    """The same for a config.json (`plan --model-config`): Qwen3-14B's, with an AWQ quantization_config and YaRN's
    rope_scaling added so that their readers are swept too."""
    repo = Path(__file__).resolve().parents[2]
    base = json.loads((repo / "configs" / "models" / "qwen3-14b.json").read_text())
    base["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True}
    base["rope_scaling"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    runner, path, failures = CliRunner(), tmp_path / "config.json", []
    args = ["plan", "--profile", "4090d", "--model-config", str(path), "--weights-gib", "9.4", "--gpu-total-gib", "24"]
    path.write_text(json.dumps(base))
    assert runner.invoke(cli, args).exit_code in (0, 1)
    for where in leaves(base):
        for value in VALUES:
            path.write_text(json.dumps(replaced(base, where, value)))
            for extra in ([], ["--json"]):
                result = runner.invoke(cli, [*args, *extra])
                many_lines = len(result.stderr.strip().splitlines()) > 1 and not extra
                if result.exit_code not in (0, 1, 2) or (result.exit_code == 2 and many_lines):
                    failures.append(f"{'.'.join(map(str, where))} = {value!r}: {extra} -> {result.exit_code} "
                                    f"{result.stderr.strip()[:200]!r}")
    assert not failures, "\n".join(failures[:20])


def test_a_recorded_models_numbers_are_numbers(tmp_path: Path) -> None:
    """Audit 6: `"weights_gib": true` was read as 1 GiB (27.5 GiB of weights, and doctor said ready, exit 0), and a
    layer count of `true` as 1; a probe file is written by a program: a bool or a string there is no number."""
    base = json.loads((PROBES / "rtx4090d-cuda124.json").read_text())
    base["model"] = MODEL
    path = tmp_path / "probe.json"
    for where, value in ((("model", "info", "weights_gib"), True), (("model", "info", "weights_gib"), "9.4"),
                         (("model", "info", "config", "num_hidden_layers"), True),
                         (("model", "info", "weights_gib"), -1.0)):
        path.write_text(json.dumps(replaced(base, where, value)))
        result = CliRunner().invoke(cli, ["doctor", "--profile", "4090d", "--probe-file", str(path)])
        assert result.exit_code == 2, (where, value, result.stdout[-300:])
        assert f"error: probe-file.{'.'.join(map(str, where))}:" in result.stderr
