"""config.json and model directories -> ModelInfo; every malformed input names its field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from qwenops import modelinfo
from qwenops.cli import cli
from qwenops.errors import BadInputError
from qwenops.modelinfo import (
    checkpoints_for,
    from_catalog,
    inspect_model_dir,
    parse_config,
    read_config,
    resolve_model,
    safetensors_problem,
)
from tests.unit.shards import safetensors_bytes

QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 28, "num_attention_heads": 28,
    "num_key_value_heads": 4, "hidden_size": 3584, "intermediate_size": 18944, "vocab_size": 152064,
    "max_position_embeddings": 32768, "torch_dtype": "bfloat16",
}


def test_shipped_qwen3_14b_config_has_the_published_numbers() -> None:
    info = from_catalog("Qwen/Qwen3-14B")
    assert info is not None
    c = info.config
    assert (c.architecture, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim) == (
        "Qwen3ForCausalLM", 40, 40, 8, 128)
    assert (c.hidden_size, c.intermediate_size, c.vocab_size, c.max_position_embeddings) == (5120, 17408, 151936, 40960)
    assert info.weights_gib == 27.51
    awq = from_catalog("Qwen/Qwen3-14B-AWQ")
    assert awq is not None and awq.weights_gib == 9.4 and awq.config.quantization is not None
    assert checkpoints_for(c) == {"Qwen/Qwen3-14B": 27.51, "Qwen/Qwen3-14B-FP8": 15.2, "Qwen/Qwen3-14B-AWQ": 9.4}


def test_implicit_head_dim_and_quantization_config() -> None:
    config = parse_config({**QWEN2, "quantization_config": {"quant_method": "awq", "bits": 4}}, origin="x")
    assert config.head_dim == 3584 // 28 == 128
    assert config.quantization is not None and (config.quantization.method, config.quantization.bits) == ("awq", 4)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({**QWEN2, "architectures": ["DeepseekV3ForCausalLM"]}, "architectures"),
        ({k: v for k, v in QWEN2.items() if k != "architectures"}, "architectures"),
        ({k: v for k, v in QWEN2.items() if k != "num_hidden_layers"}, "num_hidden_layers"),
        ({**QWEN2, "vocab_size": -5}, "vocab_size"),
        ({**QWEN2, "hidden_size": "big"}, "hidden_size"),
        ([1, 2, 3], "config.json"),
    ],
)
def test_bad_config_names_the_field(raw: Any, field: str) -> None:
    with pytest.raises(BadInputError) as err:
        parse_config(raw, origin="config.json")
    assert err.value.field == field


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        read_config(tmp_path / "config.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ nope")
    with pytest.raises(BadInputError, match="not valid JSON") as err:
        read_config(bad)
    assert err.value.field == "config.json"


def test_model_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2))
    (tmp_path / "model.safetensors").write_bytes(safetensors_bytes(2048))
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "chat_template.jinja").write_text("{{ messages }}")
    info = inspect_model_dir(tmp_path)
    assert info.is_directory and info.tokenizer_present and info.chat_template_present
    assert info.shards is not None and info.shards.complete and info.shards.total_bytes == 2048
    assert resolve_model(str(tmp_path)).source == str(tmp_path)


def test_unknown_model_is_bad_input_naming_the_known_ones() -> None:
    with pytest.raises(BadInputError) as err:
        resolve_model("someone/unknown-model")
    assert err.value.field == "model"
    assert err.value.hint is not None and "Qwen/Qwen3-14B-AWQ" in err.value.hint


def test_a_downloaded_hub_snapshot_is_inspected_like_a_directory(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = tmp_path / "hub" / "models--Qwen--Qwen3-14B-AWQ"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123\n")
    (snapshot / "config.json").write_text(json.dumps(QWEN2))
    (snapshot / "model.safetensors").write_bytes(safetensors_bytes(4096))
    info = resolve_model("Qwen/Qwen3-14B-AWQ")
    assert info.is_directory and info.shards is not None and info.shards.total_bytes == 4096
    assert info.source.startswith("Qwen/Qwen3-14B-AWQ (") and str(snapshot) in info.source
    (repo / "refs" / "main").write_text("other\n")  # a ref to a snapshot that is not there: the catalog answers
    assert not resolve_model("Qwen/Qwen3-14B-AWQ").is_directory


def test_files_that_are_not_utf8_json_are_bad_input(tmp_path: Path) -> None:
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 16)
    with pytest.raises(BadInputError, match="not UTF-8") as err:
        read_config(binary)
    assert err.value.field == "config.json"
    with pytest.raises(BadInputError) as err:
        read_config(tmp_path)  # a directory
    assert err.value.field == "config.json"


@pytest.mark.parametrize(
    ("index", "field"),
    [
        (b"\x80\x81\xfe\xff", "model.safetensors.index.json"),
        (b"{ nope", "model.safetensors.index.json"),
        (b"[1, 2]", "weight_map"),
        (b'{"weight_map": 5}', "weight_map"),
        (b'{"weight_map": ["a.safetensors"]}', "weight_map"),
    ],
)
def test_a_broken_safetensors_index_is_bad_input(tmp_path: Path, index: bytes, field: str) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2))
    (tmp_path / "model.safetensors.index.json").write_bytes(index)
    with pytest.raises(BadInputError) as err:
        inspect_model_dir(tmp_path)
    assert err.value.field == field


def test_a_dangling_shard_link_is_missing_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2))
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(safetensors_bytes(1024))
    (tmp_path / "model-00002-of-00002.safetensors").symlink_to(tmp_path / "blobs" / "gone")
    (tmp_path / "tokenizer_config.json").write_bytes(b"\x80\x81")  # unreadable: no template, not a crash
    info = inspect_model_dir(tmp_path)
    assert info.shards is not None and info.shards.missing == ("model-00002-of-00002.safetensors",)
    assert info.shards.total_bytes == 1024 and info.chat_template_present is False


def test_plan_on_a_binary_model_config_is_exit_2(tmp_path: Path) -> None:
    binary = tmp_path / "config.json"
    binary.write_bytes(b"\x80\x81\xfe\xff" * 16)
    done = subprocess.run([sys.executable, "-m", "qwenops", "plan", "--model-config", str(binary),
                           "--weights-gib", "1", "--gpu-total-gib", "24"], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: model-config:") and "Traceback" not in done.stderr


@pytest.mark.parametrize("content", ["[" * 200_000, '{"architectures": ' + "[" * 500 + "]" * 500 + "}"])
def test_plan_on_a_deeply_nested_model_config_is_exit_2_naming_the_option(tmp_path: Path, content: str) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    result = CliRunner().invoke(cli, ["plan", "--model-config", str(config), "--weights-gib", "1",
                                      "--gpu-total-gib", "24"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: model-config:") and "levels deep" in result.stderr


def test_model_directory_json_is_read_up_to_a_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").symlink_to("/dev/zero")  # never ends, stat says 0 bytes: refused as a device
    with pytest.raises(BadInputError, match=r"is a device, not a config\.json") as err:
        inspect_model_dir(tmp_path)
    assert err.value.field == "config.json" and "re-download" in err.value.one_line()
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_bytes(b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(BadInputError, match="larger than 4 MiB"):
        inspect_model_dir(tmp_path)

    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps(QWEN2))
    monkeypatch.setattr(modelinfo, "MAX_INDEX_BYTES", 64)
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a" * 64: "x.safetensors"}}))
    with pytest.raises(BadInputError, match="larger than 64 bytes") as err:
        inspect_model_dir(tmp_path)
    assert err.value.field == "model.safetensors.index.json"

    (tmp_path / "model.safetensors.index.json").write_text("[" * 200_000)
    monkeypatch.setattr(modelinfo, "MAX_INDEX_BYTES", 1024**2)
    with pytest.raises(BadInputError, match="levels deep") as err:
        inspect_model_dir(tmp_path)
    assert err.value.field == "model.safetensors.index.json"


def test_a_deeply_nested_tokenizer_config_means_no_template_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2))
    (tmp_path / "tokenizer_config.json").write_text("[" * 200_000)
    assert inspect_model_dir(tmp_path).chat_template_present is False


def _header(entries: dict[str, Any]) -> bytes:
    header = json.dumps(entries).encode()
    return len(header).to_bytes(8, "little") + header


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (safetensors_bytes(1024), None),
        (safetensors_bytes(1024)[:100], "100 bytes, too short for the header it starts with"),
        (safetensors_bytes(1024)[:1000], "1,000 bytes where its header describes 1,024: truncated"),
        (safetensors_bytes(1024) + b"\0", "1,025 bytes where its header describes 1,024: corrupt"),
        (b"\0" * 7, "7 bytes, too short for the header it starts with"),
        ((2**63).to_bytes(8, "little") + b"{}", "10 bytes, too short for the header it starts with"),
        (b"\0" * 1024, "its header is not a JSON object: not a safetensors file"),
        (_header({"w": {"dtype": "U8", "shape": [4], "data_offsets": [4, 0]}}) + b"\0" * 4,
         "tensor 'w' has no valid data_offsets in its header"),
        (_header({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}) + b"\0" * 4, None),
        (_header({"__metadata__": {"format": "pt"}}), None),  # no tensors: just the header
    ],
)
def test_safetensors_problem(tmp_path: Path, content: bytes, problem: str | None) -> None:
    shard = tmp_path / "model.safetensors"
    shard.write_bytes(content)
    assert safetensors_problem(shard) == problem


def test_a_truncated_shard_makes_the_directory_incomplete(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2))
    (tmp_path / "model.safetensors").write_bytes(safetensors_bytes(2048)[:100])
    shards = inspect_model_dir(tmp_path).shards
    assert shards is not None and not shards.complete and not shards.missing
    assert shards.broken == ("model.safetensors: 100 bytes, too short for the header it starts with",)


@pytest.mark.parametrize(("key", "value"), [("hidden_size", 10**400), ("num_hidden_layers", 10**300),
                                            ("max_position_embeddings", 10**1000), ("vocab_size", 10**9)])
def test_a_number_no_real_model_has_is_bad_input_not_an_overflow(key: str, value: int) -> None:
    """config.json comes with a downloaded model: 10^400 hidden units was an OverflowError (exit 4) in plan,
    10^300 layers a 300-digit table row (audit 4)."""
    with pytest.raises(BadInputError, match="no larger than a real model's") as caught:
        parse_config({**QWEN2, key: value}, origin="config.json")
    assert caught.value.field == key and len(caught.value.message) < 200


def test_a_rope_factor_past_reason_stretches_nothing() -> None:
    rope = {"rope_scaling": {"type": "yarn", "factor": 1e308, "original_max_position_embeddings": 32768}}
    assert parse_config({**QWEN2, **rope}, origin="config.json").rope_max_model_len is None


def test_safetensors_offsets_past_the_file_are_a_problem_not_a_crash(tmp_path: Path) -> None:
    """An offset of exactly 4,300 digits passed the JSON reader; formatting 8 + length + it raised (audit 4)."""
    import struct

    header = ('{"w":{"dtype":"BF16","shape":[1],"data_offsets":[0,' + "9" * 4300 + "]}}").encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    problem = safetensors_problem(path)
    assert problem is not None and "no valid data_offsets" in problem and len(problem) < 200
