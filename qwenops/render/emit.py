"""The quoting emitters: every value a render takes from a profile reaches its file through one of these.

A rendered file is structure (sections, directives, documents, keys, instructions, argv words) around
values. The structure is written by the renderers as constants; a value is written only by the emitter
for its target, which quotes it so that it stays one value whatever it holds (docs/security.md):

- YAML (compose, Kubernetes, production-stack values): documents built as data and emitted here, one
  per object; a string is plain only when it is a conservative word that reads back as itself, else a
  double-quoted ASCII scalar with every other character escaped; each document is read back with
  PyYAML and must equal its data, or the render fails;
- systemd: argv words quoted by the rules of systemd.syntax(7) and systemd.service(5) (`%` -> `%%`,
  `$` -> `$$` after the executable, `\\` and `"` escaped inside double quotes), other values with `%`
  escaped;
- comments (every target): constant text, or a value as a JSON string literal (control characters
  escaped, never ending in a backslash that some parsers read as a continuation).

Shell words are shlex.quote'd and Dockerfile commands are JSON arrays where they are written
(render/script.py, render/docker.py). Values are also validated before a render (config/profile.py:
one line, names, hosts), so a render never meets a line break; the emitters refuse one all the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from qwenops.untrusted import control_character

# A path to a node of a YAML document: its keys and list indexes from the top.
NodePath = tuple[str | int, ...]
Comments = Mapping[NodePath, Sequence[str]]


class RenderError(ValueError):
    """A value that no emitter may write (a control character), or a document that would not read back."""


# --------------------------------------------------------------------------------------- comments


def comment_value(value: str) -> str:
    """VALUE inside a comment: a JSON string literal (quotes, backslashes and control characters escaped)."""
    return json.dumps(value, ensure_ascii=control_character(value) is not None)


def comment_line(text: str, prefix: str = "#") -> str:
    """One comment line; TEXT is constant or holds values through comment_value, so it is one line."""
    found = control_character(text)
    if found is not None:
        raise RenderError(f"a comment cannot hold {found}: {text[:60]!r}")
    return f"{prefix} {text}" if text else prefix


# ------------------------------------------------------------------------------------------- YAML

# A plain scalar this emitter writes: a word of letters, digits and path punctuation, which can neither
# start nor end a structure (no ': ', ' #', flow brackets, commas, quotes, '&', '*', '!', '|', '>', '%', '@').
# It starts with a letter or '/', or with digits and a letter that no number or date of any YAML version
# has there (60s, 2gb, 16Gi are plain; 0o17, 0x1f, 1e5, 1_000, 8000:8000, 2001-12-14t1:00 are quoted).
# Flags (--profile, -c) are plain too: dashes, then a letter.
_PLAIN = re.compile(r"(?:-*[A-Za-z/]|[0-9][0-9.]*[AC-DF-NP-SU-WYZac-df-np-su-wyz])[A-Za-z0-9._/:+-]*", re.ASCII)


def _plain_is_itself(text: str) -> bool:
    import yaml

    # y and n are booleans to YAML 1.1 readers that PyYAML does not follow (go-yaml v2, Kubernetes').
    if not _PLAIN.fullmatch(text) or text.endswith(":") or text in ("y", "Y", "n", "N"):
        return False
    try:
        return bool(yaml.safe_load(text) == text)  # not a number, bool, null or timestamp
    except yaml.YAMLError:
        return False


def yaml_string(text: str) -> str:
    """TEXT as a YAML scalar: plain when that reads back as the same string, else double-quoted ASCII."""
    if _plain_is_itself(text):
        return text
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def yaml_scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text:  # PyYAML's floats need a '.' before the exponent
            text = text.replace("e", ".0e")
        return text
    if isinstance(value, str):
        return yaml_string(value)
    raise RenderError(f"no YAML scalar for {type(value).__name__}")


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float))


def _literal_block(text: str, indent: int) -> list[str] | None:
    """TEXT as a `|` block (a file inside a document, such as the ConfigMap's profile), or None."""
    if not text.endswith("\n") or text.endswith("\n\n") or text.startswith((" ", "\n")):
        return None
    lines = text[:-1].split("\n")
    if any(not line.isascii() or control_character(line) or line != line.rstrip() for line in lines):
        return None
    return [" " * indent + line if line else "" for line in lines]


def _comments(comments: Comments, path: NodePath, indent: int) -> list[str]:
    return [" " * indent + comment_line(text) for text in comments.get(path, ())]


def _value_lines(head: str, value: object, path: NodePath, indent: int,  # noqa: PLR0911 -- one per YAML form
                 comments: Comments) -> list[str]:
    """HEAD (`key:` or `-`) and VALUE, which nests at INDENT."""
    if isinstance(value, Mapping) and value:
        return [head, *_mapping(value, path, indent, comments)]
    if isinstance(value, list) and value:
        flow = all(_is_scalar(item) for item in value) and not any(
            (*path, index) in comments for index in range(len(value)))
        text = "[" + ", ".join(yaml_scalar(item) for item in value) + "]" if flow else ""
        if flow and len(text) <= 100:
            return [f"{head} {text}"]
        return [head, *_sequence(value, path, indent, comments)]
    if isinstance(value, Mapping):
        return [f"{head} {{}}"]
    if isinstance(value, list):
        return [f"{head} []"]
    if value is None and head.endswith(":"):
        return [head]
    if isinstance(value, str) and "\n" in value:
        block = _literal_block(value, indent)
        if block is not None:
            return [f"{head} |", *block]
    return [f"{head} {yaml_scalar(value)}"]


def _mapping(data: Mapping[str, Any], path: NodePath, indent: int, comments: Comments) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for key, value in data.items():
        lines += _comments(comments, (*path, key), indent)
        lines += _value_lines(f"{pad}{yaml_string(key)}:", value, (*path, key), indent + 2, comments)
    return lines


def _sequence(items: Sequence[Any], path: NodePath, indent: int, comments: Comments) -> list[str]:
    lines: list[str] = []
    pad = " " * indent
    for index, item in enumerate(items):
        lines += _comments(comments, (*path, index), indent)
        if isinstance(item, Mapping) and item:
            body = _mapping(item, (*path, index), indent + 2, comments)
            first = next(n for n, line in enumerate(body) if not line.lstrip().startswith("#"))
            body[first] = f"{pad}- {body[first][indent + 2:]}"
            lines += body
        else:
            lines += _value_lines(f"{pad}-", item, (*path, index), indent + 2, comments)
    return lines


def yaml_document(data: Mapping[str, Any], comments: Comments | None = None, header: Sequence[str] = ()) -> str:
    """DATA as one block-style YAML document, HEADER comment lines first, COMMENTS above the nodes they name."""
    lines = [comment_line(text) for text in header]
    lines += _mapping(data, (), 0, comments or {}) if data else ["{}"]
    text = "\n".join(lines) + "\n"
    _reads_back(text, [data])
    return text


def yaml_documents(documents: Sequence[tuple[Mapping[str, Any], Comments, Sequence[str]]],
                   header: Sequence[str] = ()) -> str:
    """Several documents (data, comments, comment lines above it) in one stream, one per object."""
    parts = [yaml_document(data, comments, above) for data, comments, above in documents]
    text = "\n".join(comment_line(line) for line in header) + "\n" if header else ""
    text += "---\n".join(parts)
    _reads_back(text, [data for data, _, _ in documents])
    return text


def _reads_back(text: str, expected: list[Mapping[str, Any]]) -> None:
    import yaml

    # libyaml's parser where PyYAML was built with it (a tenth of the pure-Python parser's time); the
    # resolver and constructor are the same safe ones either way, so both read the text alike.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    if list(yaml.load_all(text, Loader=loader)) != expected:
        raise RenderError("a rendered YAML document does not read back as its data")


# ---------------------------------------------------------------------------------------- systemd

# A word systemd reads as itself outside quotes (no whitespace, quotes, backslash, ';', '$' or '%').
_SYSTEMD_BARE = re.compile(r"[A-Za-z0-9_+=:,./@-]+", re.ASCII)


def systemd_word(word: str, *, executable: bool = False) -> str:
    """One argv word of an Exec*= line, read back by systemd as exactly WORD.

    Specifiers are expanded in every word (`%%` is a '%'); `$VAR` is substituted in the arguments but
    not in the executable's path (systemd.service(5), checked with systemd-analyze verify); a word
    with anything but safe characters is double-quoted with C-style escapes, as systemd unquotes it.
    """
    found = control_character(word)
    if found is not None:
        raise RenderError(f"an Exec word cannot hold {found}")
    escaped = word.replace("%", "%%")
    if not executable:
        escaped = escaped.replace("$", "$$")
    if _SYSTEMD_BARE.fullmatch(word) and not (executable and word[0] in "@-:+!"):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec(argv: Sequence[str]) -> str:
    """An Exec*= value: the executable, then its arguments, each quoted for systemd."""
    return " ".join([systemd_word(argv[0], executable=True), *(systemd_word(word) for word in argv[1:])])


def systemd_text(value: str) -> str:
    """Free text in a setting that expands specifiers but takes the rest verbatim (Description=)."""
    found = control_character(value)
    if found is not None:
        raise RenderError(f"a unit setting cannot hold {found}")
    return value.replace("%", "%%")


def systemd_line(key: str, value: str) -> str:
    """KEY=VALUE; a value ending in a backslash would continue onto the next line, so it is refused."""
    line = f"{key}={value}"
    if line.endswith("\\") or control_character(line) is not None:
        raise RenderError(f"{key}= would not stay one line")
    return line


# ----------------------------------------------------------------------------------- line files


def file_text(lines: Sequence[str], *, continuations: bool = False) -> str:
    """LINES as a file, each checked to be one line; one ending in a backslash (a continuation in unit
    files, env files and Dockerfiles) only where CONTINUATIONS says the renderer wrote it so."""
    for line in lines:
        found = control_character(line.replace("\t", " "))
        if found is not None:
            raise RenderError(f"a rendered line holds {found}: {line[:60]!r}")
        if line.endswith("\\") and not continuations:
            raise RenderError(f"a rendered line ends in a backslash: {line[:60]!r}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------- Dockerfile

_DOCKERFILE_BARE = re.compile(r"[A-Za-z0-9_+=:,./@-]+", re.ASCII)


def dockerfile_word(value: str) -> str:
    """VALUE as one word of an ENV or LABEL instruction: bare when it is safe, else double-quoted with
    the Dockerfile escapes (`\\`, `"` and `$`, which ENV would expand even inside double quotes)."""
    found = control_character(value)
    if found is not None:
        raise RenderError(f"a Dockerfile word cannot hold {found}")
    if _DOCKERFILE_BARE.fullmatch(value):
        return value
    return '"' + re.sub(r'(["\\$])', r"\\\1", value) + '"'
