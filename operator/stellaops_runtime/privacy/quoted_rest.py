"""The rest of a quoted argument or header whose first word a rule took: it goes with it.

Why this exists: the rules read a value up to whitespace, and Tetragon quotes an exec's argument that
holds a blank (``"--password=a b c"``, ``-H "X-Api-Key: a b"``): the marker then cut such an argument
in two and its later words stayed. The redactor (redactor.py) runs :func:`rest_of_quoted` over a text
its rules changed; kept apart from the passes it follows, which read alone without these regexes.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.shell_words import CREDENTIAL_WORD

__all__ = ["rest_of_quoted"]


# Tetragon quotes an argument that holds a space, so a value holding spaces (``"--password=a b c"``,
# ``-e "DB_PASSWORD=a b"``, mysql ``"-pa b"``) is one quoted argument whose first word the rules
# took (values run to whitespace): the rest of that argument goes with it. Not after ``-c`` (a shell
# script: ``sh -c "PGPASSWORD=x psql ..."`` keeps its command).
# A cut text may end inside such an argument (no closing quote): the rest to the end goes.
# Not after a token of a fixed form, which ends where its form does: the first word is then the
# marker alone or after the token's own prefix (``'AKIA[REDACTED] hello world'``, ``ghp_``, an
# e-mail address, a JWT); a value's first word has its key or flag before it (``=``, ``:``, ``-p``).
_FIXED_FORM = r"(?!(?:[A-Za-z0-9][\w-]*+)?\[REDACTED\][ \t])"
_QUOTED_REST = re.compile(
    rf'(?<!\S)(?<!-c )"{_FIXED_FORM}(?P<first>[^\s"]*\[REDACTED\])[ \t][^"\n]*(?P<end>"(?!\S)|\Z)'
)
# The same quoted with escaped double quotes, a word of a script inside a double-quoted one at any depth
# (``sh -c "app \\"--password=a b\\""``, a level deeper ``\\\\\\"…\\\\\\"``): to the same run of
# backslashes and its quote. A run is read whole, once, and only a run other than the closing one is
# part of the word: linear. Not after ``-c`` or ``-lc`` (a nested script keeps its command).
_ESCAPED_QUOTED_REST = re.compile(
    rf"""(?<!\S)(?<!-c )(?<!-lc )(?P<q>\\++"){_FIXED_FORM}(?P<first>[^\s"\\]*\[REDACTED\])[ \t]"""
    r"""(?:[^"\\\n]|\\++(?!"))*+(?P<end>(?P=q)(?![^\s"\\])|\Z)"""
)
# The same in single quotes, a shell word inside a script (``sh -c "app '--password=a b'"``): its
# closing quote may be followed by the script's closing double quote.
_SINGLE_QUOTED_REST = re.compile(
    rf"(?<!\S)'{_FIXED_FORM}(?P<first>[^\s']*\[REDACTED\])[ \t][^'\n]*(?P<end>'(?![^\s\"])|\Z)"
)

# A credential header quoted whole whose value holds a space (``-H "X-Api-Key: a b"``, ``'X-Auth-Token:
# a b'``, ``\"Private-Token: a b\"`` in a ``sh -c`` script): the key rule took the value's first word
# (values run to whitespace); the rest of the header, to its closing quote, goes with it. The
# header's name ends in a credential word (key_words.py), so another header's words stay. A run of
# backslashes is read whole, once (not once per backslash: linear), and is part of the value unless
# it closes the quote. Single quotes: also ANSI-C ``$'…'`` and a single-quoted ``sh -c`` script's
# ``'\''…'\''`` and ``'"'"'…'"'"'``. The quote may open before the header's flag (Tetragon wraps
# ``wget --header="Private-Token: a b"``'s one argument: ``"--header=Private-Token: a b"``), or right
# after curl's ``-H`` glued to it or an opening bracket (``-H"X-Api-Key: a b"``, ``['X-Api-Key: a b']``).
# Blanks before the colon too (``-H "X-Api-Key : a b"``: curl sends the header as written, and servers
# that trim the name read it).
_HEADER_NAME = (
    rf"(?:--?[\w-]{{1,32}}=)?[\w-]{{0,64}}?{CREDENTIAL_WORD}[ \t]*+:[ \t]*+(?:[\w-]*+)?\[REDACTED\]"
)
_QUOTED_HEADER_REST = re.compile(
    rf"""(?<![^\s=\[(,{{H])(?P<q>\\*+")(?P<first>{_HEADER_NAME})[ \t]"""
    r"""(?:[^"\\\n]|\\++(?!"))*+(?P<end>(?P=q)|\Z)"""
)
_SINGLE_QUOTED_HEADER_REST = re.compile(
    rf"""(?:(?<![^\s="$\[(,{{H])|(?<='\\'))'(?P<first>{_HEADER_NAME})[ \t][^'\n]*+(?P<end>'|\Z)"""
)


# The replacements of the four above are functions, not templates (``'"\\g<first>\\g<end>'``): ``sub``
# with a template imports ``re`` to expand it, and while the interpreter shuts down Python refuses
# imports, so a traceback the agent logged then (an unretrieved task's, from a last garbage
# collection) failed the rules and was never shown (tests/unit/test_privacy_compile_at_exit.py).
def _double_quoted(m: re.Match[str]) -> str:
    return f'"{m["first"]}{m["end"]}'


def _single_quoted(m: re.Match[str]) -> str:
    return f"'{m['first']}{m['end']}"


def _header_quoted(m: re.Match[str]) -> str:
    return f"{m['q']}{m['first']}{m['end']}"


def rest_of_quoted(out: str) -> str:
    """``out`` (which holds a marker) losing the rest of each quoted argument or header a marker cut."""
    if '"' in out:
        out = _QUOTED_REST.sub(_double_quoted, out)
        if '\\"' in out:
            out = _ESCAPED_QUOTED_REST.sub(_header_quoted, out)
    if "'" in out:
        out = _SINGLE_QUOTED_REST.sub(_single_quoted, out)
    if ":" in out:
        out = _QUOTED_HEADER_REST.sub(_header_quoted, out)
        out = _SINGLE_QUOTED_HEADER_REST.sub(_single_quoted, out)
    return out
