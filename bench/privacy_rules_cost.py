"""What the default privacy rules cost to compile and to run (issue 13, docs/benchmarks.md).

The agent compiles the default rules at start-up (cli/agent.py): each rule alone since
privacy/rule_scan.py, their whole set as one regex before (privacy/compiled_sets.py, which ran a
field's combination of rules once compiled off the thread). What the compile peaks at and keeps is
part of the idle agent's memory, and the match time part of every event's. This prints, for the tree
on ``PYTHONPATH`` (either kind):

- the rules' characters and groups, the compile's tracemalloc peak and kept bytes (a fresh
  process: run it once per tree), and its CPU time (best and median of 5, the ``re`` cache purged);
- CPU time per case of the privacy corpora (tests/fixtures/privacy) through every rule (the whole
  set) and through the rules its trigger words select (as the filter runs them; a tree from before
  rule_scan: the combination's own alternation);
- the command-line clients' rules (privacy/client_rules.py, compiled per client on first sight):
  what compiling every set keeps and peaks at (tracemalloc), and each set's compile CPU time
  (median of 5, the ``re`` cache purged): the median set's and the largest;
- CPU time of every rule on hostile inputs of ``--hostile-bytes`` (1 MiB) shaped at the key rules
  (key words without values, separators and quotes repeated, huge values), best of ``--runs``.

Usage (compare two trees in the same minutes)::

    git archive <before> operator | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/operator .venv/bin/python bench/privacy_rules_cost.py
    PYTHONPATH=operator .venv/bin/python bench/privacy_rules_cost.py
"""

from __future__ import annotations

import argparse
import gc
import re
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import yaml

from stellaops_runtime.privacy import cli_options
from stellaops_runtime.privacy.base import CompiledPatterns, SecretPattern, compile_patterns, number_groups
from stellaops_runtime.privacy.engine import TriggerIndex, sub_compiled
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS

try:
    from stellaops_runtime.privacy import rule_scan
except ImportError:  # a tree from before rule_scan.py: one alternation
    rule_scan = None  # type: ignore[assignment]

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "privacy"

ALL = (1 << len(DEFAULT_PATTERNS)) - 1

# name -> (repeated piece, text before it)
SHAPES: dict[str, tuple[str, str]] = {
    "key words only": ("password", ""),
    "key= repeated": ("password= ", ""),
    "--key repeated": ("--password ", ""),
    "-key- repeated": ("-password-", ""),
    "/key= repeated": ("/password=", ""),
    "key:= repeated": ("token:=", ""),
    "Key => repeated": ("Token => ", ""),
    "aws key, space": ("aws_secret_key ", ""),
    "a call's f(' runs": ("f('", "secret="),
    "ANSI-C $' runs": ("$'\\", "api_key="),
    "quote, backslash": ('"\\', "pw="),
    "markers": ("[REDACTED]", "auth="),
    "block scalar lines": ("  x\n\n", "key: |\n"),
    "one huge value": ("A", "--password="),
    "query value": ("'a ", "?token="),
    ";key= repeated": (";pwd=", ""),
    "XML openings": ("<db:password x>", ""),
    "mixed separators": ("db_PASSWORD\\\\=\"'-----BEGIN ; &token ", ""),
    "key words glued": ("passtokensecretauthcookiepwdkey_=: ", ""),
    "PEM start in a value": ("password=x-----BEGIN RSA PRIVATE KEY----- ", ""),
}


def corpus_texts() -> list[str]:
    out: list[str] = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        doc = yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))
        for part in doc.values():
            if isinstance(part, list):
                out += [c["input"] for c in part if isinstance(c, dict) and isinstance(c.get("input"), str)]
    return out


def best_cpu(f: Callable[[], object], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.process_time()
        f()
        best = min(best, time.process_time() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hostile-bytes", type=int, default=1 << 20, help="length of each hostile input")
    ap.add_argument("--runs", type=int, default=3, help="runs per hostile input (best is printed)")
    args = ap.parse_args()

    source = "|".join(p.regex for p in DEFAULT_PATTERNS)

    def compile_all() -> Callable[[str, int], object]:
        """The rules as the tree runs them: (text, mask of the rules selected) -> result."""
        if rule_scan is not None:
            # with each rule's head since rule_heads.py (the scan's prefilter for rules passed over)
            one = getattr(rule_scan, "compile_rule", lambda p: compile_patterns((p,)))
            rules = tuple(one(p) for p in DEFAULT_PATTERNS)
            return lambda text, mask: rule_scan.sub_rules(rule_scan.selected(rules, mask), text, counts=None)
        whole = compile_patterns(DEFAULT_PATTERNS)
        combos: dict[int, CompiledPatterns] = {}

        def run(text: str, mask: int) -> object:
            if mask == ALL:
                return sub_compiled(whole, text, counts=None)
            if mask not in combos:
                combos[mask] = compile_patterns([p for i, p in enumerate(DEFAULT_PATTERNS) if mask >> i & 1])
            return sub_compiled(combos[mask], text, counts=None)

        return run

    gc.collect()
    tracemalloc.start()
    run = compile_all()
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    times = []
    for _ in range(5):
        re.purge()
        gc.collect()
        t = time.process_time()
        compile_all()
        times.append(time.process_time() - t)
    kind = "each rule alone" if rule_scan is not None else "whole set, one regex"
    print(
        f"{kind}: {len(source):,} characters; compile: tracemalloc peak "
        f"{peak / 1e6:.2f} MB, kept {kept / 1e6:.3f} MB, CPU best {min(times) * 1e3:.0f} ms, "
        f"median {statistics.median(times) * 1e3:.0f} ms"
    )

    texts = corpus_texts()
    per_case = best_cpu(lambda: [run(t, ALL) for t in texts], 5) / len(texts)
    print(f"privacy corpora, {len(texts)} cases: {per_case * 1e6:.1f} us per case (every rule, best of 5)")
    index = TriggerIndex([(p.triggers, p.gate) for p in DEFAULT_PATTERNS])
    masked = [(t, index.masks(t, t.lower())[0]) for t in texts]
    for t, mask in masked:  # the combinations compiled first (an old tree's background thread)
        if mask:
            run(t, mask)
    per_case = best_cpu(lambda: [run(t, m) for t, m in masked if m], 5) / len(texts)
    print(f"privacy corpora: {per_case * 1e6:.1f} us per case (the rules selected, best of 5)")

    client_rules()

    n = args.hostile_bytes
    for name, (piece, before) in SHAPES.items():
        text = before + (piece * (n // len(piece) + 1))[: n - len(before)]
        cpu = best_cpu(lambda text=text: run(text, ALL), args.runs)
        print(f"  {name:20s} {len(text):>9,} chars {cpu * 1e3:9.1f} ms")


def client_rules() -> None:
    """What the clients' rules cost: kept and peak of compiling every set, CPU of each set's compile."""
    rules = cli_options.TOOL_RULES
    if not hasattr(rules, "compiled"):  # a tree from before client_rules.py: compiled at import
        print(f"client rules: {len(set(map(id, rules.values())))} sets, all compiled at import")
        return
    assert not rules.compiled(), "a client's rules were compiled before the first sight of the client"
    gc.collect()
    tracemalloc.start()
    for tool in rules:
        rules[tool]
    kept, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sources = {id(rules[t]): rules[t].pattern for t in rules}
    per_set = []
    for source in sources.values():
        times = []
        for _ in range(5):
            re.purge()
            t = time.process_time()
            compile_patterns([SecretPattern("cli_option", number_groups(source))])
            times.append(time.process_time() - t)
        per_set.append(statistics.median(times))
    print(
        f"client rules: {len(sources)} sets, none compiled before its client is seen; all compiled: "
        f"tracemalloc kept {kept / 1e6:.3f} MB, peak {peak / 1e6:.3f} MB; compile CPU per set (median "
        f"of 5): median set {statistics.median(per_set) * 1e3:.2f} ms, largest "
        f"{max(per_set) * 1e3:.2f} ms, all {sum(per_set) * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()
