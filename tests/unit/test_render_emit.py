"""The quoting emitters (qwenops.render.emit) on any input: YAML reads back as its data, an Exec line
splits back into its argv as systemd splits it, and no emitter writes a line break."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from qwenops.render.emit import (
    RenderError,
    comment_value,
    dockerfile_word,
    systemd_exec,
    yaml_document,
    yaml_documents,
    yaml_string,
)
from tests.unit.test_render_hostile import systemd_words

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
DATA = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXT, DATA, max_size=5), TEXT)
def test_any_yaml_data_reads_back_as_itself(data: dict[str, Any], text: str) -> None:
    document = yaml_document(data, {(key,): ["a note"] for key in list(data)[:1]}, header=[comment_value(text)])
    assert yaml.safe_load(document) == data
    assert list(yaml.safe_load_all(yaml_documents([(data, {}, []), ({"k": text}, {}, [])]))) == [data, {"k": text}]


@settings(max_examples=300, deadline=None)
@given(st.lists(TEXT.filter(lambda t: not re.search(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]",
                                                    t)), min_size=1, max_size=5))
def test_any_exec_argv_splits_back_as_systemd_splits_it(argv: list[str]) -> None:
    argv = ["/opt/" + argv[0], *argv[1:]]
    assert systemd_words(systemd_exec(argv)) == argv


@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\u2028b", "a\x85b"])
def test_the_line_emitters_refuse_a_line_break_even_past_validation(text: str) -> None:
    with pytest.raises(RenderError):
        systemd_exec(["/bin/x", text])
    assert "\n" not in comment_value(text) and "\u2028" not in comment_value(text)


@pytest.mark.parametrize("text", ["y", "n", "N", "on", "no", "null", "~", "1e5", "0o17", "0x1f", "1_000", "8000:8000",
                                  "2001-12-14", "12.5", ".inf", "-", "---", "...", "- a", "a: b", "a #b", "&a", "*a",
                                  "!tag", "|", ">", "%YAML", "@x", "`x", "'x", '"x', "[a]", "{a}", "a,b", "?", "",
                                  " a"])
def test_a_string_that_any_yaml_reader_could_take_for_more_is_quoted(text: str) -> None:
    assert yaml_string(text).startswith('"')
    assert yaml.safe_load(yaml_string(text)) == text


@pytest.mark.parametrize(("text", "word"), [("4090d", "4090d"), ("a b", '"a b"'), ("$HOME", '"\\$HOME"'),
                                            ('q"\\', '"q\\"\\\\"')])
def test_dockerfile_words_are_bare_or_escaped(text: str, word: str) -> None:
    assert dockerfile_word(text) == word
