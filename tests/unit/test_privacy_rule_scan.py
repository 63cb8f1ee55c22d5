"""The default rules, each run by its own regex, redact exactly as their one alternation did, in linear time.

privacy/rule_scan.py emulates the alternation of the rules a field selects (``base.compile_patterns``,
run by ``engine.sub_compiled``, as the filter ran them before): the least start of the rules' own
leftmost matches, ties to the earlier rule, each rule searching again only once the scan has passed
its match. The alternation is the oracle here: the same output text, hit count and per-rule counts
on the privacy corpora, on seeded hostile fields (every trigger word, separators, quotes, NUL,
markers, card numbers a validator rejects, long runs), from a start position too, for the whole set
and for combinations; and on small synthetic rules that reach every branch of the loop (empty
matches, lookbehinds before the position, a validator that rejects, ties, overlaps, ``(?P<w>)``).

The alternation cost quadratic time on some hostile fields (``authorization `` then a run of
``psw=``: 22-45x for 4x the text, docs/privacy.md); the rules run alone cost what each costs alone.
"""

from __future__ import annotations

import dataclasses
import random
import re
from pathlib import Path

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter, base, rule_scan
from stellaops_runtime.privacy.base import SecretPattern, compile_patterns
from stellaops_runtime.privacy.engine import sub_compiled
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERN_NAMES, DEFAULT_PATTERNS
from stellaops_runtime.privacy.redactor import _trigger_index
from tests.linear_cost import growth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "privacy"


def _corpus_texts() -> list[str]:
    out: list[str] = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        doc = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
        out += [c["input"] for part in doc.values() if isinstance(part, list) for c in part if "input" in c]
    return out


def _hostile_texts(seed: int, n: int) -> list[str]:
    rnd = random.Random(seed)
    triggers = sorted({t for p in DEFAULT_PATTERNS for t in p.triggers})
    pieces = [
        *triggers,
        *(t.upper() for t in triggers),
        "=", ":", " ", "  ", "'", '"', '\\"', "\x00", "\ufffd", "\n", "\t", "-", "--", "/", "@", "&", ";",
        "[REDACTED]", "x", "S3cret", "4111111111111111", "4111111111111112", "123-45-6789",
        "a@b.example.com", "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "https://u:p@h", "Bearer ", "psw=" * 20, "password " * 5, "=" * 30, "a" * 40,
    ]  # fmt: skip
    return ["".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 40))) for _ in range(n)]


def _same(alternation: base.CompiledPatterns, rules: list[base.CompiledPatterns], text: str, pos: int) -> int:
    """Assert both engines redact ``text`` from ``pos`` alike (text, hits, counts); the hits."""
    c_old = dict.fromkeys((name for name, _, _ in alternation.groups.values()), 0)
    c_new = dict(c_old)
    a = sub_compiled(alternation, text, counts=c_old, pos=pos)
    b = rule_scan.sub_rules(rules, text, counts=c_new, pos=pos)
    assert (a, c_old) == (b, c_new), (text[:300], pos)
    return a[1]


def test_each_rule_alone_redacts_as_the_whole_set_and_as_combinations() -> None:
    rules = rule_scan.default_rules()
    assert len(rules) == len(DEFAULT_PATTERNS)
    texts = _corpus_texts() + _hostile_texts(3, 1_500)
    assert len(texts) > 2_000
    whole = compile_patterns(DEFAULT_PATTERNS)
    redacted = sum(_same(whole, list(rules), t, 0) > 0 for t in texts)
    assert redacted > 1_000
    rnd = random.Random(5)
    for t in texts[::7]:  # from a later start (the tail rules' window)
        _same(whole, list(rules), t, rnd.randint(0, len(t)))
    # The combinations the filter selects (by the fields' trigger words), the most frequent few:
    # each compiled as the alternation the filter ran for it.
    index = _trigger_index(PrivacyFilter(PrivacyConfig())._redactor._library)
    by_mask: dict[int, list[str]] = {}
    for t in texts:
        by_mask.setdefault(index.masks(t, t.lower())[0], []).append(t)
    common = sorted((m for m in by_mask if m), key=lambda m: -len(by_mask[m]))[:6]
    for mask in common:
        alternation = compile_patterns([p for i, p in enumerate(DEFAULT_PATTERNS) if mask >> i & 1])
        for t in by_mask[mask]:
            _same(alternation, rule_scan.selected(rules, mask), t, 0)


def _luhn_even(s: str) -> bool:
    return sum(int(c) for c in s if c.isdigit()) % 2 == 0


SYNTHETIC = [
    SecretPattern("empty", r"(?=b)(?P<w>)"),  # a zero-width match: the scan moves one character on
    SecretPattern("behind", r"(?<=a)(?P<s>b+)|c(?P<s_2>a*)"),  # looks before the scan's position
    SecretPattern("digits", r"(?P<s>[0-9]{2,})", validate=_luhn_even),  # rejected: on from start + 1
    SecretPattern("key", r"k=(?P<s>[^ ]*)|ab(?P<s_2>c)"),  # ties with "behind" at an ``a`` or ``c``
    SecretPattern("whole", r"[0-9]a(?P<w>)"),  # the whole match is the secret; overlaps "digits"
    SecretPattern("marker", r"(?P<s>\[[A-Z]+\])|\A(?P<s_2>b)"),  # "[REDACTED]" is skipped
]


def test_the_emulation_reaches_every_branch_of_the_alternation_loop() -> None:
    rnd = random.Random(9)
    alphabet = ["a", "b", "c", "k=", "1", "2", "3", "9", " ", "[REDACTED]", "[X]", "ab", "cab"]
    texts = ["".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30))) for _ in range(3_000)]
    singles = [rule_scan.compile_rule(p) for p in SYNTHETIC]  # with heads, where they have one
    assert sum(cp.head is not None for cp in singles) == 4
    for k in range(1 << len(SYNTHETIC)):  # every combination, in rule order
        chosen = [i for i in range(len(SYNTHETIC)) if k >> i & 1]
        if not chosen:
            continue
        alternation = compile_patterns([SYNTHETIC[i] for i in chosen])
        for t in texts[:: 1 + len(chosen)]:
            _same(alternation, [singles[i] for i in chosen], t, 0)
    everything = compile_patterns(SYNTHETIC)
    assert sum(_same(everything, singles, t, rnd.randint(0, len(t))) > 0 for t in texts) > 1_000


# A field's own combination held a rule ahead of ``password`` or ``secret_token``, whose capture groups
# cost every step of the later alternative: 23x and 20x for 4x the text before (the filter's path, in a
# fresh process and with the combination compiled alike).
HOSTILE = ["authorization psw=", "-----begin secret:"]
# The whole set (any field, whatever its trigger words), the worst the alternation measured among every
# rule's first trigger word ahead of a long run of a key's forms: 27-31x.
WHOLE_SET = ["authorization psw=", "pass psw=", "k_live_ password=", "-----begin secret:"]


@pytest.mark.parametrize("field", HOSTILE)
def test_a_hostile_field_costs_linear_time(field: str) -> None:
    head, unit = field.rsplit(" ", 1)
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    ratio = growth(lambda run: pf.redact_text(f"{head} {run}"), unit, size=32768)
    assert ratio < 8, (field, ratio)


@pytest.mark.parametrize("field", WHOLE_SET)
def test_every_rule_on_a_hostile_field_costs_linear_time(field: str) -> None:
    head, unit = field.rsplit(" ", 1)
    rules = rule_scan.default_rules()
    ratio = growth(lambda run: rule_scan.sub_rules(rules, f"{head} {run}", counts=None), unit, size=32768)
    assert ratio < 8, (field, ratio)


# A key's value that holds the start of a rule whose match runs far (a PEM key's body, to its END line
# or the end of the text): the key's match starts first and the scan passes the other's start, so
# the alternation never read that body. Each rule searching alone read it again, from the next
# start, after each key: 12-14x for 4x the text (2.9 s on 64 KiB), in a fresh process or not.
PASSED_OVER = [
    "password=x-----BEGIN RSA PRIVATE KEY----- ",
    "--password x-----BEGIN PRIVATE KEY-----\n",
    "Authorization: Basic x-----BEGIN RSA PRIVATE KEY----- ",
    "password=x,---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ---- ",
    "password=x,PuTTY-User-Key-File-2: ",
]


@pytest.mark.parametrize("unit", PASSED_OVER)
def test_a_match_passed_over_is_not_read_again_after_each_key(unit: str) -> None:
    rules = rule_scan.default_rules()
    ratio = growth(lambda run: rule_scan.sub_rules(rules, run, counts=None), unit, size=32768)
    assert ratio < 8, (unit, ratio)
    whole = compile_patterns(DEFAULT_PATTERNS)
    field = unit * 40
    assert _same(whole, list(rules), field, 0) == 40


def test_a_field_through_the_filter_does_not_read_a_passed_over_key_again() -> None:
    pf = PrivacyFilter(PrivacyConfig(max_argument_bytes=1 << 20))
    ratio = growth(lambda run: pf.redact_text(run), PASSED_OVER[0], size=32768)
    assert ratio < 8, ratio


def _heads_used(rules: list[base.CompiledPatterns], texts: list[str]) -> set[int]:
    """Which of ``rules`` looked for their head over ``texts`` (their heads wrapped to tell)."""
    used: set[int] = set()

    class Told:
        def __init__(self, i: int, head: re.Pattern[str]) -> None:
            self.i, self.head = i, head

        def search(self, text: str, pos: int) -> re.Match[str] | None:
            used.add(self.i)
            return self.head.search(text, pos)

    told = [dataclasses.replace(cp, head=Told(i, cp.head)) for i, cp in enumerate(rules)]  # type: ignore[arg-type]
    for t in texts:
        rule_scan.sub_rules(told, t, counts=None)
    return used


def test_a_rule_s_head_matches_wherever_the_rule_does() -> None:
    rules = rule_scan.default_rules()
    assert all(cp.head is not None for cp in rules)
    for t in _corpus_texts() + _hostile_texts(3, 600) + _passed_over_texts(11, 300):
        for cp in rules:
            m = cp.regex.search(t)
            while m is not None:  # every start where the rule matches
                assert cp.head.match(t, m.start()) is not None, (cp.groups, t[:200], m.start())  # type: ignore[union-attr]
                m = cp.regex.search(t, m.start() + 1) if m.start() < len(t) else None


def _passed_over_texts(seed: int, n: int) -> list[str]:
    """Keys and separators glued to the starts of other rules' matches, so that matches are passed over."""
    rnd = random.Random(seed)
    keys = [
        "password=x", "token=", "--password ", "Authorization: Bearer ", 'pw="x', "secret: 'x", "--key=x",
        "https://u:x", "?token=x", "password ", "<password>x", "AccountKey=", "IDENTIFIED BY ", "cookie: x",
    ]  # fmt: skip
    starts = [  # a start of each rule's match
        "-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----", "PuTTY-User-Key-File-2:",
        "Private-Lines:", "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "a@b.example.com", "4111111111111111", "4111111111111112",
        "123-45-6789", "AKIAABCDEFGHIJKLMNOP", "postgres://u:p@h/", "[REDACTED]", "sk-proj-" + "a" * 40,
        "AIza" + "b" * 35, "xoxb-12345678", "sk_live_" + "c" * 24, "aws_secret_access_key=", "--jwt ",
        "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQ", "--pass ", "abc1Q~" + "d" * 31, "--key=", "password ",
    ]  # fmt: skip
    seps = ["", "", ",", " ", "\n", '\\"', '"', "'", "\x00", ":", "=", "|\n  "]
    pieces = keys + starts + seps
    return ["".join(rnd.choice(pieces) for _ in range(rnd.randint(2, 30))) for _ in range(n)]


def test_rules_passed_over_redact_as_the_alternation() -> None:
    rules = list(rule_scan.default_rules())
    texts = _passed_over_texts(11, 1_200)
    whole = compile_patterns(DEFAULT_PATTERNS)
    rnd = random.Random(13)
    assert sum(_same(whole, rules, t, 0) > 0 for t in texts) > 1_000
    for t in texts[::5]:
        _same(whole, rules, t, rnd.randint(0, len(t)))
    # The combinations the filter selects for these fields, the most frequent few.
    index = _trigger_index(PrivacyFilter(PrivacyConfig())._redactor._library)
    by_mask: dict[int, list[str]] = {}
    for t in texts:
        by_mask.setdefault(index.masks(t, t.lower())[0], []).append(t)
    for mask in sorted((m for m in by_mask if m), key=lambda m: -len(by_mask[m]))[:3]:
        alternation = compile_patterns([p for i, p in enumerate(DEFAULT_PATTERNS) if mask >> i & 1])
        for t in by_mask[mask]:
            _same(alternation, rule_scan.selected(rules, mask), t, 0)
    # The fields reach the heads of most rules (a rule none of them names cannot be passed over).
    assert len(_heads_used(rules, texts)) >= 22


def test_no_rule_is_compiled_again_for_a_new_combination(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real = base.compile_patterns

    def counting(patterns):  # type: ignore[no-untyped-def]
        compiled.append(patterns[0].name)
        return real(patterns)

    monkeypatch.setattr(rule_scan, "compile_patterns", counting)
    monkeypatch.setattr(rule_scan, "_RULES", [])  # as in a new process: compiled by the next filter
    pf = PrivacyFilter(PrivacyConfig())
    assert compiled == list(DEFAULT_PATTERN_NAMES)
    # A workload choosing a new mix of trigger words for each command line compiles nothing more.
    words = sorted({p.triggers[0] for p in DEFAULT_PATTERNS if p.triggers})
    rnd = random.Random(7)
    for _ in range(40):
        line = "app " + " ".join(rnd.sample(words, rnd.randint(3, 12))) + " --password hunter2"
        assert "hunter2" not in pf.filter_field(line)
    assert len(compiled) == len(DEFAULT_PATTERNS)
