"""The shape every default rule shares, and how a set of rules becomes one regex.

Kept apart from the rule lists (``patterns``, ``provider_tokens``,
``personal_data``, ``cli_options``) so that each list can import it without
importing the others, and so the compilation contract is read in one place. The default rules
are each compiled alone and run as their alternation would (``rule_scan``); ``compile_patterns``
of several rules is that alternation (the tests' reference).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

REDACTED = "[REDACTED]"

# A double-quoted value: JSON and shells escape a quote inside it with a backslash
# (``"pa\\"ss word"``), so an escaped quote does not end it; the closing quote is
# optional (the text may have been truncated). Single quotes escape nothing.
DOUBLE_QUOTED = r'"(?:[^"\\]|\\[\s\S])*"?'
# A single quote inside a single-quoted shell value, written ``'\''`` or ``'"'"'``, joins the next
# single-quoted piece to the same word (``--password='it'\''s'``): after a quoted value, what else it
# holds; another quote after the value does not (``sh -c 'app --password="x"' && …``,
# ``{'password':'x','user':'u'}``). Possessive: each piece is read once.
SQ_PIECES = r"""(?:(?<=')(?:\\'|"'")'[^'\n]*+'?)*+"""
# A value opened by such an escaped quote: inside a single-quoted script (``sh -c '…'``), the script's
# ``--password 'a b'`` is written ``--password '\''a b'\''`` (or ``'"'"'…'"'"'``, Python's
# shlex.quote); the value runs from the escaped quote to the next quote, and takes the escaped quote
# that closes it. (Read as a quoted backslash, ``'\'``, it left the password after it.)
# (its ``"`` escaped too inside a double-quoted argument: ``'\"'\"'``, RP7)
# A script quoted again quotes the escaped quote again: ``bash -lc`` of a ``bash -c '…'`` line writes
# ``'"'"'`` as ``'"'"'"'"'"'"'"'"'``, escaped quotes joined by ``"`` or ``\`` (P8: the value after that
# run was kept); so the escaped quote is a run of them. Possessive: each piece is read once.
_ESCAPED_SQ_UNIT = r"""'(?:\\'|\\?"'\\?")'"""
ESCAPED_SQ_OPEN = rf"""{_ESCAPED_SQ_UNIT}(?:[\\"]*+{_ESCAPED_SQ_UNIT})*+"""
# A closing run with more of the word right after it joins that piece (a value holding a quote,
# ``'"'"'a'"'"'\'"'"''"'"'b'"'"'`` for ``a'b``); one before a blank, the end or what ends an
# embedded string (``"``, ``;``, ``,``, a bracket: ``psql -c "… PASSWORD '\''x'\''"``) closes it.
# (The run is written twice, not three times: the whole set holds ESCAPED_SQ ~25 times.)
_JOINED_PIECE = r"""(?:(?=[^\s'";,)}\]&|<>])[^'\n]++)?+"""
ESCAPED_SQ = rf"""{ESCAPED_SQ_OPEN}[^'\n]*+(?:{ESCAPED_SQ_OPEN}{_JOINED_PIECE})*+"""
# A value quoted with escaped double quotes, inside a double-quoted shell or JSON string, at any depth:
# ``sh -c "app --password=\\"a b\\""`` and, a level deeper, ``sh -c "sh -c \\"… =\\\\\\"a b\\\\\\"\\""``
# (its quote is a run of backslashes then ``"``; the twice-escaped one kept the part after the blank:
# RP8's third known limit, session 46): to the next escaped quote, which it takes. Possessive.
ESCAPED_DQ = r'\\++"(?:[^"\\]|\\++(?!"))*+(?:\\++")?+'
# An unquoted value: a run up to whitespace that keeps a quote inside it (``it's``) but not
# one ending it before whitespace or the end (Tetragon quotes an argument holding a space:
# ``"-p x"``, so that closing quote is not the value's).
# A backslash glued to a value's end then a line break continue the value on the next line: a shell word
# (the two are removed), a Java properties line (the next line's leading blanks skipped too):
# ``password=abc\`` then ``  xyz`` kept ``xyz`` (s49 RP). Used by key_rules and env_names.
CONTINUED = r"\\\r?+\n[ \t]*+(?=[^ \t\r\n])"
WORD_VALUE = r"""[^\s"'](?:[^\s"']|["'](?=\S))*"""
# A YAML block scalar (``password: |`` or ``>-``, then the value on the indented lines below):
# its indicator line and every following line that starts with whitespace (a sibling key
# indented like the secret's goes too: over-redaction, never a line of the value left).
# Possessive: blank lines are never read two ways.
_INDENTED_LINE = r"\n(?:[ \t]*+\n)*+[ \t]++[^\n]*+"
BLOCK_SCALAR = rf"[|>][+-]?[0-9]?[+-]?[ \t]*+(?:#[^\n]*+)?{_INDENTED_LINE}(?:{_INDENTED_LINE})*+"

# A marker the text already holds is no value (log text redacted twice, hostile_text's second pass,
# our own output read again): ``[REDACTED]`` then the end of the word (up to three closing
# characters: ``[REDACTED]"}``), or then the separator before the next member of a JSON or YAML
# flow (``{"token":[REDACTED],"n":1}``), a URL query or an ODBC string (``[REDACTED]&n=1``,
# ``[REDACTED];Database=x``) or an XML closing tag. ``[REDACTED]S3cret`` and ``[REDACTED],S3cret``
# are values.
NOT_A_MARKER = r"(?!\[REDACTED\](?:[^\w\s]{0,3}(?!\S)|[}\]\"']{0,3}(?:,[\s\"'{\[]|[&;#]\s*[\w.%-]+[=:]|</)))"

# A value that starts a private key (``PRIVATE_KEY=-----BEGIN RSA PRIVATE KEY-----``, ``--ssh-key
# "-----BEGIN …"``) is none for a key or flag rule: the word after the key would be only the BEGIN
# line's first word and the body after it was kept; the ``pem_private_key`` rule takes the body.
NOT_A_PEM_START = (
    r"(?![\"']?(?:-----BEGIN [A-Z0-9 ]*PRIVATE KEY"
    r"|---- BEGIN SSH2 ENCRYPTED PRIVATE KEY|PuTTY-User-Key-File-))"
)

# Gates: cheap regexes a field must match before a rule that names the gate
# runs. "run": a run of 20 token characters at the start or after a non-token
# character (every provider token has one; ``/x86_64-linux-gnu`` does not);
# "digits": five digits, or 3-2 digits around a dash or space (every card
# number and SSN has one).
GATES: dict[str, tuple[re.Pattern[str], ...]] = {
    "run": (re.compile(r"[^A-Za-z0-9_-][A-Za-z0-9_-]{20}"), re.compile(r"[A-Za-z0-9_-]{20}")),
    "digits": (re.compile(r"[0-9]{3}[ -]?[0-9]{2}"),),
}


def gate_open(gate: str, text: str) -> bool:
    """Whether ``text`` passes ``gate`` (the second "run" regex is anchored at the start)."""
    rxs = GATES[gate]
    if rxs[0].search(text) is not None:
        return True
    return len(rxs) > 1 and rxs[1].match(text) is not None


@dataclass(frozen=True, slots=True)
class SecretPattern:
    """One named rule.

    ``regex`` names its secret ``(?P<s>...)`` (``s_2``, ``s_3``... in other
    alternatives), or ends with ``(?P<w>)`` when the whole match is the secret.
    ``triggers`` are lower-case substrings of which at least one occurs in
    ``text.lower()`` whenever the regex matches ``text``: a field holding none of
    them skips the rule without running it (no triggers: the rule always runs,
    unless it has a gate). ``gate`` names a GATES entry the field must also pass.
    ``validate`` gets the secret text and may reject it (a card number that
    fails the Luhn check is not a card number).
    """

    name: str
    regex: str
    triggers: tuple[str, ...] = ()
    gate: str = ""
    validate: Callable[[str], bool] | None = None


def number_groups(regex: str) -> str:
    """Rename the ``(?P<s>`` groups of ``regex`` to ``s``, ``s_2``, ``s_3``... in order."""
    n = 0

    def repl(_: re.Match[str]) -> str:
        nonlocal n
        n += 1
        return "(?P<s>" if n == 1 else f"(?P<s_{n}>"

    return re.sub(r"\(\?P<s>", repl, regex)


@dataclass(frozen=True, slots=True)
class CompiledPatterns:
    """One flat alternation of named patterns, and what each secret group means."""

    regex: re.Pattern[str]
    # secret group name -> (pattern name, True when the whole match is the secret, validator)
    groups: dict[str, tuple[str, bool, Callable[[str], bool] | None]]
    # One rule's head (rule_heads.py): matches wherever the rule may start; None: not known.
    head: re.Pattern[str] | None = None


def compile_patterns(patterns: tuple[SecretPattern, ...] | list[SecretPattern]) -> CompiledPatterns:
    """Join patterns into one regex; secret groups are renamed per pattern.

    Python forbids a group name twice in one regex, so pattern ``i``'s ``s``,
    ``s_2``, ``w`` groups become ``p<i>_s``, ``p<i>_s_2``, ``p<i>_w``. Each
    alternative has exactly one capturing group, so ``match.lastgroup`` names
    the secret group of the alternative that matched (and so its pattern).
    """
    parts = []
    groups: dict[str, tuple[str, bool, Callable[[str], bool] | None]] = {}
    for i, p in enumerate(patterns):
        body = re.sub(r"\(\?P<((?:s|w)(?:_\d+)?)>", rf"(?P<p{i}_\1>", p.regex)
        names = re.findall(rf"\(\?P<(p{i}_[^>]+)>", body)
        if not names:
            raise ValueError(f"pattern {p.name!r} has no secret group (?P<s>...) or (?P<w>)")
        for n in names:
            groups[n] = (p.name, n.startswith(f"p{i}_w"), p.validate)
        parts.append(body)
    # ASCII: case-insensitive keywords match ASCII letters only, so the
    # lower-case triggers are exact (no long s U+017F matching 's', no Kelvin sign U+212A matching 'k').
    rx = re.compile("|".join(parts), re.ASCII)
    if rx.groups != len(groups):
        raise ValueError("a default pattern has an unnamed capturing group")
    return CompiledPatterns(regex=rx, groups=groups)


def first_char_alternatives(word: str, tail: str = "") -> list[str]:
    """``word`` case-insensitively, as alternatives that start with a literal character.

    Python's regex engine skips an alternative cheaply when its first item is a
    literal or a character class, but not when it is a group or a lookbehind;
    so the word's first character leads, and ``tail`` (a lookbehind, say) follows it.
    """
    first, rest = word[0], word[1:]
    cases = [first.lower(), first.upper()] if first.lower() != first.upper() else [first]
    return [f"{c}{tail.replace('@', re.escape(c))}(?i:{rest})" for c in cases]
