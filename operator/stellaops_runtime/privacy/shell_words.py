"""Credentials written with shell syntax that the whole-set rules do not read.

Why this exists: two shell spellings kept a secret that the same value written
plainly loses.

* ``--password -- X``: ``--`` between a flag and its value (a value starting
  with ``-``, or a parser that takes the next word whatever it is: pflag,
  click). The key rules (``patterns``) refuse a value starting with ``-``, so
  ``X`` stayed. Any flag whose name ends in a credential word (``key_words``)
  followed by ``--`` loses the word after it (a quoted word whole); a switch
  named ``--no-…`` takes none. Over-redaction, when the program reads ``--`` as
  the end of its options, is of one word.
* A PEM private key written as one shell word, its spaces escaped
  (``--key=-----BEGIN\\ RSA\\ PRIVATE\\ KEY-----\\ MIIE…\\ -----END\\ …``, a
  ``sh -c`` script; ``\\n`` for its line breaks): ``pem_private_key`` reads
  ``BEGIN RSA PRIVATE KEY`` with plain spaces only. Its body goes, from its
  BEGIN line to its END line, the end of the shell word or of a cut field.

Each is its own small regex run only when the text holds its marker, so the
whole-set regex does not grow. Both read each character a bounded number of
times (possessive quantifiers; a flag's name at most 64 characters).
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.cli_syntax import QUOTED_WORD
from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, PW_WORDS, SECRET_WORDS

__all__ = ["CREDENTIAL_WORD", "shell_word_spans"]

# A credential word that ends a key's or a flag's name (key_words.py), as one regex.

CREDENTIAL_WORD = "(?:(?i:" + "|".join((*PASSWORD_WORDS, *SECRET_WORDS)) + ")|" + "|".join(PW_WORDS) + ")"
# A flag (not a ``--no-…`` switch), ``--``, then its value; the flag's name must end in a credential
# word (checked on the name alone: one cheap scan of the text, whatever its flags).
_DASH_DASH_VALUE = re.compile(
    rf"""(?<![^\s"'])--?(?!no-)(?P<f>[\w.-]{{1,64}}+)[ \t]++--[ \t]++(?P<s>{QUOTED_WORD}|\S++)"""
)
_ENDS_IN_CREDENTIAL_WORD = re.compile(rf"{CREDENTIAL_WORD}\Z")
# A blank escaped with one or more backslashes (one shell, or a script inside another).
_ESCAPED_BLANK = r"\\++[ \t]"
_ESCAPED_PEM = re.compile(
    rf"-----BEGIN(?:{_ESCAPED_BLANK}[A-Z0-9]++)*?{_ESCAPED_BLANK}PRIVATE{_ESCAPED_BLANK}KEY"
    rf"(?:{_ESCAPED_BLANK}BLOCK)?-----"
    # the body: anything but a blank, a quote or a backslash; an escaped character; a dash that
    # starts no END line
    r"""(?P<s>(?:[^\s'"\\-]++|\\++[\s\S]|-(?!----END))++)"""
    r"""(?=-----END|[\s'"]|\Z)"""
)


def shell_word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, rule name) of each value after ``--`` and each escaped one-word PEM body."""
    out: list[tuple[int, int, str]] = []
    if "-- " in text or "--\t" in text:
        for m in _DASH_DASH_VALUE.finditer(text):
            if _ENDS_IN_CREDENTIAL_WORD.search(m["f"]):
                out.append((*m.span("s"), "password"))
    if "BEGIN\\" in text:
        for m in _ESCAPED_PEM.finditer(text):
            out.append((*m.span("s"), "pem_private_key"))
    return out
