"""A ``.netrc`` entry's password and account, read token by token as the file's readers read them.

Why this exists: curl, git, ftp and Python's ``netrc`` read ``machine HOST`` then pairs of a token and
its value (``login u``, ``account a``, ``password p``; Python's ``user`` too), in any order, apart by
blanks or line ends. The first rules (wire_lines.py, session 50) needed a ``login`` pair, and read an
``account`` only as a word to pass over: ``machine h password S`` (Python's netrc accepts it, the login
then empty) and ``machine h login u account S`` kept ``S``; an account is ftp's second password (RFC 959
``ACCT``). An entry's pairs are walked from ``machine HOST`` up to the first word that is no such token.
An entry counts when it holds a ``login`` pair, or when ``machine`` opens its line or a quoted string, or
follows another entry's pairs (prose naming a machine mid-line, ``the build machine room password
policy``, stays). ``default`` opens an entry too, but only one holding a ``login`` pair counts (prose's
``the default password for`` has none). Each entry's pairs are read once and the next entry is looked
for after them: linear.
"""

from __future__ import annotations

import re

__all__ = ["netrc_spans"]

_GAP = r"[ \t\r\n]++"
# a value: quoted (Python's netrc reads ``"a b"`` as one token; the closing quote may be cut off), or a
# word up to a blank (an ``echo "machine h … password x"`` keeps its closing quote out of it)
_VALUE = r"""(?:"(?:[^"\\\r\n]|\\.)*+"?|[^\s"']++(?:["'][^\s"']++)*+)"""
_ENTRY = re.compile(
    rf"""(?<![^\s"'])(?:machine{_GAP}(?!(?:login|user|account|password|port)\s)\S++|(?P<d>default))"""
)
# the pairs an entry holds; a secret's value is group ``s``
_PAIR = re.compile(
    rf"{_GAP}(?:(?P<k>login|user|port){_GAP}{_VALUE}|(?:password|account){_GAP}(?P<s>{_VALUE}))"
)
_GAP_RX = re.compile(_GAP)
# how many pairs one entry is read for (the four tokens, each once, and a few repeated)
_MAX_PAIRS = 8


def _opens(text: str, start: int) -> bool:
    """Whether only blanks stand between ``start`` and its line's start or an opening quote.

    Where an entry with no login pair counts: prose naming a machine mid-line (``the build machine room
    password policy``) does not. The blanks walked over are the entry's own: each walked over once.
    """
    at = start
    while at > 0 and text[at - 1] in " \t":
        at -= 1
    return at == 0 or text[at - 1] in "\n\"'"


def _entry_secrets(text: str, pos: int) -> tuple[list[tuple[int, int, str]], bool, int]:
    """An entry's secret values, whether it holds a login pair, where its last pair ends (from ``pos``)."""
    secrets: list[tuple[int, int, str]] = []
    login = False
    for _ in range(_MAX_PAIRS):
        pair = _PAIR.match(text, pos)
        if pair is None:
            break
        pos = pair.end()
        if pair["s"] is not None:
            secrets.append((*pair.span("s"), "password"))
        elif pair["k"] in ("login", "user"):
            login = True
    return secrets, login, pos


def netrc_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "password") of each ``.netrc`` entry's password and account in ``text``."""
    out: list[tuple[int, int, str]] = []
    pos = 0
    chained = False  # the entry may follow another's pairs (``machine a … machine b password x``)
    while True:
        gap = _GAP_RX.match(text, pos) if chained else None
        entry = _ENTRY.match(text, gap.end()) if gap is not None else None
        chained = entry is not None
        if entry is None and (entry := _ENTRY.search(text, pos)) is None:
            return out
        start = entry.start()
        opens = chained or _opens(text, start)
        secrets, login, pos = _entry_secrets(text, entry.end())
        if login or (opens and entry["d"] is None):
            out.extend(secrets)
        chained = pos > entry.end() and (login or opens)
