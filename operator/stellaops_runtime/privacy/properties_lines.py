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
it. A key of one word whose password word follows ``_``, ``-`` or a camel-case hump (``db_password S``,
Apache httpd's ``AuthLDAPBindPassword S``) counts too, with a value of one word or quoted string ending
its line (s51 RP). Anchored at line starts, bounded, possessive: linear.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, SECRET_WORDS, SETTING_WORDS

__all__ = ["properties_line_spans"]

_WORDS = "|".join((*PASSWORD_WORDS, *SECRET_WORDS))
# what starts no value after the key's blanks: ``=`` or ``:`` (the key rules' forms), an operator (only
# before a blank or ``=``), punctuation of code, a word of prose
_NOT_CODE_OR_PROSE = (
    r"(?![=:]|[-+*/%&|^<>!?~]++(?:[=\s]|\Z)|[.,;(\[{]"
    r"|(?:is|in|and|or|not|if|to|for|as|was|must|required|missing|set|unset|has)\b)"
)
_SPACED = re.compile(
    r"(?m)^[ \t\f]*+(?!(?:self|this|cls)\.)"
    rf"[\w-]{{1,64}}+\.[\w.-]{{0,256}}?(?i:{_WORDS})"
    # an operator is one only before a blank or ``=`` (``a.token += x``, ``a.b - 1``): a generated password
    # may start with one of its characters (``db.password !x``, ``*x``: s51 RP)
    rf"[ \t\f]++{_NOT_CODE_OR_PROSE}"
    r"(?P<s>(?:[^\r\n\\]|\\[^\r\n]|\\\r?+\n)++)"
)
# A key of one word whose password word follows ``_``, ``-`` or a camel-case hump (``db_password S``,
# ``AuthLDAPBindPassword S``: java.util.Properties reads any key so, and directive files, Apache httpd's,
# write theirs so: s51 RP), its value one word or one quoted string ending the line; a bare word
# (``Password changed``), prose's several words (``oauth_token given in …``) and the wider secret words
# (``PREVENT_NO_AUTH superuser``, /etc/login.defs) are not read here.
_DIRECTIVE = re.compile(
    r"(?m)^[ \t\f]*+(?:[A-Za-z][\w-]{0,64}?[_-]|[A-Za-z][A-Za-z0-9]{0,64}?(?<=[a-z0-9])(?=[A-Z]))"
    rf"(?i:{'|'.join((*PASSWORD_WORDS, 'token', 'secret', 'api[_-]?key'))})"
    rf"[ \t\f]++{_NOT_CODE_OR_PROSE}"
    r"""(?P<s>"[^"\r\n]*+"|'[^'\r\n]*+'|[^\s"']++)[ \t\f]*+(?=\r?\n|\r|\Z)"""
)
_SETTING = re.compile(rf"(?:{'|'.join(SETTING_WORDS)}|\d+)[ \t\f]*+\Z", re.IGNORECASE)


def properties_line_spans(text: str, *, argv: bool = False) -> list[tuple[int, int, str]]:
    """(start, end, "password") of each value a properties line separates from its key by blanks only.

    ``argv``: ``text`` is an exec's arguments, whose first line is a command line, no file's
    (``wpa_passphrase HomeNet`` names a network): a one-word key is read on the lines after it only (a
    script's, a here-document's).
    """
    out: list[tuple[int, int, str]] = []
    first = text.find("\n") + 1 if argv else 0  # 0 in an exec's arguments: a command line alone
    directives = _DIRECTIVE.finditer(text, first) if first or not argv else ()
    for m in (*_SPACED.finditer(text), *directives):
        start, end = m.span("s")
        while end > start and text[end - 1] in " \t\f":
            end -= 1
        if _SETTING.match(text, start, end) is None:
            out.append((start, end, "password"))
    return out
