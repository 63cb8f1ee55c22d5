"""A secret environment variable written as a mapping's key: ``DBPASS: x`` (YAML, JSON).

Why this exists: the environment-name rule (``env_names.argument_regex``) reads ``NAME=value`` and the
Kubernetes ``name``/``value`` pair; a docker-compose ``environment:`` mapping, a Helm values line, a
``.env.yml`` written by a traced ``printf`` or a JSON object of variables names the variable as a key
(``DBPASS: x``, ``- GITHUB_PAT: x``, ``{DB_CREDS: u:x}``, ``{"DBPASS":"x"}``). A name holding a key
word (``DB_PASSWORD: x``) was already the key rules'; a name only the environment globs take
(``DBPASS``, ``GITHUB_PAT``, ``DB_CREDS``) kept its value (RP8's first known limit, session 46).

The names are the ones ``NAME=value`` redacts: a glob of the filter's (``env_name_rx``), in upper case
(``Host: y``, ``Note: x`` are no variables), or in any case with a suffix that names nothing but a
secret (``_PSW``) or a credential's whose value is no setting (``db_creds: u:x`` goes, ``use_jwt: true``
stays: env_names.SETTING_GUARDED_SUFFIXES). The ``:`` follows the name at once (a C ternary's
``A_KEY : b`` is none), then a blank (``DBPASS:x`` is a ``user:password`` pair, the URL rules'), or
nothing after a quoted name (JSON). go test's ``--- PASS: TestX`` and C's ``case X_KEY:`` are no keys.

The value, by where the key stands:
- at a line's start (indented, or a ``- `` list item): YAML's plain scalar, the rest of the line to a
  comment (``DBPASS: a b`` loses ``a b``), or a block scalar (``|``); there a key the key rules took
  (any case: ``password: correct horse``, which they leave ``[REDACTED] horse``) loses the rest too;
- right after ``{`` or ``,`` (a flow mapping, JSON): up to ``,``, ``}``, ``]`` or the line's end;
- in a string a script prints, after an escaped line end or opening it (``printf "A: b\\nDBPASS: x y\\n"``,
  ``echo "DBPASS: x y" > .env.yml``): a line of the file written, its words to a quote or an escape;
- anywhere else (``x:\\tDBPASS: x``): one word, which a blank, a quote or an escaped line end ends;
and quoted in any of them (double, single, escaped: base.ESCAPED_DQ). The scan goes on after each
value, and every part is possessive: linear in the text.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy import env_names
from stellaops_runtime.privacy.base import (
    BLOCK_SCALAR,
    DOUBLE_QUOTED,
    ESCAPED_DQ,
    ESCAPED_SQ,
    NOT_A_MARKER,
    REDACTED,
)
from stellaops_runtime.privacy.key_words import SETTING_WORDS

__all__ = ["mapping_env_spans"]

# the key: a name, quoted or not (a run of backslashes read from its first), then ``:``
_KEY = re.compile(
    r"""(?:(?<=\\[nrt])|(?<![\w.$/\\-]))(?P<q>\\*+["'])?+(?<!--- )(?<!case )"""
    r"""(?P<name>[A-Za-z_][A-Za-z0-9_]{0,127}+)"""
    r"""(?:(?(q)\\*+["']|(?!))[ \t]*+:(?![:=])[ \t]*+|:(?![:=])[ \t]++)""",
    re.ASCII,
)
_QUOTED = rf"""{ESCAPED_DQ}|{DOUBLE_QUOTED}|{ESCAPED_SQ}|'[^'\r\n]*+(?:''[^'\r\n]*+)*+'?+"""
# the three contexts' plain values (see the docstring)
# (a key rule's marker with more of the line after it is no value of its own: ``DB_PASSWORD: a b`` had
# lost its first word only, ``[REDACTED] b``; the rest of the line goes too)
_BLOCK = re.compile(
    rf"""(?!\[REDACTED\][ \t]*+(?:#|[\r\n]|\Z))"""
    rf"""(?:{BLOCK_SCALAR}|(?:{_QUOTED})|[^\s#](?:[^\s]|[ \t]++(?=[^\s#]))*+)""",
    re.ASCII,
)
_FLOW = re.compile(rf"""{NOT_A_MARKER}(?:{_QUOTED}|[^\s,{{}}\[\]](?:[^\r\n,}}\]])*+)""", re.ASCII)
_WORD = re.compile(rf"""{NOT_A_MARKER}(?:{_QUOTED}|(?:[^\s"'\\]|\\[^\s"'nrt])++)""", re.ASCII)
_LINE_START = re.compile(r"[ \t]*+(?:-[ \t]++)?+")
# a line of a file a script prints: after an escaped line end (``printf "A: b\\nDBPASS: x\\n"``) or
# opening the printed string (``echo "DBPASS: a b" > .env.yml``); its value runs to the string's end
_STRING_LINE_START = re.compile(r"""(?:\\[nr]|["'])[ \t]*+(?:-[ \t]++)?+\Z""")
_STRING_LINE = re.compile(
    rf"""{NOT_A_MARKER}(?:{_QUOTED}|(?:[^\s"'\\]|\\[^\s"'nrt])++(?:[ \t]++(?:[^\s"'\\#]|\\[^\s"'nrt])"""
    rf"""(?:[^\s"'\\]|\\[^\s"'nrt])*+)*+)""",
    re.ASCII,
)
_FLOW_START = re.compile(r"[{,][ \t]*+\Z")
_LOOK_BACK = 130
_MARKED = f"{REDACTED} "
_NONE, _ANY, _UNLESS_SETTING = 0, 1, 2
_SETTING = re.compile(rf"(?:{'|'.join(SETTING_WORDS)}|\d+)\Z", re.IGNORECASE | re.ASCII)


def _name_kind(name: str, name_rx: re.Pattern[str]) -> int:
    """Whether ``NAME=value`` would redact ``name``'s value (env_names.argument_regex's case rule).

    ``_ANY`` whatever the value, ``_UNLESS_SETTING`` when its value is no setting, else ``_NONE``.
    """
    if not name_rx.match(name):
        return _NONE
    up = name.upper()
    if name == up or up.endswith(env_names.ANY_CASE_SUFFIXES):
        return _ANY
    guarded = any(up.endswith(s) if s[0] == "_" else up == s for s in env_names.SETTING_GUARDED_SUFFIXES)
    return _UNLESS_SETTING if guarded else _NONE


def mapping_env_spans(text: str, name_rx: re.Pattern[str]) -> list[tuple[int, int, str]]:
    """(start, end, "env_name") of each value of a key ``name_rx`` (env_names.name_regex) takes."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    while (key := _KEY.search(text, pos)) is not None:
        start = key.start()
        kind = _name_kind(key["name"], name_rx)
        # A key it does not take reads no value: the scan goes on inside it (``config: |`` over a nested
        # ``DBPASS: x``), and a value read for each of its nested keys was the rest of the field for each
        # (a flow member to the line's end, a block scalar): quadratic. Only a key rule's marker at a
        # line's start is taken under any name (below).
        if kind == _NONE and not text.startswith(_MARKED, key.end()):
            pos = key.end()
            continue
        # what stands before it on its line (bounded: indentation and a list's dash, or ``{``)
        line = text.rfind("\n", max(0, start - _LOOK_BACK), start) + 1
        if (line or start <= _LOOK_BACK) and _LINE_START.fullmatch(text, line, start):
            rx = _BLOCK
        elif _FLOW_START.search(text, max(0, start - _LOOK_BACK), start):
            rx = _FLOW
        elif text[key.end("name")] == ":" and _STRING_LINE_START.search(
            text, max(0, start - _LOOK_BACK), key.start("name")
        ):
            rx = _STRING_LINE
        else:
            rx = _WORD
        value = rx.match(text, key.end())
        if value is None:
            pos = key.end()
            continue
        end = value.end()
        while end > value.start() and text[end - 1] in " \t":
            end -= 1
        found = text[value.start() : end]
        # (at a line's start, a key rule's marker then more of the line: that rule took the first word of
        # a plain scalar, ``password: correct horse``, whatever the key's case: the rest goes too)
        taken = kind == _ANY or (kind == _UNLESS_SETTING and _SETTING.match(found.strip("\"'")) is None)
        if taken or (rx is _BLOCK and found.startswith(_MARKED)):
            out.append((value.start(), end, "env_name"))
            pos = max(end, key.end())
        else:
            pos = key.end()
    return out
