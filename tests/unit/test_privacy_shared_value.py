"""The key rules share one value pattern, and redact exactly as when each key word repeated it.

The ``password``, ``secret_token`` and ``aws_secret_access_key`` rules (privacy/patterns.py, built
by key_rules.py ``keyed``) once repeated the wide value (``WIDE_VALUE``, ~500 characters) after every key
word's alternative: 90 times, ~46,000 of the whole set's ~91,000 characters, whose compile
peaked at ~8.8 MB in the idle agent's start-up (docs/benchmarks.md, brief PM's pass). Now each
rule holds it once, after the key words' heads: ``(?:A|B)V`` for ``AV|BV``, with the XML, URL
query and ODBC alternatives moved after the heads.

``_expanded`` below is the rules as they were built before (a copy of the old ``_keyed`` and
``_PW`` of patterns.py, from the same fragments), and this test checks, on the privacy corpora and on a
seeded hostile corpus (every key word in several cases, every separator, quote form and
prefix, markers, PEM starts, NUL bytes, long values), that each rule matches at every position
exactly as its expanded form does (same end, same secret span, same kind of group): then every
combination of rules, and the whole set, redacts every text the same; and that the whole set's
redacted text and counts are the same, byte for byte.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import yaml

from stellaops_runtime.privacy import key_rules as K
from stellaops_runtime.privacy import patterns as P
from stellaops_runtime.privacy.base import (
    CompiledPatterns,
    compile_patterns,
    first_char_alternatives,
    number_groups,
)
from stellaops_runtime.privacy.engine import sub_compiled
from stellaops_runtime.privacy.http_headers import COOKIE_HEADER
from stellaops_runtime.privacy.key_words import PASSWORD_WORDS, PW_WORDS, SECRET_WORDS
from stellaops_runtime.privacy.stdin_secrets import STDIN_SECRET_ALTERNATIVES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "privacy"
_AWS_WORDS = [r"aws[_-]?secret[_-]?access[_-]?key", r"aws[_-]?secret[_-]?key"]


def _old_keyed(keywords: list[str], *, bare_space: bool = False, guard: str = "") -> str:
    """The key rule as built before: the wide value after every key word's alternative."""
    kw = "|".join(keywords)
    flag = rf"-(?<![\w./-]-)-?(?!-|(?i:no)-)[\w.-]*?(?i:{kw})\s+(?=[^\s-]){guard}(?P<s>{K.WIDE_VALUE})"
    sep = rf"(?:{K.SEP}|\s+(?=[^\s-]))" if bare_space else K.SEP
    # (its text opening on the next line too: session 50)
    xml = rf"<(?:[\w.-]++:)?{K.KEY_PREFIX}(?i:{kw})(?:\s[^<>]*)?>{K.XML_OPENING}(?P<s>{K.XML_TEXT})"
    alts = [flag, xml, *K.in_query_or_odbc(f"(?i:{kw})", r"[\"']?\s*=\s*")]
    for k in keywords:
        for alt in first_char_alternatives(k, tail=r"(?<!/@)"):
            alts.append(rf"{alt}{sep}{guard}(?P<s>{K.WIDE_VALUE})")
        for alt in first_char_alternatives(k, tail=r"(?<=/@)"):
            alts.append(rf"{alt}{K.SEP_EQ}{guard}(?P<s>{K.WIDE_VALUE})")
    return "|".join(alts)


def _old_pw() -> str:
    return "|".join(
        [
            rf"-(?<![\w./-]-)-?(?:[A-Za-z0-9]+[-_.])*(?:pw|PW)(?:=|\s+(?![-\s]))(?P<s>{K.WIDE_VALUE})",
            rf"{P._PW_HEADS[1]}(?P<s>{K.WIDE_VALUE})",  # a two-dash flag ending in pw (``--rootpw``)
            *K.in_query_or_odbc("|".join(PW_WORDS), r"[\"']?\s*=\s*"),
            *(rf"{w}{K.SEP}(?P<s>{K.WIDE_VALUE})" for w in PW_WORDS),
            *STDIN_SECRET_ALTERNATIVES,
        ]
    )


def _index(name: str) -> int:
    """The rule of that name built by ``_keyed`` (two rules are named ``password``)."""
    return next(i for i, p in enumerate(P.DEFAULT_PATTERNS) if p.name == name and K.WIDE_VALUE in p.regex)


def _expanded() -> dict[int, str]:
    """Rule index -> the rule's regex as built before, for the three rules that changed."""
    aws_new = "|".join([K.valued(P._AWS_HEADS), *P._AWS_OTHERS])
    aws_full = P.DEFAULT_PATTERNS[_index("aws_secret_access_key")].regex
    head = number_groups(aws_new)
    assert aws_full.startswith(head)
    tail = aws_full[len(head) :]  # the id-then-secret alternatives: only ``(?P<w>)`` groups
    assert "(?P<s" not in tail
    return {
        _index("aws_secret_access_key"): number_groups(_old_keyed(_AWS_WORDS, bare_space=True)) + tail,
        _index("password"): number_groups(f"{_old_keyed(list(PASSWORD_WORDS))}|{_old_pw()}"),
        _index("secret_token"): number_groups(
            f"{COOKIE_HEADER}|{P._OAUTH_CODE}|{_old_keyed(list(SECRET_WORDS), guard=P._NOT_A_SETTING_WORD)}"
        ),
    }


def _corpus_texts() -> list[str]:
    out: list[str] = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        doc = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
        for part in doc.values():
            if isinstance(part, list):
                for c in part:
                    if isinstance(c, str):
                        out.append(c)
                    elif isinstance(c, dict):
                        out += [c[k] for k in ("input", "expected") if isinstance(c.get(k), str)]
    return out


_KEYS = [
    "password", "passwd", "passphrase", "passcode", "pwd", "pw", "PW", "Pw", "pass", "Pass", "PASS",
    "adminPw", "rootpw", "token", "api_key", "api-key", "apikey", "secret", "secret_key", "secret.key",
    "secretkey", "access_key", "access.key", "subscription-key", "auth", "auth_key", "authkey", "auth.key",
    "session_id", "sessionid", "cookie", "signature", "private_key", "private-key-id", "privatekeyid",
    "account_key", "account.key.acct.dfs.core", "aws_secret_access_key", "aws-secret-key", "awssecretkey",
    "AWS_SECRET_ACCESS_KEY", "bypass", "compass", "password-file", "token-file", "tokens", "no-password",
    "passwords", "authz",
]  # fmt: skip
_PREFIXES = [
    "", "", "--", "-", "/", "/run/", "?", "&", "#", ";", "; ", "<", "<ns:", "db_", "PG", "x.",
    "spring.datasource.", '{"', "'", '"', "--no-", "-no-", "x-", "\\", "-p", "--db-",
]  # fmt: skip
_SEPS = [
    "=", "=", ":", ": ", " = ", ":=", "::=", "?=", "+=", " => ", "=>", "=> ", "\\=", "\\\\=", '"=',
    "'=", '": ', '\\": ', " ", "  ", "\t", "\n", "", "=\n", ":\n", "==", ":::", " :", "\\:",
]  # fmt: skip
_VALUES = [
    "hunter2", "S3cr3t&x;y", '"pa\\"ss word"', "'single q'", "N'abc''d'", "E'x\\'y'", '\\"esc q\\"',
    "$'pa\\'ss word'", "$'unterminated", "[REDACTED]", '[REDACTED]"}', "[REDACTED],x", "[REDACTED]S3",
    "[REDACTED]&n=1", "-----BEGIN RSA PRIVATE KEY-----", "'-----BEGIN OPENSSH PRIVATE KEY-----",
    "PuTTY-User-Key-File-2: x", "|\n  line1\n\n  line2\nnext: 1", ">-\n  folded", "| # c\n\tx",
    "HTTPBasicAuth(user, 'pw')", "('user', 'password')", "f(a, \"b\"\n, c)", "os.environ.get('X'",
    "<<EOF", "< <(echo X)", "<(echo X)", "-flag", "--", "debug", "oidc", "true", "INFO", "none,",
    "{a;b}", "{a}}b}", "\x00", "a\x00b", "\x00", "ünïcödé", "\u017fecret", "${VAR}", "$(cmd)",
    "`x`", "", "x" * 300, "it's", "'q' tail", '"q"', "%26x", "a&b", "a#b", "a;b", "x y", "\\\\x",
]  # fmt: skip
_SUFFIXES = [
    "",
    "",
    " ",
    " --next",
    "&limit=10",
    ";Database=x",
    "</password>",
    "\n",
    ")",
    '"',
    "'",
    ",",
    " -v",
]
_JOINS = [" ", " ", "", "\n", "&", ";", " | ", "\x00", "\t", " && ", "?", "/"]
_HOSTILE = "=:;&?#/\\\"'<>|()[]{}-_. \t\n\x00$`%@,+~ÿ\u017f\u212aKkSs"


def _case(rnd: random.Random, w: str) -> str:
    r = rnd.random()
    if r < 0.5:
        return w
    if r < 0.65:
        return w.upper()
    return "".join(c.upper() if rnd.random() < 0.3 else c for c in w)


def _hostile_texts(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    out: list[str] = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 4)):
            parts.append(
                rnd.choice(_PREFIXES)
                + _case(rnd, rnd.choice(_KEYS))
                + rnd.choice(_SEPS)
                + rnd.choice(_VALUES)
                + rnd.choice(_SUFFIXES)
            )
        text = "".join(p + rnd.choice(_JOINS) for p in parts)
        for _ in range(rnd.choice((0, 0, 1, 3))):  # a few characters changed anywhere
            i = rnd.randint(0, len(text))
            text = text[:i] + rnd.choice(_HOSTILE) + text[i + rnd.randint(0, 1) :]
        out.append(text)
    # Long values and long runs: a value of 20,000 characters, separators and key words repeated.
    out += [
        "--password=" + "A" * 20_000,
        "token=" + "'" + "x " * 4_000,
        "password" * 500 + "=x",
        "-" * 3_000 + "password x",
        "auth=" + "[REDACTED]" * 500,
        ("key: |\n" + "  line\n" * 1_500),
        "secret=" + "f(" * 200 + "'" + ")" * 10,
    ]
    return out


def _glued_and_quoted() -> list[str]:
    """Key words that begin or end other key words, glued; and Tetragon's quoted arguments, cut.

    Which key word the heads try first decides a match only where two can end at one position:
    every ordered pair of key words, glued or after a ``/``, before a value or a space (review
    RPM). Tetragon quotes an argument holding a space and escapes the quotes in it (``"app
    --password=\\"a b\\""``); each such line is cut at every fifth character too.
    """
    words = [
        "pass", "passwd", "password", "pw", "PW", "secret", "secret_key", "auth", "authkey", "token",
        "account.key.a.b", "aws_secret_key", "aws_secret_access_key", "adminPw",
    ]  # fmt: skip
    out = [a + j + b + end for a in words for b in words for j in ("", "/") for end in ("=v", " v")]
    for w in words[::3]:
        line = f'sh -c "app --{w}=\\"a b\\" -D{w}: \\"c\\" && echo /{w}=\\"d e\\"" "{w}=$\'f g\'"'
        out += [line[:i] for i in range(0, len(line) + 1, 5)] + [line]
    return out


def _outcome(m: re.Match[str] | None, kinds: dict[str, bool]) -> tuple[object, ...] | None:
    if m is None:
        return None
    g = m.lastgroup
    assert g is not None
    return (m.end(), m.span(g), kinds[g])


def _kinds(rx: re.Pattern[str]) -> dict[str, bool]:
    return {name: name.startswith("w") for name in rx.groupindex}


def test_each_key_rule_matches_at_every_position_as_its_expanded_form() -> None:
    texts = _corpus_texts() + _hostile_texts(20261206, 2_500) + _glued_and_quoted()
    assert len(texts) > 3_000
    matched: dict[str, int] = {}
    for i, old in _expanded().items():
        name = P.DEFAULT_PATTERNS[i].name
        rx_old, rx_new = re.compile(old, re.ASCII), re.compile(P.DEFAULT_PATTERNS[i].regex, re.ASCII)
        k_old, k_new = _kinds(rx_old), _kinds(rx_new)
        for text in texts:
            for pos in range(len(text) + 1):
                a = _outcome(rx_old.match(text, pos), k_old)
                b = _outcome(rx_new.match(text, pos), k_new)
                assert a == b, (name, text[max(0, pos - 40) : pos + 80], pos, a, b)
                matched[name] = matched.get(name, 0) + (a is not None)
    # the corpus reaches every rule (the AWS key names are a few of the key words)
    assert min(matched.values()) >= 200 and sum(matched.values()) > 3_000, matched


def _expanded_set() -> CompiledPatterns:
    old = _expanded()
    return compile_patterns(
        [
            P.SecretPattern(p.name, old[i], p.triggers, p.gate, p.validate) if i in old else p
            for i, p in enumerate(P.DEFAULT_PATTERNS)
        ]
    )


def test_the_whole_set_redacts_every_text_byte_for_byte_as_before() -> None:
    before, after = _expanded_set(), compile_patterns(P.DEFAULT_PATTERNS)
    texts = _corpus_texts() + _hostile_texts(7, 1_500) + _glued_and_quoted()
    redacted = 0
    for text in texts:
        c_old: dict[str, int] = dict.fromkeys(P.DEFAULT_PATTERN_NAMES, 0)
        c_new = dict(c_old)
        a = sub_compiled(before, text, counts=c_old)
        b = sub_compiled(after, text, counts=c_new)
        assert a == b and c_old == c_new, text[:200]
        redacted += a[1] > 0
    assert redacted > 1_000


def test_each_key_rule_holds_the_wide_value_once() -> None:
    # 90 copies (~46,000 characters) before: the whole set's compile peaked at ~8.8 MB
    counts = [(p.name, p.regex.count(K.WIDE_VALUE)) for p in P.DEFAULT_PATTERNS]
    assert [c for c in counts if c[1]] == [
        ("aws_secret_access_key", 1),
        ("password", 1),
        ("secret_token", 1),
    ], counts
