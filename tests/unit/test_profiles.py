"""Profiles: shipped ones validate, extends/precedence work, and bad input gets one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwenops.cli import cli
from qwenops.config.loader import resolve_profile
from qwenops.config.paths import available_profiles
from qwenops.config.profile import Profile
from qwenops.errors import ExitCode, ProfileInvalidError, ProfileNotFoundError

SHIPPED = ["4090d", "4090d-fp8", "4090d-bf16-offload", "cpu-tiny"]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_every_shipped_profile_is_there_and_valid() -> None:
    assert set(SHIPPED) <= set(available_profiles())
    for name in SHIPPED:
        assert isinstance(resolve_profile(name, env={}).profile, Profile)


def test_4090d_is_the_article_flags_on_a_quantized_checkpoint() -> None:
    p = resolve_profile("4090d", env={}).profile
    assert (p.tensor_parallel_size, p.gpu_memory_utilization, p.max_num_seqs, p.max_model_len) == (1, 0.95, 32, 2048)
    assert p.enforce_eager and not p.disable_log_stats  # kept on: status and the stall watchdog read /metrics
    assert (p.port, p.served_model_name) == (8000, "Qwen3-14B")
    assert "AWQ" in p.model and p.quantization == "awq_marlin"
    assert (p.client.temperature, p.client.top_p, p.client.max_tokens) == (0.8, 0.9, 512)


def test_extends_inherits_and_overrides() -> None:
    fp8 = resolve_profile("4090d-fp8", env={})
    assert fp8.profile.model == "Qwen/Qwen3-14B-FP8"
    assert fp8.profile.max_num_seqs == 32
    assert fp8.sources["model"] == "profile 4090d-fp8.yaml"
    assert fp8.sources["max_num_seqs"] == "profile 4090d.yaml"
    offload = resolve_profile("4090d-bf16-offload", env={}).profile
    assert offload.quantization is None  # `null` in the child removes the parent's value
    assert offload.cpu_offload_gb == 12


def test_precedence_cli_over_env_over_profile_over_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_text("QWENOPS_PORT=9001\nQWENOPS_MAX_MODEL_LEN=1024\n")
    monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
    monkeypatch.setenv("QWENOPS_MAX_MODEL_LEN", "4096")
    r = resolve_profile("4090d", cli_overrides={"max_num_seqs": "8"})
    assert (r.profile.max_num_seqs, r.sources["max_num_seqs"]) == (8, "command line")
    assert (r.profile.max_model_len, r.sources["max_model_len"]) == (4096, "environment QWENOPS_MAX_MODEL_LEN")
    assert (r.profile.port, r.sources["port"]) == (9001, f"env file {env_file}")
    assert (r.profile.gpu_memory_utilization, r.sources["gpu_memory_utilization"]) == (0.95, "profile 4090d.yaml")
    assert (r.profile.max_num_batched_tokens, r.sources["max_num_batched_tokens"]) == (None, "default")


def test_show_sources_and_secret_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-very-secret")
    monkeypatch.setenv("QWENOPS_PORT", "8123")
    code, out, err = run("profiles", "show", "4090d", "--sources", "--set", "max_num_seqs=4")
    assert code == 0, err
    assert "sk-very-secret" not in out + err
    assert "***" in out
    assert "environment QWENOPS_PORT" in out and "command line" in out
    code, out, _ = run("profiles", "show", "4090d", "--json")
    assert "sk-very-secret" not in out
    assert json.loads(out)["data"]["api_key"] == "***"


def test_a_secret_in_a_profiles_env_is_shown_masked_and_the_process_gets_it(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile's env may carry HF_TOKEN for a gated repo: `profiles show` (text, --json) and `serve --dry-run`
    printed it whole (audit 8). Shown as ***; names that are no secret stay readable; the server still gets it."""
    from qwenops.serve.run import child_env, plan_serve

    directory = tmp_path / "profiles"
    write_profile(directory, "gated", "extends: cpu-tiny\nenv:\n  HF_TOKEN: hf_SECRETSECRET\n  AWS_SECRET_ACCESS_KEY: "
                  "aws-SECRET\n  OMP_NUM_THREADS: '2'\n  HTTPS_PROXY: http://corp:Hunter2pw@proxy:3128\n"
                  "  GITHUB_PAT: ghp_x\n")
    env = {"QWENOPS_PROFILES_DIR": str(directory)}
    for args in (["profiles", "show", "gated"], ["profiles", "show", "gated", "--json"],
                 ["serve", "-p", "gated", "--dry-run"], ["serve", "-p", "gated", "--dry-run", "--json"]):
        code, out, err = run(*args, env=env)
        assert code == 0, err
        assert [s for s in ("hf_SECRETSECRET", "aws-SECRET", "Hunter2pw", "ghp_x") if s in out + err] == [], args
        assert "HF_TOKEN" in out and "***" in out, args
    code, out, _ = run("profiles", "show", "gated", "--json", env=env)
    assert json.loads(out)["data"]["values"]["env"]["OMP_NUM_THREADS"] == "2"
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(directory))
    plan = plan_serve("gated")
    child = child_env(plan, "sk-key", {"PATH": "/bin", "QWENOPS_API_KEY": "sk-key", "QWENOPS_GATEWAY_TOKEN": "gw-tok"})
    assert child["HF_TOKEN"] == "hf_SECRETSECRET" and child["VLLM_API_KEY"] == "sk-key"
    # qwenops' own secrets stay with qwenops: the key goes in as VLLM_API_KEY alone, the gateway's token not at all
    assert "QWENOPS_API_KEY" not in child and "QWENOPS_GATEWAY_TOKEN" not in child


def test_api_key_never_reaches_rendered_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_API_KEY", "sk-very-secret")
    for args in (["render", "flags", "-p", "4090d", "--json"], ["render", "script", "-p", "4090d"]):
        code, out, err = run(*args)
        assert code == 0
        assert "sk-very-secret" not in out + err
        assert "--api-key" not in out


def test_profiles_list_json_names_every_profile() -> None:
    code, out, _ = run("profiles", "list", "--json")
    assert code == 0
    names = [p["name"] for p in json.loads(out)["data"]["profiles"]]
    assert set(SHIPPED) <= set(names)


# ----------------------------------------------------------------------------------------- bad input


def write_profile(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_text(text)


BAD_PROFILES = {
    "syntax": ("model: x\nport: [8000\n", "YAML syntax error at", "bad-syntax.yaml:3"),
    "unknown-key": ("model: x\nmax_num_seq: 4\n", "max_num_seq: unknown key", "did you mean max_num_seqs?"),
    "nested-unknown": ("model: x\nclient:\n  temprature: 0.5\n", "client.temprature", "did you mean temperature?"),
    "gmu-high": ("model: x\ngpu_memory_utilization: 1.5\n", "gpu_memory_utilization: must be > 0.0 and <= 1.0",
                 "1.5"),
    "gmu-zero": ("model: x\ngpu_memory_utilization: 0\n", "gpu_memory_utilization: must be > 0.0", "0"),
    "negative-len": ("model: x\nmax_model_len: -5\n", "max_model_len: must be >= 1", "-5"),
    "tp-zero": ("model: x\ntensor_parallel_size: 0\n", "tensor_parallel_size: must be >= 1", "0"),
    "bad-engine": ("model: x\nengine: tgi\n", "engine: must be one of 'vllm' or 'vllm-cpu'", "tgi"),
    "no-model": ("port: 8000\n", "model: required", ""),
    "not-a-mapping": ("- model\n", "must hold a mapping", ""),
    "api-key-in-args": ("model: x\nextra_args: ['--api-key', 'abc']\n", "extra_args: --api-key must not", ""),
    # vLLM's parser reads `_` as `-` and takes a long option's prefix (audit 8): the same word, spelt otherwise
    "api-key-underscore": ("model: x\nextra_args: ['--api_key', 'abc']\n",
                           "extra_args: --api_key (vLLM reads it as --api-key) must not", ""),
    "api-key-prefix": ("model: x\nextra_args: ['--api-k=abc']\n", "(vLLM reads it as --api-key) must not", ""),
    "host-prefix": ("model: x\nextra_args: ['--hos', '0.0.0.0', '--por', '9999']\n",
                    "extra_args: --hos (vLLM reads it as --host) has its own profile field; set `host:`", ""),
    "tp-short": ("model: x\nextra_args: ['-tp', '2']\n", "-tp (vLLM reads it as --tensor-parallel-size)", ""),
    "no-enforce-eager": ("model: x\nextra_args: ['--no-enforce-eager']\n", "set `enforce_eager:`", ""),
    # the key and the gateway's token have one route each, never a profile (audit 8: serve dropped this one silently)
    "vllm-api-key-env": ("model: x\nenv:\n  VLLM_API_KEY: abc\n",
                         "VLLM_API_KEY must not be written in a profile (profiles are shown and rendered); set "
                         "QWENOPS_API_KEY", ""),
    "gateway-token-env": ("model: x\nenv:\n  QWENOPS_GATEWAY_TOKEN: abc\n", "set QWENOPS_GATEWAY_TOKEN in the env", ""),
    "hf-token": ("model: x\nextra_args: ['--hf-token', 'hf_abc']\n", "set HF_TOKEN in the env file", ""),
    "uds": ("model: x\nextra_args: ['--uds', '/tmp/v.sock']\n", "moves vLLM's listener off", ""),
    "model-again": ("model: x\nextra_args: ['--model', '/other']\n", "set `model:` instead", ""),
    "config-file": ("model: x\nextra_args: ['--config', '/tmp/v.yaml']\n",
                    "--config is a file of options that bypasses the profile's checks", ""),
    "loop": ("extends: bad-loop\nmodel: x\n", "'extends' loops", ""),
    "missing-parent": ("extends: ghost\nmodel: x\n", "extends unknown profile 'ghost'", ""),
    "duplicate-key": ("model: x\nport: 8000\nport: 9000\n", "YAML error at", "key 'port' is given twice"),
    "list-key": ("model: x\n? [a, b]\n: 1\n", "YAML error at", "a key is a list or a mapping, not a name"),
    "mapping-key": ("model: x\nenv:\n  ? {a: 1}\n  : 1\n", "YAML error at", "a key is a list or a mapping"),
    "huge-len": ("model: x\nmax_model_len: 99999999999999999999999\n", "max_model_len: must be >= 1 and <= 1000000000",
                 "99999999999999999999999"),
    "inf-offload": ("model: x\ncpu_offload_gb: .inf\n", "cpu_offload_gb: ", ""),
    "nan-timeout": ("model: x\nsupervise:\n  drain_timeout_s: .nan\n", "supervise.drain_timeout_s: ", ""),
    "nested-deep": ("model: " + "[" * 5000 + "\n", "error", ""),
}


def write_bytes_profile(directory: Path, name: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.yaml").write_bytes(data)


@pytest.mark.parametrize(("data", "expected"), [
    (bytes(range(256)) * 4, "is not UTF-8 text"),
    (b"model: x\n" + b"# padding\n" * 120_000, "is larger than 1024 KiB"),
])
def test_unreadable_profile_file_is_bad_input_and_listed_beside_the_rest(data: bytes, expected: str,
                                                                        tmp_path: Path) -> None:
    directory = tmp_path / "profiles"
    write_bytes_profile(directory, "junk", data)
    env = {"QWENOPS_PROFILES_DIR": str(directory)}
    code, out, err = run("render", "flags", "--profile", "junk", env=env)
    assert code == ExitCode.BAD_INPUT and out == "" and expected in err and err.count("\n") == 1, err
    code, out, err = run("profiles", "list", "--json", env=env)
    assert code == ExitCode.BAD_INPUT
    rows = {p["name"]: p for p in json.loads(out)["data"]["profiles"]}
    assert expected in rows["junk"]["problem"]
    assert all(rows[name]["problem"] is None for name in SHIPPED)


def test_a_profile_without_description_lists_blank_not_invalid(tmp_path: Path) -> None:
    directory = tmp_path / "profiles"
    write_profile(directory, "plain", "model: x\n")
    env = {"QWENOPS_PROFILES_DIR": str(directory)}
    code, out, err = run("profiles", "list", env=env)
    assert code == ExitCode.OK, err
    line = next(line for line in out.splitlines() if line.split()[:1] == ["plain"])
    assert "INVALID" not in line
    code, out, _ = run("profiles", "list", "--json", env=env)
    assert code == ExitCode.OK
    plain = next(p for p in json.loads(out)["data"]["profiles"] if p["name"] == "plain")
    assert (plain["problem"], plain["description"]) == (None, "")


def test_an_extends_chain_is_bounded_in_depth(tmp_path: Path) -> None:
    """Audit 7: a chain of 1,000 profiles was a RecursionError, exit 4 in `profiles list` (and a wrong-cause error
    in `render`). A chain deeper than MAX_EXTENDS_DEPTH is that profile's one-line problem; a shallow one loads."""
    directory = tmp_path / "profiles"
    for i in range(200):
        write_profile(directory, f"p{i}", f"extends: p{i + 1}\n" if i < 199 else "model: x\n")
    env = {"QWENOPS_PROFILES_DIR": str(directory)}
    code, _, err = run("render", "flags", "--profile", "p0", env=env)
    assert code == ExitCode.BAD_INPUT and "extends more than 32 profiles deep" in err and len(err.splitlines()) == 1
    code, out, err = run("profiles", "list", "--json", env=env)
    assert code in (ExitCode.OK, ExitCode.BAD_INPUT) and "Traceback" not in err and "internal error" not in err
    problems = {p["name"]: p["problem"] for p in json.loads(out)["data"]["profiles"]}
    assert problems["p199"] is None and problems["p170"] is None and "32 profiles deep" in problems["p0"]


@pytest.mark.parametrize("case", sorted(BAD_PROFILES))
def test_bad_profile_gives_one_line_and_exit_2(case: str, tmp_path: Path) -> None:
    text, expected, detail = BAD_PROFILES[case]
    directory = tmp_path / "profiles"
    write_profile(directory, f"bad-{case}", text)
    code, out, err = run("render", "flags", "--profile", f"bad-{case}", env={"QWENOPS_PROFILES_DIR": str(directory)})
    assert code == ExitCode.BAD_INPUT
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expected in err and detail in err
    assert "Traceback" not in err


def test_extra_args_refuse_every_option_vllm_0_32_stores_in_a_protected_setting_and_no_other() -> None:
    """The extra_args rule reads words as vLLM's parser does (prefixes, `_`, `--no-`, short forms), held to vLLM's own
    table of option strings and the settings they store (audit 9 found an alias, `--device-memory-utilization`, a
    short prefix, `-t`, `--model`, `--uds` and `--hf-token`): every option whose setting a field owns, or that is the
    key, a secret, the model or the listener, is refused; no other option is (a real flag that only shares a prefix
    with a field's passes)."""
    import json

    from qwenops.config.profile import VLLM_FLAG_FIELDS, vllm_option

    dests = json.loads((Path(__file__).parent.parent / "data" / "vllm_serve_flags.json").read_text())["dests"]
    protected = {*VLLM_FLAG_FIELDS, "api_key", "hf_token", "model", "uds", "config"}
    wrong = {option: (dest, vllm_option(option)) for option, dest in dests.items()
             if (dest in protected) != (vllm_option(option) is not None) and option not in ("-h", "--help")}
    assert wrong == {}
    for word in ("-t", "-tp=2", "-tp2", "-qawq", "--device-m", "--hf_token=x", "--mod", "--ud"):
        assert vllm_option(word) is not None, word


def test_unknown_profile_lists_the_available_ones() -> None:
    code, _, err = run("render", "flags", "--profile", "4090")
    assert code == ExitCode.BAD_INPUT
    assert "unknown profile '4090'; available: 4090d, 4090d-bf16-offload, 4090d-fp8, cpu-tiny" in err


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"QWENOPS_PORT": "eighty"}, "port: Input should be a valid integer"),
        ({"QWENOPS_PORT": "70000"}, "port: must be >= 1 and <= 65535 (got '70000' from environment QWENOPS_PORT)"),
        ({"QWENOPS_GPU_MEMORY_UTILIZATION": "95"}, "from environment QWENOPS_GPU_MEMORY_UTILIZATION"),
    ],
)
def test_bad_environment_value_names_the_variable(env: dict[str, str], expected: str) -> None:
    code, _, err = run("render", "flags", "--profile", "4090d", env=env)
    assert code == ExitCode.BAD_INPUT
    assert expected in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("max_num_seq=4", "did you mean max_num_seqs?"),
        ("max_num_seqs", "expected FIELD=VALUE"),
        ("max_num_seqs=0", "max_num_seqs: must be >= 1 and <= 1000000000 (got '0' from command line)"),
    ],
)
def test_bad_set_override(arg: str, expected: str) -> None:
    code, _, err = run("render", "flags", "-p", "4090d", "--set", arg)
    assert code == ExitCode.BAD_INPUT
    assert expected in err


def test_errors_raise_typed_exceptions_for_library_users() -> None:
    with pytest.raises(ProfileNotFoundError):
        resolve_profile("nope", env={})
    with pytest.raises(ProfileInvalidError):
        resolve_profile("4090d", env={}, cli_overrides={"max_num_batched_tokens": "8", "max_num_seqs": "32"})


def test_rejected_secrets_are_never_echoed(tmp_path: Path) -> None:
    directory = tmp_path / "profiles"
    write_profile(directory, "leaky-args", "model: x\nextra_args: ['--api-key=sk-in-args']\n")
    write_profile(directory, "leaky-env", "model: x\nenv: {HF_TOKEN: hf_SECRET, 'bad name': x}\n")
    write_profile(directory, "leaky-whole", "model: x\nenv: {HF_TOKEN: hf_SECRET}\nmax_num_seqs: 8\n"
                  "max_num_batched_tokens: 4\n")
    for name in ("leaky-args", "leaky-env", "leaky-whole"):
        code, out, err = run("render", "flags", "-p", name, env={"QWENOPS_PROFILES_DIR": str(directory)})
        assert code == ExitCode.BAD_INPUT, err
        assert "sk-in-args" not in out + err and "hf_SECRET" not in out + err
        assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model: x\nport: true\n", "port: must be a number, not true"),
        ("model: x\nmax_num_seqs: false\n", "max_num_seqs: must be a number, not false"),
        ("model: ''\n", "model: String should have at least 1 character"),
    ],
)
def test_booleans_and_empty_names_are_rejected(text: str, expected: str, tmp_path: Path) -> None:
    write_profile(tmp_path / "p", "odd", text)
    code, _, err = run("render", "flags", "-p", "odd", env={"QWENOPS_PROFILES_DIR": str(tmp_path / "p")})
    assert code == ExitCode.BAD_INPUT
    assert expected in err


def test_empty_served_name_from_environment_counts_as_unset() -> None:
    code, out, err = run("render", "flags", "-p", "4090d", env={"QWENOPS_SERVED_MODEL_NAME": ""})
    assert code == ExitCode.OK, err
    assert "--served-model-name Qwen3-14B" in out  # the profile's value, as if the variable were not set


def test_missing_profiles_dir_is_bad_input(tmp_path: Path) -> None:
    code, _, err = run("render", "flags", "-p", "4090d", env={"QWENOPS_PROFILES_DIR": str(tmp_path / "nope")})
    assert code == ExitCode.BAD_INPUT
    assert err.startswith("error: QWENOPS_PROFILES_DIR: ") and "is not a directory" in err


def test_unreadable_env_file_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "q.env"
    env_file.write_bytes(b"QWENOPS_PORT=\xff\xfe\n")
    monkeypatch.setenv("QWENOPS_ENV_FILE", str(env_file))
    for args in (["render", "flags", "-p", "4090d"], ["profiles", "show", "4090d"]):
        code, _, err = run(*args)
        assert code == ExitCode.BAD_INPUT, err
        assert err.startswith("error: QWENOPS_ENV_FILE: cannot read env file")


def test_profiles_list_shows_a_broken_profile_beside_the_good_ones(tmp_path: Path) -> None:
    write_profile(tmp_path / "p", "broken", "model: x\nport: 0\n")
    code, out, _ = run("profiles", "list", "--json", env={"QWENOPS_PROFILES_DIR": str(tmp_path / "p")})
    assert code == ExitCode.BAD_INPUT
    doc = json.loads(out)
    rows = {p["name"]: p for p in doc["data"]["profiles"]}
    assert rows["broken"]["problem"].startswith("port: must be >= 1")
    assert rows["4090d"]["problem"] is None and rows["4090d"]["engine"] == "vllm"
    assert doc["errors"][0]["field"] == "broken"


# The check without pydantic (profile._checked) and the pydantic models built from the same fields
# (profile._models) must agree: on what is valid, on every value, and the supervise mirror on
# SupervisorOptions' fields.

def test_the_supervise_mirror_has_supervisor_options_fields() -> None:
    import dataclasses
    import typing

    from qwenops.config import profile as schema
    from qwenops.supervisor.options import SupervisorOptions

    mirror = {f.name: f for f in dataclasses.fields(schema._Supervise)}
    hints = typing.get_type_hints(schema._Supervise)
    assert list(mirror) == list(SupervisorOptions.model_fields)
    for name, info in SupervisorOptions.model_fields.items():
        bounds = {key: getattr(meta, key) for meta in info.metadata for key in ("gt", "ge", "le", "lt")
                  if getattr(meta, key, None) is not None}
        assert (hints[name], mirror[name].default, mirror[name].metadata.get("bounds", {})) == (
            info.annotation, info.default, bounds), name


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("change", [{}, {"port": 9000, "max_num_seqs": 4, "supervise": {"drain_timeout_s": 3}},
                                    {"client": {"temperature": 1}, "extra_args": ["--seed", "1"]}])
def test_plainly_valid_profiles_need_no_pydantic_and_equal_its_result(name: str, change: dict[str, object]) -> None:
    from qwenops.config import profile as schema
    from qwenops.config.loader import _load_chain

    data, _, _ = _load_chain(name, available_profiles())
    data = {**data, **change}
    plain = schema._plainly_valid(data)
    assert plain is not None
    checked = schema._from_model(schema._models().model_validate(data))
    assert plain == checked and plain.model_dump(mode="json") == checked.model_dump(mode="json")
    assert plain.supervise == checked.supervise


def test_values_pydantic_would_coerce_go_through_pydantic() -> None:
    from qwenops.config import profile as schema

    data = {"name": "p", "model": "m", "port": "9000", "gpu_memory_utilization": 1, "enforce_eager": "yes"}
    assert schema._plainly_valid(data) is None
    profile = schema.validate_profile(data, origin="p.yaml")
    assert (profile.port, profile.gpu_memory_utilization, profile.enforce_eager) == (9000, 1.0, True)


_ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
    | st.sampled_from(["", "a b", "x\ny", "x\r", "%h", "$X", "vllm", "vllm-cpu", "awq", "qwen3", "bfloat16",
                       "fp8", "::1", "0.0.0.0", "a" * 80]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(
    st.sampled_from(["name", "description", "model", "served_model_name", "host", "port", "max_num_seqs",
                     "max_model_len", "max_num_batched_tokens", "gpu_memory_utilization", "enforce_eager",
                     "dtype", "quantization", "kv_cache_dtype", "cpu_offload_gb", "reasoning_parser",
                     "extra_args", "env", "client", "requirements", "supervise", "engine", "unknown"]),
    _ANY_VALUE, max_size=4))
def test_whatever_the_check_without_pydantic_accepts_pydantic_accepts_the_same(changes: dict[str, object]) -> None:
    # Hostile input: the fast path may only ever say "valid" where pydantic says valid with the same values;
    # anything else it leaves to pydantic (which then refuses or coerces, as before).
    from pydantic import ValidationError

    from qwenops.config import profile as schema

    data = {"name": "p", "model": "m", **changes}
    plain = schema._plainly_valid(data)
    if plain is None:
        return
    try:
        checked = schema._from_model(schema._models().model_validate(data))
    except (ValidationError, ValueError) as exc:
        raise AssertionError(f"accepted without pydantic, refused by it: {data!r}: {exc}") from None
    assert plain.model_dump(mode="json") == checked.model_dump(mode="json")
    assert plain.supervise == checked.supervise
