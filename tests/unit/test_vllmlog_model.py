"""The learned second opinion of scripts/fit_logmodel.py: an experiment, not wired into troubleshoot. What it must
hold whether or not it is ever wired: its features come from structure and are bounded, its fit is deterministic,
and it never gives a finding to a log without an error line, nor an error to a healthy dev log."""

from __future__ import annotations

import importlib.util
import sys
import time
from types import ModuleType
from typing import Any

from qwenops.vllmlog.classify import Evidence, Finding, LogClassifier
from qwenops.vllmlog.lines import lines_of
from tests.conftest import REPO


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fit_logmodel", REPO / "scripts" / "fit_logmodel.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


script = _script()

OOM_IN_PROFILE = [
    "INFO 10-24 18:10:17 [gpu_model_runner.py:1200] Model loading took 14.2 GiB",
    "ERROR 10-24 18:10:20 [core.py:588] EngineCore failed to start.",
    "ERROR 10-24 18:10:20 [core.py:588] Traceback (most recent call last):",
    '  File "/usr/lib/python3/dist-packages/vllm/v1/worker/gpu_worker.py", line 210, in determine_available_memory',
    "    self.model_runner.profile_run()",
    '  File "/usr/lib/python3/dist-packages/vllm/v1/worker/gpu_model_runner.py", line 1800, in profile_run',
    "    hidden = self._dummy_run(self.max_num_tokens)",
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
    "23.64 GiB of which 1.2 GiB is free. Process 0xdeadbeef at /root/run.py",
]


def features_of(text: list[str]) -> tuple[list[str], int]:
    classifier, features = LogClassifier(), script.LogFeatures()
    for line in lines_of(text):
        classifier.feed(line)
        features.feed(line, classifier)
    return features.features(classifier), features.error_lines


def test_words_are_lowercased_without_paths_hex_or_digits() -> None:
    found = script.words("Tried to allocate 2.00 GiB at /root/x.py, 0xdeadbeef, GPU0")
    assert found == ["tried", "allocate", "gib", "gpu"]


def test_the_features_are_the_exception_frames_phase_and_logger_not_prose() -> None:
    features, error_lines = features_of(OOM_IN_PROFILE)
    for expected in ("exception:OutOfMemoryError", "module:torch", "frame:profile_run",
                     "frame:determine_available_memory", "frame_phase:profile", "logger:core", "package:vllm",
                     "oom", "phase_at_error:profiling memory", "call:_dummy_run"):
        assert expected in features
    assert error_lines >= 3
    assert not any("deadbeef" in f or "root" in f or any(c.isdigit() for c in f.split(":", 1)[1])
                   for f in features if f.startswith("word:"))


def test_a_hostile_log_of_endless_distinct_words_is_bounded() -> None:
    def word(n: int) -> str:  # a distinct word of letters for each n
        return "".join(chr(ord("a") + int(digit)) for digit in str(n)) + "xyz"

    hostile = ["ERROR 10-24 18:10:20 [core.py:1] ValueError: " + " ".join(word(i * 400 + j) for j in range(400))
               for i in range(200)]
    started = time.monotonic()
    features, error_lines = features_of(hostile)
    assert error_lines == 200
    assert len(features) == script.MAX_FEATURES
    assert time.monotonic() - started < 30


def _model() -> Any:
    logs = [(["exception:OutOfMemoryError", "frame_phase:profile"], "profile_oom")] * 3 + \
           [(["exception:OSError", "word:repository"], "model_not_found")] * 3 + [(["phase:serving"], "healthy")] * 3
    return script.fit(logs)


def test_the_fit_is_deterministic_and_round_trips() -> None:
    model = _model()
    assert model.to_json() == _model().to_json()
    again = script.LogModel.from_json(model.to_json())
    features = ["exception:OutOfMemoryError", "frame_phase:profile"]
    assert again.posterior(features) == model.posterior(features)
    assert "seen once" not in script.fit([(["seen once"], "x"), (["y"], "x"), (["y"], "z")]).counts


def test_the_guess_names_a_cause_where_the_rules_name_none_on_an_error_line() -> None:
    unexplained = Finding("unclassified", "error", "an error no rule explains", (Evidence("log line 8", "boom"),), "")
    found = script.second_opinion([unexplained], ["exception:OutOfMemoryError", "frame_phase:profile"], 3, _model())
    assert [(f.category, f.severity) for f in found] == [("profile_oom", "error"), ("unclassified", "info")]
    assert found[0].evidence[0].quote == "boom"
    assert "resembles the 3 dev logs of profile_oom" in found[0].evidence[-1].quote
    assert "exception:OutOfMemoryError" in found[0].evidence[-1].quote


def test_no_guess_on_a_log_without_an_error_line_nor_over_a_named_cause() -> None:
    features = ["exception:OutOfMemoryError", "frame_phase:profile"]
    assert script.second_opinion([], features, 0, _model()) == []
    named = Finding("weights_oom", "error", "t", (), "")
    assert script.second_opinion([named], features, 3, _model()) == [named]


def test_a_model_fit_on_the_dev_half_gives_no_healthy_dev_log_an_error() -> None:
    script.accuracy.VOCABULARY.update(script.accuracy.vocabulary())
    logs = script.read(script.dev_cases())
    model = script.fit_logs(logs)
    for log in logs:
        if log.case.category == "healthy":
            found = script.second_opinion(log.findings, log.features, log.error_lines, model, threshold=0.0)
            assert not any(f.severity == "error" for f in found), log.case.path
