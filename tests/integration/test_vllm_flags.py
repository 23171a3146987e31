"""Every profile's rendered argv parses with the installed vLLM's own argument parser.

This is the check that the flags are vLLM's: not a list we maintain, but vLLM's parser, its
choices and its quick pre-load validation (what `vllm serve` runs before loading a model).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from qwenops.config.loader import load_profile
from qwenops.config.paths import available_profiles
from qwenops.config.profile import VLLM_FLAG_FIELDS
from qwenops.render.vllm import OPENAI_ENTRYPOINT, vllm_argv

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def vllm_parser() -> Any:
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except Exception as exc:
        pytest.fail(f"vLLM is not importable: {exc}; run scripts/install_cpu_engine.sh", pytrace=False)
    for module_name in ("vllm.entrypoints.launchers.cli_args", "vllm.entrypoints.openai.cli_args"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        # vLLM's FlexibleArgumentParser.__init__ has no annotations (a typed package's untyped function).
        return module, module.make_arg_parser(FlexibleArgumentParser())  # type: ignore[no-untyped-call]
    pytest.fail("cannot find vLLM's make_arg_parser", pytrace=False)


@pytest.mark.parametrize("name", sorted(available_profiles()))
def test_rendered_argv_parses_with_vllms_parser(name: str, vllm_parser: Any) -> None:
    module, parser = vllm_parser
    profile = load_profile(name, env={})
    argv = vllm_argv(profile, state_dir=Path("/var/lib/qwenops"))
    if argv[:2] == ["vllm", "serve"]:
        words = argv[2:]
        model = argv[2]
    else:
        assert argv[1:3] == ["-m", OPENAI_ENTRYPOINT]
        words = argv[3:]
        model = argv[4]
    args = parser.parse_args(words)
    if hasattr(module, "validate_parsed_serve_args"):
        module.validate_parsed_serve_args(args)
    assert (args.model_tag or args.model) == model
    for field in VLLM_FLAG_FIELDS:
        value = getattr(profile, field)
        if value is None or value is False:
            continue
        parsed = getattr(args, field)
        if field == "served_model_name":
            parsed = parsed[0]
        assert parsed == value, f"{field}: vLLM parsed {parsed!r}, profile has {value!r}"
