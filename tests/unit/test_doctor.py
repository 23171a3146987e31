"""doctor: every check against every recorded host (golden verdicts), the --json contract, bad probe
files, and a live run on this host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.doctor.checks import CHECKS, check_model, diagnose
from qwenops.hardware.facts import load_facts
from qwenops.modelinfo import inspect_model_dir, resolve_model
from tests.unit.shards import safetensors_bytes

PROBES = Path(__file__).resolve().parents[1] / "data" / "probes"
FIXTURES = sorted(p.stem for p in PROBES.glob("*.json"))
CHECK_NAMES = ["gpu", "gpu_model", "gpu_memory", "cuda_driver", "driver_vs_torch", "engine", "gpu_free_memory", "ram",
               "system_disk", "data_disk", "model", "port", "shm", "open_files", "memory_plan"]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_every_required_fixture_is_recorded() -> None:
    assert {"rtx4090d-cuda124", "rtx4090-cuda122", "h100-80gb", "no-driver", "gpu-lost",
            "undersized-host"} <= set(FIXTURES)
    for name in FIXTURES:
        assert load_facts(PROBES / f"{name}.json").source_note, f"{name} must say where its facts come from"


@pytest.mark.parametrize("fixture", FIXTURES)
def test_verdicts_match_golden(fixture: str, golden: Any) -> None:
    result = invoke("doctor", "--profile", "4090d", "--probe-file", str(PROBES / f"{fixture}.json"), "--json")
    doc = json.loads(result.stdout)
    data = doc["data"]
    assert result.exit_code == (0 if data["ok"] else 1)
    assert [c["name"] for c in data["checks"]] == CHECK_NAMES
    verdicts = {"ok": data["ok"], "counts": data["counts"],
                "checks": [{k: c[k] for k in ("name", "status", "finding", "fix")} for c in data["checks"]]}
    golden(f"doctor/{fixture}.json", json.dumps(verdicts, indent=2) + "\n")


def test_reference_box_is_ready_and_the_broken_ones_say_why() -> None:
    def statuses(fixture: str) -> dict[str, str]:
        facts = load_facts(PROBES / f"{fixture}.json")
        report = diagnose(facts, load_profile("4090d"), resolve_model("Qwen/Qwen3-14B-AWQ"))
        return {c.name: c.status for c in report.checks}

    assert {k: v for k, v in statuses("rtx4090d-cuda124").items() if v != "pass"} == {"model": "warn"}
    assert statuses("no-driver")["gpu"] == "fail"
    assert statuses("gpu-lost")["gpu"] == "fail"
    old = statuses("rtx4090-cuda122")
    assert old["cuda_driver"] == old["gpu_free_memory"] == old["gpu_model"] == "fail"
    assert old["driver_vs_torch"] == "warn"  # 12.4 build on a 12.2 driver: minor-version compatibility
    small = statuses("undersized-host")
    assert small["ram"] == small["system_disk"] == small["data_disk"] == small["port"] == "fail"
    assert small["shm"] == small["open_files"] == "warn"
    assert statuses("h100-80gb")["gpu_model"] == "fail"  # the 4090d profile states its GPU; an H100 is not it


def test_text_report_matches_golden(golden: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    result = invoke("doctor", "--profile", "4090d", "--probe-file", str(PROBES / "rtx4090-cuda122.json"))
    assert result.exit_code == 1
    assert result.stderr == ""
    golden("doctor/rtx4090-cuda122.txt", result.stdout.replace(str(PROBES), "tests/data/probes"))


def test_json_contract() -> None:
    result = invoke("doctor", "--profile", "4090d", "--probe-file", str(PROBES / "rtx4090d-cuda124.json"), "--json")
    doc = json.loads(result.stdout)
    assert list(doc) == ["qwenops", "command", "ok", "data", "errors"]
    assert doc["command"] == "doctor"
    assert doc["ok"] is True and result.exit_code == 0
    assert set(doc["data"]) >= {"profile", "ok", "counts", "checks", "plan"}
    plan = doc["data"]["plan"]
    assert plan["fits"] is True and plan["kv_bytes_per_token"] == 163840
    for check in doc["data"]["checks"]:
        assert check["status"] in ("pass", "warn", "fail", "skip")
        assert check["finding"]


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"schema": "something/else"}', "probe-file.schema"),
        ("[1, 2]", "probe-file.schema"),
        ("{not json", "probe-file"),
        ('{"schema": "qwenops.hostfacts/1", "gpu": {}, "software": {"python": "3.11"}}', "probe-file.host"),
        ('{"schema": "qwenops.hostfacts/1", "gpu": {"devices": [{"index": "zero"}]}, "host": {}, "software": {}}',
         "probe-file.gpu.devices.0.index"),
    ],
)
def test_bad_probe_file_is_exit_2_naming_the_field(tmp_path: Path, content: str, field: str) -> None:
    path = tmp_path / "probe.json"
    path.write_text(content)
    result = invoke("doctor", "--profile", "4090d", "--probe-file", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"error: {field}:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_missing_probe_file_and_unknown_profile_are_exit_2(tmp_path: Path) -> None:
    missing = invoke("doctor", "--profile", "4090d", "--probe-file", str(tmp_path / "nope.json"), "--json")
    assert missing.exit_code == 2
    assert json.loads(missing.stdout)["errors"][0]["field"] == "probe-file"
    unknown = invoke("doctor", "--profile", "nope")
    assert unknown.exit_code == 2 and "profile" in unknown.stderr


def test_save_probe_then_replay_gives_the_same_verdicts(tmp_path: Path) -> None:
    saved = tmp_path / "facts.json"
    live = invoke("doctor", "--profile", "4090d", "--save-probe", str(saved), "--json")
    replay = invoke("doctor", "--profile", "4090d", "--probe-file", str(saved), "--json")
    checks = [json.loads(r.stdout)["data"]["checks"] for r in (live, replay)]
    # Free disk space may move between the two runs; the verdicts may not.
    assert [(c["name"], c["status"]) for c in checks[0]] == [(c["name"], c["status"]) for c in checks[1]]
    assert live.exit_code == replay.exit_code


def test_doctor_runs_end_to_end_on_this_host() -> None:
    """A real subprocess on this machine: every check runs; no GPU is one clear failure, not a crash."""
    done = subprocess.run([sys.executable, "-m", "qwenops", "doctor", "--profile", "4090d", "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in done.stderr
    doc = json.loads(done.stdout)
    checks = {c["name"]: c for c in doc["data"]["checks"]}
    assert len(checks) == len(CHECKS)
    facts_gpu = checks["gpu"]
    if facts_gpu["status"] == "fail":
        assert done.returncode == 1
        assert facts_gpu["finding"] and facts_gpu["fix"]
    for name in ("ram", "system_disk", "port", "shm", "open_files"):
        assert checks[name]["status"] in ("pass", "warn", "fail"), f"{name} did not run"


def test_model_directory_checks(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3ForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "hidden_size": 64, "intermediate_size": 128,
        "vocab_size": 1000, "max_position_embeddings": 512,
    }))
    (model / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (model / "model-00001-of-00002.safetensors").write_bytes(safetensors_bytes(1024))
    facts = load_facts(PROBES / "no-driver.json")
    report = diagnose(facts, load_profile("cpu-tiny"), inspect_model_dir(model))
    result = next(c for c in report.checks if c.name == "model")
    assert result.status == "fail"
    assert "1 of 2 shards missing (model-00002-of-00002.safetensors)" in result.finding
    assert "no tokenizer" in result.finding and "no chat template" in result.finding

    (model / "model-00002-of-00002.safetensors").write_bytes(safetensors_bytes(1024))
    (model / "tokenizer.json").write_text("{}")
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    ok = diagnose(facts, load_profile("cpu-tiny"), inspect_model_dir(model))
    assert next(c for c in ok.checks if c.name == "model").status == "pass"
    # The CPU engine needs no GPU: a host without a driver is not a failure for cpu-tiny.
    assert next(c for c in ok.checks if c.name == "gpu").status == "skip"


def test_missing_model_is_a_finding_not_an_abort() -> None:
    facts = load_facts(PROBES / "no-driver.json")
    report = diagnose(facts, load_profile("cpu-tiny"), None, model_error="model: /x is not a directory")
    assert check_model in CHECKS
    result = next(c for c in report.checks if c.name == "model")
    assert result.status == "fail" and "/x is not a directory" in result.finding


@pytest.mark.parametrize(
    ("args", "forbidden"),
    [
        (["doctor", "--help"], ("torch", "vllm", "transformers", "fastapi", "pynvml", "psutil")),
        (["plan", "--help"], ("torch", "vllm", "transformers", "fastapi", "pynvml", "psutil")),
        (["plan", "--profile", "4090d", "--gpu-total-gib", "24"], ("torch", "vllm", "transformers", "pynvml")),
        # doctor's probe is the one place NVML is loaded; the engine never is.
        (["doctor", "--profile", "4090d", "--json"], ("torch", "vllm", "transformers", "fastapi")),
    ],
)
def test_doctor_and_plan_stay_light(args: list[str], forbidden: tuple[str, ...]) -> None:
    probe = (
        "import sys, json\nfrom qwenops.cli import cli\ntry:\n"
        f"    cli.main({args!r}, prog_name='qwenops', standalone_mode=False)\n"
        "except SystemExit:\n    pass\n"
        f"print(json.dumps([m for m in {forbidden!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_a_probe_of_another_port_does_not_judge_this_profiles_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWENOPS_PORT", "9000")
    result = invoke("doctor", "--profile", "4090d", "--probe-file", str(PROBES / "undersized-host.json"), "--json")
    port = next(c for c in json.loads(result.stdout)["data"]["checks"] if c["name"] == "port")
    assert port["status"] == "skip" and "9000" in port["finding"]


def test_save_probe_to_an_unwritable_place_is_exit_2(tmp_path: Path) -> None:
    result = invoke("doctor", "--profile", "4090d", "--save-probe", str(tmp_path / "no" / "such" / "dir.json"))
    assert result.exit_code == 2
    assert "save-probe" in result.stderr and "Traceback" not in result.stderr
    assert f"(create {tmp_path / 'no' / 'such'} first, or choose another FILE)" in result.stderr


def test_torch_built_for_a_newer_cuda_major_than_the_driver_fails() -> None:
    facts = load_facts(PROBES / "rtx4090d-cuda124.json")
    old_driver = facts.model_copy(update={"gpu": facts.gpu.model_copy(
        update={"driver_version": "470.256.02", "cuda_driver_version": "11.4"})})
    report = diagnose(old_driver, load_profile("4090d"), resolve_model("Qwen/Qwen3-14B-AWQ"))
    result = next(c for c in report.checks if c.name == "driver_vs_torch")
    assert result.status == "fail"
    assert "built for CUDA 12.4 but the driver supports only 11.4" in result.finding


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    ctx = click.Context(group)
    found: list[tuple[str, click.Command]] = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)  # the root group loads its subcommands lazily
        assert command is not None
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found += _commands(command, f"{prefix}{name} ")
    return found


def test_every_command_with_profile_takes_the_short_p() -> None:
    missing = [name for name, command in _commands(cli)
               for param in command.params
               if isinstance(param, click.Option) and "--profile" in param.opts and "-p" not in param.opts]
    assert missing == []


def test_doctor_and_plan_accept_p() -> None:
    probe = str(PROBES / "rtx4090d-cuda124.json")
    doctor = invoke("doctor", "-p", "4090d", "--probe-file", probe, "--json")
    assert json.loads(doctor.stdout)["data"]["profile"] == "4090d"
    planned = invoke("plan", "-p", "4090d", "--probe-file", probe, "--vllm-version", "0.8.5", "--json")
    assert planned.exit_code == 0, planned.stderr
    assert json.loads(planned.stdout)["data"]["kv_tokens"] > 0


def test_a_busy_gpu_does_not_fail_a_cpu_profile() -> None:
    result = invoke("doctor", "-p", "cpu-tiny", "--probe-file", str(PROBES / "rtx4090-cuda122.json"), "--json")
    free = next(c for c in json.loads(result.stdout)["data"]["checks"] if c["name"] == "gpu_free_memory")
    assert free["status"] == "skip" and "CPU" in free["finding"]
    # The same busy GPU still fails a GPU profile.
    result = invoke("doctor", "-p", "4090d", "--probe-file", str(PROBES / "rtx4090-cuda122.json"), "--json")
    free = next(c for c in json.loads(result.stdout)["data"]["checks"] if c["name"] == "gpu_free_memory")
    assert free["status"] == "fail"


@pytest.mark.parametrize(
    ("section", "key", "value", "field"),
    [
        ("device", "memory_total_mib", -5, "probe-file.gpu.devices.0.memory_total_mib"),
        ("device", "memory_total_mib", 0, "probe-file.gpu.devices.0.memory_total_mib"),
        ("device", "memory_free_mib", -1, "probe-file.gpu.devices.0.memory_free_mib"),
        ("device", "memory_total_mib", "NaN", "probe-file.gpu.devices.0.memory_total_mib"),
        ("host", "ram_total_gib", -3, "probe-file.host.ram_total_gib"),
        ("host", "cpu_count", 0, "probe-file.host.cpu_count"),
        # Each plausible alone, impossible on a 24,564 MiB card (the fixture's used 420 MiB + free 24,144 MiB).
        ("device", "memory_used_mib", 1e9, "probe-file.gpu.devices.0.memory_used_mib"),
        ("device", "memory_free_mib", 1e7, "probe-file.gpu.devices.0.memory_free_mib"),
        ("device", "memory_free_mib", 24_144 + 2_000, "probe-file.gpu.devices.0.memory_free_mib"),
        # Finite and positive, but past any card (it was refused only by the planner's arithmetic, as gpu_total_gib).
        ("device", "memory_total_mib", 1e300, "probe-file.gpu.devices.0.memory_total_mib"),
        # Audit 6: numbers are numbers (True was 1, "12.4" was 12.4), bounded above; versions are digits and dots
        # (5,000 digits, or a superscript "²", reached int() as exit 4).
        ("host", "ram_total_gib", True, "probe-file.host.ram_total_gib"),
        ("host", "ram_total_gib", "12.4", "probe-file.host.ram_total_gib"),
        ("host", "ram_total_gib", 10**300, "probe-file.host.ram_total_gib"),
        ("gpu", "cuda_driver_version", "9" * 5000, "probe-file.gpu.cuda_driver_version"),
        ("gpu", "cuda_driver_version", "12.\u00b2", "probe-file.gpu.cuda_driver_version"),
        ("software", "torch_cuda", "12.4\n", "probe-file.software.torch_cuda"),
        ("device", "compute_cap", "8.9x", "probe-file.gpu.devices.0.compute_cap"),
    ],
)
@pytest.mark.parametrize("command", ["doctor", "plan"])
def test_nonsense_numbers_in_a_probe_are_exit_2_naming_the_field(
    tmp_path: Path, command: str, *, section: str, key: str, value: object, field: str,
) -> None:
    raw = json.loads((PROBES / "rtx4090d-cuda124.json").read_text())
    {"device": raw["gpu"]["devices"][0], "host": raw["host"], "gpu": raw["gpu"], "software": raw["software"]}[
        section][key] = value
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(raw))  # json.dumps writes NaN, as a hand edit or another tool might
    result = invoke(command, "-p", "4090d", "--probe-file", str(path))
    assert result.exit_code == 2, result.stderr
    assert f"error: {field}:" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unlimited_open_files_is_not_read_as_minus_one() -> None:
    facts = load_facts(PROBES / "rtx4090d-cuda124.json")
    unlimited = facts.model_copy(update={"host": facts.host.model_copy(update={"nofile_hard": -1})})
    report = diagnose(unlimited, load_profile("4090d"), resolve_model("Qwen/Qwen3-14B-AWQ"))
    check = next(c for c in report.checks if c.name == "open_files")
    assert check.status == "pass" and "unlimited" in check.finding


def _tiny_model(directory: Path, *, complete: bool) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps({
        "architectures": ["Qwen3ForCausalLM"], "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "hidden_size": 64, "intermediate_size": 128,
        "vocab_size": 1000, "max_position_embeddings": 512,
    }))
    (directory / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    (directory / "model-00001-of-00002.safetensors").write_bytes(safetensors_bytes(1024))
    if complete:
        (directory / "model-00002-of-00002.safetensors").write_bytes(safetensors_bytes(1024))
        (directory / "tokenizer.json").write_text("{}")
        (directory / "chat_template.jinja").write_text("{{ messages }}")


def _check(result: Any, name: str) -> dict[str, Any]:
    checks: list[dict[str, Any]] = json.loads(result.stdout)["data"]["checks"]
    return next(c for c in checks if c["name"] == name)


def test_a_replay_judges_the_probed_hosts_model_not_this_ones(tmp_path: Path) -> None:
    model_dir = tmp_path / "state" / "models" / "qwen3-tiny"  # cpu-tiny's model under the test's state dir
    _tiny_model(model_dir, complete=False)
    saved = tmp_path / "customer.json"
    live = invoke("doctor", "-p", "cpu-tiny", "--save-probe", str(saved), "--json")
    assert _check(live, "model")["status"] == "fail"
    recorded = json.loads(saved.read_text())["model"]
    assert recorded["requested"] == "{state_dir}/models/qwen3-tiny"
    assert recorded["info"]["shards"]["missing"] == ["model-00002-of-00002.safetensors"]

    _tiny_model(model_dir, complete=True)  # this machine's copy is now fine; the customer's is not
    assert _check(invoke("doctor", "-p", "cpu-tiny", "--json"), "model")["status"] == "pass"
    replay = invoke("doctor", "-p", "cpu-tiny", "--probe-file", str(saved), "--json")
    model = _check(replay, "model")
    assert model["status"] == "fail" and "1 of 2 shards missing" in model["finding"]

    other = invoke("doctor", "-p", "4090d", "--probe-file", str(saved), "--json")
    model = _check(other, "model")
    assert model["status"] == "skip"
    assert "'{state_dir}/models/qwen3-tiny', not 'Qwen/Qwen3-14B-AWQ'" in model["finding"]


def test_a_probe_without_model_facts_does_not_borrow_this_machines_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # This machine has the 4090d model downloaded (a tiny stand-in under the HF cache layout).
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    repo = tmp_path / "hf" / "hub" / "models--Qwen--Qwen3-14B-AWQ"
    _tiny_model(repo / "snapshots" / "abc", complete=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    assert resolve_model("Qwen/Qwen3-14B-AWQ").is_directory

    replay = invoke("doctor", "-p", "4090d", "--probe-file", str(PROBES / "rtx4090d-cuda124.json"), "--json")
    model = _check(replay, "model")
    assert model["status"] == "skip" and "no model facts" in model["finding"]
    plan = json.loads(replay.stdout)["data"]["plan"]
    assert plan["weights_gib"] > 9  # planned from the catalog's Qwen3-14B-AWQ, not the 2 KiB stand-in here

def _port_check(port: dict[str, object], host: str = "0.0.0.0") -> tuple[str, str]:
    from qwenops.hardware.facts import PortFacts

    facts = load_facts(PROBES / "no-driver.json")
    facts = facts.model_copy(update={"port": PortFacts.model_validate({"host": host, "port": 8000, **port})})
    profile = load_profile("cpu-tiny").model_copy(update={"host": "0.0.0.0", "port": 8000})
    result = next(c for c in diagnose(facts, profile, None).checks if c.name == "port")
    return result.status, result.finding


def test_a_port_that_cannot_be_bound_is_not_reported_as_taken() -> None:
    status, finding = _port_check({"free": False, "error": "cannot bind 0.0.0.0:8000: Cannot assign requested address"})
    assert status == "fail" and "taken" not in finding and "Cannot assign requested address" in finding


def test_a_probe_of_another_host_address_is_skipped() -> None:
    status, finding = _port_check({"free": True}, host="10.1.2.3")
    assert status == "skip" and "10.1.2.3:8000" in finding and "0.0.0.0:8000" in finding


DEEP_JSON = [
    "[" * 200_000,  # deeper than Python's own parser goes: a RecursionError inside json
    '{"schema": "qwenops.hostfacts/1", "_source": ' + "[" * 500 + "]" * 500 + "}",  # parses, nests absurdly
]


@pytest.mark.parametrize("content", DEEP_JSON)
@pytest.mark.parametrize("command", ["doctor", "plan"])
def test_a_deeply_nested_probe_file_is_exit_2(tmp_path: Path, command: str, content: str) -> None:
    path = tmp_path / "deep.json"
    path.write_text(content)
    result = invoke(command, "-p", "4090d", "--probe-file", str(path))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: probe-file:") and "levels deep" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["doctor", "plan"])
def test_a_probe_file_is_read_up_to_a_cap(command: str, tmp_path: Path) -> None:
    # /dev/zero never ends and stat says 0 bytes: it is refused as a device; a regular file, by a bounded read.
    result = invoke(command, "-p", "4090d", "--probe-file", "/dev/zero")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: probe-file: /dev/zero is a device, not a probe file")
    assert "--save-probe" in result.stderr
    large = tmp_path / "large.json"
    large.write_bytes(b" " * (4 * 1024 * 1024 + 1))
    result = invoke(command, "-p", "4090d", "--probe-file", str(large))
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: probe-file: {large} is larger than 4 MiB")


def test_probe_file_errors_say_how_to_get_a_good_one(tmp_path: Path) -> None:
    for content in (None, "{not json", '{"schema": "other"}'):
        path = tmp_path / "probe.json"
        if content is not None:
            path.write_text(content)
        result = invoke("doctor", "-p", "4090d", "--probe-file", str(path))
        assert result.exit_code == 2
        assert "(record one with `qwenops doctor --save-probe FILE`)" in result.stderr, result.stderr


@pytest.mark.parametrize(("profile", "fix"), [("cpu-tiny", "qwenops model build-tiny"), ("4090d", "re-download")])
def test_a_truncated_shard_fails_the_model_check(tmp_path: Path, profile: str, fix: str) -> None:
    _tiny_model(tmp_path / "m", complete=True)
    shard = tmp_path / "m" / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:100])  # a download cut short
    report = diagnose(load_facts(PROBES / "no-driver.json"), load_profile(profile), inspect_model_dir(tmp_path / "m"))
    check = next(c for c in report.checks if c.name == "model")
    assert check.status == "fail" and not report.ok
    assert "1 shard(s) truncated or corrupt (model-00002-of-00002.safetensors: 100 bytes" in check.finding
    assert check.fix is not None and fix in check.fix


def test_doctor_fails_a_max_model_len_beyond_the_model() -> None:
    facts = load_facts(PROBES / "h100-80gb.json")
    base = load_profile("4090d")
    too_long = base.model_copy(update={"max_model_len": 1_000_000})
    report = diagnose(facts, too_long, resolve_model("Qwen/Qwen3-14B-AWQ"))
    check = next(c for c in report.checks if c.name == "memory_plan")
    assert check.status == "fail" and check.finding.startswith("max_len_exceeds_model: max_model_len 1,000,000")
    assert check.fix is not None and "max_model_len <= 40960" in check.fix
    # The profile's env may allow it, as vLLM itself does: then memory decides.
    allowed = too_long.model_copy(update={"max_model_len": 65536,
                                          "env": {**base.env, "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"}})
    report = diagnose(facts, allowed, resolve_model("Qwen/Qwen3-14B-AWQ"))
    assert next(c for c in report.checks if c.name == "memory_plan").status == "pass"
