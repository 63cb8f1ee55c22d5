"""Client rules scan a command about once, whatever the number of client words in it.

A client's name starts a command up to the next shell separator, and its
rules ran from each of its words to that end: ``curl curl curl ...`` (4 KiB,
the default ``maxArgumentBytes``) cost 800 scans of the rest of the field,
0.17 s, and a 64 KiB field minutes, with the interpreter's lock held (the
agent stopped answering). Now a scan from a word the previous scan already
searched across is skipped, and each scan stops where it meets an earlier one,
so the redacted spans are the same (every scan's union) at the cost of about
one scan.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter, cli_options, engine


class CountingRule:
    """A client rule that counts the characters its scans cover."""

    def __init__(self, rx: re.Pattern[str]) -> None:
        self.rx = rx
        self.scanned = 0

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[re.Match[str]]:
        end = len(text) if endpos is None else endpos
        self.scanned += end - pos
        return self.rx.finditer(text, pos, end)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, CountingRule]]:
    rules: dict[str, Any] = dict(cli_options.TOOL_RULES)
    counters = {name: CountingRule(rx) for name, rx in rules.items()}
    monkeypatch.setattr(engine, "TOOL_RULES", counters)
    yield counters


@pytest.mark.parametrize(("word", "tool"), [("curl", ""), ("7z", ""), ("mysql", ""), ("login", "docker")])
def test_thousands_of_client_words_cost_about_one_scan(
    counting: dict[str, CountingRule], word: str, tool: str
) -> None:
    text = (word + " ") * (4096 // (len(word) + 1))
    out = PrivacyFilter(PrivacyConfig()).filter_field(text, tool=tool)
    assert out == text  # nothing in it is a secret
    scanned = sum(c.scanned for c in counting.values())
    assert scanned <= 2 * len(text), scanned  # it was about len(text) ** 2 / 10


def test_a_client_word_inside_another_commands_option_still_starts_its_own_scan() -> None:
    # The first scan's match (alias set A B ...) runs over the second "mc": its own command's keys go too.
    text = "mc alias set A B mc alias set n https://s3 AccKey9 SecKey9"
    out = PrivacyFilter(PrivacyConfig()).filter_field(text)
    assert "AccKey9" not in out and "SecKey9" not in out


def test_past_the_scan_limit_the_rest_of_the_command_is_the_secret() -> None:
    # Matches of 20 characters from 20 neighbouring starts: each start lies inside the matches of
    # all earlier scans and no two scans meet, so each needs its own scan; past the limit, the
    # rest of the command from the next start is taken whole (fail closed), not scanned.
    rx = re.compile(r"(?P<s>b{20})")
    text = "b" * 400
    spans = engine._client_spans(rx, text, list(range(20)), len(text))
    limit = engine.MAX_CLIENT_SCANS
    scanned = {(a + 20 * k, a + 20 * (k + 1)) for a in range(limit) for k in range((400 - a) // 20)}
    assert set(spans) == scanned | {(limit, len(text))}


def test_a_subcommand_option_is_found_up_to_32_words_after_it() -> None:
    pf = PrivacyFilter(PrivacyConfig())
    near = "login " + "-x " * 32 + "-p S3cretNear registry"
    far = "login " + "-x " * 33 + "-p S3cretFar registry"
    assert "S3cretNear" not in pf.filter_field(near, tool="docker")
    assert "S3cretFar" in pf.filter_field(far, tool="docker")  # the documented bound
