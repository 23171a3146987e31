"""What `qwenops tune` was asked, validated before anything is planned or spawned."""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qwenops.errors import BadInputError
from qwenops.untrusted import MAX_TUNE_CANDIDATES, MAX_TUNE_TOKENS, MAX_TUNE_VALUES

# How many values each grid flag takes when it is not given (qwenops.tune.candidates.default_grid): half,
# same and double max_num_seqs; the profile's max_num_batched_tokens and double; up to two max_model_len.
DEFAULT_GRID_VALUES = {"max_num_seqs": 3, "max_num_batched_tokens": 2, "max_model_len": 2}

# Flag names, so that a validation error names what the user typed.
FLAG_NAMES = {
    "slo_ttft_ms": "--slo-ttft-ms", "slo_tpot_ms": "--slo-tpot-ms", "workload_file": "--workload",
    "prompt_tokens": "--prompt-tokens", "output_tokens": "--output-tokens", "max_concurrency": "--max-concurrency",
    "budget_min": "--budget-min", "max_num_seqs": "--max-num-seqs",
    "max_num_batched_tokens": "--max-num-batched-tokens", "max_model_len": "--max-model-len",
    "requests_per_level": "--requests", "port": "--port",
}


class Slo(BaseModel):
    """The latency objective every request must meet to count as goodput (milliseconds)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    ttft_ms: float = Field(gt=0, le=3_600_000)
    tpot_ms: float = Field(gt=0, le=3_600_000)

    def describe(self) -> str:
        return f"TTFT <= {self.ttft_ms:g} ms, TPOT <= {self.tpot_ms:g} ms"


class TuneOptions(BaseModel):
    """The command line of `qwenops tune`, checked as a whole."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    profile: str | None = None
    slo_ttft_ms: float = Field(gt=0, le=3_600_000)
    slo_tpot_ms: float = Field(gt=0, le=3_600_000)
    workload_file: Path | None = None
    prompt_tokens: int | None = Field(None, ge=1, le=MAX_TUNE_TOKENS)
    output_tokens: int | None = Field(None, ge=1, le=MAX_TUNE_TOKENS)
    max_concurrency: int = Field(16, ge=1, le=4096)
    budget_min: float = Field(30.0, gt=0, le=7 * 24 * 60)
    max_num_seqs: tuple[int, ...] = ()
    max_num_batched_tokens: tuple[int, ...] = ()
    max_model_len: tuple[int, ...] = ()
    requests_per_level: int = Field(16, ge=1, le=100_000)
    port: int | None = Field(None, ge=1, le=65535)
    plan_only: bool = False
    probe_file: Path | None = None

    @model_validator(mode="after")
    def _one_workload(self) -> TuneOptions:
        lengths = (self.prompt_tokens, self.output_tokens)
        if self.workload_file is not None and any(v is not None for v in lengths):
            raise ValueError("workload_file: give --workload FILE or --prompt-tokens/--output-tokens, not both")
        sizes: dict[str, int] = {}
        for name, default in DEFAULT_GRID_VALUES.items():
            values = getattr(self, name)
            if len(values) > MAX_TUNE_VALUES:
                raise ValueError(f"{name}: at most {MAX_TUNE_VALUES} values (got {len(values)})")
            for value in values:
                if not 1 <= value <= MAX_TUNE_TOKENS:
                    raise ValueError(f"{name}: every value must be >= 1 and <= {MAX_TUNE_TOKENS} (got {value})")
            sizes[name] = len(values) or default
        if math.prod(sizes.values()) > MAX_TUNE_CANDIDATES:
            widest = max(sizes, key=lambda name: sizes[name])
            shape = " x ".join(f"{sizes[n]} {FLAG_NAMES[n]}" for n in sizes)
            raise ValueError(f"{widest}: the grid would have {math.prod(sizes.values()):,} candidates ({shape}), "
                             f"more than {MAX_TUNE_CANDIDATES}; each is a server start: give fewer values")
        return self

    @property
    def slo(self) -> Slo:
        return Slo(ttft_ms=self.slo_ttft_ms, tpot_ms=self.slo_tpot_ms)

    @property
    def budget_s(self) -> float:
        return self.budget_min * 60.0


def tune_options(**values: object) -> TuneOptions:
    """TuneOptions from the command line's values; the first problem becomes one line naming the flag."""
    try:
        return TuneOptions.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = str(error["msg"]).replace("Value error, ", "")
        loc = [str(part) for part in error["loc"]]
        name = loc[0] if loc else ""
        if not loc and ": " in message:  # a whole-model check names its field itself
            name, message = message.split(": ", 1)
        flag = FLAG_NAMES.get(name, name or "tune")
        got = error.get("input")
        if loc and not isinstance(got, (dict, list, tuple)):
            message = f"{message} (got {got!r})"
        raise BadInputError(message[:1].lower() + message[1:], field=flag, hint="see `qwenops tune --help`") from None


def parse_int_list(text: str | None, *, flag: str) -> tuple[int, ...]:
    """`4,8,16` -> (4, 8, 16), sorted and without repeats; a bad item is named, and so is a list longer
    than a grid may be (before any of it is parsed)."""
    if text is None or not text.strip():
        return ()
    items = text.split(",")
    if len(items) > MAX_TUNE_VALUES:
        raise BadInputError(f"at most {MAX_TUNE_VALUES} values (got {len(items):,})", field=flag,
                            hint="each value is a server start; see `qwenops tune --help`")
    values: set[int] = set()
    for item in items:
        try:
            values.add(int(item.strip()))
        except ValueError:
            word = item.strip()
            shown = word if len(word) <= 40 else f"{word[:20]}… ({len(word):,} characters)"
            raise BadInputError(f"{shown!r} is not a whole number", field=flag,
                                hint="a comma-separated list of numbers, e.g. 8,16,32") from None
    return tuple(sorted(values))
