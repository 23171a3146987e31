"""`qwenops tune --plot`: the SVG drawn from a synthetic tuning result (no server): it parses, has one
series per measured candidate with the chosen one marked, the SLO lines where the SLO is, and every text
from data escaped; --plot's path is checked before anything runs, and a saved --json result draws again."""

from __future__ import annotations

import json
import os
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from qwenops.cli import cli
from qwenops.results import CommandResult
from qwenops.tune.options import Slo
from qwenops.tune.plot import load_result, main, render_svg, write_svg
from qwenops.tune.results import Candidate, CandidateResult, LevelResult, TuneResult

NS = {"svg": "http://www.w3.org/2000/svg"}
SLO = Slo(ttft_ms=500, tpot_ms=50)


def level(concurrency: int, goodput: float, ttft_p99: float | None, tpot_p99: float | None) -> LevelResult:
    return LevelResult(concurrency=concurrency, requests=16, completed=16, good=int(goodput * 4), errors=0,
                       wall_s=4.0, goodput_rps=goodput, throughput_rps=goodput, ttft_misses=0, tpot_misses=0,
                       ttft_p50_ms=ttft_p99, ttft_p99_ms=ttft_p99, tpot_p50_ms=tpot_p99, tpot_p99_ms=tpot_p99,
                       output_tokens_per_s=goodput * 100, prompt_tokens_mean=256.0)


def measured(seqs: int, curve: list[tuple[int, float, float | None, float | None]], bound: str) -> CandidateResult:
    levels = tuple(level(*point) for point in curve)
    best = max(levels, key=lambda lv: lv.goodput_rps)
    return CandidateResult(candidate=Candidate(max_num_seqs=seqs, max_num_batched_tokens=2048, max_model_len=4096),
                           status="measured", detail="goodput fell", goodput_rps=best.goodput_rps,
                           best_concurrency=best.concurrency, ttft_p99_ms=best.ttft_p99_ms,
                           tpot_p99_ms=best.tpot_p99_ms, bound=bound, levels=levels)


def synthetic(profile: str = "4090d", workload: str = "synthetic: 256 prompt + 128 output tokens") -> TuneResult:
    """Three measured candidates (16 sequences wins), one that failed to start and one pruned."""
    small = measured(8, [(1, 1.9, 120, 18), (2, 3.6, 150, 21), (4, 6.4, 210, 26), (8, 9.8, 320, 34),
                         (16, 6.0, 900, 36)], "max_num_seqs (queueing: ttft)")
    chosen = measured(16, [(1, 1.9, 125, 18), (2, 3.7, 150, 20), (4, 6.8, 200, 25), (8, 11.2, 290, 33),
                           (16, 14.5, 440, 46), (32, 8.1, 1300, 58)], "ttft_slo")
    big = measured(32, [(1, 1.8, 130, 19), (2, 3.5, 160, 22), (4, 6.2, 230, 28), (8, 9.9, 350, 39),
                        (16, 10.4, 470, 55), (32, 2.0, None, None)], "tpot_slo")
    failed = CandidateResult(candidate=Candidate(max_num_seqs=64, max_num_batched_tokens=2048, max_model_len=4096),
                             status="failed", detail="out of memory")
    pruned = CandidateResult(candidate=Candidate(max_num_seqs=64, max_num_batched_tokens=4096, max_model_len=8192),
                             status="pruned", detail="KV cache too small")
    return TuneResult(profile=profile, engine="vllm", slo=SLO, workload=workload, plan_only=False, budget_s=1800,
                      elapsed_s=900, server_starts=4, stopped_by="grid done",
                      candidates=(small, chosen, big, failed, pruned), chosen=chosen.candidate,
                      chosen_goodput_rps=chosen.goodput_rps, saved_profile="/state/4090d-tuned.yaml",
                      saved_profile_name="4090d-tuned")


def panel(root: ET.Element, name: str, kind: str = "lines") -> ET.Element:
    found = root.find(f".//svg:g[@class='{kind}'][@data-panel='{name}']", NS)
    assert found is not None, f"no {kind} group for {name}"
    return found


def test_one_series_per_measured_candidate_in_every_panel_and_the_chosen_one_marked() -> None:
    result = synthetic()
    root = ET.fromstring(render_svg(result))
    for name in ("goodput", "ttft", "tpot"):
        series = panel(root, name).findall("svg:g[@class='series']", NS)
        keys = sorted(s.get("data-key") or "" for s in series)
        assert keys == sorted(r.candidate.key for r in result.candidates[:3])
        chosen = [s.get("data-key") for s in series if s.get("data-chosen") == "true"]
        assert chosen == [result.chosen.key if result.chosen else None]
    # The goodput line of the chosen candidate has a point per level; a level with no latency is a gap.
    chosen_goodput = panel(root, "goodput").find("svg:g[@data-chosen='true']", NS)
    assert chosen_goodput is not None and len(chosen_goodput.findall("svg:circle", NS)) == 6
    big_ttft = panel(root, "ttft").find(f"svg:g[@data-key='{result.candidates[2].candidate.key}']", NS)
    assert big_ttft is not None and len(big_ttft.findall("svg:circle", NS)) == 5


def test_slo_lines_are_drawn_at_the_slo_on_their_panels_scale() -> None:
    root = ET.fromstring(render_svg(synthetic()))
    for name, ms in (("ttft", SLO.ttft_ms), ("tpot", SLO.tpot_ms)):
        slo = root.find(f".//svg:g[@class='slo'][@data-metric='{name}']", NS)
        assert slo is not None and float(slo.get("data-ms") or 0) == ms
        frame = panel(root, name, "panel")
        top, height, y_max = (float(frame.get(k) or 0) for k in ("data-top", "data-height", "data-ymax"))
        assert y_max >= ms  # the SLO is inside the panel even when every p99 is below it
        line = slo.find("svg:line", NS)
        assert line is not None and line.get("y1") == line.get("y2")
        assert float(line.get("y1") or 0) == pytest.approx(top + height - ms / y_max * height, abs=0.1)
        label = slo.find("svg:text", NS)
        assert label is not None and label.text == f"SLO {ms:g} ms"


def test_text_from_data_is_escaped() -> None:
    hostile = 'x"/><script>alert(1)</script><text a=\'&'
    root = ET.fromstring(render_svg(synthetic(profile=hostile, workload=f"workload {hostile}")))
    assert not root.findall(".//svg:script", NS) and not root.findall(".//script")
    texts = ["".join(t.itertext()) for t in root.iter(f"{{{NS['svg']}}}text")]
    assert any(hostile in t for t in texts)  # shown as text, whole
    assert any(f"workload {hostile}" in t for t in texts)


def test_no_measured_candidate_still_draws_the_frame_and_the_slo() -> None:
    result = synthetic().model_copy(update={"candidates": synthetic().candidates[3:], "chosen": None})
    root = ET.fromstring(render_svg(result))
    assert not root.findall(".//svg:g[@class='series']", NS)
    assert len(root.findall(".//svg:g[@class='slo']", NS)) == 2
    assert "nothing to draw" in ET.tostring(root, encoding="unicode")


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "tune.svg"
    out.write_text("old")
    write_svg(out, render_svg(synthetic()))
    assert ET.fromstring(out.read_text()).tag == "{http://www.w3.org/2000/svg}svg"
    assert [p.name for p in tmp_path.iterdir()] == ["tune.svg"]
    assert stat.S_IMODE(out.stat().st_mode) & 0o400


def test_a_saved_json_result_draws_again(tmp_path: Path) -> None:
    saved = tmp_path / "result.json"
    saved.write_text(json.dumps(CommandResult(command="tune", data=synthetic()).envelope()))
    assert load_result(saved) == synthetic()
    assert main([str(saved), str(tmp_path / "again.svg")]) == 0
    assert (tmp_path / "again.svg").read_text() == render_svg(synthetic())
    assert main([str(tmp_path / "missing.json"), str(tmp_path / "x.svg")]) == 2
    assert main([str(saved)]) == 2


# ------------------------------------------------------------------------------------------------- CLI

SLO_ARGS = ["--slo-ttft-ms", "500", "--slo-tpot-ms", "50"]


@pytest.fixture(autouse=True)
def no_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused --plot must refuse before the sweep: a check that lets one through fails here, fast,
    instead of measuring the CPU engine for minutes."""

    def refuse(*_a: object, **_k: object) -> TuneResult:
        raise AssertionError("the sweep ran")

    monkeypatch.setattr("qwenops.tune.run.run_tune", refuse)


def run_tune(*args: str) -> tuple[int, str]:
    done = CliRunner().invoke(cli, ["tune", *SLO_ARGS, *args])
    return done.exit_code, done.output


@pytest.mark.parametrize(("where", "says"), [
    ("{tmp}", "is a directory"),
    ("{tmp}/no/such/x.svg", "does not exist"),
    ("", "names no file"),
    ("{tmp}/x.svg/", "names no file"),
])
def test_plot_path_errors_are_one_line_naming_the_flag(tmp_path: Path, where: str, says: str) -> None:
    code, output = run_tune("--plot", where.format(tmp=tmp_path))
    assert code == 2
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--plot" in lines[0] and says in lines[0], output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_plot_in_a_directory_this_user_cannot_write_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, output = run_tune("--plot", str(locked / "x.svg"))
    finally:
        locked.chmod(0o700)
    assert code == 2 and "--plot" in output and "cannot write" in output


def test_plot_with_plan_only_is_refused(tmp_path: Path) -> None:
    code, output = run_tune("--plan-only", "--plot", str(tmp_path / "x.svg"))
    assert code == 2 and "--plot" in output and "--plan-only" in output
    assert not (tmp_path / "x.svg").exists()


def test_plot_is_written_after_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qwenops.tune.run.run_tune", lambda *_a, **_k: synthetic())
    out = tmp_path / "tune.svg"
    code, _ = run_tune("--plot", str(out), "--json")
    assert code == 0
    assert out.read_text() == render_svg(synthetic())


def test_a_plot_that_cannot_be_written_at_the_end_keeps_the_result_and_exits_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qwenops.tune.run.run_tune", lambda *_a, **_k: synthetic())

    def refuse(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("qwenops.tune.plot.write_svg", refuse)
    done = CliRunner().invoke(cli, ["tune", *SLO_ARGS, "--plot", str(tmp_path / "x.svg"), "--json"])
    assert done.exit_code == 2
    envelope = json.loads(done.stdout)
    assert envelope["data"]["chosen"]["max_num_seqs"] == 16
    assert envelope["errors"][0]["field"] == "--plot" and "No space" in envelope["errors"][0]["message"]
