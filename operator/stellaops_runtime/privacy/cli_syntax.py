"""The syntaxes a command-line option's value is written in, as regex fragments.

Why this exists: the per-client rules (``cli_options``) and the rules of
options whose name says what they are (``cli_flags``) write the same forms
(``OPT VALUE``, ``OPT=VALUE``, ``-pVALUE``, ``OPT user:password``, an option
only after a subcommand). Each form is built here once, so that both lists
read alike and a fix to a form (a quoted value, where an option starts)
reaches every rule. Every fragment names the secret part ``(?P<s>...)``.
"""

from __future__ import annotations

from stellaops_runtime.privacy.base import DOUBLE_QUOTED, ESCAPED_DQ, ESCAPED_SQ, ESCAPED_SQ_OPEN, WORD_VALUE

# An option value: a quoted string (closing quote optional: the text may have
# been truncated; ``\"`` does not end a double-quoted one; a single-quoted one may open with an escaped
# quote inside a single-quoted script, base.ESCAPED_SQ) or a run up to whitespace.
# (in escaped double quotes at any depth too, base.ESCAPED_DQ: ``-p\\\\\\"a b\\\\\\"`` two levels deep)
VALUE = rf"""(?P<s>{DOUBLE_QUOTED}|{ESCAPED_SQ}|'[^']*'?|{ESCAPED_DQ}|{WORD_VALUE})"""
# A quoted word, whole (a token or password holding a space: Tetragon's quotes, a script's single
# quotes, or ``\"...\"`` inside a double-quoted ``sh -c`` script, at any depth); the closing quote
# optional (a cut text).
QUOTED_WORD = rf"""(?:{DOUBLE_QUOTED}|{ESCAPED_SQ}|'[^']*+'?|{ESCAPED_DQ})"""


def after(divider: str) -> str:
    """The password half of ``user<divider>password`` (curl -u, skopeo --creds, lftp -u, smbclient -U).

    Quoted by an escaped single quote too (``bash -c 'curl -u '"'"'bob:x'"'"' …'``, shlex.quote's), or by
    escaped double quotes (``sh -c "curl -u \\"bob:x\\""``, at any depth)."""
    return (
        rf"""(?:{ESCAPED_SQ_OPEN}[^'\n{divider}]*+{divider}(?P<s>[^'\n]*+)"""
        rf"""|"[^"{divider}]*{divider}(?P<s>(?:[^"\\]|\\[\s\S])*)"?|'[^'{divider}]*{divider}(?P<s>[^']*)'?"""
        # (in escaped double quotes at any depth: ``sh -c "sh -c \\"curl -u \\\\\\"bob:a b\\\\\\"\\""``)
        rf"""|\\++"[^"\\\n{divider}]*+{divider}(?P<s>(?:[^"\\]|\\++(?!"))*+)(?:\\++")?+"""
        rf"""|[^\s{divider}"']*{divider}(?P<s>{WORD_VALUE}))"""
    )


AFTER_COLON = after(":")


# Where an option starts: after whitespace, the start, or the quote Tetragon opens an argument
# holding a space with (``"-pa b"``: mysql's glued password holding a space).
START = r"""(?<![^\s"'])"""


def sep(opt: str) -> str:
    """``OPT VALUE`` (a value that does not look like the next option)."""
    return rf"{START}{opt}\s+(?![-\s]){VALUE}"


def glued(opt: str) -> str:
    """``OPTVALUE`` (``-pSECRET``)."""
    return rf"{START}{opt}(?=\S){VALUE}"


def sep_or_glued(opt: str) -> str:
    """``OPT VALUE`` or ``OPTVALUE`` (getopt: ``-p X`` and ``-pX``)."""
    return rf"{START}{opt}(?:\s+(?![-\s])|(?=\S)){VALUE}"


def sep_or_eq(opt: str) -> str:
    """``OPT VALUE`` or ``OPT=VALUE`` (a long option)."""
    return rf"{START}{opt}(?:=|\s+(?![-\s])){VALUE}"


def userpass(opt: str, divider: str = ":") -> str:
    """``OPT user:password`` or ``OPTuser:password``: the part after the divider."""
    return rf"{START}{opt}(?:\s+|(?=\S)){after(divider)}"


# Words between a subcommand and its option (``docker login -u USER -p SECRET``: 2). Bounded, so
# that each ``login`` of a text of thousands costs a few words, not a scan to the end.
MAX_WORDS_AFTER_SUB = 32


def after_sub(sub: str, rule: str) -> str:
    """``rule`` only after the subcommand ``sub`` in the same command, at most 32 words after it."""
    tail = rule.removeprefix(START)
    return rf"(?<!\S){sub}\s+(?:\S+\s+){{0,{MAX_WORDS_AFTER_SUB}}}?{tail}"
