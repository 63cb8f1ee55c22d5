"""Look-alikes of the ASCII a rule needs do not hide a secret (contracts/lookalike.py, docs/privacy.md).

Each case writes a key, a separator or a prefix with characters that look like
(or, invisible, sit inside) the ASCII the rules match: the secret must go, every
counter counts it once, and text without a secret keeps its characters.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import Argument, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.contracts.lookalike import fold
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.env_names import filter_env

SECRET = "S3cretLk9"

CASES = [
    # (what, text, expected)
    ("fullwidth equals", f"app password\uff1d{SECRET} -v", "app password=[REDACTED] -v"),
    ("fullwidth colon", f'{{"password"\uff1a"{SECRET}"}}', '{"password":[REDACTED]}'),
    ("fullwidth key", f"\uff30\uff21\uff33\uff33\uff37\uff2f\uff32\uff24={SECRET}", "PASSWORD=[REDACTED]"),
    ("no-break space after a flag", f"app --password\u00a0{SECRET} -v", "app --password [REDACTED] -v"),
    ("ideographic space after a flag", f"app --token\u3000{SECRET}", "app --token [REDACTED]"),
    ("narrow no-break space", f"app --password\u202f{SECRET}", "app --password [REDACTED]"),
    ("zero-width space in the key", f"pass\u200bword={SECRET}", "password=[REDACTED]"),
    ("zero-width joiner before =", f"api_token\u200d={SECRET} x", "api_token=[REDACTED] x"),
    ("soft hyphen in the flag", f"--pass\u00adword {SECRET}", "--password [REDACTED]"),
    ("byte order mark in the key", f"db_\ufeffpassword={SECRET}", "db_password=[REDACTED]"),
    ("right-to-left override", f"password\u202e={SECRET}", "password=[REDACTED]"),
    ("Cyrillic a in the key", f"p\u0430ssword={SECRET}", "password=[REDACTED]"),
    ("Cyrillic o and e", f"t\u043ek\u0435n={SECRET}", "token=[REDACTED]"),
    ("Greek capitals", f"\u0391\u03a1\u0399_\u039a\u0395\u03a5={SECRET}", "API_KEY=[REDACTED]"),
    ("mathematical bold letters", "".join(chr(0x1D41A + ord(c) - 97) for c in "password") + f"={SECRET}",
     "password=[REDACTED]"),
    ("Cyrillic e in Bearer", f"Authorization: B\u0435arer {SECRET}.x", "Authorization: Bearer [REDACTED]"),
    ("ratio sign as a colon", f"password\u2236{SECRET}", "password:[REDACTED]"),
    ("fullwidth in a token prefix", "x \uff47hp_16C7e42F292c6912E7710c838347Ae178B4a", "x ghp_[REDACTED]"),
    # dashes a word processor or a web page puts for "--" and "-" (session 41)
    ("em dash before a flag", f"app \u2014password {SECRET} -v", "app -password [REDACTED] -v"),
    ("minus signs before a flag", f"app \u2212\u2212token {SECRET}", "app --token [REDACTED]"),
]  # fmt: skip
# A client's short option (cli_options.py: the privacy filter's, not the message redaction's).
CLIENT_CASES = [
    ("hyphen in a client option", f"mysql \u2010p{SECRET} db", "mysql -p[REDACTED] db"),
    ("non-breaking hyphen", f"sshpass \u2011p {SECRET} ssh h", "sshpass -p [REDACTED] ssh h"),
]


@pytest.mark.parametrize(
    ("what", "text", "expected"), CASES + CLIENT_CASES, ids=[c[0] for c in CASES + CLIENT_CASES]
)
def test_a_lookalike_does_not_hide_a_secret(what: str, text: str, expected: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_field(text)
    assert out == expected, what
    assert SECRET not in out and "16C7e42F" not in out
    assert pf.fields_redacted == 1
    assert sum(pf.redactions_by_pattern.values()) == 1  # counted once, not once per reading
    assert pf.redact_text(text) == expected
    assert pf.redact_text(out) == out  # the folded reading is stable


def test_a_traced_argument_with_a_lookalike_loses_its_secret() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    event = RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(
            exec_id="e1", pid=1, binary="/usr/bin/app", arguments=f"--password\u00a0{SECRET}"
        ),
        arguments=[Argument(type="string", value=f"p\u0430ssword\uff1d{SECRET}", label="")],
    )
    out = pf.apply(event)
    assert out is not None
    assert out.process.arguments == "--password [REDACTED]"
    assert out.arguments[0].value == "password=[REDACTED]"
    assert pf.fields_redacted == 2


@pytest.mark.parametrize(
    "text",
    [
        "café --name=José --city=Zürich",
        "app \u043f\u0430\u0440\u043e\u043b\u044c=\u0441\u0435\u043a\u0440\u0435\u0442 ok",  # Russian words
        "echo \u4f60\u597d\uff0c\u4e16\u754c\uff01 --lang=zh",  # fullwidth punctuation, no secret
        "ls /srv/\u0444\u0430\u0439\u043b\u044b\u00a0old",
        "grep -r \u03b1\u03c1\u03b9\u03b8\u03bc\u03cc\u03c2 .",  # Greek word
        "echo 2019\u20132026 \u2014 all rights reserved",  # dashes in prose stay
    ],
)
def test_text_without_a_secret_keeps_its_characters(text: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text) == text
    assert pf.redact_text(text) == text
    assert pf.fields_redacted == 0


def test_a_secret_found_only_in_the_folded_reading_keeps_the_field_folded() -> None:
    """The documented trade: the whole field is kept in its folded reading (docs/privacy.md)."""
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(f"caf\u00e9 \uff01 password\uff1d{SECRET}") == "caf\u00e9 ! password=[REDACTED]"


def test_env_names_with_lookalikes_lose_their_value() -> None:
    out = filter_env(
        [f"DB_P\u0410SSWORD={SECRET}", f"\uff21\uff30\uff29_TOKEN={SECRET}", "API\u200b_KEY=x", "HOME=/r"]
    )
    assert out == [
        "DB_P\u0410SSWORD=[REDACTED]",
        "\uff21\uff30\uff29_TOKEN=[REDACTED]",
        "API\u200b_KEY=[REDACTED]",
        "HOME=/r",
    ]


def test_fold_leaves_ascii_and_lone_surrogates_alone() -> None:
    assert fold("plain --password=x") == "plain --password=x"
    assert fold("a\udcff\ufffd\uff1d") == "a\udcff\ufffd="
    assert fold("caf\u00e9 \U0001f600 \u4f60\u597d") == "caf\u00e9 \U0001f600 \u4f60\u597d"  # nothing to fold
    assert fold("\U0001f600\u00a0\U0001d429") == "\U0001f600 p"
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(f"\udcffpassword\uff1d{SECRET}") == "\udcffpassword=[REDACTED]"
