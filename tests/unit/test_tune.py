"""`qwenops tune` without a server: options, workloads, the grid and its pruning and order, goodput, the
concurrency stop rule, the budget, failures, the pick and the saved profile. The sweep runs on fakes: a
fake clock that each launch and level advances, and servers whose goodput the test decides."""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.config.loader import load_profile
from qwenops.config.profile import Profile
from qwenops.config.settings import load_settings
from qwenops.config.target import ConfiguredServer
from qwenops.errors import BadInputError
from qwenops.tune.candidates import Grid, default_grid, initial_order, plan_candidate, plan_context, reorder
from qwenops.tune.goodput import (
    RequestSample,
    best_level,
    bound_by,
    concurrency_levels,
    goodput_fell,
    level_result,
    pick,
)
from qwenops.tune.launch import started_server
from qwenops.tune.options import Slo, parse_int_list, tune_options
from qwenops.tune.results import Candidate, CandidateResult, FailureCause, LevelResult, PlannedCandidate, Status
from qwenops.tune.saving import tuned_profile_text
from qwenops.tune.sweep import SweepOutcome, SweepSettings, sweep
from qwenops.tune.workload import Workload, load_workload, synthetic_workload

SLO = Slo(ttft_ms=100, tpot_ms=10)


def sample(ttft_ms: float | None, tpot_ms: float | None, *, sent: float = 0.0, ended: float = 1.0,
           error: str | None = None) -> RequestSample:
    return RequestSample(sent_s=sent, ended_s=ended, ttft_s=None if ttft_ms is None else ttft_ms / 1000,
                         tpot_s=None if tpot_ms is None else tpot_ms / 1000, output_tokens=16, error=error)


# ------------------------------------------------------------------------------------------- goodput


def test_goodput_counts_requests_meeting_both_slos_per_second_of_wall_time() -> None:
    samples = [
        sample(50, 5, sent=0.0, ended=1.0),     # good
        sample(150, 5, sent=0.0, ended=1.5),    # misses TTFT
        sample(50, 20, sent=0.5, ended=2.0),    # misses TPOT
        sample(50, None, sent=1.0, ended=1.2),  # one token: no TPOT to miss -> good
        sample(None, None, sent=1.0, ended=2.0, error="stream_interrupted: cut"),
    ]
    level = level_result(2, samples, SLO)
    assert (level.good, level.completed, level.errors) == (2, 4, 1)
    assert (level.ttft_misses, level.tpot_misses) == (1, 1)
    assert level.wall_s == 2.0
    assert level.goodput_rps == 1.0  # 2 good / 2 s
    assert level.throughput_rps == 2.0
    assert level.first_error == "stream_interrupted: cut"


def test_an_slo_met_exactly_counts_as_met() -> None:
    assert level_result(1, [sample(100, 10)], SLO).good == 1


def test_concurrency_doubles_up_to_the_cap_and_never_past_twice_max_num_seqs() -> None:
    assert concurrency_levels(16, 32) == (1, 2, 4, 8, 16)
    assert concurrency_levels(12, 32) == (1, 2, 4, 8, 12)
    assert concurrency_levels(64, 4) == (1, 2, 4, 8)
    assert concurrency_levels(1, 8) == (1,)


def _level(concurrency: int, goodput: float, *, good: int = 4, ttft_misses: int = 0, tpot_misses: int = 0,
           errors: int = 0) -> LevelResult:
    samples = [sample(50, 5, ended=good / goodput if goodput else 1.0) for _ in range(good)]
    samples += [sample(500, 5) for _ in range(ttft_misses)] + [sample(50, 50) for _ in range(tpot_misses)]
    samples += [sample(None, None, error="x") for _ in range(errors)]
    return level_result(concurrency, samples, SLO)


def test_the_stop_rule_is_the_first_level_whose_goodput_falls_or_is_zero() -> None:
    rising = [_level(1, 2.0), _level(2, 4.0)]
    assert not goodput_fell(rising)
    assert goodput_fell([*rising, _level(4, 3.0)])
    assert goodput_fell([_level(1, 0.0, good=0, ttft_misses=2)])
    assert not goodput_fell([])


def test_best_level_prefers_the_lower_concurrency_on_a_tie() -> None:
    levels = [_level(1, 2.0), _level(2, 4.0), _level(4, 4.0)]
    best = best_level(levels)
    assert best is not None and best.concurrency == 2


def test_the_bound_names_the_limit_that_stopped_goodput() -> None:
    c = Candidate(max_num_seqs=4, max_num_batched_tokens=512, max_model_len=256)
    up = [_level(1, 2.0), _level(2, 4.0)]
    assert bound_by(up, c, max_concurrency=2, preemptions=0, budget_cut=False) == "max_concurrency"
    assert bound_by([*up, _level(4, 5.0), _level(8, 6.0)], c, max_concurrency=16, preemptions=0,
                    budget_cut=False) == "max_num_seqs"
    fell_ttft = [*up, _level(4, 3.0, ttft_misses=3, tpot_misses=1)]
    assert bound_by(fell_ttft, c, max_concurrency=16, preemptions=0, budget_cut=False) == "ttft_slo"
    fell_tpot = [*up, _level(4, 3.0, tpot_misses=3)]
    assert bound_by(fell_tpot, c, max_concurrency=16, preemptions=0, budget_cut=False) == "tpot_slo"
    assert bound_by(fell_tpot, c, max_concurrency=16, preemptions=5, budget_cut=False) == "kv_cache (preemptions)"
    # a counter that went backwards is no preemption (audit 5: -9e14 was shown and blamed on the cache)
    assert bound_by(fell_tpot, c, max_concurrency=16, preemptions=-9e14, budget_cut=False) == "tpot_slo"
    queued = [*up, _level(4, 5.0), _level(8, 3.0, ttft_misses=4)]
    assert bound_by(queued, c, max_concurrency=16, preemptions=0, budget_cut=False) == "max_num_seqs (queueing: ttft)"
    assert bound_by(up, c, max_concurrency=16, preemptions=0, budget_cut=True) == "budget"


# ----------------------------------------------------------------------------------------- workloads


def test_synthetic_workload_asks_for_exact_lengths() -> None:
    workload = synthetic_workload(64, 16)
    (request,) = workload.requests
    assert request.max_tokens == 16 and request.ignore_eos
    assert len(request.messages[0]["content"].split()) == 64 - 8  # the template's tokens are left out
    assert workload.longest_tokens == 64 + 8 + 16


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "workload.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_jsonl_workload_of_real_prompts(tmp_path: Path) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 32})
    path = write(tmp_path, good, "", json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": "Hi"}], "max_tokens": 8}))
    workload = load_workload(path)
    assert [r.max_tokens for r in workload.requests] == [32, 8]
    assert not any(r.ignore_eos for r in workload.requests)
    assert workload.output_tokens == 32
    # Byte-level BPE makes at most one token per byte: the bound covers the prompt whatever the tokenizer.
    assert workload.requests[0].prompt_tokens_bound >= len("Say hello.")


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", "line 2: not JSON"),
    ("[1, 2]", "line 2: must be a JSON object, not list"),
    ('{"messages": [], "max_tokens": 4}', "line 2: messages: must be a non-empty list"),
    ('{"messages": [{"role": "robot", "content": "x"}], "max_tokens": 4}', "line 2: messages[0].role: must be one of"),
    ('{"messages": [{"role": "user", "content": 7}], "max_tokens": 4}', "messages[0].content: must be a str"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "line 2: max_tokens: must be a whole number >= 1 (got None)"),
    ('{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "line 2: max_tokens: must be a whole number"),
    ('{"messages": [{"role": "user", "content": "x"}], "max_tokens": true}', "line 2: max_tokens: must be a whole"),
    ('{"messages": [{"role": "user", "content": "x"}], "max_tokens": 4, "stream": true}', "line 2: stream: unknown"),
])
def test_a_bad_workload_line_is_one_error_naming_its_line_and_field(tmp_path: Path, line: str, message: str) -> None:
    good = json.dumps({"messages": [{"role": "user", "content": "ok"}], "max_tokens": 4})
    with pytest.raises(BadInputError) as caught:
        load_workload(write(tmp_path, good, line))
    assert caught.value.field == "--workload"
    assert message in caught.value.message
    assert "\n" not in caught.value.one_line()


def test_an_empty_or_missing_workload_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="has no requests"):
        load_workload(write(tmp_path, ""))
    with pytest.raises(BadInputError, match="cannot read"):
        load_workload(tmp_path / "missing.jsonl")


def test_the_cli_rejects_a_bad_workload_line_with_exit_2_before_anything_starts(tmp_path: Path) -> None:
    path = write(tmp_path, '{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}')
    result = CliRunner().invoke(cli, ["tune", "--slo-ttft-ms", "100", "--slo-tpot-ms", "10", "--workload",
                                      str(path)], catch_exceptions=False)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        'error: --workload: workload.jsonl line 1: max_tokens: must be a whole number >= 1 (got -1) '
        '(each line: {"messages": [{"role": "user", "content": "..."}], "max_tokens": N})')
    assert not (tmp_path / "state" / "logs").exists()  # no candidate was started


# ------------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"slo_ttft_ms": 0}, "--slo-ttft-ms", "greater than 0"),
    ({"slo_tpot_ms": -1}, "--slo-tpot-ms", "greater than 0"),
    ({"budget_min": 0}, "--budget-min", "greater than 0"),
    ({"max_concurrency": 0}, "--max-concurrency", "greater than or equal to 1"),
    ({"workload_file": Path("w.jsonl"), "prompt_tokens": 8}, "--workload", "not both"),
    ({"max_num_seqs": (0, 4)}, "--max-num-seqs", "every value must be >= 1"),
])
def test_bad_options_are_one_line_naming_the_flag(values: dict[str, object], field: str, message: str) -> None:
    base: dict[str, object] = {"slo_ttft_ms": 100, "slo_tpot_ms": 10}
    with pytest.raises(BadInputError) as caught:
        tune_options(**{**base, **values})
    assert caught.value.field == field and message in caught.value.message


def test_lists_of_values_parse_sorted_and_name_a_bad_item() -> None:
    assert parse_int_list("16, 8,8,32", flag="--max-num-seqs") == (8, 16, 32)
    assert parse_int_list(None, flag="--max-num-seqs") == ()
    with pytest.raises(BadInputError, match="'x' is not a whole number"):
        parse_int_list("8,x", flag="--max-num-seqs")


# ------------------------------------------------------------------------------------ candidates


def _profile(name: str = "cpu-tiny", **overrides: str) -> Profile:
    return load_profile(name, env={}, cli_overrides=overrides)


def test_the_default_grid_is_around_the_profiles_values_plus_a_shorter_context_the_workload_allows() -> None:
    profile = _profile("4090d")
    grid = default_grid(profile, synthetic_workload(256, 512), None)
    assert grid.max_num_seqs == (16, 32, 64)
    assert grid.max_num_batched_tokens == (2048, 4096)
    assert grid.max_model_len == (1024, 2048)  # 256 + 8 + 512 fits in 1024
    assert len(grid.candidates()) == 12
    given = default_grid(profile, synthetic_workload(256, 512), None, max_num_seqs=(8,), max_model_len=(4096,))
    assert (given.max_num_seqs, given.max_model_len) == ((8,), (4096,))


def test_planner_prunes_what_cannot_start_or_cannot_hold_the_workload(tmp_path: Path) -> None:
    from qwenops.tinymodel import SPEC

    profile = _profile("4090d")
    context = plan_context(profile, tmp_path, None)
    workload = synthetic_workload(256, 512)
    verdicts = {
        (c.max_num_seqs, c.max_num_batched_tokens, c.max_model_len): plan_candidate(c, context, workload)
        for c in Grid((32, 128), (64, 2048, 65536), (512, 2048, 32768, 65536)).candidates()
    }
    assert verdicts[(32, 2048, 2048)].fits
    assert "vLLM refuses to start" in verdicts[(128, 64, 2048)].reason  # batched < seqs
    assert "needs up to 776 tokens > max_model_len 512" in verdicts[(32, 2048, 512)].reason
    assert "the model's context of 40960" in verdicts[(32, 2048, 65536)].reason
    # The memory planner: a 65536-token step's activations leave too little KV for one 32768-token sequence.
    big = verdicts[(32, 65536, 32768)]
    assert not big.fits and big.reason.startswith("max_len_exceeds_kv")
    assert SPEC.max_position_embeddings == 4096  # the CPU case below relies on it


def test_the_cpu_engine_is_pruned_by_its_kv_cache_size_and_the_models_context(tiny_config_dir: Path) -> None:
    profile = _profile("cpu-tiny", model=str(tiny_config_dir))
    small = profile.model_copy(update={"env": {"VLLM_CPU_KVCACHE_SPACE": "0.001"}})
    workload = synthetic_workload(32, 16)
    context = plan_context(small, tiny_config_dir.parent, None)
    fits = plan_candidate(Candidate(max_num_seqs=2, max_num_batched_tokens=512, max_model_len=128), context, workload)
    assert fits.fits and fits.kv_tokens is not None
    too_long = plan_candidate(Candidate(max_num_seqs=2, max_num_batched_tokens=512, max_model_len=4096), context,
                              workload)
    assert not too_long.fits and "VLLM_CPU_KVCACHE_SPACE=0.001 GiB holds" in too_long.reason
    beyond = plan_candidate(Candidate(max_num_seqs=2, max_num_batched_tokens=512, max_model_len=8192),
                            plan_context(profile, tiny_config_dir.parent, None), workload)
    assert "the model's context of 4096" in beyond.reason


@pytest.fixture
def tiny_config_dir(tmp_path: Path) -> Path:
    """A model dir with the tiny model's config.json (no weights needed to plan the CPU KV cache)."""
    from qwenops.tinymodel import SPEC

    directory = tmp_path / "qwen3-tiny"
    directory.mkdir()
    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "num_hidden_layers": SPEC.num_hidden_layers,
              "num_attention_heads": SPEC.num_attention_heads, "num_key_value_heads": SPEC.num_key_value_heads,
              "hidden_size": SPEC.hidden_size, "intermediate_size": SPEC.intermediate_size,
              "vocab_size": SPEC.vocab_size, "head_dim": SPEC.head_dim,
              "max_position_embeddings": SPEC.max_position_embeddings, "torch_dtype": "float32"}
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def planned(seqs: int, batched: int = 512, length: int = 256, predicted: float | None = None) -> PlannedCandidate:
    c = Candidate(max_num_seqs=seqs, max_num_batched_tokens=batched, max_model_len=length)
    return PlannedCandidate(candidate=c, fits=True, reason="fits", predicted_concurrency=predicted or float(seqs))


def test_likely_winners_first_the_profiles_own_values_then_the_nearest() -> None:
    reference = Candidate(max_num_seqs=8, max_num_batched_tokens=512, max_model_len=256)
    order = initial_order([planned(2), planned(32), planned(8), planned(16), planned(8, 1024)], reference)
    assert [(p.candidate.max_num_seqs, p.candidate.max_num_batched_tokens) for p in order] == [
        (8, 512), (16, 512), (8, 1024), (32, 512), (2, 512)]  # at equal distance: more held at once first


def test_after_a_measurement_the_candidates_near_its_knee_run_next() -> None:
    best = CandidateResult(candidate=planned(16).candidate, status="measured", detail="", goodput_rps=3.0,
                           best_concurrency=4)
    order = reorder([planned(32), planned(2), planned(4), planned(8)], best)
    # 8 before 2: as near the knee, and nearer the best candidate itself.
    assert [p.candidate.max_num_seqs for p in order] == [4, 8, 2, 32]
    assert reorder([planned(32), planned(2)], None) == [planned(32), planned(2)]


def test_the_pick_is_the_highest_goodput_ties_to_lower_p99_ttft() -> None:
    def result(seqs: int, goodput: float | None, ttft_p99: float = 50.0,
               status: Status = "measured") -> CandidateResult:
        return CandidateResult(candidate=planned(seqs).candidate, status=status, detail="",
                               goodput_rps=goodput, ttft_p99_ms=ttft_p99)

    assert (best := pick([result(2, 1.0), result(4, 3.0), result(8, 2.0)])) and best.candidate.max_num_seqs == 4
    assert (best := pick([result(2, 3.0, 80), result(4, 3.0, 60)])) and best.candidate.max_num_seqs == 4
    assert pick([result(2, 0.0), result(4, None, status="failed")]) is None


# ------------------------------------------------------------------------------------------ the sweep


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@functools.cache
def _fake_configured() -> ConfiguredServer:
    """The ConfiguredServer a FakeServer is measured at (the harness measures by its own records)."""
    return started_server("http://fake", load_profile("cpu-tiny"), load_settings({}))


@dataclass
class FakeServer:
    """A candidate's server: its goodput curve by concurrency, or a start that fails."""

    clock: FakeClock
    curve: dict[int, float]
    start_s: float = 30.0
    fails: FailureCause | None = None
    dies_at: int | None = None  # concurrency at which it crashes
    closed: bool = False
    server: ConfiguredServer = field(default_factory=_fake_configured)  # as the launcher gives one
    dead: bool = False

    def wait_ready(self) -> FailureCause | None:
        self.clock.now += self.start_s
        return self.fails

    def alive(self) -> bool:
        return not self.dead

    def preemptions(self) -> float | None:
        return 0.0

    def close(self) -> FailureCause | None:
        self.closed = True
        self.clock.now += 2.0
        return FailureCause(category="engine_dead", title="died", line="x", fix="y") if self.dead else None


@dataclass
class Harness:
    servers: dict[int, FakeServer]  # by max_num_seqs
    clock: FakeClock = field(default_factory=FakeClock)
    started: list[Candidate] = field(default_factory=list)
    level_s: float = 5.0

    def launch(self, candidate: Candidate, startup_timeout_s: float, on_phase: Callable[[str], object]) -> FakeServer:
        self.started.append(candidate)
        return self.servers[candidate.max_num_seqs]

    def measure(self, configured: ConfiguredServer, workload: Workload, concurrency: int,
                count: int) -> Sequence[RequestSample]:
        assert self.started  # the server measured is the one started last
        server = self.servers[self.started[-1].max_num_seqs]
        assert configured is server.server
        start = self.clock.now
        self.clock.now += self.level_s
        if server.dies_at is not None and concurrency >= server.dies_at:
            server.dead = True
            return [sample(None, None, sent=start, ended=self.clock.now, error="stream_interrupted: cut")]
        if count == 1 and concurrency == 1:  # the warm-up
            return [sample(10, 1, sent=start, ended=self.clock.now)]
        good = min(round(server.curve.get(concurrency, 0.0) * self.level_s), count)
        return ([sample(10, 1, sent=start, ended=self.clock.now) for _ in range(good)]
                + [sample(1000, 1, sent=start, ended=self.clock.now) for _ in range(count - good)])

    def run(self, order: list[PlannedCandidate], budget_s: float = 3600.0, max_concurrency: int = 8,
            causes: frozenset[str] = frozenset()) -> SweepOutcome:
        for server in self.servers.values():
            server.clock = self.clock
        settings = SweepSettings(slo=SLO, budget_s=budget_s, max_concurrency=max_concurrency, requests_per_level=20,
                                 independent_causes=causes)
        return sweep(order, synthetic_workload(16, 8), settings, launch=self.launch, measure=self.measure,
                     clock=self.clock)


def test_each_candidate_climbs_until_goodput_falls_and_the_best_is_picked() -> None:
    clock = FakeClock()
    harness = Harness({
        2: FakeServer(clock, {1: 1.0, 2: 2.0, 4: 1.0}),
        4: FakeServer(clock, {1: 1.0, 2: 2.0, 4: 3.0, 8: 2.0}),
        8: FakeServer(clock, {1: 1.0, 2: 1.6, 4: 1.2}),
    }, clock=clock)
    outcome = harness.run([planned(2), planned(4), planned(8)])
    results = {r.candidate.max_num_seqs: r for r in outcome.results}
    assert [lvl.concurrency for lvl in results[2].levels] == [1, 2, 4]  # 4 fell: stop there
    assert [lvl.concurrency for lvl in results[4].levels] == [1, 2, 4, 8]
    assert (results[4].goodput_rps, results[4].best_concurrency) == (3.0, 4)
    assert [lvl.concurrency for lvl in results[8].levels] == [1, 2, 4]
    assert pick(outcome.results) is results[4]
    assert outcome.server_starts == 3 and outcome.stopped_by == "grid done"
    assert all(s.closed for s in harness.servers.values())


def test_the_budget_stops_before_a_start_that_cannot_finish_and_keeps_the_best_so_far() -> None:
    clock = FakeClock()
    harness = Harness({s: FakeServer(clock, {1: 1.0, 2: 2.0, 4: 1.0}, start_s=60.0) for s in (2, 4, 8, 16)},
                      clock=clock)
    outcome = harness.run([planned(2), planned(4), planned(8), planned(16)], budget_s=200.0)
    statuses = [r.status for r in outcome.results]
    assert statuses[:2] == ["measured", "measured"] and set(statuses[2:]) == {"not_run"}
    assert outcome.stopped_by == "budget" and outcome.server_starts == 2
    assert outcome.elapsed_s <= 200.0
    assert "budget" in outcome.results[-1].detail
    assert pick(outcome.results) is not None


def test_the_budget_ends_a_climb_before_a_level_that_would_overrun_it() -> None:
    clock = FakeClock()
    harness = Harness({2: FakeServer(clock, {1: 0.5, 2: 0.8, 4: 0.9}, start_s=10.0)}, clock=clock, level_s=20.0)
    outcome = harness.run([planned(2)], budget_s=70.0)
    (result,) = outcome.results
    assert result.status == "measured" and len(result.levels) < 3
    assert result.bound == "budget"
    assert outcome.elapsed_s <= 70.0


def test_a_start_cut_by_the_budget_is_not_run_not_failed() -> None:
    clock = FakeClock()
    timeout = FailureCause(category="engine_dead", title="the server exited", fix="",
                           line="not ready after 85 s (startup_timeout_s)")
    harness = Harness({2: FakeServer(clock, {}, start_s=100.0, fails=timeout), 4: FakeServer(clock, {1: 1.0})},
                      clock=clock)
    outcome = harness.run([planned(2), planned(4)], budget_s=100.0)
    assert [r.status for r in outcome.results] == ["not_run", "not_run"]
    assert outcome.results[0].detail == "budget: the time ran out while it started"
    assert outcome.stopped_by == "budget" and outcome.server_starts == 1


def test_a_candidate_that_fails_to_start_is_recorded_with_its_cause_and_not_retried() -> None:
    clock = FakeClock()
    cause = FailureCause(category="kv_cache_no_blocks", title="no KV blocks", line="No available memory", fix="f")
    harness = Harness({2: FakeServer(clock, {1: 1.0}), 4: FakeServer(clock, {}, fails=cause)}, clock=clock)
    outcome = harness.run([planned(4), planned(2)])
    failed, measured = outcome.results
    assert failed.status == "failed" and failed.cause == cause and "kv_cache_no_blocks" in failed.detail
    assert measured.status == "measured"
    assert [c.max_num_seqs for c in harness.started] == [4, 2]  # once each


def test_a_cause_no_candidate_can_change_ends_the_sweep() -> None:
    clock = FakeClock()
    cause = FailureCause(category="model_not_found", title="no such model", line="404", fix="f")
    harness = Harness({s: FakeServer(clock, {}, fails=cause) for s in (2, 4, 8)}, clock=clock)
    outcome = harness.run([planned(2), planned(4), planned(8)], causes=frozenset({"model_not_found"}))
    assert [r.status for r in outcome.results] == ["failed", "not_run", "not_run"]
    assert outcome.server_starts == 1 and outcome.stopped_by.startswith("model_not_found")


def test_a_server_that_dies_while_measured_is_failed_with_its_cause() -> None:
    clock = FakeClock()
    harness = Harness({2: FakeServer(clock, {1: 1.0, 2: 2.0}, dies_at=2), 4: FakeServer(clock, {1: 1.0})},
                      clock=clock)
    outcome = harness.run([planned(2), planned(4)])
    died = outcome.results[0]
    assert died.status == "failed" and died.cause is not None and died.cause.category == "engine_dead"
    assert outcome.results[1].status == "measured"


# --------------------------------------------------------------------------------------- saved profile


def test_the_tuned_profile_text(golden: Callable[[str, str], None]) -> None:
    chosen = CandidateResult(candidate=Candidate(max_num_seqs=4, max_num_batched_tokens=512, max_model_len=256),
                             status="measured", detail="", goodput_rps=3.25, best_concurrency=4, ttft_p99_ms=81.25,
                             tpot_p99_ms=4.5)
    text = tuned_profile_text("cpu-tiny", chosen, slo=SLO, workload=synthetic_workload(32, 16).describe(),
                              stamp=datetime.datetime(2026, 11, 28, 19, 0, tzinfo=datetime.timezone.utc),
                              counts="6 candidates (3 measured, 3 pruned)")
    golden("tune/cpu-tiny-tuned.yaml", text)


def test_the_saved_profile_resolves_to_the_chosen_values(tmp_path: Path) -> None:
    from qwenops.config.loader import load_profile
    from qwenops.config.settings import load_settings
    from qwenops.tune.saving import save_tuned_profile

    chosen = CandidateResult(candidate=Candidate(max_num_seqs=2, max_num_batched_tokens=1024, max_model_len=256),
                             status="measured", detail="", goodput_rps=1.5, best_concurrency=2)
    name, path = save_tuned_profile(load_settings().state_dir, "cpu-tiny", chosen, slo=SLO, workload="w",
                                    stamp=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), counts="c")
    assert name == "cpu-tiny-tuned" and path.parent.name == "profiles"
    profile = load_profile(name)
    assert (profile.max_num_seqs, profile.max_num_batched_tokens, profile.max_model_len) == (2, 1024, 256)
    assert profile.enforce_eager  # the rest comes from cpu-tiny
    again, _ = save_tuned_profile(load_settings().state_dir, "cpu-tiny-tuned", chosen, slo=SLO, workload="w",
                                  stamp=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), counts="c")
    assert again == "cpu-tiny-tuned"  # tuning the tuned profile replaces it instead of extending itself


# ------------------------------------------------------------------------------------------ the command


def test_plan_only_lists_candidates_and_pruning_reasons_without_starting_anything() -> None:
    result = CliRunner().invoke(cli, [
        "tune", "-p", "4090d", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50", "--plan-only",
        "--max-num-seqs", "32,64", "--max-num-batched-tokens", "2048,65536", "--max-model-len", "2048,32768",
        "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    envelope = json.loads(result.stdout)
    assert envelope["command"] == "tune" and envelope["ok"] is True
    data = envelope["data"]
    assert data["plan_only"] is True and data["server_starts"] == 0
    statuses = {(c["candidate"]["max_num_seqs"], c["candidate"]["max_num_batched_tokens"],
                 c["candidate"]["max_model_len"]): c for c in data["candidates"]}
    assert len(statuses) == 8
    pruned = [c for c in data["candidates"] if c["status"] == "pruned"]
    assert pruned and all(c["detail"] for c in pruned)
    assert statuses[(32, 65536, 32768)]["status"] == "pruned"
    assert statuses[(32, 2048, 2048)]["status"] == "planned"
    assert data["candidates"][0]["candidate"] == {"max_num_seqs": 32, "max_num_batched_tokens": 2048,
                                                  "max_model_len": 2048}  # the profile's own values first
    text = CliRunner().invoke(cli, ["tune", "-p", "4090d", "--slo-ttft-ms", "1000", "--slo-tpot-ms", "50",
                                    "--plan-only"], catch_exceptions=False)
    assert "12 of 12 candidates would start" in text.stdout


def test_run_tune_end_to_end_on_fakes_never_launches_a_pruned_candidate_and_saves_the_best(
    tmp_path: Path, tiny_config_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    golden: Callable[[str, str], None],
) -> None:
    import qwenops.tune.run as tune_run
    from qwenops.results import CommandResult
    from qwenops.tune.run import run_tune

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny-test.yaml").write_text(f"extends: cpu-tiny\nmodel: {tiny_config_dir}\n")
    monkeypatch.setenv("QWENOPS_PROFILES_DIR", str(profiles))
    monkeypatch.setattr(tune_run, "preflight", lambda plan: None)  # no engine or port needed: nothing real starts
    clock = FakeClock()
    curves = {1: {1: 1.0, 2: 0.5}, 2: {1: 1.0, 2: 2.0, 4: 1.0}, 4: {1: 1.0, 2: 1.5, 4: 1.2}}
    harness = Harness({s: FakeServer(clock, curve) for s, curve in curves.items()}, clock=clock)
    options = tune_options(profile="tiny-test", slo_ttft_ms=100, slo_tpot_ms=10, prompt_tokens=32, output_tokens=8,
                           max_num_seqs=(1, 2, 4), max_model_len=(256, 8192), max_num_batched_tokens=(512,),
                           max_concurrency=4, requests_per_level=20, budget_min=60)
    stamp = datetime.datetime(2026, 11, 28, 19, 0, tzinfo=datetime.timezone.utc)
    result = run_tune(options, launch=harness.launch, measure=harness.measure, clock=clock, now=lambda: stamp)
    assert {c.max_model_len for c in harness.started} == {256}  # the 8192 ones were pruned, never launched
    assert sorted(c.max_num_seqs for c in harness.started) == [1, 2, 4]
    assert result.chosen == Candidate(max_num_seqs=2, max_num_batched_tokens=512, max_model_len=256)
    assert result.chosen_goodput_rps == 2.0 and result.server_starts == 3 and result.ok
    assert [r.status for r in result.candidates] == ["measured"] * 3 + ["pruned"] * 3
    saved = Path(result.saved_profile or "")
    assert saved.name == "tiny-test-tuned.yaml" and "2026-11-28T19:00:00+00:00" in saved.read_text()
    envelope = CommandResult(command="tune", data=result).envelope()
    assert envelope["data"]["chosen"] == {"max_num_seqs": 2, "max_num_batched_tokens": 512, "max_model_len": 256}
    json.dumps(envelope)  # plain JSON all the way down

    from qwenops.cli.output import emit
    from qwenops.cli.views.tune import tune_view

    emit(CommandResult(command="tune", data=result), json_mode=False, view=tune_view)
    golden("tune/table.txt", capsys.readouterr().out.replace(str(saved), "STATE/profiles/tiny-test-tuned.yaml"))
