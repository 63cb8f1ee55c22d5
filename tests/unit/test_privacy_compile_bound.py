"""A workload cannot make the privacy filter compile its rules again for every new command line.

The default rules a text may match (their triggers and gates, privacy/engine.py) are compiled
together into one regex per combination and cached (privacy/compiled_sets.py). A command line is text a
workload chooses, and 24 rules make millions of combinations: a pod exec'ing ``sh -c "<words>"``
with a new choice of trigger words each time cost one compile per command line (50-130 ms of the
pipeline thread, against about 1 ms for a combination compiled before, and up to ~0.5 MiB each),
and once 256 were compiled the cache started over, so it never ended. Past a bound (now 32) a
new combination runs the whole rule set, compiled once at start: a rule whose triggers or gate a
text fails cannot match it, so the text comes out the same (checked here on every corpus case). A
combination below the bound runs the whole set too until a background thread has compiled it
(test_privacy_compile_off_thread.py).
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy import PrivacyFilter, compiled_sets, redactor
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "privacy"


def _corpus_texts() -> list[str]:
    out: list[str] = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        doc = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
        out += [c["input"] for part in doc.values() if isinstance(part, list) for c in part if "input" in c]
    return out


def _trigger_words() -> list[str]:
    return [p.triggers[0] for p in DEFAULT_PATTERNS if p.triggers]


def test_new_combinations_past_the_bound_compile_nothing(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    compiled: list[int] = []
    real = compiled_sets.compile_patterns

    def counting(patterns):  # type: ignore[no-untyped-def]
        compiled.append(len(patterns))
        return real(patterns)

    monkeypatch.setattr(compiled_sets, "compile_patterns", counting)
    # a new process's sets, with a bound of a few compiles (each costs 50-130 ms)
    sets = compiled_sets.CompiledSets(DEFAULT_PATTERNS, max_subsets=8)
    monkeypatch.setattr(compiled_sets, "DEFAULT_SETS", sets)
    pf = PrivacyFilter(PrivacyConfig())
    words = _trigger_words()
    rnd = random.Random(7)
    lines, masks = [], set()
    index = pf._redactor._index
    while len(masks) < 40:
        line = "app " + " ".join(rnd.sample(words, rnd.randint(3, 12))) + " --password hunter2"
        mask = index.masks(line, line.lower())[0]
        if mask not in masks:
            masks.add(mask)
            lines.append(line)
    for line in lines:
        out = pf.filter_field(line)
        assert "hunter2" not in out, out
    assert sets.wait_idle(60)
    for line in lines:  # again, with the combinations compiled meanwhile
        assert "hunter2" not in pf.filter_field(line)
    assert sets.wait_idle(60)
    # The whole set once (at start), then every combination up to the bound once: no more.
    assert compiled[0] == len(DEFAULT_PATTERNS) and len(compiled) == 1 + 8, compiled
    assert sets.compiled_masks() <= masks and len(sets.compiled_masks()) == 8


def test_the_whole_set_redacts_every_corpus_case_as_its_combination_does(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    texts = _corpus_texts()
    assert len(texts) > 300
    rnd = random.Random(11)
    pieces = [*_trigger_words(), "x=1", "a b", ":", "=", "@h", "/p", "--", "'", '"', "4111111111111111"]
    texts += [" ".join(rnd.choice(pieces) for _ in range(30)) for _ in range(300)]
    # A new process's sets: the first 32 combinations of these texts are compiled (by the background
    # thread, while the first round runs the whole set), the others run the whole set anyway.
    sets = compiled_sets.CompiledSets(DEFAULT_PATTERNS)
    monkeypatch.setattr(compiled_sets, "DEFAULT_SETS", sets)
    by_combination = PrivacyFilter(PrivacyConfig())
    for t in texts:
        by_combination.redact_text(t)
    assert sets.wait_idle(60)
    assert len(sets.compiled_masks()) == compiled_sets.MAX_COMPILED_SUBSETS
    expected = [by_combination.redact_text(t) for t in texts]
    monkeypatch.setattr(
        redactor.Redactor, "_default_for", lambda self, mask: self._whole_set() if mask else None
    )
    whole = PrivacyFilter(PrivacyConfig())
    for text, want in zip(texts, expected, strict=True):
        assert whole.redact_text(text) == want, text
