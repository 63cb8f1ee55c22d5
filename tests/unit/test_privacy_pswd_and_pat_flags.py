"""Two spellings of a credential the key rules missed (the P7 corpus, session 45).

``pswd`` is a password's abbreviation as ``psw`` is (``--pswd X``, ``DB_PSWD=X``, ``pswd=X``), and a
flag whose last word is ``pat`` takes a personal access token (GitHub Enterprise Importer's
``gh gei migrate-repo --github-source-pat X --ado-pat Y``, ``--pat X``). Their look-alikes stay.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter


def _filter(text: str) -> str:
    return PrivacyFilter(PrivacyConfig()).filter_field(text)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("app --pswd P7w-1", "app --pswd [REDACTED]"),
        ("app --pswd=P7w-1 -v", "app --pswd=[REDACTED] -v"),
        ("app pswd=P7w-1", "app pswd=[REDACTED]"),
        ("app DB_PSWD=P7w-1", "app DB_PSWD=[REDACTED]"),
        ('{"adminPswd": "P7w-1"}', '{"adminPswd": [REDACTED]}'),
        # https://docs.github.com/en/migrations/using-github-enterprise-importer (gh gei … --*-pat)
        (
            "gh gei migrate-repo --github-source-pat P7w-1 --ado-pat P7w-2 --source-repo r",
            "gh gei migrate-repo --github-source-pat [REDACTED] --ado-pat [REDACTED] --source-repo r",
        ),
        ("app --pat P7w-1", "app --pat [REDACTED]"),
        ("app --gitlab_pat=P7w-1", "app --gitlab_pat=[REDACTED]"),
    ],
)
def test_a_pswd_key_or_a_pat_flag_loses_its_value(text: str, want: str) -> None:
    out = _filter(text)
    assert out == want
    assert "P7w" not in out


@pytest.mark.parametrize(
    "text",
    [
        "app --pswd-len 8",
        "cp a.pswd b.pswd",
        "app --path /srv/x",
        "app --patch x.diff",
        "app --pattern '*.log'",
        "app --no-pat",
        "app --spat 1",
        "app -pat 1",  # one dash: not decided (a short option's meaning is its program's)
    ],
)
def test_their_look_alikes_stay(text: str) -> None:
    assert _filter(text) == text
