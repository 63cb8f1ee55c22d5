"""Credential formats (own rules, detect-secrets') and personal data (formats_corpus.yaml)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
from detect_secrets.plugins.base import RegexBasedDetector

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter
from stellaops_runtime.privacy.base import gate_open
from stellaops_runtime.privacy.filter import LIBRARY_COUNTER_PREFIX
from stellaops_runtime.privacy.library_rules import EXCLUDED, KNOWN_PLUGINS, LIBRARY_RULES
from stellaops_runtime.privacy.personal_data import is_card_number, is_ssn, luhn_ok
from stellaops_runtime.privacy.provider_tokens import PROVIDER_TOKEN

FIXTURES = Path(__file__).parents[1] / "fixtures" / "privacy"
CORPUS: dict[str, Any] = yaml.safe_load((FIXTURES / "formats_corpus.yaml").read_text(encoding="utf-8"))


def _filter(**kw: Any) -> PrivacyFilter:
    return PrivacyFilter(PrivacyConfig(**kw))


@pytest.mark.parametrize("case", CORPUS["secrets"], ids=lambda c: f"{c['family']}:{c['input'][:40]}")
def test_format_is_redacted(case: dict[str, Any]) -> None:
    pf = _filter()
    out = pf.filter_field(case["input"])
    assert out == case["expected"]
    for secret in case["secrets"]:
        assert secret not in out
    assert pf.redactions_by_pattern[case["family"]] >= 1
    assert pf.fields_redacted == 1
    assert case["source"]


@pytest.mark.parametrize("case", CORPUS["innocent"], ids=lambda c: c["why"])
def test_look_alike_is_kept(case: dict[str, Any]) -> None:
    pf = _filter()
    assert pf.filter_field(case["input"]) == case["input"]
    assert not any(pf.redactions_by_pattern.values())


def test_the_fourteen_leaked_formats_of_the_independent_corpus_are_covered() -> None:
    """Issue 9 section 4: the formats that leaked, each by at least one corpus case."""
    cli = yaml.safe_load((FIXTURES / "cli_corpus.yaml").read_text(encoding="utf-8"))["secrets"]
    inputs = [c["input"] for c in CORPUS["secrets"]] + [c["input"] for c in cli]
    needles = [
        " -pS3cretMyPw",  # glued short-option password
        "-p M0ngoPw",  # separated short-option password
        "redis-cli -h cache -a ",
        "4111111111111111",
        "4111 1111 1111 1111",
        "123-45-6789",
        " npm_",
        " sk-proj-",
        " ya29.",
        " SG.",
        " hf_",
        "docker login -u ci -p ",
        '"private_key_id": "',
    ]
    for needle in needles:
        assert any(needle in i for i in inputs), needle


# -- detect-secrets ---------------------------------------------------------------


def test_every_regex_plugin_of_the_library_is_used_or_excluded_on_purpose() -> None:
    plugins = {
        cls.__name__
        for cls in get_mapping_from_secret_type_to_class().values()
        if issubclass(cls, RegexBasedDetector)
    }
    used = {r.name for r in LIBRARY_RULES}
    assert used == plugins - EXCLUDED
    assert plugins - EXCLUDED <= KNOWN_PLUGINS  # every used plugin has our triggers
    assert {"IPPublicDetector", "PrivateKeyDetector"} == EXCLUDED
    for r in LIBRARY_RULES:
        assert r.patterns and all(isinstance(p, re.Pattern) for p in r.patterns)


@pytest.mark.parametrize(
    "plugin",
    [
        "DiscordBotTokenDetector",
        "TelegramBotTokenDetector",
        "MailchimpDetector",
        "TwilioKeyDetector",
    ],
)
def test_library_plugins_without_an_own_rule_are_counted_under_their_name(plugin: str) -> None:
    cases = [c for c in CORPUS["secrets"] if c["family"] == LIBRARY_COUNTER_PREFIX + plugin]
    assert cases
    for case in cases:
        pf = _filter()
        pf.filter_field(case["input"])
        assert pf.redactions_by_pattern[LIBRARY_COUNTER_PREFIX + plugin] == 1


def test_library_rules_find_their_formats_on_their_own() -> None:
    """detect-secrets' patterns, run without our rules, find the corpus secrets of their formats."""
    by_name = {r.name: r for r in LIBRARY_RULES}
    found: set[str] = set()
    for case in CORPUS["secrets"]:
        for name, rule in by_name.items():
            for start, end in rule.spans(case["input"]):
                found.add(name)
                secret_spans = [(i, i + len(s)) for s in case["secrets"] if (i := case["input"].find(s)) >= 0]
                assert any(start < e and s < end for s, e in secret_spans), (name, case["input"])
    assert found >= {
        "ArtifactoryDetector",
        "BasicAuthDetector",
        "CloudantDetector",
        "DiscordBotTokenDetector",
        "MailchimpDetector",
        "OpenAIDetector",
        "PypiTokenDetector",
        "SendGridDetector",
        "SquareOAuthDetector",
        "TelegramBotTokenDetector",
        "TwilioKeyDetector",
        "GitLabTokenDetector",
        "NpmDetector",
        "SlackDetector",
    }


def test_no_library_pattern_matches_the_redaction_marker() -> None:
    for rule in LIBRARY_RULES:
        for text in ("[REDACTED]", "x [REDACTED] y", "a=[REDACTED]&b=[REDACTED]", "://u:[REDACTED]@h"):
            assert rule.spans(text) == [], (rule.name, text)


def test_library_triggers_and_gates_never_hide_a_match() -> None:
    """For every corpus secret a library plugin matches, its triggers and gate let it run."""
    checked = 0
    for case in CORPUS["secrets"]:
        text = case["input"]
        for rule in LIBRARY_RULES:
            if not rule.spans(text):
                continue
            checked += 1
            low = text.lower()
            assert any((t in low) if t == t.lower() else (t in text) for t in rule.triggers), rule.name
            assert not rule.gate or gate_open(rule.gate, text), rule.name
    assert checked >= 15


def test_provider_tokens_pass_the_run_gate_and_the_gate_skips_ordinary_paths() -> None:
    rx = re.compile(PROVIDER_TOKEN.regex)
    hits = [c["input"] for c in CORPUS["secrets"] if rx.search(c["input"])]
    assert len(hits) >= 30
    for text in hits:
        assert gate_open("run", text), text
    for text in ("/usr/lib/x86_64-linux-gnu/libc.so.6", "--port 8080", "/etc/app/config.yaml --workers 4"):
        assert not gate_open("run", text)


def test_library_off_with_default_patterns_off() -> None:
    pf = _filter(default_patterns=False)
    text = "tg-notify 815898210:T8girgagubxRkfaRW1gqSGtLUp1_jM5E2aj"
    assert pf.filter_field(text) == text


# -- personal data ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),  # Luhn
        ("5555555555554444", True),
        ("378282246310005", True),
        ("6011111111111117", True),
        ("6200000000000005", True),  # UnionPay
        ("2223000048400011", True),
        ("3530111333300000", True),  # JCB
        ("30569309025904", True),  # Diners 14
        ("1234567812345670", False),  # Luhn-valid, no network starts with 1
        ("9111111111111110", False),
        ("41111111111", False),  # too short
        ("4111 1111 1111 1111", True),
        ("4111-1111-1111-1111", True),
    ],
)
def test_card_numbers_need_a_network_prefix_a_length_and_the_luhn_digit(number: str, ok: bool) -> None:
    assert is_card_number(number) is ok


def test_luhn() -> None:
    assert luhn_ok("79927398713")
    assert not luhn_ok("79927398710")


@pytest.mark.parametrize(
    ("ssn", "ok"),
    [
        ("123-45-6789", True),
        ("123 45 6789", True),
        ("000-45-6789", False),
        ("666-45-6789", False),
        ("900-45-6789", False),
        ("999-45-6789", False),
        ("123-00-6789", False),
        ("123-45-0000", False),
        ("078-05-1120", False),
        ("219-09-9999", False),
    ],
)
def test_ssn_never_issued_values_are_rejected(ssn: str, ok: bool) -> None:
    assert is_ssn(ssn) is ok
    pf = _filter()
    out = pf.filter_field(f"--ssn {ssn}")
    assert out == ("--ssn [REDACTED]" if ok else f"--ssn {ssn}")


@pytest.mark.parametrize(
    "text",
    [
        "/data/4111111111111111/x",
        "v4111111111111111",
        "4111111111111111a",
        "x.4111111111111111",
        "-4111111111111111",
    ],
)
def test_card_digits_glued_to_letters_dots_slashes_or_dashes_are_kept(text: str) -> None:
    assert _filter().filter_field(text) == text


def test_a_library_plugin_without_triggers_runs_on_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from stellaops_runtime.privacy import library_rules

    class NewDetector(RegexBasedDetector):
        secret_type = "New"
        denylist = (re.compile(r"NEW[0-9]{4}"),)

    monkeypatch.setattr(library_rules, "get_mapping_from_secret_type_to_class", lambda: {"New": NewDetector})
    (rule,) = library_rules.load_rules()
    assert (rule.name, rule.triggers, rule.gate, rule.group) == ("NewDetector", (), "", 0)
    assert rule.spans("x NEW1234 y") == [(2, 9)]


def test_nine_bare_digits_are_not_an_ssn() -> None:
    assert _filter().filter_field("--id 123456789") == "--id 123456789"


def test_email_addresses_are_redacted_whole() -> None:
    pf = _filter()
    assert pf.filter_field("--to a.b+c@example.co.uk,x@y.io") == "--to [REDACTED],[REDACTED]"
    assert pf.redactions_by_pattern["email"] == 2
