"""The classifier's rules written from corpus/dev7 (and the dev logs of the same shapes), each test citing its log
and the public thread it came from, and the big-log prefilter's shape for a pasted answer. None of these logs is in
the frozen test half (tests/logcorpus.py), which no test reads. Each rule reads a structure, not a wording. Every
text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from pathlib import Path

from qwenops.troubleshoot.run import classify_source
from qwenops.troubleshoot.sources import file_source
from qwenops.vllmlog.classify import CANDIDATE, Finding
from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers

CORPUS = LOGS / "corpus"
DEV7 = CORPUS / "dev7"
_THROUGHPUT = ("(APIServer pid=1) INFO 11-28 07:00:01 [loggers.py:257] Engine 000: Avg prompt throughput: 12.3 "
               "tokens/s, Avg generation throughput: 45.6 tokens/s, Running: 3 reqs, Waiting: 0 reqs, "
               "GPU KV cache usage: 4.2%, Prefix cache hit rate: 0.0%")
_ACCESS = '(APIServer pid=1) INFO:     127.0.0.1:40001 - "POST /v1/chat/completions HTTP/1.1" 200 OK'


def found(path: Path) -> list[Finding]:
    """What `troubleshoot --log PATH` finds, first to last; both readers agree on the same text."""
    both = findings_of_both_readers(path.read_text(encoding="utf-8"))
    findings, _ = classify_source(file_source(str(path)), {})
    assert [f.category for f in findings] == [f.category for f in both]
    return findings


def categories(path: Path) -> list[str]:
    return [f.category for f in found(path)]


def test_the_prefilter_finds_a_plain_text_loop_where_a_line_opens_with_it(tmp_path: Path) -> None:
    """vllm-project/vllm-ascend (corpus/dev6 incoherent_output 024, Kimi K2.5 W4A8 on two 910B nodes): the answer
    is "and the English and the ..." line after line, plain text. The big-log scanner's prefilter looks for sixteen
    plain words where a line (or a wrapper's `| `, `) `, `] `) opens, not at every word: counting words through every
    log line's prose made a 40 MB log's scan ~40% slower. The loop is still found behind the wrappers lines.py strips,
    in a paste and past the first megabyte of a big log; a log's own lines are no candidates for it, and a message's
    prose (a candidate after its logger's `] `) is no loop."""
    loop = ("h and the English and the English and the English and the English and the English and the English "
            "and the of the English and the English and the of the")
    for prefix in ("", "vllm-1  | ", "> ", "(VllmWorker pid=7) "):
        assert CANDIDATE.search((prefix + loop).encode()), prefix
        log = tmp_path / "big.log"
        log.write_text((_ACCESS + "\n" + _THROUGHPUT + "\n") * 6000 + "\n" + prefix + loop + "\n", encoding="utf-8")
        assert log.stat().st_size > 1 << 20
        findings, _ = classify_source(file_source(str(log)), {})
        assert [f.category for f in findings] == ["incoherent_output"], prefix
        assert findings_of_both_readers(prefix + loop)[0].category == "incoherent_output"
    assert not CANDIDATE.search(_THROUGHPUT.encode()) and not CANDIDATE.search(_ACCESS.encode())
    prose = ("(APIServer pid=1) WARNING 11-28 07:00:01 [config.py:1] the model you are loading has a generation "
             "config that sets default sampling parameters for every request unless you override them here")
    assert findings_of_both_readers("\n".join([_THROUGHPUT, prose, _ACCESS])) == []


def test_an_access_line_cut_inside_is_still_a_served_request(tmp_path: Path) -> None:
    """vllm-project/vllm#12233 (corpus/dev7 engine_dead 017): the paste ends inside uvicorn's access line
    (`INFO:     172.27.0.4:56768 - "POST /v1`), its status lost. Reading every line counts it as a served request
    by its head; the block scanner must too, or the two readers disagree on whether the server had served."""
    from qwenops.vllmlog.classify import SERVED, LogClassifier
    from qwenops.vllmlog.lines import read_log, scan_log

    log = tmp_path / "cut.log"
    log.write_text("INFO 01-22 00:13:30 api_server.py:1] vLLM API server version 0.6.6\n"
                   'INFO:     172.27.0.4:56768 - "POST /v1\n', encoding="utf-8")
    every, scanned = LogClassifier(), LogClassifier()
    with log.open("rb") as stream:
        for line in read_log(stream):
            every.feed(line)
    with log.open("rb") as stream:
        for line in scan_log(stream, CANDIDATE, SERVED):
            scanned.feed(line)
    assert every.serving and scanned.serving
