"""The default secret patterns, named, and how they are compiled into one regex.

Process arguments are where secrets leak into runtime evidence (``--password=``,
``PGPASSWORD=``, bearer tokens passed to ``curl -H``, connection strings). This
module owns the list of what the privacy filter recognizes by default, kept
apart from the filter so that the list can be read and reviewed on its own.

Every pattern has a name (the key of ``PrivacyFilter.redactions_by_pattern``
and of the metrics) and a regex with exactly one group named ``s``: the secret.
Only that group is replaced with ``[REDACTED]``; the text around it (the key,
the flag, the scheme and user of a URL, a token's well-known prefix) is kept so
that a human still sees what kind of thing was there. A pattern whose ``s``
group spans the whole match (JWT, e-mail) replaces the whole match.

Decisions worth knowing (the corpus in tests/fixtures/privacy proves them):

* a key counts only when the secret word ends the key: ``--password=x``,
  ``db_password=x`` and ``PGPASSWORD=x`` are redacted; ``--password-file=/run/x``
  and ``--token-file=/var/run/x`` are paths to secrets, not secrets, and are kept;
* the flag form with a space (``--password x``) needs a leading ``-`` and a
  value that does not start with ``-`` (the next flag); ``--no-password`` is a
  switch, not a key;
* ``-p<secret>`` is too ambiguous (``-p 8080``, ``-p tcp``) and is not matched;
* e-mail addresses need a dot and a letters-only TLD in the domain, so
  ``user@host`` ssh targets, ``image@sha256:...`` and ``pkg@1.2.3`` are kept;
  the whole address is replaced (a personal domain identifies a person too);
* connection strings ``scheme://user:password@host`` keep scheme, user and host;
  ``http://host:8080/`` (no ``@``) is not a credential;
* a PEM private key block is replaced from after its BEGIN line to its END line,
  or to the end of the text when the END line was cut off.

All patterns are joined into one alternation, each alternative wrapped in an
outer named group, so one ``re.sub`` pass over a field finds every secret and
``match.lastgroup`` says which pattern matched (the outer group closes last).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

REDACTED = "[REDACTED]"


@dataclass(frozen=True, slots=True)
class SecretPattern:
    """One named pattern.

    ``regex`` names its secret ``(?P<s>...)`` (``s_2``, ``s_3``... in other
    alternatives), or ends with ``(?P<w>)`` when the whole match is the secret.
    ``triggers`` are lower-case substrings of which at least one occurs in
    ``text.lower()`` whenever the regex matches ``text``: a field holding none of
    them skips the pattern without running it.
    """

    name: str
    regex: str
    triggers: tuple[str, ...] = ()


# A key=value / flag value: a quoted string (closing quote optional, the text may
# have been truncated) or a run of characters up to whitespace, a quote, ``;``
# (ODBC-style strings) or ``&`` (URL query strings).
_VALUE = r"""(?:"[^"]*"?|'[^']*'?|[^\s"';&]+)"""


def _first_char_alternatives(word: str, tail: str = "") -> list[str]:
    """``word`` case-insensitively, as alternatives that start with a literal character.

    Python's regex engine skips an alternative cheaply when its first item is a
    literal or a character class, but not when it is a group or a lookbehind;
    so the word's first character leads, and ``tail`` (a lookbehind, say) follows it.
    """
    first, rest = word[0], word[1:]
    cases = [first.lower(), first.upper()] if first.lower() != first.upper() else [first]
    return [f"{c}{tail.replace('@', re.escape(c))}(?i:{rest})" for c in cases]


def _keyed(keywords: list[str], *, bare_space: bool = False) -> str:
    """``[prefix]KEYWORD=value``, ``KEYWORD: value``, ``"KEYWORD": value`` or ``--[prefix]KEYWORD value``.

    ``keywords`` (regex fragments) match case-insensitively and must end the key;
    the key may have any prefix (``db_password``, ``PGPASSWORD``). A keyword
    right after ``/`` is a path (``/etc/passwd:``), not a key. ``bare_space``
    also accepts ``KEYWORD value`` without a dash, for keys specific enough
    (``aws configure set aws_secret_access_key VALUE``).
    """
    kw = "|".join(keywords)
    flag = rf"-(?<![\w./-]-)-?(?!-|(?i:no)-)[\w.-]*?(?i:{kw})\s+(?=[^\s-])(?P<s>{_VALUE})"
    kv: list[str] = []
    for k in keywords:
        for alt in _first_char_alternatives(k, tail="(?<!/@)"):
            sep = r"(?:[\"']?\s*[=:]\s*|\s+(?=[^\s-]))" if bare_space else r"[\"']?\s*[=:]\s*"
            kv.append(rf"{alt}{sep}(?P<s_{len(kv) + 2}>{_VALUE})")
    return "|".join([flag, *kv])


# Token-ish run: base64, base64url and the usual token punctuation.
_TOKEN68 = r"[A-Za-z0-9._~+/-]+=*"
# A bare ``Bearer``/``Basic`` credential must look like one (a digit, a symbol or
# an upper-case letter after a lower-case one) so ``Basic authentication`` stays.
_CREDENTIAL_LOOKING = r"(?=[A-Za-z]*(?:[0-9._~+/=-]|[a-z][A-Za-z]*[A-Z]))"

# Every alternative of every pattern starts with a literal character or a
# character class (lookbehinds come after the first character, e.g.
# ``A(?<![A-Za-z0-9]A)KIA``): that keeps the one combined regex at tens of ns
# per character instead of hundreds. ``(?P<w>)`` at the end of a pattern means
# "the whole match is the secret".
DEFAULT_PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "pem_private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
        r"(?P<s>[\s\S]+?)(?=-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
        triggers=("-----begin",),
    ),
    SecretPattern(
        "connection_string",
        # scheme://user:password@host: keep scheme, user and host. The password
        # runs to the last ``@`` before whitespace or ``/`` (``p@ss`` is allowed).
        r":(?<=[A-Za-z0-9]:)//[^\s:/@]*:(?P<s>[^\s/]+)(?=@)",
        triggers=("://",),
    ),
    SecretPattern(
        "authorization_header",
        "|".join(
            [
                *(
                    rf"{alt}\s*[:=]\s*(?:(?i:bearer|basic|token|apikey)\s+)?(?P<s_{i}>[^\s\"']+)"
                    for i, alt in enumerate(
                        _first_char_alternatives("authorization")
                        + _first_char_alternatives("proxy-authorization"),
                        start=2,
                    )
                ),
                rf"[Bb](?<![\w-][Bb])(?i:earer|asic)\s+(?P<s>{_CREDENTIAL_LOOKING}{_TOKEN68})",
            ]
        ),
        triggers=("authorization", "bearer", "basic"),
    ),
    SecretPattern(
        "jwt",
        r"e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*(?P<w>)",
        triggers=("eyj",),
    ),
    SecretPattern(
        "aws_access_key_id",
        r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)(?P<s>[A-Z0-9]{16})(?![A-Za-z0-9])",
        triggers=("akia", "asia"),
    ),
    SecretPattern(
        "aws_secret_access_key",
        _keyed([r"aws[_-]?secret[_-]?access[_-]?key", r"aws[_-]?secret[_-]?key"], bare_space=True),
        triggers=("aws",),
    ),
    SecretPattern(
        "gcp_api_key", r"A(?<![A-Za-z0-9_-]A)Iza(?P<s>[0-9A-Za-z_-]{35})(?![A-Za-z0-9_-])", triggers=("aiza",)
    ),
    SecretPattern(
        "azure_storage_key",
        "|".join(
            [
                *(
                    rf"{alt}\s*=\s*(?P<s_{i}>[^\s;\"']+)"
                    for i, alt in enumerate(
                        _first_char_alternatives("accountkey")
                        + _first_char_alternatives("sharedaccess(?:key|signature)"),
                        start=2,
                    )
                ),
                r"s(?<=[?&]s)ig=(?P<s>[^\s&\"'#]+)",
            ]
        ),
        triggers=("accountkey", "sharedaccess", "sig="),
    ),
    SecretPattern(
        "github_token",
        r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_(?P<s>[A-Za-z0-9]{20,255})|ithub_pat_(?P<s_2>[A-Za-z0-9_]{20,255}))"
        r"(?![A-Za-z0-9_])",
        triggers=("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
    ),
    SecretPattern("slack_token", r"x(?<![A-Za-z0-9_-]x)ox[abpr]-(?P<s>[A-Za-z0-9-]{8,})", triggers=("xox",)),
    SecretPattern(
        "stripe_key",
        r"[sr](?<![A-Za-z0-9_][sr])k_(?:live|test)_(?P<s>[A-Za-z0-9]{10,})",
        triggers=("k_live_", "k_test_"),
    ),
    SecretPattern("password", _keyed(["password", "passwd", "passphrase", "pwd"]), triggers=("pass", "pwd")),
    SecretPattern(
        "secret_token",
        _keyed(
            [
                "token",
                r"api[_-]?key",
                "secret",
                r"secret[_-]?key",
                r"access[_-]?key",
                "auth",
                r"session[_-]?id",
                "cookie",
                "signature",
            ]
        ),
        triggers=("token", "key", "secret", "auth", "session", "cookie", "signature"),
    ),
    SecretPattern(
        "email",
        r"[A-Za-z0-9._%+-](?<![A-Za-z0-9._%+-][A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*"
        r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}(?![A-Za-z0-9-])(?P<w>)",
        triggers=("@",),
    ),
)

DEFAULT_PATTERN_NAMES: tuple[str, ...] = tuple(p.name for p in DEFAULT_PATTERNS)

# Applied only to the end of an argument that was truncated: secrets whose full
# pattern needs text that the cut removed (the ``@host`` of a connection string,
# the rest of a token with a well-known prefix, the third segment of a JWT).
TRUNCATED_TAIL = SecretPattern(
    "truncated_secret",
    r":(?<=[A-Za-z0-9]:)//[^\s:/@]*:(?P<s>[^\s@/]+)\Z"
    r"|A(?<![A-Za-z0-9_-]A)(?:KIA|SIA|Iza)(?P<s_2>[A-Za-z0-9_-]+)\Z"
    r"|g(?<![A-Za-z0-9_-]g)(?:h[pousr]_|ithub_pat_)(?P<s_4>[A-Za-z0-9_]+)\Z"
    r"|x(?<![A-Za-z0-9_-]x)ox[abpr]-(?P<s_5>[A-Za-z0-9-]+)\Z"
    r"|[sr](?<![A-Za-z0-9_-][sr])k_(?:live|test)_(?P<s_6>[A-Za-z0-9]+)\Z"
    r"|e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){0,2}\Z(?P<w>)"
    r"|[Bb](?<![\w-][Bb])(?i:earer|asic)\s+(?P<s_3>\S+)\Z",
)


@dataclass(frozen=True, slots=True)
class CompiledPatterns:
    """One flat alternation of named patterns, and what each secret group means."""

    regex: re.Pattern[str]
    # secret group name -> (pattern name, True when the whole match is the secret)
    groups: dict[str, tuple[str, bool]]


def compile_patterns(patterns: tuple[SecretPattern, ...] | list[SecretPattern]) -> CompiledPatterns:
    """Join patterns into one regex; secret groups are renamed per pattern.

    Python forbids a group name twice in one regex, so pattern ``i``'s ``s``,
    ``s_2``, ``w`` groups become ``p<i>_s``, ``p<i>_s_2``, ``p<i>_w``. Each
    alternative has exactly one capturing group, so ``match.lastgroup`` names
    the secret group of the alternative that matched (and so its pattern).
    """
    parts = []
    groups: dict[str, tuple[str, bool]] = {}
    for i, p in enumerate(patterns):
        body = re.sub(r"\(\?P<((?:s|w)(?:_\d+)?)>", rf"(?P<p{i}_\1>", p.regex)
        names = re.findall(rf"\(\?P<(p{i}_[^>]+)>", body)
        if not names:
            raise ValueError(f"pattern {p.name!r} has no secret group (?P<s>...) or (?P<w>)")
        for n in names:
            groups[n] = (p.name, n.startswith(f"p{i}_w"))
        parts.append(body)
    # ASCII: case-insensitive keywords match ASCII letters only, so the
    # lower-case triggers are exact (no long s U+017F matching 's', no Kelvin sign U+212A matching 'k').
    rx = re.compile("|".join(parts), re.ASCII)
    if rx.groups != len(groups):
        raise ValueError("a default pattern has an unnamed capturing group")
    return CompiledPatterns(regex=rx, groups=groups)
