"""Passwords handed over on standard input or in a password file, and YAML block values, are redacted.

``echo X | docker login --password-stdin`` (the documented way to log in to a
registry without the password in the login's own arguments: it is then in the
shell's), ``echo host:5432:db:user:X > ~/.pgpass`` and a YAML ``password: |``
whose value is on the next lines kept their secret (privacy/stdin_secrets.py,
privacy/base.py ``BLOCK_SCALAR``; docs/privacy.md, "Rule families").
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter

SECRET = "S3cretSi9"

CASES = [
    # (what, text, expected)
    ("docker login --password-stdin",
     f'sh -c "echo {SECRET} | docker login -u ci --password-stdin reg.io && docker push reg.io/a"',
     'sh -c "echo [REDACTED] | docker login -u ci --password-stdin reg.io && docker push reg.io/a"'),
    ("quoted, helm registry login",
     f"echo '{SECRET}' | helm registry login reg.io --username ci --password-stdin",
     "echo [REDACTED] | helm registry login reg.io --username ci --password-stdin"),
    ("regctl --pass-stdin",
     f"echo -n {SECRET} | regctl registry login reg.io -u ci --pass-stdin",
     "echo -n [REDACTED] | regctl registry login reg.io -u ci --pass-stdin"),
    (".pgpass line",
     f"sh -c 'echo db:5432:*:app:{SECRET} > ~/.pgpass && chmod 600 ~/.pgpass'",
     "sh -c 'echo db:5432:*:app:[REDACTED] > ~/.pgpass && chmod 600 ~/.pgpass'"),
    (".pgpass line, any port",
     f"printf '%s\\n' 'db.svc:*:*:app:{SECRET}' >> /root/.pgpass",
     "printf '%s\\n' 'db.svc:*:*:app:[REDACTED]' >> /root/.pgpass"),
    ("YAML literal block",
     f"db:\n  password: |\n    {SECRET}\n  host: db\nlog: debug",
     "db:\n  password: [REDACTED]\nlog: debug"),
    ("YAML folded block, blank line",
     f"api_token: >-\n  {SECRET}\n\n  more\nnext: 1",
     "api_token: [REDACTED]\nnext: 1"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_password_on_standard_input_or_in_a_block_is_redacted(what: str, text: str, expected: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    out = pf.filter_field(text)
    assert out == expected, what
    assert SECRET not in out
    assert pf.fields_redacted == 1
    assert pf.redact_text(text) == out


@pytest.mark.parametrize(
    "text",
    [
        "echo hello | docker login -u ci reg.io",  # prompts: nothing echoed into a password
        "docker login -u ci --password-stdin reg.io < /run/secrets/pw",
        "echo 10:22:33:44:55 | tee /tmp/mac",  # five fields, no .pgpass
        "cat ~/.pgpass",
        "script: |\n  make test\nname: ci",  # a block scalar under an innocent key
        "a | b > c",
    ],
)
def test_look_alikes_of_these_forms_pass_unchanged(text: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text) == text
    assert pf.fields_redacted == 0


def test_a_pgpass_password_with_escapes_and_tee_goes_whole() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(f"echo db:5432:*:app:{SECRET}\\:x\\\\y > ~/.pgpass") == (
        "echo db:5432:*:app:[REDACTED] > ~/.pgpass"
    )
    assert pf.filter_field(f'echo "db:*:*:app:{SECRET}" | tee -a /root/.pgpass') == (
        'echo "db:*:*:app:[REDACTED]" | tee -a /root/.pgpass'
    )


def test_hostile_runs_around_the_new_forms_are_read_once() -> None:
    """64 Ki characters of what the new alternatives start on (a ``:`` before a port, a backslash
    before a quote, ``echo … |``, indented lines) are filtered, and a secret after them still goes.
    Each such run once cost a scan to the end of the text per character (minutes at this size)."""
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    n = 1 << 16
    for text in (
        "pass " + "x:1:" * (n // 4),
        "name value " + "\\" * n + '"',
        'value "name":' + '\\"' * (n // 2),
        "pass " + "echo a | " * (n // 9),
        "password: |\n" + "  a\n" * (n // 4),
    ):
        out = pf.filter_field(f"{text} --password={SECRET}")
        assert SECRET not in out
