"""Text the filter already redacted, read again, comes out unchanged (privacy/base.py NOT_A_MARKER).

The filter reads its own output again: log text redacted twice, the second pass
over a field holding U+FFFD (hostile_text.py), a stored argument shown through
``redact_text``. A key's value that is the marker ``[REDACTED]`` followed by the
next member of compact JSON (``{"token":[REDACTED],"n":1}``) was taken for a
new secret and everything after it was lost; so was the ``>`` of Ruby's ``=>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "privacy"


@pytest.mark.parametrize(
    "text",
    [
        '{"token":[REDACTED],"n":1}',
        '{"password":[REDACTED],"user":"bob"}',
        "{'api_key': [REDACTED], 'region': 'eu'}",
        '[{"secret":[REDACTED]},{"n":2}]',
        "https://h/x?access_token=[REDACTED]&limit=10",
        "Server=db;Password=[REDACTED];Database=shop",
        "password=[REDACTED]; Database=shop",
        "<password>[REDACTED]</password><user>bob</user>",
        "connect(:api_token => [REDACTED], :password=> [REDACTED])",
    ],
)
def test_a_marker_followed_by_the_next_member_is_read_as_a_marker(text: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.redact_text(text) == text
    assert pf.filter_field(text + "\ufffd") == text + "\ufffd"  # the U+FFFD second pass too
    assert not any(pf.redactions_by_pattern.values())


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('{"token":"S3cretQ9","n":1}', '{"token":[REDACTED],"n":1}'),
        ('{"token":"S3cretQ9","n":1}\ufffd', '{"token":[REDACTED],"n":1}\ufffd'),
        (
            'connect(:api_token => "Rb7 tk", :password=> Rb8pw)',
            "connect(:api_token => [REDACTED], :password=> [REDACTED]",
        ),
    ],
)
def test_a_secret_before_the_next_member_is_redacted_once(text: str, want: str) -> None:
    pf = PrivacyFilter(PrivacyConfig())
    assert pf.filter_field(text) == want
    assert pf.redact_text(want) == want


@pytest.mark.parametrize(
    "text",
    [
        "--password=[REDACTED]S3cretQ9 x",
        "--password=[REDACTED],S3cretQ9 x",
        "--password=[REDACTED];S3cretQ9 x",
    ],
)
def test_a_fake_marker_glued_to_a_secret_is_no_marker(text: str) -> None:
    assert "S3cretQ9" not in PrivacyFilter(PrivacyConfig()).filter_field(text)


def test_every_corpus_output_read_again_is_unchanged() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    cases = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        cases += yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))["secrets"]
    assert len(cases) > 250
    changed = []
    for c in cases:
        once = pf.redact_text(c["input"])
        if pf.redact_text(once) != once:
            changed.append((c["input"], once, pf.redact_text(once)))
    assert changed == []
