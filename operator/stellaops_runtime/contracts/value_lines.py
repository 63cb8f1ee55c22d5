"""Where a key's value ends when the lines indented below it go on with it (YAML, INI).

Why this exists: a value that ends its line is not always whole. Python's configparser reads
``password = abc`` then ``  SECRET`` (a line indented deeper than the key) as one value, ``abc`` and
``SECRET``; YAML reads a plain scalar's deeper lines so too, and a sequence item's deeper lines
(``password:`` then ``  - a`` then ``    b: S``, invalid YAML, but its text all the item's). The rules
find a value up to whitespace and kept those lines (s49 P2's and RP's left-alone). The privacy filter
(privacy/rule_scan.py, privacy/mapping_env.py) and the message redaction (contracts/redact.py) both ask
here how far such a value goes: kept apart so that both read the lines alike, and contracts imports no
privacy module.

Only a value a key at its line's start gives (indented, or a ``- `` item's key), or a sequence item at
its line's start, goes on, and only over lines indented deeper than that key or dash (blank lines between
them too); a sequence item also over its sibling scalar items at its own indentation. A flag's value
(``--password x`` then an indented line: a shell's next command) and a quoted or block value (their own
forms end them) do not. Each line is read once from its value's end: linear.
"""

from __future__ import annotations

import re

__all__ = ["item_column", "item_end", "lines_below_end", "value_end"]

# How far back on its line a value's key is looked for.
_LOOK_BACK = 512
# The text before a value, on its line: indentation, a sequence item's dash, a key (a word that is no
# flag, or quoted), its separator (``:``, ``=``, ``:=``, ``?=``, ``+=``)
# Indentation is any white space but a line break, as configparser reads it (``\\S``, not ASCII only):
# ``password = a`` then ``\x1cS``, ``<NBSP>S``, ``\vS`` are one value there (s49 RP's item 8).
_BLANK = r"[^\S\r\n]"
# The key is any text up to the line's first ``=`` or ``:``, as configparser reads an option (``db/password``,
# ``$password``, ``db password``: s50 RP), but no flag (``--password=x``) and no comment; a key holding a
# blank only before ``:`` or a blank then ``=`` (``my password = a``), not a shell's ``export PASSWORD=a``
# (its next indented line is the script's next command).
# A key is no code's either: no comma, bracket or parenthesis (``a, b = f(``, ``f(password = g(``), and a
# key holding a blank only before `` =`` (``if token := f(``, ``if auth:`` and prose before ``:`` are
# no INI keys; over-redaction of code measured on LK's corpus).
_KEY_HEAD = r"""[^\s"'#;=:,()\[\]{}-]"""
# an array's index ending the key (``password[0] = a``, ``password[] = a``: configparser reads any key)
_INDEX = r"""(?:\[[\w$.-]{0,64}+\])?+"""
_KEY_BEFORE = re.compile(
    rf"""(?P<ind>{_BLANK}*+(?:-[ \t]++)?+)"""
    rf"""(?:(?:{_KEY_HEAD}[^\s=:,()\[\]{{}}]*+{_INDEX}|"[^"\r\n]*+"|'[^'\r\n]*+')[ \t]*+(?:[:?+]?=|:)"""
    rf"""|{_KEY_HEAD}[^\r\n=:,()\[\]{{}}]*+(?<=[ \t])=)[ \t]*+"""
)
# A key holding a blank before ``:`` when its value stands on the key's own line (``db password: a`` then
# ``  S``: configparser and YAML read ``a`` and ``S``; s51 RP): code has no deeper lines after a one-line
# ``if auth: x`` (that is no Python), so only the key's line is asked, never a key ending its line; and
# only a key ending in a credential word (a doctest's ``... From: a@b`` then its deeper lines stayed
# whole on LK's corpus)
_SPACED_KEY_COLON = re.compile(
    rf"""(?P<ind>{_BLANK}*+(?:-[ \t]++)?+){_KEY_HEAD}[^\r\n=:,()\[\]{{}}]*?"""
    r"""(?i:password|passwd|pwd|secret|token|api[_-]?key)[ \t]*+:[ \t]++"""
)
# a line that is a map's key (``b: x``, ``- name: x``, ``key:``): a sibling map item is no scalar item
_KEY_LINE = re.compile(r"[^\r\n:]*+(?::(?![ \t\r\n])[^\r\n:]*+)*+:(?:[ \t]|\r?\n|\Z)")
_INDENT = re.compile(rf"{_BLANK}*+")
# what a value of its own form starts with: a quote, a block scalar, a flow collection, an array
_OWN_FORM = "\"'|>[{"
# what a comment line starts with (configparser's default comment prefixes; YAML's ``#``)
_COMMENT = "#;"
# the letters a Python string literal may open with (``r"""``, ``rb'''``, ``f"""``)
_STRING_PREFIX = ("r", "R", "b", "B", "f", "F", "u", "U")
# A multi-line string of TOML or Python, to its closing triple quote (or the text's end), as
# privacy/key_rules.py's _TRIPLE_QUOTED reads one right after its key's separator
# (a backslash ending a cut text too: ``password = """a\`` matched nothing and value_end raised, s50 RP)
_TRIPLE = re.compile(r'"""(?:[^"\\]|\\[\s\S]?+|"(?!""))*+(?:"""|\Z)' r"|'''(?:[^']|'(?!''))*+(?:'''|\Z)")


def _line_start(text: str, at: int, *, bounded: bool = True) -> int:
    """Where the line holding ``at`` starts, looking back at most _LOOK_BACK; -1 if further.

    Not ``bounded``: however far (a caller that looks back once per line end, so once per character).
    """
    if not bounded:
        return text.rfind("\n", 0, at) + 1
    line = text.rfind("\n", max(0, at - _LOOK_BACK), at) + 1
    return line if line or at <= _LOOK_BACK else -1


def _at_line_end(text: str, end: int) -> bool:
    return end >= len(text) or text[end] == "\n" or text.startswith("\r\n", end)


def lines_below_end(text: str, end: int, column: int, *, items: bool = False) -> int:
    """``end`` (a line's end) moved over the lines below indented deeper than ``column``.

    Blank lines between them go only when a deeper line follows. ``items``: a sibling sequence item at
    ``column`` (``- b``, no map item) goes too, with its own deeper lines.
    """
    n = len(text)
    taken = at = end
    while True:
        if text.startswith("\r\n", at):
            at += 2
        elif text.startswith("\n", at):
            at += 1
        else:
            return taken
        first = _INDENT.match(text, at).end()  # type: ignore[union-attr]
        if first >= n:
            return taken
        if text[first] in "\r\n":  # a blank line: taken only with a deeper line after it
            at = first
            continue
        depth = first - at
        if not items and depth <= column and text[first] in _COMMENT:
            # a comment line: configparser skips it and reads the deeper lines after it on into the
            # value (``password = a`` then ``# c`` then ``  S``: ``a\nS``); taken only with such a line
            stop = text.find("\n", first)
            if stop < 0:
                return taken
            at = stop - (text[stop - 1] == "\r")
            continue
        item = (
            items
            and depth == column
            and text[first] == "-"
            and text[first + 1 : first + 2] in ("", " ", "\t", "\r", "\n")
            and _KEY_LINE.match(text, first) is None
        )
        if depth <= column and not item:
            return taken
        stop = text.find("\n", first)
        stop = n if stop < 0 else stop - (text[stop - 1] == "\r")
        taken = at = stop


def item_column(text: str, start: int) -> int | None:
    """The column of a sequence item's dash at ``start`` (at its line's start, then a blank), else None."""
    if not text.startswith("-", start) or text[start + 1 : start + 2] not in ("", " ", "\t", "\r", "\n"):
        return None
    line = _line_start(text, start)
    if line < 0 or (line < start and not text[line:start].isspace()):
        return None
    return start - line


def item_end(text: str, start: int, end: int) -> int:
    """``end``, or past the deeper lines below when ``text[start:end]`` is a sequence item to its line's end.

    A dash at its line's start (after blanks) then a blank or the line's end: the item's lines indented
    deeper than the dash, and its sibling scalar items, are the item's.
    """
    if not _at_line_end(text, end):
        return end
    column = item_column(text, start)
    return end if column is None else lines_below_end(text, end, column, items=True)


def _after_separator(text: str, start: int) -> bool:
    """Whether only blanks stand between a ``=`` or ``:`` and ``start``, on its line.

    The blanks walked over are the ones right before a value's start: each value's own, each walked
    over once.
    """
    at = start
    while at > 0 and text[at - 1] in " \t":
        at -= 1
    return at > 0 and text[at - 1] in "=:"


def _first_content(text: str, at: int, end: int) -> int:
    """Where the first line after ``at`` that is no blank or comment line starts its text (up to ``end``)."""
    while at < end:
        at = text.find("\n", at) + 1
        if not at:
            return end
        first = _INDENT.match(text, at).end()  # type: ignore[union-attr]
        if first < len(text) and text[first] not in "\r\n" and text[first] not in _COMMENT:
            return first
        at = first
    return end


def _at_line_head(text: str, start: int) -> bool:
    """Whether only blanks stand between its line's start and ``start`` (walked over once per value)."""
    at = start
    while at > 0 and text[at - 1] in " \t":
        at -= 1
    return at == 0 or text[at - 1] == "\n"


def value_end(text: str, start: int, end: int, *, any_form: bool = False) -> int:
    """``end``, or past the lines below that go on with the plain value ``text[start:end]``.

    The value ends its line (blanks may follow) and its key stands at its line's start (indented, or
    a ``- `` item's key: _KEY_BEFORE); the lines indented deeper than the key are the value's. A sequence
    item's value goes as :func:`item_end` says. ``any_form``: a quoted or block scalar's start too (a
    reader that does not take those forms whole: the message redaction).
    """
    if start >= end:
        return end
    quote = start
    while quote < start + 2 and text[quote : quote + 1] in _STRING_PREFIX:  # Python's r, b, f, u, rb...
        quote += 1
    if text.startswith(('"""', "'''"), quote) and _after_separator(text, start):
        # ``password   =   """`` then its lines: the rules read a triple quote only one blank after the
        # separator, and took ``"""a`` of it; a prefixed one (``password = r"""``) they took ``r"""`` of
        # (s50 RP)
        closed = _TRIPLE.match(text, quote)
        return end if closed is None else max(end, closed.end())
    at_item = item_end(text, start, end)
    if at_item != end:
        return at_item
    if text[start] in _OWN_FORM and text[start] != "[" and not any_form:
        return end
    after = _INDENT.match(text, end).end()  # type: ignore[union-attr]
    comment = text[start] in _COMMENT and _at_line_head(text, start)
    if not comment and not _at_line_end(text, after):
        return end
    # Once per line end (a value that ends its line, or a comment line's first character; the next value
    # taken starts past it): the look back is not bounded, so a key behind a long indentation or a
    # long key still counts (s50 RP)
    line = _line_start(text, start, bounded=False)
    key = None if comment else _KEY_BEFORE.fullmatch(text, line, start)
    if key is None and not comment and line < start:
        key = _SPACED_KEY_COLON.fullmatch(text, line, start)
    if key is not None:
        column = key.end("ind") - line
    elif line and (line == start or text[line:start].isspace()):
        # the value opens the line below a key that ends its own (``password =`` then ``  abc`` then
        # ``  S``: configparser's; ``password:`` then ``  [a,`` then ``   S]``), deeper than that key; a
        # nested map's first key (``valueFrom:``) is no such value. A comment line taken for the value
        # (``password =`` then ``# c`` then ``  S``: configparser skips the comment, the value is ``S``)
        # goes with the deeper lines after it.
        if not comment and (line == start or _KEY_LINE.match(text, start) is not None):
            return end
        above_end = line - 1 - (text[line - 2 : line - 1] == "\r")
        above = _line_start(text, above_end, bounded=False)
        key = _KEY_BEFORE.fullmatch(text, above, above_end)
        if key is None or (not comment and start - line <= key.end("ind") - above):
            return end
        column = key.end("ind") - above
        if comment:
            after = text.find("\n", start)
            after = len(text) if after < 0 else after - (text[after - 1] == "\r")
            if _KEY_LINE.match(text, _first_content(text, after, lines_below_end(text, after, column))):
                return end  # a nested map's first key after the comment (``auth:``, ``# c``, ``  type: x``)
    else:
        return end
    below = lines_below_end(text, after, column)
    return end if below == after else below
