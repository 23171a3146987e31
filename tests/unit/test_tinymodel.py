"""The tiny Qwen3 model: the files the engine needs, cache, determinism and known greedy answers (no vLLM)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from qwenops.errors import BadInputError, EngineMissingError
from qwenops.tinymodel import IM_END, KNOWN_PROMPTS, TinyModelInfo, build_tiny_model
from tests.unit.shards import safetensors_bytes

TORCH_REASON = "the tiny model needs torch; install the CPU engine with scripts/install_cpu_engine.sh"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> TinyModelInfo:
    pytest.importorskip("torch", reason=TORCH_REASON)
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_import_does_not_load_torch() -> None:
    # The CLI imports this module to render help and profiles; it must stay cheap.
    code = "import sys, qwenops.tinymodel; sys.exit(1 if 'torch' in sys.modules else 0)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    with pytest.raises(EngineMissingError, match="needs torch") as caught:
        build_tiny_model(tmp_path / "model")
    assert "scripts/install_cpu_engine.sh" in caught.value.one_line()
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_directory_it_did_not_build(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="does not hold a tiny model"):
        build_tiny_model(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.slow
def test_build_writes_a_qwen3_checkpoint(built: TinyModelInfo) -> None:
    names = {path.name for path in built.path.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    } <= names
    assert not [path for path in built.path.parent.iterdir() if path.name.startswith(".model.")]

    config = json.loads((built.path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    assert config["model_type"] == "qwen3"
    assert config["head_dim"] == 64
    assert config["num_attention_heads"] % config["num_key_value_heads"] == 0

    tokenizer_config = json.loads((built.path / "tokenizer_config.json").read_text())
    assert tokenizer_config["eos_token"] == IM_END
    assert "<|im_start|>" in tokenizer_config["chat_template"]
    special = {entry["content"] for entry in tokenizer_config["added_tokens_decoder"].values()}
    assert special == {"<|im_start|>", "<|im_end|>", "<|endoftext|>"}
    assert config["eos_token_id"] == next(
        int(token_id)
        for token_id, entry in tokenizer_config["added_tokens_decoder"].items()
        if entry["content"] == IM_END
    )

    generation_config = json.loads((built.path / "generation_config.json").read_text())
    # Sampling defaults here would silently override what requests ask for in vLLM.
    assert not {"temperature", "top_p", "top_k", "do_sample"} & generation_config.keys()


@pytest.mark.slow
def test_build_reports_itself(built: TinyModelInfo) -> None:
    assert built.built is True
    assert 200_000 <= built.parameters <= 1_000_000
    assert built.known_answers == KNOWN_PROMPTS
    assert built.seconds > 0  # how long it takes: benchmarks, not a test


@pytest.mark.slow
def test_second_build_is_a_cache_hit(built: TinyModelInfo) -> None:
    again = build_tiny_model(built.path, seed=0)
    assert again.built is False  # how fast a hit is: benchmarks, not a test
    assert again.parameters == built.parameters
    assert again.known_answers == KNOWN_PROMPTS


@pytest.mark.slow
def test_forced_rebuild_is_byte_identical(built: TinyModelInfo) -> None:
    before = {
        name: _sha256(built.path / name) for name in ("model.safetensors", "tokenizer.json", "config.json")
    }
    rebuilt = build_tiny_model(built.path, seed=0, force=True)
    assert rebuilt.built is True
    after = {name: _sha256(built.path / name) for name in before}
    assert after == before


@pytest.mark.slow
def test_greedy_generation_gives_the_known_answers(built: TinyModelInfo) -> None:
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(built.path))
    # Any, as in qwenops.tinymodel: transformers' annotations do not hold together (its generate's `self`
    # is a protocol the model class does not match, eval is untyped, and the output is a union to index).
    model: Any = AutoModelForCausalLM.from_pretrained(str(built.path))
    model.eval()
    for prompt, answer in KNOWN_PROMPTS.items():
        prompt_ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=False,
        )
        with torch.no_grad():
            output = model.generate(torch.tensor([prompt_ids]), do_sample=False, max_new_tokens=64)
        new_ids = output[0, len(prompt_ids) :].tolist()
        assert new_ids[-1] == tokenizer.eos_token_id, prompt
        assert tokenizer.decode(new_ids, skip_special_tokens=True) == answer


@pytest.mark.slow
def test_concurrent_builders_share_one_build(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason=TORCH_REASON)
    from concurrent.futures import ThreadPoolExecutor

    target = tmp_path / "model"
    with ThreadPoolExecutor(max_workers=2) as pool:
        infos = list(pool.map(lambda _: build_tiny_model(target, seed=0), range(2)))
    assert sorted(info.built for info in infos) == [False, True]  # one built it, the other waited and reused it
    assert (target / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if ".building-" in p.name or ".old-" in p.name]


def test_a_directory_under_a_regular_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from qwenops.cli import cli

    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    result = CliRunner().invoke(cli, ["model", "build-tiny", str(blocker / "model")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(
        f"error: directory: {blocker} is not a directory, so {blocker / 'model'} cannot be created in it")
    assert "(choose a directory this user can write)" in result.stderr
    assert blocker.read_text() == "keep me"


def test_an_unwritable_directory_is_bad_input_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*_: object, dir: str | None = None, **__: object) -> str:
        raise PermissionError(13, "Permission denied", dir)

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # root writes anywhere; make this place refuse it
    with pytest.raises(BadInputError, match=r"cannot write the tiny model to .*/model: Permission denied") as caught:
        build_tiny_model(tmp_path / "model")
    assert caught.value.field == "directory"


def _fake_build(calls: list[Path]) -> Any:
    """Stands in for training (no torch): writes the files a build leaves, with a whole shard."""
    def build(work_dir: Path, seed: int) -> int:
        calls.append(work_dir)
        for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
            (work_dir / name).write_text("{}")
        (work_dir / "model.safetensors").write_bytes(safetensors_bytes(1024))
        return 123
    return build


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: _edit_stamp(d, parameters="lots"),
        lambda d: _edit_stamp(d, parameters=None),
        lambda d: _edit_stamp(d, known_answers=["not", "a", "mapping"]),
        lambda d: (d / ".qwenops-tinymodel.json").write_text("[" * 200_000),
        lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
        lambda d: (d / "tokenizer.json").unlink(),
    ],
    ids=["parameters-lots", "parameters-null", "answers-list", "stamp-deep", "shard-cut", "no-tokenizer"],
)
def test_a_damaged_build_is_rebuilt_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Any) -> None:
    from click.testing import CliRunner

    from qwenops import tinymodel
    from qwenops.cli import cli

    calls: list[Path] = []
    monkeypatch.setattr(tinymodel, "_build", _fake_build(calls))
    target = tmp_path / "model"
    assert build_tiny_model(target).built is True
    assert build_tiny_model(target).built is False  # whole: reused
    damage(target)
    result = CliRunner().invoke(cli, ["model", "build-tiny", str(target), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["data"]["built"] is True
    assert len(calls) == 2
    assert build_tiny_model(target).built is False  # and the rebuild is whole again


def _edit_stamp(directory: Path, **changes: object) -> None:
    stamp_path = directory / ".qwenops-tinymodel.json"
    stamp_path.write_text(json.dumps({**json.loads(stamp_path.read_text()), **changes}))


def test_known_answers_of_a_malformed_stamp_are_none(tmp_path: Path) -> None:
    from qwenops.tinymodel import read_known_answers

    (tmp_path / ".qwenops-tinymodel.json").write_text("[" * 200_000)
    assert read_known_answers(tmp_path) is None
