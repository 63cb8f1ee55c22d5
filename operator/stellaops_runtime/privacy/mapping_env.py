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
stays: env_names.SETTING_GUARDED_SUFFIXES); a dotted path of keys by its last part (``env.DBPASS:``);
a camelCase or PascalCase Helm name (``githubPat``, ``DbCreds``) by its snake case when that ends in
env_names.CAMEL_CASE_SUFFIXES, unless its value is a setting. The ``:`` follows the name at once (a C
ternary's ``a ? A_KEY : b`` is none; blanks before it only at a line's start or right after a flow
map's ``{`` or ``,``: ``DBPASS : x``, ``{ DBPASS : x}``), then a blank or the line's end (``DBPASS:x``
is a ``user:password`` pair, the URL rules'), or nothing after a quoted name (JSON). go test's
``--- PASS: TestX`` and C's ``case X_KEY:`` are no keys.

The value, by where the key stands:
- at a line's start (indented, or a ``- `` list item; a NUL, U+FFFD once read, starts a line too: an
  environment block, ``USER: b\\0DBPASS: x``): YAML's plain scalar, the rest of the line to a comment
  (``DBPASS: a b`` loses ``a b``) and the lines below indented deeper than the key that are no key
  themselves (``DBPASS: a`` then ``  b``; not under a quoted key: JSON), a single-quoted scalar over
  such lines, or a block scalar (``|``); a key ending its line takes the lines below indented deeper
  (``DBPASS:`` then ``  x``, a comment between them too), or a sequence's scalar items at its own
  indentation (``- a``), or a JSON array's scalar items (``"DBPASS": [`` then ``"x"``), unless the
  first of them is a key (``  key: v``, ``  - name: x``): a nested
  map is no value, its keys are read by their own names (a Secret reference stays, a nested
  ``password:`` goes by the key rules); nor is a value opening a flow map or a JSON object (``{``);
- right after ``{`` or ``,`` (a flow mapping, JSON): up to ``,``, ``}``, ``]`` or the line's end;
- in a string a script prints, after an escaped line end or opening it (``printf "A: b\\nDBPASS: x y\\n"``,
  ``echo "DBPASS: x y" > .env.yml``): a line of the file written, its words to a quote or an escape;
- anywhere else (``x:\\tDBPASS: x y``): its words up to one that is a key (``host:``, ``a=b``), a flag, a
  shell's operator, a comment, a quote or an escape;
and quoted in any of them (double, single, escaped: base.ESCAPED_DQ). A key then blanks and ``=`` at a
line's start (an INI, TOML or properties line: ``password = correct horse``, ``DBPASS = a b``) takes the
rest of its line, and nothing elsewhere (``x password = a b``, a ``- `` item); so does a dotted key glued
to ``=`` there (a Java properties line, ``spring.datasource.password=a b``: no shell variable holds a
dot, ``PGPASSWORD=x psql`` keeps its command), to a line end, a NUL or U+FFFD; on an exec's arguments'
first line, to a blank (each argument is read alone, as a JVM reads ``-Dkey=value``: ``env
a.password=x java`` keeps ``java``; one holding a blank is quoted). A key the key rules took (a
credential word ends its name, any case: _CREDENTIAL_KEY; ``password: correct horse``,
``user.password: a b``, ``{password: a b}``, which they leave ``[REDACTED] horse``) loses the rest of
its value the same way. The scan goes on after each value, and every part is possessive: linear in the
text.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from stellaops_runtime.contracts.value_lines import lines_below_end
from stellaops_runtime.privacy import env_names
from stellaops_runtime.privacy.base import (
    DOUBLE_QUOTED,
    ESCAPED_DQ,
    ESCAPED_SQ,
    NOT_A_MARKER,
    REDACTED,
)
from stellaops_runtime.privacy.key_rules import LINES_ARRAY
from stellaops_runtime.privacy.key_words import SETTING_WORDS

__all__ = ["mapping_env_spans"]

# the key: a name, quoted or not (a run of backslashes read from its first), then ``:``; a dotted path
# of keys (``user.password:``, ``env.DBPASS:``) is read whole, its last part names it (dashed too:
# ``db-password:``); a key ending its line (``DBPASS:`` then its value on the lines below) is one too;
# an unquoted key then blanks and ``:`` (group sp: ``DBPASS : x``, valid YAML) only at a line's start or
# in a flow map; a Makefile's ``?=``, ``:=``, ``::=``, ``:::=``, ``+=``, ``!=`` like an INI line's `` = ``
# (group eq); a dotted key glued to ``=`` (group geq: a Java properties line,
# ``spring.datasource.password=a b``) only at a line's start
_KEY = re.compile(
    r"""(?:(?<=\\[nrt])|(?<![\w.$/\\-]))(?P<q>\\*+["'])?+(?<!--- )(?<!case )"""
    r"""(?P<name>(?:[A-Za-z_][\w-]{0,127}+\.){0,15}+[A-Za-z_](?:[A-Za-z0-9_]|-(?=\w)){0,127}+)"""
    r"""(?:(?(q)\\*+["']|(?!))[ \t]*+:(?![:=])[ \t]*+|:(?![:=])(?:[ \t]++|(?=\r?\n))"""
    r"""|(?(q)(?!)|(?:(?P<eq>(?:[ \t]++|[ \t]*+(?:[?+!]|:{1,3}+))=(?![=~>])[ \t]*+)"""
    r"""|(?P<sp>[ \t]++:(?![:=])(?:[ \t]++|(?=\r?\n)))"""
    r"""|(?P<geq>(?:=(?![=~>])|:(?![:=/\\]))[ \t]*+))))""",
    re.ASCII,
)
_QUOTED = rf"""{ESCAPED_DQ}|{DOUBLE_QUOTED}|{ESCAPED_SQ}|'[^'\r\n]*+(?:''[^'\r\n]*+)*+'?+"""
# base.BLOCK_SCALAR with ``\r\n`` line ends too (a file written on Windows, ``printf 'DBPASS: |\r\n …'``):
# its indicator line ending ``\r`` was no block scalar, and ``|`` alone went
_INDENTED_LINE = r"\r?+\n(?:[ \t\r]*+\n)*+[ \t]++[^\n]*+"
_BLOCK_SCALAR = rf"[|>][+-]?[0-9]?[+-]?[ \t]*+(?:#[^\n]*+)?{_INDENTED_LINE}(?:{_INDENTED_LINE})*+"
# the contexts' values (see the docstring); a value that is a marker alone is none (checked after)
_BLOCK = re.compile(
    rf"""(?:{_BLOCK_SCALAR}|(?:{_QUOTED})|[^ \t\r\n#](?:[^ \t\r\n]|[ \t]++(?=[^ \t\r\n#]))*+)""",
    re.ASCII,
)
_FLOW = re.compile(
    rf"""(?:{_QUOTED}|(?:\[REDACTED\]|[^\s,{{}}\[\]])(?:\[REDACTED\]|[^\r\n,}}\]])*+)""", re.ASCII
)
# elsewhere on a line: its words up to one that is a key (``host:``, ``a=b``) or a flag, an operator of a
# shell, a comment, a quote or an escape (``x password: a b host: h`` loses ``a b``); in every context
# only a blank or a line end ends a word: a vertical tab or a form feed is inside one (``DBPASS: a\vb``)
_WORD_CHARS = r"""(?:[^ \t\r\n"'\\]|\\[^ \t\r\n"'nrt])++"""
_WORD = re.compile(
    rf"""{NOT_A_MARKER}(?:{_QUOTED}|{_WORD_CHARS}(?:[ \t]++(?![\w.-]*+[:=]|[-|;&<>#(){{}}])"""
    rf"""{_WORD_CHARS})*+)""",
    re.ASCII,
)
_MARKER_WORDS = re.compile(
    rf"""\[REDACTED\](?:[ \t]++(?![\w.-]*+[:=]|[-|;&<>#(){{}}]){_WORD_CHARS})*+""", re.ASCII
)
_LINE_START = re.compile(r"[ \t]*+(?:-[ \t]++)?+")
# what starts a line: a line break, or a NUL (U+FFFD once the adapter has read it) between the entries
# of an environment block or an argv (``USER: b\0DBPASS: a b``)
_LINE_BREAKS = ("\n", "\x00", "\ufffd")
# a line of a file a script prints: after an escaped line end (``printf "A: b\\nDBPASS: x\\n"``) or
# opening the printed string (``echo "DBPASS: a b" > .env.yml``); its value runs to the string's end
_STRING_LINE_START = re.compile(r"""(?:\\[nr]|["'])[ \t]*+(?:-[ \t]++)?+\Z""")
_STRING_LINE = re.compile(
    rf"""(?:{_QUOTED}|(?:[^ \t\r\n"'\\]|\\[^ \t\r\n"'nrt])++(?:[ \t]++(?:[^ \t\r\n"'\\#]|\\[^ \t\r\n"'nrt])"""
    rf"""(?:[^ \t\r\n"'\\]|\\[^ \t\r\n"'nrt])*+)*+)""",
    re.ASCII,
)
_FLOW_START = re.compile(r"[{,][ \t]*+\Z")
# a key ending its line: the next line that holds more than blanks or a comment, and its indentation
_NEXT_LINE = re.compile(r"(?:[ \t]*+(?:#[^\n]*+)?+\r?\n)++(?P<indent>[ \t]*+)(?=[^\s#])")
# a line that is a mapping's key (``key: v``, ``- name: x``, ``key:``): a nested map is no value
_MAP_LINE = re.compile(r"""[^\n:]*+(?::(?![ \t\r\n])[^\n:]*+)*+:(?:[ \t]|\r?\n|\Z)""")
_LOOK_BACK = 130
# a JSON array of scalars opened at its line's end (``"DBPASS": [`` then ``"x",``): its items
_LINES_ARRAY = re.compile(LINES_ARRAY)
# A key whose value the key or header rules cut after its first word (a credential word ends its name:
# ``pwd``, ``accessKey``, ``X-Auth-Token``, ``Authorization``, ``sonar.login``); after another key
# a rule's marker is a token of its own (``author: alice@example.com wrote this`` keeps its words)
_CREDENTIAL_KEY = re.compile(
    r"(?:pass(?:word|wd|phrase|code)?|pwd|pswd?|pw|pass[_-]phrase|token|secret|key|key[_-]?id|auth"
    r"|authorization|credentials?|creds|session[_-]?id|cookie|signature|login|dsn|jwt|salt)\Z",
    re.IGNORECASE | re.ASCII,
)
_MARKED = f"{REDACTED} "
_NONE, _ANY, _UNLESS_SETTING = 0, 1, 2
_SETTING = re.compile(rf"(?:{'|'.join(SETTING_WORDS)}|\d+)\Z", re.IGNORECASE | re.ASCII)


@lru_cache(maxsize=256)
def _more_indented(column: int) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The lines below a key at ``column`` that go on its value, and a single-quoted multi-line value.

    YAML's plain and quoted scalars go on over the lines indented more than their key
    (``DBPASS: a`` then ``  b``; ``DBPASS: 'a`` then ``  b'``), blank lines between them too; a line
    that is a key (``  key: v``) ends a plain one (no scalar holds ``: ``: it is a map's, or JSON's).
    """
    line = rf"(?:[ \t]*+\r?\n)*+[ \t]{{{column + 1}}}(?!{_MAP_LINE.pattern})[^\n]*+"
    lines = re.compile(rf"(?:\n{line})*+", re.ASCII)
    piece = r"[^'\r\n]*+(?:''[^'\r\n]*+)*+"
    quoted = re.compile(rf"'{piece}(?:\r?\n(?:[ \t]*+\r?\n)*+[ \t]{{{column + 1}}}{piece})*+'?+", re.ASCII)
    return lines, quoted


@lru_cache(maxsize=256)
def _items(column: int) -> re.Pattern[str]:
    """A YAML sequence's scalar items at ``column`` (``- a``), up to one that is a map (``- name: x``).

    Each item with the lines below it indented deeper (a block scalar item, ``- |`` then ``  x``, or a
    plain scalar's later lines).
    """
    below = rf"(?:\n(?:[ \t\r]*+\n)*+[ \t]{{{column + 1}}}[^\n]*+)*+"
    item = rf"[ \t]{{{column}}}- (?!{_MAP_LINE.pattern})[^\n]*+{below}"
    first = rf"[ \t]{{{column}}}(?:- |\[REDACTED\] )(?!{_MAP_LINE.pattern})[^\n]*+{below}"
    return re.compile(rf"{first}(?:\n{item})*+", re.ASCII)


def _name_kind(name: str, name_rx: re.Pattern[str]) -> int:
    """Whether ``NAME=value`` would redact ``name``'s value (env_names.argument_regex's case rule).

    ``_ANY`` whatever the value, ``_UNLESS_SETTING`` when its value is no setting, else ``_NONE``.
    A dotted path is named by its last part; a camelCase name (``githubPat``) by its snake case
    (``GITHUB_PAT``) when that ends in one of env_names.CAMEL_CASE_SUFFIXES, unless its value is a setting.
    """
    name = name.rpartition(".")[2]
    if name_rx.match(name):
        up = name.upper()
        if name == up or up.endswith(env_names.ANY_CASE_SUFFIXES):
            return _ANY
        if any(up.endswith(s) if s[0] == "_" else up == s for s in env_names.SETTING_GUARDED_SUFFIXES):
            return _UNLESS_SETTING
    snake = env_names.camel_case_name(name)
    return _UNLESS_SETTING if snake and name_rx.match(snake) else _NONE


def _line_start(text: str, start: int) -> int:
    """Where the line holding ``start`` starts, looking back at most _LOOK_BACK; -1 if further."""
    low = max(0, start - _LOOK_BACK)
    line = max(text.rfind(c, low, start) for c in _LINE_BREAKS) + 1
    return line if line or start <= _LOOK_BACK else -1


def _value(
    text: str,
    key: re.Match[str],
    kind: int,
    after_comment: Callable[[int], re.Match[str] | None],
    argv: bool = False,
) -> tuple[int, int] | None:
    """(start, end) of ``key``'s value as its context reads it; None when it has none.

    ``after_comment(i)``: _NEXT_LINE at the line feed ending the comment at ``i``, read once per line feed.
    """
    start = key.start()
    line = _line_start(text, start)
    block = line >= 0 and _LINE_START.fullmatch(text, line, start) is not None
    if key["geq"] is not None:
        # a Java properties line (``spring.datasource.password=a b``): the rest of the line, as Java reads
        # it; only a dotted key at a line's start (no shell variable holds a dot: ``PGPASSWORD=x psql``
        # runs ``psql``), to the line's end, a NUL or U+FFFD (an argv's next word)
        if not block or "-" in text[line:start]:
            return None
        end = text.find("\n", key.end())
        end = len(text) if end < 0 else end
        # An exec's arguments before any line break are argv words, each read alone as a JVM reads its
        # ``-D`` argument: ``env spring.datasource.password=x java -jar app.jar`` kept no command (s49 RP)
        for brk in ("\r", *_LINE_BREAKS[1:], *((" ",) if argv and line == 0 else ())):
            cut = text.find(brk, key.end(), end)
            end = end if cut < 0 else cut
        return (key.end(), end) if end > key.end() else None
    if key["eq"] is not None:
        # an INI, TOML or properties line (``password = correct horse``): the rest of the line, at a
        # line's start only (``x password = a b``, ``if [ $a = b ]`` are no such line)
        if not block or "-" in text[line:start]:
            return None
        end = text.find("\n", key.end())
        end = len(text) if end < 0 else end
        # and the lines indented deeper than the key, as configparser reads them (``DBPASS = a`` then ``  b``)
        end = lines_below_end(text, end - (text[end - 1 : end] == "\r"), start - line)
        return (key.end(), end) if end > key.end() else None
    if (
        key["sp"] is not None
        and not block
        and not _FLOW_START.search(text, max(0, start - _LOOK_BACK), start)
    ):
        return None  # a spaced colon mid-line is a C ternary's (``a ? DBPASS : b``)
    column = key.start() - line if block else 0
    at = key.end()
    if text.startswith("[", at) and (array := _LINES_ARRAY.match(text, at)) is not None:
        return at, array.end()
    # ``DBPASS:`` then its value on the lines below (a comment after the key or above the value too)
    if at < len(text) and (text[at] in "\r\n" or (block and text[at] == "#")):
        if not block:
            return None  # (before reading the lines below: ``# DBPASS:`` read every commented line after it)
        nxt = _NEXT_LINE.match(text, at) if text[at] != "#" else after_comment(at)
        if block and nxt and len(nxt["indent"]) == column and text.startswith(("- ", _MARKED), nxt.end()):
            # a sequence at the key's own indentation (``DBPASS:`` then ``- a``): its scalar items (the
            # key rules took the first item's dash for a value: ``password:`` then ``[REDACTED] a``)
            items = _items(column).match(text, nxt.end() - column)
            return (nxt.end(), items.end()) if items else None
        if nxt is None or len(nxt["indent"]) <= column or _MAP_LINE.match(text, nxt.end()):
            return None  # a nested map (``DBPASS:`` then ``  key: v``), or nothing below it
        first_end = text.find("\n", nxt.end())
        first_end = len(text) if first_end < 0 else first_end
        deeper = _NEXT_LINE.match(text, first_end)
        if text.startswith(REDACTED, nxt.end()) and deeper and len(deeper["indent"]) > len(nxt["indent"]):
            # the key rules read a nested map's first key as a value (``DB_PASSWORD:`` then ``valueFrom:``,
            # ``accessKey:`` then ``description: |-``, now the marker): the deeper lines are that map's
            return None
        lines, _ = _more_indented(column)
        below = lines.match(text, first_end)
        return nxt.end(), (below.end() if below else first_end)
    if block:
        lines, quoted = _more_indented(column)
        if text.startswith("'", at):
            m = quoted.match(text, at)
            return (at, m.end()) if m else None
        m = _BLOCK.match(text, at)
        if m is None:
            return None
        end = m.end()
        # a plain scalar goes on over the lines below (a quoted key is JSON's: a marker there was ``{``)
        if text[end : end + 1] in ("\r", "\n") and text[at] not in "|>\"'\\" and not key["q"]:
            more = lines.match(text, end + (text[end] == "\r"))
            end = more.end() if more else end
        return at, end
    if _FLOW_START.search(text, max(0, start - _LOOK_BACK), start):
        rx = _FLOW
    elif kind == _NONE:  # a key rule's marker then more words of its line
        rx = _MARKER_WORDS
    elif text[key.end("name")] == ":" and _STRING_LINE_START.search(
        text, max(0, start - _LOOK_BACK), key.start("name")
    ):
        rx = _STRING_LINE
    else:
        rx = _WORD
    m = rx.match(text, at)
    return (at, m.end()) if m else None


def mapping_env_spans(
    text: str, name_rx: re.Pattern[str], *, argv: bool = False
) -> list[tuple[int, int, str]]:
    """(start, end, "env_name") of each value of a key ``name_rx`` (env_names.name_regex) takes.

    ``argv``: ``text`` is an exec's arguments joined by blanks (an argument holding one is quoted), so
    its first line is no properties line: a glued dotted key there takes its one word (_value).
    """
    out: list[tuple[int, int, str]] = []
    pos = 0
    feed = [-1, -1]  # the last line feed found, and from where
    lines_below: dict[int, re.Match[str] | None] = {}

    def after_comment(at: int) -> re.Match[str] | None:
        # the keys of one line (an argv's, an environment block's: a NUL starts a line) share the line
        # feed ending a comment after them, and the lines below it: each is looked for once
        if not feed[1] <= at <= feed[0]:
            feed[:] = [text.find("\n", at), at]
            if feed[0] < 0:
                feed[0] = len(text)
        if feed[0] >= len(text):
            return None
        if feed[0] not in lines_below:
            lines_below[feed[0]] = _NEXT_LINE.match(text, feed[0])
        return lines_below[feed[0]]

    while (key := _KEY.search(text, pos)) is not None:
        if key["geq"] is not None and "." not in key["name"]:
            pos = key.end()  # a glued ``=`` is a properties key's only after a dotted name
            continue
        kind = _name_kind(key["name"], name_rx)
        # A key it does not take reads no value: the scan goes on inside it (``config: |`` over a nested
        # ``DBPASS: x``), and a value read for each of its nested keys was the rest of the field for each
        # (a flow member to the line's end, a block scalar): quadratic. Only a key rule's marker with
        # more after it is taken under any name (the key rules take one word: ``password: a b`` was
        # ``[REDACTED] b``), its line's rest at a line's start, its next words elsewhere.
        if kind == _NONE and (
            text.find(REDACTED, key.end(), key.end() + _LOOK_BACK) < 0
            or not _CREDENTIAL_KEY.search(key["name"])
        ):
            pos = key.end()
            continue
        at = key.end()
        if (
            at < len(text)
            and text[at] not in "\r\n#"
            and (text[at] == "{" or (kind == _NONE and not text.startswith(REDACTED, at)))
        ):
            # Its value starts right here, and is no value by that start: a nested flow map or JSON
            # object, or under a name it does not take no key rule's marker. Told before the value is
            # read: a value read after a NUL (a line's start) runs over the next NULs to the line's end,
            # and the scan goes on right after this key, so each key of an argv read the rest again
            # (``t=x<NUL>-H<NUL>Authorization: Bearer a `` repeated: 2.3 s for 64 KiB; ``DBPASS: {<NUL>``).
            pos = at
            continue
        span = _value(text, key, kind, after_comment, argv)
        if span is None:
            pos = key.end()
            continue
        begin, end = span
        while end > begin and text[end - 1] in " \t\r,;":
            end -= 1
        found = text[begin:end]
        marked = found.startswith(REDACTED) and found != REDACTED
        taken = kind == _ANY or (kind == _UNLESS_SETTING and _SETTING.match(found.strip("\"'")) is None)
        # a nested flow map or an opened JSON object or array is no value (``"DbCredentials": {``; an array
        # of scalars is one: _LINES_ARRAY)
        nested = found.startswith("{") or found == "["
        if (taken and not nested and found.strip("\\\"'") != REDACTED) or (kind == _NONE and marked):
            out.append((begin, end, "env_name"))
            pos = max(end, key.end())
        else:
            pos = key.end()
    return out
