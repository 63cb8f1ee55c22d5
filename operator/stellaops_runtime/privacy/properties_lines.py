"""A Java properties line whose key and value a blank alone separates: ``db.password S``.

Why this exists: ``java.util.Properties.load`` ends a key at its first unescaped ``=``, ``:`` or white
space, and takes the rest of the line (after blanks and one ``=`` or ``:``) as the value, so
``spring.datasource.password hunter2`` sets the password. The key rules need ``=`` or ``:`` (s50 RP's
left-alone 2). Read here only where a properties file's line is plain: a dotted key (a properties
file's, ``spring.datasource.password``; a bare ``password reset`` is prose) at its line's start,
ending in a credential word (key_words.py), then blanks and a value that is no setting
(``log4j.logger.a.secret INFO`` is a log level, as for the key rules). No code's line (an attribute of
``self``, ``this`` or ``cls``; an operator after the key, ``a.token += x``, ``a.b - 1``) and no prose's
(``a.password is set``, ``to be``) counts: a first draft over-redacted 8 Python lines of LK's corpus.
The value is the rest of the line, over a line continued by a backslash at its end, as Properties reads
it. Anchored at line starts, bounded, possessive: linear.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, SECRET_WORDS, SETTING_WORDS

__all__ = ["properties_line_spans"]

_WORDS = "|".join((*PASSWORD_WORDS, *SECRET_WORDS))
_SPACED = re.compile(
    r"(?m)^[ \t\f]*+(?!(?:self|this|cls)\.)"
    rf"[\w-]{{1,64}}+\.[\w.-]{{0,256}}?(?i:{_WORDS})"
    # an operator is one only before a blank or ``=`` (``a.token += x``, ``a.b - 1``): a generated password
    # may start with one of its characters (``db.password !x``, ``*x``: s51 RP)
    r"[ \t\f]++(?![=:]|[-+*/%&|^<>!?~]++(?:[=\s]|\Z)|[.,;(\[{]|(?:is|in|and|or|not|if|to)\b)"
    r"(?P<s>(?:[^\r\n\\]|\\[^\r\n]|\\\r?+\n)++)"
)
_SETTING = re.compile(rf"(?:{'|'.join(SETTING_WORDS)}|\d+)[ \t\f]*+\Z", re.IGNORECASE)


def properties_line_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, "password") of each value a properties line separates from its key by blanks only."""
    if "." not in text:
        return []
    out: list[tuple[int, int, str]] = []
    for m in _SPACED.finditer(text):
        start, end = m.span("s")
        while end > start and text[end - 1] in " \t\f":
            end -= 1
        if _SETTING.match(text, start, end) is None:
            out.append((start, end, "password"))
    return out
