"""The agent config's text read into a document: plain JSON without PyYAML, anything else as YAML.

Why this module exists (issue 13): PyYAML, its C parser and libyaml are ~1 MB of every idle
agent's RSS, held for its whole life to read one file once at start-up. The operator writes each
node's ``agent.yaml`` as JSON (controller/render_agent.py), which is YAML too, so older agents
read it as before; this module reads such a text with the standard library's ``json`` and
imports ``yaml`` only for a text that is not plain JSON.

JSON is only a shortcut here, never a second dialect: it is taken only where it gives exactly
what ``yaml.safe_load`` (YAML 1.1) gives, and every other text is read by YAML as before, with
YAML's errors. So a text goes to YAML when it holds anything beyond printable ASCII and line
breaks (YAML refuses some characters JSON takes, and a tab between tokens), an escaped surrogate
(JSON joins a pair into one character, YAML keeps two), a number with an exponent or
``NaN``/``Infinity`` (YAML 1.1 reads ``1e3`` as a string), a key whose colon is on a later line or
a line over 1,000 characters (YAML refuses a flow key its colon does not follow within 1,024
characters on one line), or nesting deeper than ``MAX_JSON_DEPTH`` (YAML's own recursion stops
sooner than JSON's). tests/unit/test_config_text.py compares both readers over the operator's
documents, generated JSON texts and each of these cases.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN = re.compile(r"[\n\r\x20-\x7e]*")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_KEY_BROKEN_LINE = re.compile(r'"[ \r\n]*[\r\n][ \r\n]*:')
MAX_LINE = 1000
MAX_JSON_DEPTH = 32


class DocumentError(Exception):
    """The text is not a YAML document: PyYAML's problem and where it is (line and column), without
    PyYAML's snippet of the line, which may quote a secret (:func:`yaml_problem`)."""


class _NotPlain(Exception):
    pass


def _constant(name: str) -> Any:
    raise _NotPlain(name)  # NaN, Infinity, -Infinity: strings to YAML


def _float(text: str) -> float:
    if "e" in text or "E" in text:
        raise _NotPlain(text)
    return float(text)


def _depth(doc: Any) -> int:
    deepest, todo = 0, [(doc, 1)]
    while todo:
        node, level = todo.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_JSON_DEPTH:
                children = node.values() if isinstance(node, dict) else node
                todo.extend((child, level + 1) for child in children)
    return deepest


def plain_json(text: str) -> tuple[bool, Any]:
    """(True, the document) when ``text`` is plain JSON (see the module docstring), else (False, None)."""
    if (
        _PLAIN.fullmatch(text) is None
        or _SURROGATE_ESCAPE.search(text)
        or _KEY_BROKEN_LINE.search(text)
        or any(len(line) > MAX_LINE for line in text.splitlines())
    ):
        return False, None
    try:
        doc = json.loads(text, parse_float=_float, parse_constant=_constant)
    except (ValueError, RecursionError, _NotPlain):  # not JSON, an integer of over 4,300 digits
        return False, None
    if _depth(doc) > MAX_JSON_DEPTH:
        return False, None
    return True, doc


def load_document(text: str) -> Any:
    """``yaml.safe_load(text)``, without PyYAML when the text is plain JSON.

    Raises :class:`DocumentError` (PyYAML's message) for a text that is not YAML, and, as
    ``yaml.safe_load`` does, ``ValueError`` or ``RecursionError`` for an integer of more than
    4,300 digits or nesting too deep for it.
    """
    ok, doc = plain_json(text)
    if ok:
        return doc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise DocumentError(yaml_problem(e)) from None


def _at(mark: Any) -> str:
    return f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""


def yaml_problem(e: Exception) -> str:
    """A PyYAML error said by its problem and position only.

    ``str(e)`` of a marked error quotes the offending line, cut to a window around the mark with
    `` ... ``; a cut through a store URL (``url: "postgresql://app:Hunter2Se ... ``) leaves what no
    message redaction can recognise, and the next mark's window starts after the scheme
    (`` ... ://app:Hunter2Secret@db``). The line and column say where the problem is without it.
    """
    context, problem = getattr(e, "context", None), getattr(e, "problem", None)
    if context is None and problem is None:  # not a marked error (a reader error names a byte)
        return str(e)
    cmark, pmark = getattr(e, "context_mark", None), getattr(e, "problem_mark", None)
    parts = []
    if context is not None:
        same = (
            cmark is not None
            and pmark is not None
            and (cmark.line, cmark.column) == (pmark.line, pmark.column)
        )
        parts.append(f"{context}{'' if same and problem is not None else _at(cmark)}")
    if problem is not None:
        parts.append(f"{problem}{_at(pmark)}")
    if (note := getattr(e, "note", None)) is not None:
        parts.append(str(note))
    return "; ".join(parts)
