#!/usr/bin/env bash
# The README's test command. From a fresh clone it creates .venv, installs qwenops with its test
# tools and the real vLLM CPU engine, then runs ruff, mypy (strict) and the whole test suite, the
# integration tests against a real vLLM server included. Extra arguments go to pytest, e.g.
#   scripts/test.sh -m 'not engine'     # skip the tests that start vLLM
set -euo pipefail
cd "$(dirname "$0")/.."

# The suite starts Python hundreds of times (vLLM servers, the CLI, pytest's workers). Where the environment
# says never to write bytecode (PYTHONDONTWRITEBYTECODE, common in container images), each start compiles
# every module it imports anew: a vLLM server's two processes then take ~16 s each to import, not ~8 s. The
# test run writes it, into this checkout and its .venv (both git-ignored), once.
unset PYTHONDONTWRITEBYTECODE

python=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$python" -m venv .venv
fi
# qwenops with its test tools and the engine in one resolution, with uv where it can be had (else pip);
# one line per phase, the installers' output only on failure (QWENOPS_VERBOSE=1 shows it).
scripts/install_cpu_engine.sh --editable '.[dev]' .venv/bin/python
# Debian's packages, once: systemd-analyze and systemd-sysusers check the rendered unit; Chromium and
# its driver run the gateway's chat page (tests/integration/test_gateway_page.py). Not on PyPI.
missing=()
command -v systemd-analyze >/dev/null && command -v systemd-sysusers >/dev/null || missing+=(systemd)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "== installing ${missing[*]} (Debian)"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== ruff"
.venv/bin/ruff check .
# mypy (about a minute of one core from a cold cache) runs beside pytest, whose engine tests leave a core
# idle much of the time; its report is printed after pytest's, and either failing fails the command.
mypy_log=$(mktemp)
trap 'rm -f "$mypy_log"' EXIT
.venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
echo "== pytest (mypy --strict qwenops/ tests/ benchmarks/ runs beside it)"
status=0
.venv/bin/python -m pytest "$@" || status=$?
# pytest exits 5 when it collected no test (e.g. a -k that matches nothing): not a failure here.
if [[ $status -eq 5 ]]; then status=0; fi
echo "== mypy --strict qwenops/ tests/ benchmarks/"
mypy_status=0
wait "$mypy_pid" || mypy_status=$?
cat "$mypy_log"
if [[ $status -eq 0 ]]; then status=$mypy_status; fi
exit $status
