"""What a model is, read from its directory (or its config.json) without loading a weight.

`ModelInfo` carries the architecture numbers the memory planner needs (layers, KV heads, head_dim,
hidden/intermediate/vocab sizes, dtype, quantization) and what `doctor` checks in a model directory
(tokenizer, chat template, safetensors shards complete against their index, their total bytes).
Hugging Face repo ids that qwenops knows (configs/models/catalog.json) are planned from a shipped
config.json and a checkpoint-size table, so `plan --profile 4090d` works before the download.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import field
from pathlib import Path
from typing import Any, ClassVar

from qwenops.errors import BadInputError
from qwenops.jsonfile import read_json
from qwenops.plainschema import Schema, about, validation_error
from qwenops.units import GIB, MAX_GIB

# Decoder-only dense transformers whose memory follows the formulas in qwenops.planner (one KV
# pair per layer, a gated MLP). Anything else (MoE, Mamba, multimodal) needs its own model.
SUPPORTED_ARCHITECTURES: tuple[str, ...] = (
    "Qwen3ForCausalLM",
    "Qwen2ForCausalLM",
    "LlamaForCausalLM",
    "MistralForCausalLM",
)

DTYPE_BYTES: dict[str, int] = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


# Numbers are numbers: a probe file's `"weights_gib": true` was 1 GiB (audit 6); config.json refuses them too.
_STRICT: dict[str, Any] = {"strict_numbers": True}


# Frozen dataclasses validated as pydantic models were (qwenops.plainschema): a valid config.json costs no pydantic.
@dataclasses.dataclass(frozen=True, kw_only=True)
class Quantization(Schema):
    """The checkpoint's `quantization_config`, reduced to what memory depends on."""

    __schema_config__: ClassVar[dict[str, Any]] = _STRICT

    method: str
    bits: int | None = None


_MAX_COUNT = 100_000  # layers, heads
_MAX_WIDTH = 100_000_000  # hidden and intermediate sizes, vocabulary, head_dim
_MAX_POSITIONS = 1_000_000_000_000  # positions, with rope scaling


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig(Schema):
    """The architecture numbers of a config.json (field names as Hugging Face writes them)."""

    __schema_config__: ClassVar[dict[str, Any]] = _STRICT

    architecture: str
    # Upper bounds far past any real model (Qwen3-14B: 40 layers, 5,120 hidden, 151,936 vocab): a config.json
    # comes with a downloaded model, and 10^400 hidden units overflowed the planner's float arithmetic.
    num_hidden_layers: int = field(metadata=about(gt=0, le=_MAX_COUNT))
    num_attention_heads: int = field(metadata=about(gt=0, le=_MAX_COUNT))
    num_key_value_heads: int = field(metadata=about(gt=0, le=_MAX_COUNT))
    hidden_size: int = field(metadata=about(gt=0, le=_MAX_WIDTH))
    intermediate_size: int = field(metadata=about(gt=0, le=_MAX_WIDTH))
    vocab_size: int = field(metadata=about(gt=0, le=_MAX_WIDTH))
    # After hidden_size: when it is implicit it derives from hidden_size, whose error must come first.
    head_dim: int = field(metadata=about(gt=0, le=_MAX_WIDTH))
    max_position_embeddings: int = field(metadata=about(gt=0, le=_MAX_POSITIONS))
    torch_dtype: str = "bfloat16"
    quantization: Quantization | None = None
    rope_max_model_len: int | None = field(default=None, metadata=about(
        "max_position_embeddings as rope_scaling stretches it (YaRN, linear, dynamic); None when the config "
        "scales nothing", gt=0, le=_MAX_POSITIONS))

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES.get(self.torch_dtype, 2)

    @property
    def derived_max_model_len(self) -> int:
        """The longest max_model_len vLLM accepts for this model (without VLLM_ALLOW_LONG_MAX_MODEL_LEN)."""
        return self.rope_max_model_len or self.max_position_embeddings


@dataclasses.dataclass(frozen=True, kw_only=True)
class ShardStatus(Schema):
    """The safetensors files of a model directory, checked against model.safetensors.index.json."""

    __schema_config__: ClassVar[dict[str, Any]] = _STRICT

    files: int = 0
    expected: int = 0
    missing: tuple[str, ...] = ()
    broken: tuple[str, ...] = field(default=(), metadata=about(
        "'NAME: why' for shards that are truncated or not safetensors"))
    total_bytes: int = 0

    @property
    def complete(self) -> bool:
        return self.files > 0 and not self.missing and not self.broken


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo(Schema):
    """A model as the planner and doctor see it."""

    __schema_config__: ClassVar[dict[str, Any]] = _STRICT

    source: str = field(metadata=about("directory, config.json path, or catalog repo id"))
    config: ModelConfig
    weights_gib: float | None = field(default=None, metadata=about("GiB of weights vLLM will load, when known",
                                                                   ge=0, le=MAX_GIB))
    weights_source: str = ""
    is_directory: bool = False
    tokenizer_present: bool | None = None
    chat_template_present: bool | None = None
    shards: ShardStatus | None = None


def parse_config(raw: Any, *, origin: str) -> ModelConfig:
    """A config.json mapping -> ModelConfig; the first problem names its key."""
    if not isinstance(raw, dict):
        raise BadInputError(f"{origin} must hold a JSON object", field="config.json")
    text_config = raw.get("text_config")
    if isinstance(text_config, dict) and "num_hidden_layers" not in raw:
        raw = {**text_config, "architectures": raw.get("architectures")}
    archs = raw.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise BadInputError(f"missing or not a list of names in {origin}", field="architectures")
    arch = archs[0]
    if arch not in SUPPORTED_ARCHITECTURES:
        raise BadInputError(
            f"unknown architecture {arch!r} in {origin}",
            field="architectures",
            hint=f"supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
        )
    values: dict[str, Any] = {
        "architecture": arch,
        **{key: raw.get(key) for key in ("num_hidden_layers", "num_attention_heads", "hidden_size",
                                         "intermediate_size", "vocab_size")},
    }
    values["num_key_value_heads"] = raw.get("num_key_value_heads", raw.get("num_attention_heads"))
    heads, hidden = values["num_attention_heads"], values["hidden_size"]
    head_dim = raw.get("head_dim")
    if head_dim is None and isinstance(heads, int) and isinstance(hidden, int) and heads > 0:
        head_dim = hidden // heads  # Llama/Qwen2 configs leave head_dim implicit
    values["head_dim"] = head_dim
    values["max_position_embeddings"] = raw.get("max_position_embeddings", 4096)
    values["torch_dtype"] = str(raw.get("torch_dtype") or raw.get("dtype") or "bfloat16")
    values["rope_max_model_len"] = _rope_max_model_len(raw, values["max_position_embeddings"])
    qcfg = raw.get("quantization_config")
    if isinstance(qcfg, dict):
        method = str(qcfg.get("quant_method") or "unknown")
        bits = qcfg.get("bits", qcfg.get("w_bit"))
        values["quantization"] = {"method": method, "bits": bits if isinstance(bits, int) else None}
    try:
        return ModelConfig.model_validate(values)
    except Exception as exc:
        invalid = validation_error(exc)
        if invalid is None:
            raise
        error = invalid.errors()[0]
        key = ".".join(str(p) for p in error["loc"]) or "config.json"
        got = error.get("input")
        what = ("missing" if got is None else
                f"must be a positive integer no larger than a real model's, got {_shown_number(got)}")
        raise BadInputError(f"{what} in {origin}", field=key) from None


def _shown_number(value: object) -> str:
    """VALUE for a message: a number of 10^300 is cut, not printed whole (nor past Python's 4,300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**20:
        return f"a number of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# Caps on what is read from a model directory or a config the user names: a config.json is tens of
# KiB and the largest safetensors index (DeepSeek-V3, ~90k tensors) under 10 MiB.
MAX_CONFIG_BYTES = 4 * 1024**2
MAX_INDEX_BYTES = 64 * 1024**2
MAX_TOKENIZER_CONFIG_BYTES = 64 * 1024**2
REDOWNLOAD_HINT = "re-download the model (or rebuild it: `qwenops model build-tiny --force` for cpu-tiny's)"


def _rope_max_model_len(raw: dict[str, Any], max_positions: object) -> int | None:
    """vLLM's derived max_model_len under rope_scaling (vllm/config/model.py _get_and_verify_max_len):
    the factor stretches max_position_embeddings (YaRN: original_max_position_embeddings), except for
    su/longrope/llama3, whose max_position_embeddings already is the stretched length."""
    rope = raw.get("rope_scaling") or raw.get("rope_parameters")
    if not isinstance(rope, dict):
        return None
    kind = rope.get("rope_type", rope.get("type"))
    factor = rope.get("factor")
    if kind in ("su", "longrope", "llama3") or not isinstance(factor, (int, float)) or not 0 < factor < 1e6:
        return None  # a factor past a million stretches nothing real (and 1e308 overflowed int())
    base = rope.get("original_max_position_embeddings") if kind == "yarn" else max_positions
    if not isinstance(base, int) or isinstance(base, bool) or not 0 < base <= _MAX_POSITIONS:
        return None
    return int(base * factor)


def read_config(path: Path, *, field: str = "config.json", hint: str | None = REDOWNLOAD_HINT) -> ModelConfig:
    """A config.json; FIELD names where it came from (the `--model-config` option, or a model directory)."""
    raw = read_json(path, field=field, cap=MAX_CONFIG_BYTES, what="a config.json", hint=hint)
    return parse_config(raw, origin=str(path))


# safetensors' own limit on the JSON header (safetensors/src/tensor.rs MAX_HEADER_SIZE).
SAFETENSORS_MAX_HEADER = 100_000_000


def safetensors_problem(path: Path) -> str | None:
    """Why PATH is not a whole safetensors file, or None when it is.

    The format is an 8-byte little-endian header length N, N bytes of JSON mapping each tensor to its
    dtype, shape and data_offsets [begin, end) in the data that follows; so a complete file is exactly
    8 + N + the largest end. A download cut short, or a file cut by hand, fails that arithmetic.
    """
    from qwenops.jsonfile import parse_json
    from qwenops.readfile import open_regular

    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            length = int.from_bytes(prefix, "little") if len(prefix) == 8 else None
            if length is None or length > SAFETENSORS_MAX_HEADER or 8 + length > size:
                return f"{size:,} bytes, too short for the header it starts with"
            header = handle.read(length)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    try:
        raw = parse_json(header, origin="its header", field="safetensors")
    except BadInputError:
        raw = None
    if not isinstance(raw, dict):
        return "its header is not a JSON object: not a safetensors file"
    end = 0
    for name, entry in raw.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(type(o) is int for o in offsets) and 0 <= offsets[0] <= offsets[1] <= size):
            # past the file's size: the arithmetic and the message below stay on numbers a file can have
            return f"tensor {_shown_number(name)} has no valid data_offsets in its header"
        end = max(end, offsets[1])
    whole = 8 + length + end
    if size != whole:
        return f"{size:,} bytes where its header describes {whole:,}: {'truncated' if size < whole else 'corrupt'}"
    return None


def _shards(directory: Path) -> ShardStatus:
    listed = sorted(directory.glob("*.safetensors"))
    # A dangling link into the HF blob store (interrupted download) is listed but cannot be stat'ed:
    # it counts as missing, not as a crash.
    present = {f.name: f.stat().st_size for f in listed if f.exists()}
    index = directory / "model.safetensors.index.json"
    expected: set[str] = {f.name for f in listed}
    if index.is_file():
        raw = read_json(index, field="model.safetensors.index.json", cap=MAX_INDEX_BYTES,
                        what="a safetensors index", hint=REDOWNLOAD_HINT)
        weight_map = raw.get("weight_map", {}) if isinstance(raw, dict) else None
        if not isinstance(weight_map, dict):
            raise BadInputError(f"{index} is not a valid safetensors index (no weight_map object)",
                                field="weight_map", hint=REDOWNLOAD_HINT)
        expected = {str(name) for name in weight_map.values()}
    missing = tuple(sorted(expected - set(present)))
    broken = tuple(f"{name}: {problem}" for name in sorted(present)
                   if (problem := safetensors_problem(directory / name)) is not None)
    return ShardStatus(files=len(present), expected=len(expected), missing=missing, broken=broken,
                       total_bytes=sum(present.values()))


def inspect_model_dir(directory: Path) -> ModelInfo:
    """Read config.json, tokenizer, chat template and shards of a local model directory."""
    if not directory.is_dir():
        raise BadInputError(f"{directory} is not a directory", field="model")
    config = read_config(directory / "config.json")
    shards = _shards(directory)
    tokenizer = any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    template = (directory / "chat_template.jinja").is_file()
    tokenizer_config = directory / "tokenizer_config.json"
    if not template and tokenizer_config.is_file():
        try:
            raw = read_json(tokenizer_config, field="tokenizer_config.json", cap=MAX_TOKENIZER_CONFIG_BYTES,
                            what="a tokenizer_config.json")
        except BadInputError:  # unreadable, oversized or not JSON: either way no template to find
            raw = None
        template = isinstance(raw, dict) and bool(raw.get("chat_template"))
    weights = shards.total_bytes / GIB if shards.total_bytes else None
    return ModelInfo(
        source=str(directory), config=config, weights_gib=weights,
        weights_source="sum of the safetensors shards" if weights else "",
        is_directory=True, tokenizer_present=tokenizer, chat_template_present=template, shards=shards,
    )


def models_dir() -> Path:
    """configs/models of a source checkout, else the copy a wheel carries inside the package."""
    from qwenops.config.paths import shipped_dirs

    checkout, wheel = shipped_dirs("models")
    return checkout if checkout.is_dir() else wheel


def catalog() -> dict[str, dict[str, Any]]:
    data = json.loads((models_dir() / "catalog.json").read_text(encoding="utf-8"))
    checkpoints: dict[str, dict[str, Any]] = data["checkpoints"]
    return checkpoints


def from_catalog(repo_id: str) -> ModelInfo | None:
    entry = catalog().get(repo_id)
    if entry is None:
        return None
    config = read_config(models_dir() / entry["config"])
    if entry.get("quantization"):
        config = config.model_copy(update={"quantization": Quantization(method=entry["quantization"])})
    return ModelInfo(source=repo_id, config=config, weights_gib=float(entry["weights_gib"]),
                     weights_source=f"catalog: {entry['_source']}")


def hf_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache's snapshot of repo_id (what vLLM loads), if it was downloaded.

    Read from the cache layout (hub/models--ORG--NAME/refs/main -> snapshots/HASH) rather than
    through huggingface_hub, which would pull in requests and friends for one path lookup.
    """
    import os

    hub = os.environ.get("HF_HUB_CACHE") or str(Path(os.environ.get("HF_HOME") or Path.home() / ".cache" /
                                                     "huggingface") / "hub")
    repo_dir = Path(hub) / f"models--{repo_id.replace('/', '--')}"
    try:
        revision = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    snapshot = repo_dir / "snapshots" / revision
    return snapshot if (snapshot / "config.json").is_file() else None


def resolve_model(model: str) -> ModelInfo:
    """A profile's `model`: a local directory, else a downloaded Hub snapshot, else the catalog."""
    path = Path(model).expanduser()
    if path.is_dir():
        return inspect_model_dir(path)
    snapshot = hf_snapshot(model) if "/" in model and not model.startswith(("/", ".", "~")) else None
    if snapshot is not None:
        return inspect_model_dir(snapshot).model_copy(update={"source": f"{model} ({snapshot})"})
    known = from_catalog(model)
    if known is not None:
        return known
    raise BadInputError(
        f"{model!r} is neither a local model directory nor a checkpoint qwenops knows",
        field="model",
        hint=f"pass --model DIR or --model-config config.json --weights-gib W; known: {', '.join(catalog())}",
    )


def checkpoints_for(config: ModelConfig) -> dict[str, float]:
    """Catalog checkpoints of the same architecture numbers: repo id -> weights GiB (for fixes)."""
    found: dict[str, float] = {}
    for repo_id in catalog():
        info = from_catalog(repo_id)
        if info is None or info.weights_gib is None:
            continue
        same = info.config.model_dump(exclude={"quantization"}) == config.model_dump(exclude={"quantization"})
        if same:
            found[repo_id] = info.weights_gib
    return found
