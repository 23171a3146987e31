"""An experiment, measured and not shipped: a learned second opinion for vLLM logs troubleshoot's rules cannot name.

    python scripts/fit_logmodel.py                       # held-out folds: rules alone against rules + model
    python scripts/fit_logmodel.py --rules-from DIR      # the same with an older checkout's rules
    python scripts/fit_logmodel.py --show                # and each log whose first finding the fallback changed
    python scripts/fit_logmodel.py --write FILE          # the model fit on the whole dev half, as JSON

Only the dev half is read (tests/logcorpus.py's split), never a file of the frozen test half.

The question: the hand-written rules (qwenops/vllmlog/classify.py) score 82% on the dev half they were written
from and far less on fresh logs; would a model of the logs' structure, fit on the dev half, name what the rules
miss? The features are structure, not prose: the exception's class (and its CamelCase parts, its module), the
traceback's frames, files and packages, the calls and raises of their code lines, the phase the frames show
(classify.frame_phase) and the phase the classifier had reached at the first error, the loggers of the ERROR and
WARNING lines, HTTP statuses, the rules' own notes and warnings, and a few normalised words of the error lines
(lowercased; paths, URLs, hex and digits gone). LogFeatures reads them from the lines the classifier is fed, with
classify.py's own patterns: it parses nothing itself. LogModel is multinomial naive Bayes over their presence
(alpha 0.1, features at least two dev logs share), written by hand, not with scikit-learn or numpy: it is ~50
lines of counting and logarithms and the product must stay dependency-light; its counts are integers, so a fit of
the same logs is the same JSON.

Variants, scored top-1 as benchmarks/troubleshoot_accuracy.py scores (its `right`), on held-out folds:
- (a) fallback (second_opinion): only where the rules name no cause (the first finding is `unclassified`, or there
  is none) on a log with an error line (an exception, a traceback, a logger ERROR), the model's guess at
  posterior >= p goes first: an error where the rules' unexplained error was (now a note under it), else a
  warning, its evidence "resembles the N dev logs of CATEGORY (probability P): feature, ...". A log with no error
  line never gets a finding from it.
- (b) ranker: among the rules' own candidates (two or more categories of errors and warnings), the one the model
  finds x times likelier than the rules' first goes first.
- "model alone" (not a candidate): the model's guess on every log with an error line, to measure it on ~180 logs
  rather than the ~20 the rules leave to it.
Folds: leave one collection out (collected, public, corpus/a to d, dev2 to dev5) and 5 folds by thread. The rules
were written from every dev log, so on a held-out fold they are in-sample and the model is not; --rules-from DIR
scores an older checkout's rules instead (`git archive 164c33e qwenops | tar -x -C DIR`: the commit that added
corpus/dev5 before any rule was written from it), the rules a fresh log meets.

What it found (339 dev logs, 2026-12-07; top-1 right, summed over the held-out folds):

    rules of                 folds         rules  model alone  (a) p>=0.5  (a) p>=0.7  (a) p>=0.9  (b) x1  (b) x3
    HEAD                     collections     277          228         276         275         275     270     270
    HEAD                     threads         277          235         279         278         277     272     272
    164c33e (before dev5's)  collections     263          219         263         261         261     257     257
    164c33e (before dev5's)  threads         263          226         265         264         263     258     259
    --model neighbours (k=3), HEAD: collections 277 / 208 / 277 / 277 / 277 / 270 / 272, threads 277 / 219 / 277 ...;
    164c33e: collections 263 / 199 / 263 / 263 / 263 / 257 / 258: the nearest dev logs are far from every log the
    rules leave, so it abstains there (its posterior keeps 1 - the nearest similarity for `unclassified`).

corpus/dev5 held out under the rules before it (the closest thing to fresh logs): 17/35 alone, 19/35 with (a) at
p >= 0.5; corpus/dev4 held out under the same rules: 16/37 alone, 14/37 with (a). No variant gave a healthy log an
error finding (no healthy dev log has an error line, so (a) never touches one). So the fallback moves one or two
logs either way, inside the noise, and the ranker loses 5 to 7: neither was wired into troubleshoot.

Why: the rules leave the fallback about 20 of 339 logs (an error line, no named cause), a third of which are
right as `unclassified` (a broken install, a client's configuration); the rest are unlike any other dev log (a
traceback cut before its exception line, a new hub's exception, a 500 whose cause only the thread's prose names),
and the model, fit on ~180 logs with an error line over ~25 causes, names 67-69% of the logs it holds out when
used alone, worst where the rules fail. The misses fresh logs bring (corpus/dev5 under the rules before it: 18)
are mostly not there at all: 9 have no error line (answers that loop or degrade, a slow benchmark, a client's
code, a sentence about an OOM), 2 name a wrong cause, 7 are the fallback's case (it named 1 or 2 of them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import troubleshoot_accuracy as accuracy  # noqa: E402
from qwenops.troubleshoot.run import classify_source  # noqa: E402
from qwenops.troubleshoot.sources import file_source, open_source  # noqa: E402
from qwenops.vllmlog.classify import (  # noqa: E402
    _CUT_FIXES,
    _ERROR_LINE,
    _EXCEPTION_LINE,
    _FRAME,
    _IPYTHON_FRAME,
    _LOGGER_PREFIX,
    _NO_MATCH,
    _OOM,
    _OOM_FIXES,
    _OTHER_ERROR_LINE,
    _RPC,
    _TRACEBACK_START,
    CANDIDATE,
    CODE,
    RULES_BY_CATEGORY,
    SERVED,
    UNCLASSIFIED_RANK,
    Evidence,
    Finding,
    LogClassifier,
    Severity,
    code_frames,
    frame_phase,
)
from qwenops.vllmlog.lines import LogLine, scan_log  # noqa: E402
from tests.logcorpus import LOGS, Case, in_test_half, load_cases  # noqa: E402

# --- the features and the model ---

MAX_FEATURES = 512  # distinct features kept per log: a hostile log of a million distinct words is bounded
MAX_WORDS_PER_LINE = 24
MAX_FRAMES = 64  # a traceback's frames kept for its phase (classify.py keeps as many)
THRESHOLD = 0.7  # the model names a cause only when its posterior is at least this (--cv tries 0.3 to 0.9)
# Categories the model may name: a cause, not "no cause" (unclassified) nor "nothing wrong" (healthy).
NOT_A_CAUSE = frozenset({"unclassified", "healthy"})

_LOGGER_NAME = re.compile(r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL) \d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? "
                          r"\[?(?:[\w.-]*/)?(?P<module>[\w.-]+?)(?:\.py)?:\d+\]")
_HTTP_STATUS = re.compile(r'(?:Error code:|HTTP/1\.[01]"|status[_ ]code[=: ]+|Client Error:|Server Error:) ?'
                          r"(?P<status>[1-5]\d\d)\b")
_PACKAGE = re.compile(r"(?:site|dist)-packages[/\\](?P<package>[A-Za-z_]\w*)|[/\\](?P<vllm>vllm)[/\\]")
_URL_OR_PATH = re.compile(r"\S*[/\\]\S*|\b0x[0-9a-fA-F]+\b")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
_SEPARATOR = re.compile(r"[/\\]")
_WORD = re.compile(r"[a-z][a-z_]{2,23}")
_STOP = frozenset(("the", "and", "for", "with", "this", "that", "was", "are", "not", "you", "your", "has", "have",
                   "from", "been", "its", "can", "but", "will", "when", "which", "into", "than", "then", "there",
                   "their", "please", "any", "all", "use", "see", "more", "one", "may", "traceback", "most", "recent",
                   "call", "last"))


def words(text: str) -> list[str]:
    """The normalised words of an error line: lowercased, paths, URLs and hex gone, digits dropped."""
    text = _URL_OR_PATH.sub(" ", text[:1000]).lower()
    found = [word.strip("_") for word in _WORD.findall(re.sub(r"\d+", " ", text))]
    return [word for word in found if len(word) > 2 and word not in _STOP][:MAX_WORDS_PER_LINE]


@dataclass
class LogFeatures:
    """Feed it the lines fed to a LogClassifier (after each classifier.feed); `features` is the log's structure."""

    found: dict[str, None] = field(default_factory=dict)  # ordered, for a readable explanation
    error_lines: int = 0  # exception, traceback and logger ERROR lines: where the model may speak
    _frames: list[tuple[str, str]] = field(default_factory=list)  # the traceback being read

    def _add(self, feature: str) -> None:
        if len(self.found) < MAX_FEATURES:
            self.found.setdefault(feature, None)

    def feed(self, line: LogLine, classifier: LogClassifier) -> None:
        text = line.text.strip()
        if not text:
            return
        body = _LOGGER_PREFIX.sub("", text, count=1)
        logger = _LOGGER_NAME.match(text)
        frame = _FRAME.search(body) or _IPYTHON_FRAME.match(body)
        if _TRACEBACK_START.search(body):
            self._close()
            self._error(classifier)
        elif frame is not None:
            self._error(classifier)
            self._frame(frame.group("file"), frame.group("func"), line.code)
        elif (rpc := _RPC.search(body)) is not None:
            self._frames = [*self._frames[-(MAX_FRAMES - 1):], ("", rpc.group("method"))]
            self._add(f"rpc:{rpc.group('method')}")
        if frame is None:
            self._error_line(text, body, logger, classifier)
        if logger is not None and logger.group("level") == "WARNING":
            self._add(f"warned:{logger.group('module')}")
        if _OOM.search(text):
            self._add("oom")
        status = _HTTP_STATUS.search(text)
        if status is not None:
            self._add(f"http:{status.group('status')}")
            self._add(f"http:{status.group('status')[0]}xx")

    def _frame(self, file: str, func: str, code: str) -> None:
        called = code_frames(code)
        self._frames = [*self._frames[-(MAX_FRAMES - 1):], (file, func), *called]
        self._add(f"frame:{func}")
        self._add(f"file:{_SEPARATOR.split(file)[-1].removesuffix('.py')}")
        package = _PACKAGE.search(file)
        if package:
            self._add(f"package:{package.group('package') or package.group('vllm')}")
        for kind, name in called:
            self._add(f"{'call' if kind == CODE else 'raise'}:{name}")

    def _error_line(self, text: str, body: str, logger: re.Match[str] | None, classifier: LogClassifier) -> None:
        """An exception line, a logger's ERROR line or another program's: the type, the logger, the words."""
        exception = _EXCEPTION_LINE.match(body)
        logged = logger is not None and logger.group("level") in ("ERROR", "CRITICAL")
        if exception is None and not logged and not _OTHER_ERROR_LINE.search(text) and not _ERROR_LINE.match(text):
            return
        self._error(classifier)
        if logger is not None and logged:
            self._add(f"logger:{logger.group('module')}")
        if exception is None:
            self._words(body)
            return
        self._close()
        kind = exception.group("type").rsplit(".", 1)
        self._add(f"exception:{kind[-1]}")
        for part in _CAMEL.findall(kind[-1])[:6]:  # NotExistError shares "not" with NotFoundError
            self._add(f"exception_part:{part.lower()}")
        if len(kind) > 1:
            self._add(f"module:{kind[0].split('.', 1)[0]}")
        self._words(exception.group("msg") or "")

    def _error(self, classifier: LogClassifier) -> None:
        if self.error_lines == 0:  # where the log was when its first error came
            self._add(f"phase_at_error:{'serving' if classifier.serving else classifier.phase.value}")
        self.error_lines += 1

    def _words(self, text: str) -> None:
        for word in words(text):
            self._add(f"word:{word}")

    def _close(self) -> None:
        where = frame_phase(self._frames) if self._frames else None
        if where is not None:
            self._add(f"frame_phase:{where}")
        self._frames = []

    def features(self, classifier: LogClassifier) -> list[str]:
        """The log's features, once every line was fed."""
        self._close()
        self._add(f"phase:{'serving' if classifier.serving else classifier.phase.value}")
        for finding in classifier.findings():  # what the rules found besides a cause: notes, warnings
            if finding.severity != "error":
                self._add(f"finding:{finding.category}:{finding.severity}")
        return list(self.found)


@dataclass(frozen=True)
class Guess:
    category: str
    probability: float
    docs: int  # the dev logs of that category the model was fit on
    because: tuple[str, ...]  # the features that weigh most for it


@dataclass(frozen=True)
class LogModel:
    """Multinomial naive Bayes over feature presence, Laplace-smoothed (counts from `fit`)."""

    docs: Mapping[str, int]  # category -> dev logs of it
    totals: Mapping[str, int]  # category -> features seen in its logs, in all
    counts: Mapping[str, Mapping[str, int]]  # feature -> category -> logs of that category that have it
    alpha: float = 1.0

    def _log_likelihood(self, feature: str, category: str) -> float:
        seen = self.counts[feature].get(category, 0)
        return math.log((seen + self.alpha) / (self.totals[category] + self.alpha * len(self.counts)))

    def posterior(self, features: Iterable[str]) -> dict[str, float]:
        known = [f for f in dict.fromkeys(features) if f in self.counts]
        all_docs = sum(self.docs.values())
        scores = {c: math.log(n / all_docs) + sum(self._log_likelihood(f, c) for f in known)
                  for c, n in self.docs.items()}
        top = max(scores.values())
        weights = {c: math.exp(s - top) for c, s in scores.items()}
        total = sum(weights.values())
        return {c: w / total for c, w in weights.items()}

    def guess(self, features: Sequence[str], among: Iterable[str] | None = None) -> Guess | None:
        posterior = self.posterior(features)
        allowed = [c for c in (among if among is not None else posterior) if c in posterior]
        if not allowed:
            return None
        best = max(sorted(allowed), key=lambda c: posterior[c])
        others = [c for c in self.docs if c != best]

        def weight(f: str) -> float:  # how much more likely the feature is under BEST than under the rest
            return self._log_likelihood(f, best) - max(self._log_likelihood(f, c) for c in others)

        known = sorted({f for f in features if f in self.counts}, key=lambda f: (-weight(f), f))
        because = tuple(f for f in known[:5] if weight(f) > 0)
        return Guess(best, posterior[best], self.docs[best], because)

    def to_json(self) -> str:
        return json.dumps({"alpha": self.alpha, "counts": self.counts, "docs": self.docs, "totals": self.totals},
                          sort_keys=True, indent=0, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LogModel:
        data = json.loads(text)
        return cls(docs=data["docs"], totals=data["totals"], counts=data["counts"], alpha=float(data["alpha"]))


def fit(logs: Iterable[tuple[Sequence[str], str]], min_logs: int = 2, max_features: int = 3000,
        alpha: float = 0.1) -> LogModel:
    """Count, per category, the logs that have each feature; keep the features at least MIN_LOGS logs share
    (a feature of one log is that thread's, not a pattern), the MAX_FEATURES most shared."""
    docs: dict[str, int] = {}
    per_log: list[tuple[set[str], str]] = []
    shared: dict[str, int] = {}
    for features, category in logs:
        unique = set(features)
        per_log.append((unique, category))
        docs[category] = docs.get(category, 0) + 1
        for feature in unique:
            shared[feature] = shared.get(feature, 0) + 1
    kept = sorted((f for f, n in shared.items() if n >= min_logs), key=lambda f: (-shared[f], f))[:max_features]
    counts: dict[str, dict[str, int]] = {f: {} for f in kept}
    totals = dict.fromkeys(docs, 0)
    for unique, category in per_log:
        for feature in unique & counts.keys():
            counts[feature][category] = counts[feature].get(category, 0) + 1
            totals[category] += 1
    return LogModel(docs=docs, totals=totals, counts=counts, alpha=alpha)


class Guesser(Protocol):
    """What the variants ask of a model: a posterior over categories, and its best guess with the reasons."""

    def posterior(self, features: Iterable[str]) -> dict[str, float]: ...

    def guess(self, features: Sequence[str]) -> Guess | None: ...


@dataclass(frozen=True)
class Neighbours:
    """The other model tried: the K dev logs nearest by cosine over IDF-weighted features (those at least two dev
    logs share). Its posterior is the neighbours' similarity-weighted vote scaled by the nearest one's similarity;
    the rest of the mass is `unclassified` (a log like no dev log is not named)."""

    logs: Sequence[tuple[Mapping[str, float], str]]  # each dev log's unit vector, its category
    idf: Mapping[str, float]
    k: int = 3

    @classmethod
    def fit(cls, logs: Iterable[tuple[Sequence[str], str]], k: int = 3) -> Neighbours:
        kept = [(set(features), category) for features, category in logs]
        shared: dict[str, int] = {}
        for unique, _ in kept:
            for feature in unique:
                shared[feature] = shared.get(feature, 0) + 1
        idf = {f: math.log(len(kept) / n) for f, n in shared.items() if n >= 2}
        empty = cls((), idf, k)
        return cls(tuple((empty._vector(unique), category) for unique, category in kept), idf, k)

    def _vector(self, features: Iterable[str]) -> dict[str, float]:
        weights = {f: self.idf[f] for f in set(features) if self.idf.get(f)}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {f: w / norm for f, w in weights.items()}

    def _nearest(self, features: Iterable[str]) -> list[tuple[float, str, Mapping[str, float]]]:
        vector = self._vector(features)
        scored = [(sum(w * other.get(f, 0.0) for f, w in vector.items()), category, other)
                  for other, category in self.logs]
        return sorted(scored, key=lambda seen: (-seen[0], seen[1]))[:self.k]

    def posterior(self, features: Iterable[str]) -> dict[str, float]:
        nearest = self._nearest(features)
        votes: dict[str, float] = {}
        for similarity, category, _ in nearest:
            votes[category] = votes.get(category, 0.0) + similarity
        total = sum(votes.values())
        closest = nearest[0][0] if nearest and total > 0 else 0.0
        out = {category: closest * vote / total for category, vote in votes.items()} if total > 0 else {}
        out["unclassified"] = out.get("unclassified", 0.0) + 1.0 - closest
        return out

    def guess(self, features: Sequence[str]) -> Guess | None:
        posterior = self.posterior(features)
        best = max(sorted(posterior), key=lambda c: posterior[c])
        alike = [other for _, category, other in self._nearest(features) if category == best]
        shared = sorted({f for other in alike for f in other if f in features}, key=lambda f: (-self.idf[f], f))
        return Guess(best, posterior[best], len(alike), tuple(shared[:5]))


def second_opinion(findings: Sequence[Finding], features: Sequence[str], error_lines: int, model: Guesser,
                   threshold: float = THRESHOLD) -> list[Finding]:
    """FINDINGS with the model's guess where the rules found no cause: the first finding is `unclassified` (or
    there is none) and the log has an error line. The guess, when confident, goes first; the rules' findings
    stay below it (the unexplained error quoted, as a note)."""
    first = findings[0] if findings else None
    if error_lines == 0 or (first is not None and first.category != "unclassified"):
        return list(findings)
    guess = model.guess(features)
    if guess is None or guess.category in NOT_A_CAUSE or guess.probability < threshold:
        return list(findings)
    # The rules' unexplained error is the same failure: the guess takes its place as the error, a named cause.
    severity: Severity = "error" if first is not None and first.severity == "error" else "warning"
    quoted = first.evidence if first is not None else ()
    why = Evidence("learned model", f"resembles the {guess.docs} dev logs of {guess.category} (probability "
                   f"{guess.probability:.2f}): {', '.join(guess.because) or 'its features together'}")
    named = Finding(guess.category, severity, f"likely {guess.category}: no rule matched, the error resembles "
                    f"known {guess.category} logs", (*quoted, why),
                    f"a learned guess, not a rule: check the quoted line against this cause. {_fix_of(guess.category)}",
                    rank=UNCLASSIFIED_RANK - 1)
    rest = [replace(f, severity="info", title=f"{f.title} (named above by the learned model)")
            if f is first and f.severity == "error" else f for f in findings]
    return [named, *rest]


def _fix_of(category: str) -> str:
    if category in _OOM_FIXES:
        return _OOM_FIXES[category]
    if category in _CUT_FIXES:
        return _CUT_FIXES[category]
    rule = RULES_BY_CATEGORY.get(category)
    return rule.fix(_NO_MATCH, {}) if rule is not None else ""


# --- the corpus and the folds ---


@dataclass(frozen=True)
class Log:
    case: Case
    label: str  # the category the model learns: troubleshoot's vocabulary, `unclassified` for a cause outside it
    features: tuple[str, ...]
    error_lines: int
    findings: tuple[Finding, ...]  # the rules' own


def dev_cases() -> list[Case]:
    return [case for case in load_cases() if not in_test_half(case)]


def label_of(category: str) -> str:
    """The name troubleshoot would give CATEGORY: an alias in its vocabulary, else `unclassified` (a broken
    install, a client's configuration: outside the vocabulary, where quoting the error is the answer)."""
    if category == "healthy" or category in accuracy.VOCABULARY:
        return category
    aliases = sorted(accuracy.ALIASES.get(category, set()) & accuracy.VOCABULARY)
    return aliases[0] if aliases else "unclassified"


def read(cases: Sequence[Case]) -> list[Log]:
    """Each case's features, from the lines troubleshoot's classifier is fed, and troubleshoot's own findings."""
    logs = []
    for case in cases:
        classifier, features = LogClassifier(), LogFeatures()
        with open_source(file_source(str(case.path))) as stream:
            for line in scan_log(stream, CANDIDATE, SERVED):
                classifier.feed(line)
                features.feed(line, classifier)
        findings, _ = classify_source(file_source(str(case.path)), {})
        logs.append(Log(case, label_of(case.category), tuple(features.features(classifier)), features.error_lines,
                        tuple(findings)))
    return logs


def rules_from(directory: Path, logs: list[Log]) -> list[Log]:
    """LOGS with the findings of an older checkout's rules (its qwenops/ under DIRECTORY)."""
    program = ("import json, sys\nfrom qwenops.troubleshoot.run import classify_source\n"
               "from qwenops.troubleshoot.sources import file_source\nout = {}\n"
               "for path in sys.argv[1:]:\n    found, _ = classify_source(file_source(path), {})\n"
               "    out[path] = [(f.category, f.severity) for f in found]\nprint(json.dumps(out))\n")
    paths = [str(log.case.path) for log in logs]
    answer = subprocess.run([sys.executable, "-c", program, *paths], cwd=directory, capture_output=True, text=True,
                            check=True, env={"PYTHONPATH": str(directory), "PATH": "/usr/bin:/bin"})
    old = json.loads(answer.stdout)
    return [Log(log.case, log.label, log.features, log.error_lines,
                tuple(Finding(c, s, "", (), "") for c, s in old[str(log.case.path)])) for log in logs]


Fit = Callable[[Iterable[tuple[Sequence[str], str]]], Guesser]
MODELS: dict[str, Fit] = {"bayes": fit, "neighbours": Neighbours.fit}


def fit_logs(logs: Sequence[Log], kind: str = "bayes") -> Guesser:
    return MODELS[kind]((log.features, log.label) for log in sorted(logs, key=lambda log: str(log.case.path)))


# The variants compared: each turns the rules' findings into the ones reported.
Variant = Callable[[Log, Guesser], list[Finding]]


def rules_alone(log: Log, _model: Guesser) -> list[Finding]:
    return list(log.findings)


def fallback(threshold: float) -> Variant:
    """(a) The model names a cause only where the rules name none (unclassified or silent) on an error line."""
    def variant(log: Log, model: Guesser) -> list[Finding]:
        return second_opinion(log.findings, log.features, log.error_lines, model, threshold)
    return variant


def ranker(margin: float) -> Variant:
    """(b) The model reorders the rules' own candidates (errors and warnings of two or more categories): the one
    it finds MARGIN times likelier than the rules' first goes first."""
    def variant(log: Log, model: Guesser) -> list[Finding]:
        found = list(log.findings)
        candidates = sorted({f.category for f in found if f.severity != "info"} - {"unclassified"})
        if len(candidates) < 2 or not found:
            return found
        posterior = model.posterior(log.features)
        best = max(candidates, key=lambda c: posterior.get(c, 0.0))
        first = found[0].category
        if best != first and posterior.get(best, 0.0) > margin * posterior.get(first, 0.0):
            moved = next(f for f in found if f.category == best)
            return [moved, *(f for f in found if f is not moved)]
        return found
    return variant


def both(threshold: float, margin: float) -> Variant:
    def variant(log: Log, model: Guesser) -> list[Finding]:
        ranked = ranker(margin)(log, model)
        return fallback(threshold)(Log(log.case, log.label, log.features, log.error_lines, tuple(ranked)), model)
    return variant


def model_alone(log: Log, model: Guesser) -> list[Finding]:
    """Not a candidate: the model's own guess on every log with an error line (the rules' elsewhere), to measure
    how well it names what it never saw, on many more logs than the few the rules leave to it."""
    guess = model.guess(log.features) if log.error_lines else None
    return [Finding(guess.category, "error", "", (), "")] if guess is not None else list(log.findings)


VARIANTS: dict[str, Variant] = {
    "rules": rules_alone,
    "model alone": model_alone,
    **{f"(a) p>={t}": fallback(t) for t in (0.5, 0.7, 0.9)},
    **{f"(b) x{m:g}": ranker(m) for m in (1.0, 3.0)},
    f"(a)+(b) {THRESHOLD},x3": both(THRESHOLD, 3.0),
}


@dataclass
class Score:
    right: int = 0
    logs: int = 0
    healthy_errors: int = 0

    def add(self, log: Log, findings: list[Finding]) -> None:
        named = [f.category for f in findings]
        has_error = any(f.severity == "error" for f in findings)
        self.logs += 1
        self.right += accuracy.right(log.case.category, named, has_error, 1)
        self.healthy_errors += log.case.category == "healthy" and has_error

    def __str__(self) -> str:
        healthy = f" ({self.healthy_errors} healthy err)" if self.healthy_errors else ""
        return f"{self.right:>3}/{self.logs:<3}{healthy}"


def folds_by_collection(logs: Sequence[Log]) -> dict[str, list[Log]]:
    folds: dict[str, list[Log]] = {}
    for log in logs:
        folds.setdefault(log.case.collection.split("/")[0] if log.case.collection.startswith(("collected", "public"))
                         else log.case.collection, []).append(log)
    return folds


def folds_by_thread(logs: Sequence[Log], k: int = 5) -> dict[str, list[Log]]:
    folds: dict[str, list[Log]] = {}
    for log in logs:
        fold = hashlib.sha256(f"fold:{log.case.thread}".encode()).digest()[0] % k
        folds.setdefault(f"threads {fold}", []).append(log)
    return dict(sorted(folds.items()))


def cross_validate(logs: Sequence[Log], folds: dict[str, list[Log]], show: bool,
                   kind: str = "bayes") -> dict[str, Score]:
    totals = {name: Score() for name in VARIANTS}
    print(f"{'held out':<14}" + "".join(f"{name:>15}" for name in VARIANTS))
    for fold, held in folds.items():
        held_ids = {id(log) for log in held}
        model = fit_logs([log for log in logs if id(log) not in held_ids], kind)
        scores = {name: Score() for name in VARIANTS}
        for log in held:
            for name, variant in VARIANTS.items():
                findings = variant(log, model)
                scores[name].add(log, findings)
                totals[name].add(log, findings)
            if show:
                before, after = rules_alone(log, model), fallback(THRESHOLD)(log, model)
                if before[:1] != after[:1]:
                    ok = accuracy.right(log.case.category, [f.category for f in after], False, 1)
                    print(f"  {'+' if ok else '-'} {log.case.path.relative_to(LOGS)}: want {log.case.category}, "
                          f"rules {before[0].category if before else '(none)'}, model {after[0].category}: "
                          f"{after[0].evidence[-1].quote}")
        print(f"{fold:<14}" + "".join(f"{scores[name]!s:>15}" for name in VARIANTS))
    print(f"{'all folds':<14}" + "".join(f"{totals[name]!s:>15}" for name in VARIANTS))
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", type=Path, metavar="FILE", help="write the model fit on the whole dev half")
    parser.add_argument("--rules-from", type=Path, help="score an older checkout's rules (a directory with qwenops/)")
    parser.add_argument("--show", action="store_true", help="each log whose first finding the fallback changed")
    parser.add_argument("--model", choices=sorted(MODELS), default="bayes", help="naive Bayes, or k nearest dev logs")
    args = parser.parse_args(argv)
    accuracy.VOCABULARY.update(accuracy.vocabulary())
    logs = read(dev_cases())
    if args.write:
        text = fit((log.features, log.label) for log in sorted(logs, key=lambda log: str(log.case.path))).to_json()
        args.write.write_text(text, encoding="utf-8")
        print(f"wrote {args.write}: {len(text)} bytes, fit on {len(logs)} dev logs")
        return 0
    if args.rules_from:
        logs = rules_from(args.rules_from.resolve(), logs)
    print(f"== leave one collection out ({len(logs)} dev logs)")
    cross_validate(logs, folds_by_collection(logs), args.show, args.model)
    print("== 5 folds by thread")
    cross_validate(logs, folds_by_thread(logs), args.show, args.model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
