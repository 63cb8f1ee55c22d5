"""The privacy rules are compiled at start, never on the pipeline thread while intake waits.

The default rules a text selects (by its trigger words) were compiled together, one regex per
combination, the first time a text asked for it, on the pipeline thread: under load one took seconds
(engineer RT's trace of test_parse_worker_e2e, session 39: ~3.5 s in ``_default_for ->
compile_patterns``), during which intake stalled and /metrics went stale, and a new combination
could come at any time mid-stream. Now each default rule is compiled alone, once per process, when
the agent builds its pipeline (start-up, before any event), and a text runs the rules it selects
each by its own regex (privacy/rule_scan.py): no combination is compiled at all.

A command-line client's rules are the exception: each client's small regex is compiled on the thread
that filters the first time the client is seen (privacy/client_rules.py, ~0.5 ms of CPU, 2.2 ms the
largest), once per process; test_privacy_client_rules.py covers them, and they are counted apart here.
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.privacy import base, cli_options, client_rules, engine, rule_scan
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS

FIXTURES = Path(__file__).parents[1] / "fixtures"
STREAM = FIXTURES / "tetragon" / "synthetic" / "stream-a.jsonl.gz"


def _lines() -> list[tuple[bytes, int]]:
    """Each distinct exec of stream-a once, then one exec per corpus secret (many combinations)."""
    seen: set[str] = set()
    lines: list[tuple[bytes, int]] = []
    template: dict[str, Any] | None = None
    with gzip.open(STREAM, "rt", encoding="utf-8") as f:
        for raw in f:
            doc = json.loads(raw)
            exec_ = doc.get("process_exec")
            if exec_ is None:
                continue
            args = exec_["process"].get("arguments", "")
            if args not in seen:
                seen.add(args)
                lines.append((raw.encode(), 1))
                template = doc
    assert template is not None and len(lines) >= 5
    corpus = yaml.safe_load((FIXTURES / "privacy" / "corpus.yaml").read_text(encoding="utf-8"))
    for i, case in enumerate(corpus["secrets"][:60]):
        doc = json.loads(json.dumps(template))
        doc["process_exec"]["process"]["arguments"] = case["input"]
        doc["process_exec"]["process"]["exec_id"] = f"corpus-{i}"
        lines.append((json.dumps(doc).encode(), 1))
    return lines


def _count_compiles(monkeypatch: pytest.MonkeyPatch, clients: list[int] | None = None) -> list[int]:
    """The thread of every compile of a rule set, wherever a privacy module calls it from.

    A client's rules (client_rules.py) go to ``clients`` instead, when given (else they are not counted).
    """
    threads: list[int] = []
    real = base.compile_patterns

    def counter(into: list[int] | None) -> Any:
        def counting(patterns: Any) -> Any:
            if into is not None:
                into.append(threading.get_ident())
            return real(patterns)

        return counting

    for name, mod in list(sys.modules.items()):
        if name.startswith("stellaops_runtime.privacy") and getattr(mod, "compile_patterns", None) is real:
            mine = name == client_rules.__name__
            monkeypatch.setattr(mod, "compile_patterns", counter(clients if mine else threads))
    return threads


def _pipeline() -> Pipeline:
    cfg = parse_config({"symbols": {"enabled": False}, "attribution": {"enabled": False}})
    return Pipeline(cfg, node_name="n", fast_path=False)


def _rows(pipe: Pipeline) -> list[str]:
    deltas, windows = pipe.drain()
    return sorted(repr(d) for d in deltas) + sorted(repr(w) for w in windows)


def test_no_rule_set_is_compiled_on_the_pipeline_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rule_scan, "_RULES", [])  # as in a new agent process: no rule compiled yet
    # ...and no client's rules compiled yet
    monkeypatch.setattr(cli_options, "TOOL_RULES", client_rules.ClientRules(cli_options._BY_TOOL))
    monkeypatch.setattr(engine, "TOOL_RULES", cli_options.TOOL_RULES)
    clients: list[int] = []
    threads = _count_compiles(monkeypatch, clients)
    me = threading.get_ident()
    pipe = _pipeline()  # the agent's start-up (agent/runner.py), before it connects
    at_start = len(threads)  # each default rule once, and the two truncated-tail rules, here
    assert at_start == len(DEFAULT_PATTERNS) + 2 and set(threads) == {me}
    lines = _lines()  # the stream's execs and 60 corpus secrets: many combinations of rules
    pipe.process_json(lines)
    assert len(threads) == at_start, "a rule set was compiled on the pipeline thread"
    assert pipe.privacy.fields_redacted > 60
    # The clients the stream named had their rules compiled on this thread, each set once.
    seen = cli_options.TOOL_RULES.compiled()
    assert (
        seen and len(clients) == len({id(cli_options.TOOL_RULES[t]) for t in seen}) and set(clients) == {me}
    )
    # A second pipeline of the process compiles no default rule again, runs its lines compiling
    # nothing, and stores and counts the same.
    again = _pipeline()
    compiles = len(threads)
    assert compiles == at_start + 2  # its own tail rules
    again.process_json(lines)
    assert len(threads) == compiles
    assert again.privacy.redactions_by_pattern == pipe.privacy.redactions_by_pattern
    assert again.privacy.fields_redacted == pipe.privacy.fields_redacted
    assert _rows(again) == _rows(pipe)


def test_a_filter_without_the_default_rules_compiles_none_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rule_scan, "_RULES", [])
    threads = _count_compiles(monkeypatch)
    pipe = Pipeline(parse_config({"privacy": {"useDefaultRedactionPatterns": False}}), node_name="n")
    pipe.process_json(_lines()[:8])
    assert threads == [] and rule_scan._RULES == []
