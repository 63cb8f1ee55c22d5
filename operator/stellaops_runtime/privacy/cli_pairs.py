"""Secrets in settings a client is given as a list of words: ``rclone config create N T key value``.

A client rule of ``cli_options`` is a regex: a match names one secret and the search goes on
after it. In a list of pairs, which word is a value depends on every word before it (``pass X
... password2 Y``; a value that reads ``token``), and a regex match cannot know it is still in
the list, so these lists are walked word by word from their command:

* ``rclone config create NAME TYPE``, ``config update NAME``: a pair's value goes when its key
  names a secret (``pass``, ``password2``, ``secret_access_key``, ``client_secret``, ``token``,
  ``key``, ``key_pem``...); ``config password NAME``: every value (the command sets passwords);
  pairs are ``key value`` or ``key=value`` (https://rclone.org/commands/rclone_config_create/);
  the answer of ``--result`` (a config question's, a password's too) goes.
* ``vault kv put|patch PATH key=value ...``: every value (the command stores secrets);
  ``vault write PATH key=value ...``: a value whose key names a secret (``secret_id``).
* ``redis-cli ACL SETUSER NAME rule ...``: every password rule of the list (``>pw``, ``<pw``,
  ``#hash``, ``!hash``, quoted when it holds a space: ``">my pass"``), not only the first.

Pairs are read aligned (key, value, key, value) and, so that a flag taking a value the walk
does not know cannot shift a secret into a key's place, the word after any word naming a secret
goes too: over-redaction of a word, never a secret left. Linear in the command's length.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A word: runs of other characters and quoted strings (Tetragon quotes an argument holding a
# space: ``pass "a b"``, ``pass="a b"``); a quote left open runs to the end. Each item starts
# with a different character, so a word is read once.
_WORD = re.compile(r"""(?:[^\s"']|"(?:[^"\\]|\\[\s\S])*+"?|'[^']*+'?)++""")
# A setting's name that names a secret (rclone's password and sensitive options, vault's
# ``secret_id``), unless it names where one is or something about it (``key_file``,
# ``token_url``, ``access_key_id``, ``token_ttl``); ``sas_url`` and ``secret_id`` are secrets.
_SECRET_KEY = re.compile(r"(?i)pass|secret|token|key|credential|cookie|pem")
_NOT_SECRET_KEY = re.compile(r"(?i)[_-](?:id|file|url|path|type|name|version|ttl|policies)$")
_SECRET_ALWAYS = ("sas_url", "secret_id")
# A word that may be a key read out of place: a name, not a value (``https://x/token``).
_KEY_SHAPE = re.compile(r"[A-Za-z][\w-]*")

Spans = list[tuple[int, int]]


def _names_secret(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None and (
        _NOT_SECRET_KEY.search(key) is None or key.lower().endswith(_SECRET_ALWAYS)
    )


def _key_naming_secret(word: str) -> bool:
    return _KEY_SHAPE.fullmatch(word) is not None and _names_secret(word)


def _value_after_eq(s: int, word: str, out: Spans) -> None:
    eq = word.find("=")
    if 0 <= eq < len(word) - 1:
        out.append((s + eq + 1, s + len(word)))


def _words(text: str, start: int, end: int) -> list[tuple[int, str]]:
    return [(m.start(), m.group()) for m in _WORD.finditer(text, start, end)]


_RCLONE_SUBS = ("create", "update", "password")


def rclone_spans(text: str, start: int, end: int) -> Spans:
    """Secret values of ``rclone config create|update|password`` pair lists in ``text[start:end]``."""
    words = _words(text, start, end)
    out: Spans = []
    i, n = 0, len(words)
    while i < n - 1:
        if words[i][1] == "config" and words[i + 1][1] in _RCLONE_SUBS:
            i = _rclone_pairs(words, i + 2, words[i + 1][1], out)
        else:
            i += 1
    return out


def _rclone_pairs(words: list[tuple[int, str]], i: int, sub: str, out: Spans) -> int:
    """Walk one command's pairs from word ``i``; the index where the walk stopped."""
    positionals = 2 if sub == "create" else 1  # NAME TYPE, or NAME
    every = sub == "password"
    key: str | None = None  # the key whose value is the next word (aligned reading)
    after_secret = False  # the last word named a secret (unaligned reading)
    n = len(words)
    while i < n:
        s, w = words[i]
        if w == "config" and i + 1 < n and words[i + 1][1] in _RCLONE_SUBS:
            return i
        i += 1
        if w.startswith("-") and len(w) > 1:  # a flag: values never start with "-" (pflag)
            if w.startswith("--result="):
                _value_after_eq(s, w, out)
            elif w in ("--result", "--state") and i < n:
                if w == "--result":
                    out.append((words[i][0], words[i][0] + len(words[i][1])))
                i += 1
            continue
        if positionals:
            positionals -= 1
            continue
        secret_value = after_secret
        after_secret = False
        if key is None and "=" in w:
            if every or _names_secret(w.partition("=")[0]):
                _value_after_eq(s, w, out)
        elif key is None:
            key = w
            after_secret = _key_naming_secret(w)
        else:
            secret_value = secret_value or every or _names_secret(key)
            key = None
            # a value that goes is read as one both ways; one kept may be a key read out of place
            after_secret = not secret_value and _key_naming_secret(w)
        if secret_value:
            out.append((s, s + len(w)))
    return i


def vault_spans(text: str, start: int, end: int) -> Spans:
    """Values of ``vault kv put|patch`` (every one) and ``vault write`` (secret keys') pairs."""
    words = _words(text, start, end)
    out: Spans = []
    every: bool | None = None  # None: not in a storing command yet
    for k, (s, w) in enumerate(words):
        if w in ("put", "patch") and k and words[k - 1][1] == "kv":
            every = True
        elif w == "write" and every is None:
            every = False
        elif (
            every is not None
            and "=" in w
            and not w.startswith(("-", "="))
            and (every or _names_secret(w.partition("=")[0]))
        ):
            _value_after_eq(s, w, out)
    return out


# An ACL rule that gives a password: ``>password`` adds it, ``<password`` removes it, ``#hash`` and
# ``!hash`` the same by its SHA-256 (a hash of a password is as good as it to a cracker).
_ACL_PASSWORD = "<>#!"


def redis_acl_spans(text: str, start: int, end: int) -> Spans:
    """The passwords and hashes of ``ACL SETUSER name rule ...`` (every rule of the list, quoted or not)."""
    out: Spans = []
    user = in_acl = False  # the next word is the user's name; the words are an ACL rule list
    prev = ""
    for s, w in _words(text, start, end):
        low = w.lower().strip("\"'")  # (a command's words may be quoted: ``"ACL" "SETUSER"``)
        if low == "setuser" and prev == "acl":
            user = in_acl = True
        elif user:
            user = False
        elif in_acl:
            q = 1 if w[:1] in "\"'" else 0  # a rule holding a space is quoted: ``">my pass"``
            close = len(w) - 1 if q and len(w) > 2 and w[-1] == w[0] else len(w)
            if w[q : q + 1] and w[q] in _ACL_PASSWORD and close > q + 1:
                out.append((s + q + 1, s + close))
        prev = low
    return out


PAIR_WALKERS: dict[str, Callable[[str, int, int], Spans]] = {
    "rclone": rclone_spans,
    "vault": vault_spans,
    **dict.fromkeys(("redis-cli", "valkey-cli", "keydb-cli"), redis_acl_spans),
}
