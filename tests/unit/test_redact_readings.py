"""Look-alikes and escaped key names hide no secret, in evidence or in a message (contracts/escapes.py).

The privacy filter folded look-alikes of ASCII (privacy filter only); the
message redaction (contracts/redact.py: log lines, exception messages, CLI
stderr, /readyz, the ObservationNode status) did not, and neither read a key
name written with escapes (``pass%77ord=``, ``api%5Fkey=``, ``password%3D``,
``pass\\u0077ord``), which a URL, a form body or a JSON string produces. Both
now read the text the same way (docs/privacy.md, "Look-alike characters" and
"Escaped key names").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.redact import redact, redact_error
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.env_names import filter_env
from tests.unit.test_privacy_lookalike import CASES as LOOKALIKE_CASES
from tests.unit.test_privacy_lookalike import SECRET

OPERATOR = Path(__file__).resolve().parents[2] / "operator"

ESCAPED = [
    # (what, text, the filter's output)
    ("encoded letter in a query", f"GET /x?pass%77ord={SECRET}&n=1", "GET /x?password=[REDACTED]&n=1"),
    ("percent-encoded prefix letter", f"%50GPASSWORD={SECRET} psql", "PGPASSWORD=[REDACTED] psql"),
    ("percent-encoded underscore", f"api%5Fkey={SECRET}", "api_key=[REDACTED]"),
    ("lower-case hex", f"https://h/v1?api%5fkey={SECRET}&a=1", "https://h/v1?api_key=[REDACTED]&a=1"),
    ("percent-encoded equals sign", f"password%3D{SECRET} -v", "password=[REDACTED] -v"),
    ("percent-encoded colon", f"token%3A {SECRET}", "token: [REDACTED]"),
    ("encoded twice", f"pass%2577ord={SECRET}", "password=[REDACTED]"),
    ("every letter encoded", f"%70%61%73%73%77%6f%72%64={SECRET}", "password=[REDACTED]"),
    ("encoded flag name", f"app --pass%77ord {SECRET} -v", "app --password [REDACTED] -v"),
    ("JSON unicode escape", f'{{"pass\\u0077ord": "{SECRET}"}}', '{"password": [REDACTED]}'),
    ("C hex escape", f"password\\x3d{SECRET}", "password=[REDACTED]"),
    ("HTML decimal entity", f"pass&#119;ord={SECRET}", "password=[REDACTED]"),
    ("HTML hex entity", f"pass&#x77;ord={SECRET}", "password=[REDACTED]"),
    ("escape and look-alike together", f"p\u0430ss%77ord\uff1d{SECRET}", "password=[REDACTED]"),
]  # fmt: skip

# The message redaction masks credentials of URLs, DSNs, keys and flags; token formats without a key
# (``ghp_...``) are the privacy filter's.
SECRETS_TO_MASK = [(c[0], c[1]) for c in ESCAPED] + [
    (c[0], c[1]) for c in LOOKALIKE_CASES if "hp_" not in c[1]
]


@pytest.mark.parametrize(("what", "text"), SECRETS_TO_MASK, ids=[c[0] for c in SECRETS_TO_MASK])
def test_the_message_redaction_reads_lookalikes_and_escapes(what: str, text: str) -> None:
    out = redact(text)
    assert SECRET not in out and "16C7e42F" not in out, (what, out)
    assert redact(out) == out  # idempotent
    assert SECRET not in redact_error(ValueError(text))


@pytest.mark.parametrize(("what", "text", "expected"), ESCAPED, ids=[c[0] for c in ESCAPED])
def test_an_escaped_key_name_does_not_hide_a_secret_from_the_filter(
    what: str, text: str, expected: str
) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_field(text)
    assert out == expected, what
    assert pf.fields_redacted == 1
    assert pf.redact_text(text) == out
    assert pf.redact_text(out) == out


def test_an_escaped_value_goes_whole() -> None:
    """Escapes that stand for anything but a key's characters stay: a %26 or %20 never ends a value early."""
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_field("GET /x?pass%77ord=ab%26cd%20ef%3Bgh&n=1 password%3Dij%20kl")
    assert out == "GET /x?password=[REDACTED]&n=1 password=[REDACTED]"
    out = redact("postgresql://u@db/x?sslpass%77ord=ab%26cd%20ef&sslmode=require")
    assert out == "postgresql://u@db/x?sslpassword=***&sslmode=require"


@pytest.mark.parametrize(
    "text",
    [
        "GET /search?q=pass%77ord&page=2",  # the word, not a key
        "printf '%s=%d\\n' 100%25 a%2Fb %20",
        "echo \\x41\\x42 &#65; \\u0041 100%",
        "curl https://h/a%3Ab?x=%41%42",
        "ls /srv/caf%C3%A9/%E2%80%8B",
    ],
)
def test_text_with_escapes_but_no_secret_keeps_its_characters(text: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text) == text
    assert pf.fields_redacted == 0
    assert redact(text) == text


def test_only_the_escapes_of_key_characters_are_decoded() -> None:
    from stellaops_runtime.contracts.escapes import decode_key_escapes, reading

    assert decode_key_escapes("a%77%5F%2d%2E%3d%3A") == "aw_-.=:"
    assert decode_key_escapes("%20%26%3B%2F%25%22%27%C3%A9") == "%20%26%3B%2F%25%22%27%C3%A9"
    assert decode_key_escapes("100%25 %252577") == "100%25 w"
    assert (
        decode_key_escapes("\\u0077 \\\\u0077 \\x77 &#119; &#x77; &#0119; \\u00e9 &#233;")
        == "w w w w w w \\u00e9 &#233;"
    )
    assert reading("p\u0430ss%77ord\uff1d") == "password="
    assert reading("plain") == "plain"


def test_env_entries_with_escaped_names_lose_their_value() -> None:
    assert filter_env([f"DB_PASS%57ORD={SECRET}", "HOME=/r"]) == ["DB_PASS%57ORD=[REDACTED]", "HOME=/r"]


@pytest.mark.parametrize(
    "url",
    [
        f"postgres\uff1a//u:{SECRET}@db/x",  # a fullwidth colon: no SQLAlchemy URL, echoed in the error
        f"postgresql://u@db:notaport/x?pass%77ord={SECRET}",  # libpq decodes the key: it is the password
        f"sqlite:///{{tmp}}/missing/x.db?api%5Fkey={SECRET}",  # no such store
        f"postgresql://u@db/x?sslpass%77ord={SECRET}&port=abc",
    ],
)
def test_the_cli_never_prints_a_password_hidden_by_a_lookalike_or_an_escape(url: str, tmp_path: Path) -> None:
    """The real CLI as a subprocess: a store URL it cannot use is named in its error, masked."""
    env = {**os.environ, "PYTHONPATH": str(OPERATOR), "STELLA_RUNTIME_STORE": ""}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stellaops_runtime.cli.main",
            "query",
            "images",
            "--store",
            url.replace("{tmp}", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "stella-runtime query" in done.stderr
    assert SECRET not in done.stderr + done.stdout


def test_a_run_of_backslashes_is_read_once() -> None:
    """64 Ki backslashes before ``u0077``: decoded from the first backslash of the run only (a search
    from each of them cost minutes)."""
    text = "pass" + "\\" * (1 << 16) + f"u0077ord={SECRET}"
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    assert SECRET not in pf.filter_field(text)
    assert SECRET not in redact(text)


_USPACES = [chr(c) for c in range(0x10000) if chr(c).isspace() and chr(c) not in " \t\n\r"]


@pytest.mark.parametrize(
    "form",
    [
        "--password=a{c}SECRX -v",
        "password: a{c}SECRX -v",
        "--token a{c}SECRX -v",
        "Authorization: Bearer a{c}SECRX",
        "p\u0430ssword=a{c}SECRX -v",
        "postgres://u:a{c}SECRX@db/x",
    ],
)
def test_a_message_loses_a_value_past_a_unicode_space_inside_it(form: str) -> None:
    # s49 P: the reading took a Unicode space for a blank and its redaction won (``--password=*** SECRX``)
    kept = [(f"U+{ord(c):04X}", redact(form.format(c=c))) for c in _USPACES]
    assert not [k for k in kept if "ECRX" in k[1]], kept
    assert redact("--password\xa0SECRX -v") == "--password *** -v"  # a separator there still
    assert redact("caf\u00e9\u00a0ol\u00e9 -v") == "caf\u00e9\u00a0ol\u00e9 -v"  # nothing found: as it was
