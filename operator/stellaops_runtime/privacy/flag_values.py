"""Flags and words whose value may be a secret, decided by what the value looks like.

Why this exists: the key rules (``patterns``) redact the value of a name that
ends in a credential word (``--password``, ``--api-token``, ``--client-secret``)
whatever it is. Other names hold a secret or a path to one, depending on the
program: ``--credentials /etc/gcp.json`` names a file, ``--credentials
user:S3cret`` is one; ``--key /etc/tls/key.pem`` is a path, ``--key
9fT2kQ7wZ4`` an encryption or API key, ``--key reports/a.csv`` an object name.
These were all kept (``--jwt X``, ``--bearer X``, ``--credentials X``,
``--key X``, Windows ``/password:X``, a bare ``password X``). The rules here
take such a value unless it looks like what else it may be:

The value of these is a credential unless it is a path or a
reference to one: ``/…``, ``./…``, ``~/…``, ``C:\\…``, ``@file``, ``file:``,
``env:``, a file name with an extension: ``creds.json``), counted ``cli_flag_secret``:

- ``--jwt``, ``--bearer``, ``--credential``, ``--credentials``, ``--cred`` and
  names ending in them (``--client-credentials``, ``--id-jwt``), ``=`` or a space;
  (``--creds user:password`` is ``cli_flag_secret``'s: its user is kept);
- Windows-style options whose name ends in a credential word, at the start of a
  word: ``/password:X``, ``/pass:X``, ``/pwd:X``, ``/psw:X``, ``/TargetPassword:X``,
  ``/token:X``, ``/secret:X``, ``/apikey:X`` (``wmic``, ``cmdkey``,
  ``sqlpackage``); ``/etc/passwd:`` is a path, not an option.

These values are taken only when they look like a secret (not a path,
and a letter with a digit, or a symbol, or an upper-case letter after a lower-case
one, or at least 16 characters; ``now``, ``NULL``, ``Manager``, ``index.html`` stay):

- ``--key`` and names ending in ``-key``/``_key``/``.key`` not taken by the key
  rules (``--ssh-key``, ``--encryption-key``), counted ``cli_flag_secret``;
- ``password`` or ``passphrase`` as a word of its own, followed by a value
  (``mysqladmin -u root password N3wPw``, ``app password S3cret``), counted
  ``password``; the prose ``forgot password now`` stays.
"""

from __future__ import annotations

import re

from stellaops_runtime.privacy.base import (
    DOUBLE_QUOTED,
    ESCAPED_SQ,
    NOT_A_MARKER,
    NOT_A_PEM_START,
    WORD_VALUE,
    SecretPattern,
    number_groups,
)
from stellaops_runtime.privacy.key_words import SETTING_WORDS

# A value: quoted (the closing quote optional) or a run up to whitespace; a marker the text already
# holds is none (re-read text).
_VALUE = rf"""{NOT_A_PEM_START}(?P<s>{DOUBLE_QUOTED}|{ESCAPED_SQ}|'[^']*'?|{NOT_A_MARKER}{WORD_VALUE})"""
# A flag's name ending in one of ``words``: ``--word``, ``-word``, ``--prefix-word``.
_FLAG = r"-(?<![\w./-]-)-?(?:[A-Za-z0-9]+[-_.])*(?i:{words})(?:=|\s+(?![-\s]))"

_CREDENTIAL_WORDS = r"jwt|bearer|credentials?|cred"
# A switch word alone after such a flag is a setting (``--verify_jwt=off``, ``-Dx.use_jwt=true``), as the
# key rules read it (patterns._NOT_A_SETTING_WORD); the Windows-style password options take any value.
_NOT_A_SETTING = r"(?!(?i:" + "|".join(SETTING_WORDS) + r")(?![^\s\"',;&}]))"
# ``key`` ending a flag's name, except where the key rules take it (``--api-key``: secret_token)
_KEY_WORD = (
    r"key(?<!api[-_]key)(?<!apikey)(?<!secret[-_]key)(?<!access[-_]key)(?<!private[-_]key)(?<!account[-_]key)"
)
_WINDOWS_WORDS = r"password|passwd|passphrase|pass|pwd|psw|pw|secret|token|api-?key"

# A path or a reference to a file: absolute, home- or dot-relative, a Windows drive, curl's ``@file``,
# ``file:``/``env:``/``fd:``, a process substitution ``<(…)`` (what it prints is read as a file: its
# rules are stdin_secrets'); names joined by ``/`` (no ``+`` or ``=``: a base64 token may hold a
# ``/``); a file name with a short extension (``creds.json``; a JWT's last part is longer).
_PATH_START = r"""["']?(?:[/~@\\]|\.\.?[/\\]|[A-Za-z]:[\\/]|(?i:file|env|fd):|<\()"""
_PATH = re.compile(
    _PATH_START + r"""|["']?[\w.-]+(?:[/\\][\w.-]+)+/?["']?$"""
    r"""|["']?[\w-][\w.-]*\.[A-Za-z][A-Za-z0-9]{0,4}["']?$"""
)
# A value that starts as a path is none for the flag rules: no match, not a match their validator
# rejects. Rejected, the search went on from the flag's next character and, from each glued flag inside
# the value (``--key=/a:--key=/a:…``, ``--key=\\"--key=\\"…``: a value runs to a blank), read the rest
# of it again: quadratic (2.8 s on 32 KiB; the one alternation before rule_scan, 51 s). Refused at
# its start, no value is read. The same first test as ``_PATH``'s, which ``not_a_path`` still applies
# (a value it names a path by its whole form, ``a/b``, ``creds.json``, holds no flag: no ``=``).
_NOT_A_PATH = f"(?!{_PATH_START})"
_SYMBOL = re.compile(r"[!#$%&*+=?^~|<>@]")
_LETTER_DIGIT = re.compile(r"(?=.*[A-Za-z])(?=.*[0-9])", re.DOTALL)
_LOWER_UPPER = re.compile(r"[a-z][A-Z]")


def not_a_path(value: str) -> bool:
    """Whether ``value`` is no path or file reference (so the credential itself)."""
    return _PATH.match(value) is None


def looks_secret(value: str) -> bool:
    """Whether ``value`` (not a path) looks like a secret rather than a word."""
    v = value.strip("\"'").rstrip(".,;:!?)")  # prose ends a word with punctuation: ``again?``
    if not v or not not_a_path(value):
        return False
    return (
        len(v) >= 16
        or _LETTER_DIGIT.match(v) is not None
        or _SYMBOL.search(v) is not None
        or _LOWER_UPPER.search(v) is not None
    )


# Counted with the rules they complete (no new counter: a dashboard keeps its families):
# option names under ``cli_flag_secret``, a bare ``password X`` under ``password``.
CREDENTIAL_FLAG = SecretPattern(
    "cli_flag_secret",
    number_groups(
        "|".join(
            [
                _FLAG.format(words=_CREDENTIAL_WORDS) + _NOT_A_SETTING + _NOT_A_PATH + _VALUE,
                # /password:X at the start of a word (whitespace, a quote or "(" before the "/")
                rf"/(?<![^\s\"'(]/)[A-Za-z0-9_-]*?(?i:{_WINDOWS_WORDS})[:=]{_NOT_A_PATH}{_VALUE}",
            ]
        )
    ),
    triggers=("jwt", "bearer", "cred", "pass", "pw", "psw", "secret", "token", "key"),
    validate=not_a_path,
)

# not the names the key rules take (``--api-key``, ``--secret-key``: secret_token)
KEY_FLAG = SecretPattern(
    "cli_flag_secret",
    _FLAG.format(words=_KEY_WORD) + _NOT_A_PATH + _VALUE,
    triggers=("key",),
    validate=looks_secret,
)

# a bare ``password X``: the word alone (after whitespace, a quote or the start)
BARE_PASSWORD = SecretPattern(
    "password",
    rf"[Pp](?<![^\s\"'][Pp])(?i:assword|assphrase)\s+(?![-\s=:]){_VALUE}",
    triggers=("password", "passphrase"),
    validate=looks_secret,
)

FLAG_VALUE_PATTERNS: tuple[SecretPattern, ...] = (CREDENTIAL_FLAG, KEY_FLAG, BARE_PASSWORD)
