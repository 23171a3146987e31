"""The classifier's rules written from corpus/dev12, each test citing its log and the public thread it came from.
None of these logs is in the frozen test half (tests/logcorpus.py), which no test reads. The rules read vLLM's own
message with its numbers and a traceback's structure (which frames are imports), never one log's sentence. Every
text is read by both of troubleshoot's readers, which must agree."""

from __future__ import annotations

from tests.logcorpus import LOGS
from tests.logreaders import findings_of_both_readers, found

DEV12 = LOGS / "corpus" / "dev12"


def categories_of(lines: list[str]) -> list[str]:
    return [f.category for f in findings_of_both_readers("\n".join(lines))]


def test_v0s_multimodal_prompt_too_long_to_fit_into_the_model_is_request_too_long() -> None:
    """vllm-project/vllm#12165 (dev12 request_too_long 014, title only): "ValueError: The prompt (total length 25938)
    is too long to fit into the model (context length 4096). Make sure that `max_model_len` is no smaller than the
    number of text tokens plus multimodal tokens." vLLM's input check refuses one request whose prompt (text and
    multimodal tokens) is longer than the context: request_too_long, a warning (the server keeps serving), with the
    numbers in the fix."""
    [finding] = found(DEV12 / "request_too_long" / "014_v06x_prompt_total_length_25938_context_4096_title_only.log")
    assert finding.category == "request_too_long" and finding.severity == "warning"
    assert "4096" in finding.fix and "25938" in finding.fix
    [finding] = findings_of_both_readers("ValueError: The prompt (total length 9000) is too long to fit into the "
                                         "model (context length 8192).")
    assert finding.category == "request_too_long"
    for other in ("the prompt is too long to fit on one screen", "context length 4096 is fine"):
        assert categories_of([other]) == [], other


def test_a_traceback_of_module_imports_cut_before_its_exception_is_not_a_config_check() -> None:
    """vllm-project/vllm#21226 (dev12 broken_install 002): `collect_env.py` importing vLLM, a chain of `<module>`
    frames through vllm/config.py (`from vllm.model_executor.layers.quantization import ...`), cut before the
    ImportError the title gives ("vllm/_C.abi3.so: undefined symbol"). A `<module>` frame is Python importing that
    file, not vLLM running it: the config file's frame no longer names a configuration check (it was
    `invalid_config`); the cut traceback stays `unclassified`. A traceback through vLLM's config code proper still
    names the check."""
    [finding] = found(DEV12 / "broken_install" / "002_v0x_workspace_build_collect_env_c_abi3_undefined_symbol.log")
    assert finding.category == "unclassified" and finding.severity == "error"
    imports = ["Traceback (most recent call last):",
               '  File "/workspace/vllm/vllm/engine/arg_utils.py", line 15, in <module>',
               "    from vllm.config import (CacheConfig, CompilationConfig, ConfigFormat,",
               '  File "/workspace/vllm/vllm/config.py", line 29, in <module>',
               "    from vllm.model_executor.layers.quantization import (QUANTIZATION_METHODS,"]
    assert "invalid_config" not in categories_of(imports)
    checking = ["Traceback (most recent call last):",
                '  File "/v/vllm/engine/arg_utils.py", line 900, in create_engine_config',
                "    model_config = self.create_model_config()",
                '  File "/v/vllm/config.py", line 300, in __init__',
                "    self._verify_quantization()"]
    assert categories_of(checking)[:1] == ["invalid_config"]
