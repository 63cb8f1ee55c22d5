"""The values of a Kubernetes Secret's ``stringData`` and ``data``, whatever their keys are named.

Why this exists: a Secret given to kubectl on its command line (``kubectl apply -f - <<EOF`` with
the manifest, ``kubectl patch secret db -p '{"stringData":{"root":"X"}}'``, a JSON manifest
echoed into ``kubectl apply -f -``) names its values as it likes (``root``, ``dsn``,
``mysql-root``), so the key rules (patterns.py) keep every one whose key holds no credential
word, and a ``data`` value is base64 that no format rule knows. Every value of such a map is
the secret:

* ``stringData`` exists only in a Secret: its values always go;
* ``data`` is a ConfigMap's too, whose values are no secret (a security team reads them): its
  values go when the word ``Secret`` or ``secret(s)`` stands within _CONTEXT characters of it
  (``kind: Secret``, ``kubectl patch secret``).

In YAML, the map is the lines indented deeper than its ``stringData:`` / ``data:`` line (its key
quoted or not, a comment after it): of a ``key: value`` line the value goes, of any other (a block
scalar's lines) all of it; in YAML's flow style (``stringData: {root: X}``), each pair's value. In JSON
(quotes escaped or not: inside a ``sh -c`` script), each ``"key": "value"`` pair of the object
after it, to its ``}``. Pure: text in, spans out (``engine.replace_spans``, under
``secret_token``); each character is read a bounded number of times.
"""

from __future__ import annotations

import bisect
import re

__all__ = ["secret_data_spans"]

# The word that makes a ``data`` map a Secret's, and how far from it it may stand.
_SECRET_WORD = re.compile(r"(?<![\w-])(?:Secret|secrets?)(?![\w-])")
_CONTEXT = 4096

# (the key may be quoted, a comment may follow it)
_YAML_OPEN = re.compile(
    r"^(?P<ind>[ \t]*)[\"']?(?P<map>stringData|data)[\"']?:[ \t]*(?:#[^\r\n]*+)?\r?$", re.MULTILINE
)
# A line of the map: its indentation, then ``key: value`` (the value from its first character)
# or anything else (a block scalar's line, all of it).
# A ``key: |`` line (a block scalar's indicator; its lines follow) and a ``key:`` alone give nothing.
_KEY = r"""[^\s:#"'][^:\n]{0,256}?:"""
_YAML_LINE = re.compile(
    rf"(?P<ind>[ \t]*)(?:{_KEY}[ \t]+(?P<v>[^\s|>][^\r\n]*)|{_KEY}[ \t]*(?:[|>][-+0-9]*)?[ \t]*\r?$"
    r"|(?P<all>\S[^\r\n]*))?",
    re.MULTILINE,
)

_Q = r'\\*"'  # a quote, escaped or not (JSON inside a shell string)
# (from the quote itself: its escape, if any, is looked at behind it)
_JSON_OPEN = re.compile(r"\"(?P<map>stringData|data)" + _Q + r"\s*:\s*\{")
_JSON_VALUE = r"(?P<v>(?:[^\"\\\n]|\\[^\"\\\n]){1,65536})"
_JSON_KEY = _Q + r"[^\"\\\n]{1,256}" + _Q
# (a value cut by truncation runs to the text's end)
_JSON_PAIR = re.compile(r"\s*" + _JSON_KEY + r"\s*:\s*" + _Q + _JSON_VALUE + r"(?:" + _Q + r"|\Z)\s*,?")
# Plain JSON (its quotes not escaped): a value may hold escapes (``\\"``, ``\\\\``) and be empty.
_PLAIN_PAIR = re.compile(
    r'\s*"(?:[^"\\\n]|\\[^\n]){1,256}+"\s*:\s*"(?P<v>(?:[^"\\\n]|\\[^\n]){0,65536}+)(?:"|\Z)\s*,?'
)


# YAML's flow style (``{stringData: {root: X, dsn: "a b"}}``, ``kubectl patch -p`` takes YAML): each
# ``key: value`` of the map, a value quoted or a run to ``,`` or ``}`` (its trailing blanks kept).
_FLOW_OPEN = re.compile(r"(?<![\w\"'\\])(?P<map>stringData|data):[ \t]*\{")
_FLOW_PAIR = re.compile(
    r"""\s*(?:"[^"\n]{1,256}+"|'[^'\n]{1,256}+'|[^\s:,{}"'][^:,{}\n]{0,256}+):[ \t]+"""
    r"""(?P<v>"(?:[^"\\\n]|\\[^\n])*+"?|'[^'\n]*+'?|[^\s,{}"'][^,{}\n]*+)\s*,?"""
)


def secret_data_spans(text: str) -> list[tuple[int, int, str]]:
    """The values of every Secret ``stringData`` / ``data`` map in ``text``, as spans."""
    out: list[tuple[int, int, str]] = []
    words: list[int] | None = None  # where the Secret words stand, found when first needed
    for rx, walk in ((_YAML_OPEN, _yaml_values), (_JSON_OPEN, _json_values), (_FLOW_OPEN, _flow_values)):
        walked = 0  # the end of the last map walked: a map opened inside it is walked already
        for m in rx.finditer(text):
            if m.start() < walked:
                continue
            if m.group("map") == "data":
                if words is None:
                    words = [w.start() for w in _SECRET_WORD.finditer(text)]
                k = bisect.bisect_left(words, m.start() - _CONTEXT)
                if k == len(words) or words[k] > m.end() + _CONTEXT:
                    continue
            walked = walk(text, m, out)
    return out


def _yaml_values(text: str, m: re.Match[str], out: list[tuple[int, int, str]]) -> int:
    """Take the map's values (its lines deeper than its opening line); where the map ends."""
    depth = len(m.group("ind"))
    pos = m.end() + 1
    while pos < len(text):
        end = text.find("\n", pos)
        end = len(text) if end < 0 else end
        line = _YAML_LINE.match(text, pos, end)
        if line is not None and line.end() > pos + len(line.group("ind")):  # not a blank line
            if len(line.group("ind")) <= depth:
                return pos
            v = "v" if line.group("v") is not None else "all"
            if line.group(v) is not None:
                out.append((line.start(v), line.end(v), "secret_token"))
        pos = end + 1
    return len(text)


def _json_values(text: str, m: re.Match[str], out: list[tuple[int, int, str]]) -> int:
    """Take the object's string values, pair by pair; where the last pair ends."""
    pos = m.end()
    rx = _JSON_PAIR if text[m.start() - 1 : m.start()] == "\\" else _PLAIN_PAIR
    while (pair := rx.match(text, pos)) is not None:
        if pair.end("v") > pair.start("v"):
            out.append((pair.start("v"), pair.end("v"), "secret_token"))
        pos = pair.end()
    return pos


def _flow_values(text: str, m: re.Match[str], out: list[tuple[int, int, str]]) -> int:
    """Take the flow map's values, pair by pair; where the last pair ends."""
    pos = m.end()
    while (pair := _FLOW_PAIR.match(text, pos)) is not None:
        start, end = pair.span("v")
        end = start + len(text[start:end].rstrip())
        out.append((start, end, "secret_token"))
        pos = pair.end()
    return pos
