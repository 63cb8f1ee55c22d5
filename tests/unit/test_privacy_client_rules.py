"""A client's rules are compiled the first time the client is seen, and redact as if compiled at import.

privacy/client_rules.py: the ~70 sets of command-line clients' rules were all compiled when the
privacy package was imported (issue 13: the idle agent keeps what it never uses). Now each set is
compiled on its first lookup; the regex is the same, so every corpus case is redacted the same.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import cli_options, engine
from stellaops_runtime.privacy.base import SecretPattern, compile_patterns, number_groups
from stellaops_runtime.privacy.client_rules import ClientRules
from stellaops_runtime.privacy.filter import PrivacyFilter

FIXTURES = Path(__file__).parents[1] / "fixtures" / "privacy"
OPERATOR = Path(__file__).parents[2] / "operator"

# In a new interpreter: import the privacy filter, build the default filter (as the agent's pipeline
# does), filter a field naming no client, then mysql's arguments with mysql as the executed binary.
_FRESH = """
import json
from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.privacy.cli_options import TOOL_RULES
from stellaops_runtime.privacy.filter import PrivacyFilter
pf = PrivacyFilter(PrivacyConfig())
steps = [sorted(TOOL_RULES.compiled())]
out = [pf.filter_field("python3 -m http.server --password=S3cretA")]
steps.append(sorted(TOOL_RULES.compiled()))
out.append(pf.filter_field("-uroot -pS3cretB shop", tool="mysql"))
steps.append(sorted(TOOL_RULES.compiled()))
print(json.dumps([steps, out]))
"""


def test_no_client_s_rules_are_compiled_until_the_client_is_seen() -> None:
    run = subprocess.run(
        [sys.executable, "-c", _FRESH],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(OPERATOR), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    (at_build, no_client, after_mysql), out = json.loads(run.stdout)
    assert at_build == [] and no_client == []
    assert out == ["python3 -m http.server --password=[REDACTED]", "-uroot -p[REDACTED] shop"]
    # mysql's set, shared by its family, and nothing else
    family = {t for t in cli_options.TOOLS if cli_options.TOOL_RULES[t] is cli_options.TOOL_RULES["mysql"]}
    assert "mariadb" in family and set(after_mysql) == family


def _eager() -> dict[str, Any]:
    """Every client's regex compiled at once, as the import did before (one per set of alternatives)."""
    compiled: dict[tuple[str, ...], Any] = {}
    out: dict[str, Any] = {}
    for tool, alts in cli_options._BY_TOOL.items():
        if alts not in compiled:
            source = number_groups("|".join(alts))
            compiled[alts] = compile_patterns([SecretPattern("cli_option", source)]).regex
        out[tool] = compiled[alts]
    return out


def _cases() -> list[tuple[str, str]]:
    """(binary, text) of every case of the privacy corpora, then of every string written in the privacy
    tests (their inline cases), each as the arguments of a shell and of the clients its file names."""
    out: list[tuple[str, str]] = []
    for name in ("corpus.yaml", "cli_corpus.yaml", "formats_corpus.yaml"):
        doc = yaml.load((FIXTURES / name).read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
        for part in doc.values():
            for c in part if isinstance(part, list) else ():
                if isinstance(c, str):
                    out.append(("/bin/sh", c))
                elif isinstance(c, dict) and isinstance(c.get("input"), str):
                    out.append((str(c.get("binary", "/bin/sh")), c["input"]))
    here = Path(__file__).parent
    for path in sorted([*here.glob("test_privacy*.py"), *here.glob("test_redact*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        texts = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
        tools = sorted({t for t in texts if t in cli_options.TOOLS})
        out += [(b, t) for t in dict.fromkeys(texts) for b in ("/bin/sh", *tools)]
    return sorted(set(out))


def _redact_all(cases: list[tuple[str, str]]) -> list[str]:
    pf = PrivacyFilter(PrivacyConfig())
    out = []
    for binary, text in cases:
        ev = RuntimeCallEvent(
            kind=EventKind.EXEC,
            timestamp_ns=1,
            node_name="n",
            process=ProcessInfo(pid=7, binary=binary, arguments=text),
        )
        pf.apply(ev)
        out.append(ev.process.arguments)
    return out


def test_the_corpora_are_redacted_the_same_with_rules_compiled_at_first_sight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cases = _cases()
    assert len(cases) > 2000
    eager = _eager()
    monkeypatch.setattr(engine, "TOOL_RULES", eager)
    before = _redact_all(cases)
    lazy = ClientRules(cli_options._BY_TOOL)
    monkeypatch.setattr(engine, "TOOL_RULES", lazy)
    after = _redact_all(cases)
    assert after == before
    assert sum(a != t for a, (_, t) in zip(after, cases, strict=True)) > 1000  # most hold a secret
    # The corpora name most clients; each regex is the one the import compiled, shared alike.
    seen = lazy.compiled()
    assert len(seen) > len(lazy) // 2
    assert all((lazy[t].pattern, lazy[t].flags) == (eager[t].pattern, eager[t].flags) for t in seen)
    groups = {frozenset(u for u in lazy if lazy[u] is lazy[t]) for t in lazy}
    assert groups == {frozenset(u for u in eager if eager[u] is eager[t]) for t in eager}


def test_threads_that_see_a_new_client_at_once_compile_its_rules_once() -> None:
    rules = ClientRules(cli_options._BY_TOOL)
    family = [t for t in cli_options.TOOLS if cli_options.TOOL_RULES[t] is cli_options.TOOL_RULES["vault"]]
    start = threading.Barrier(8)
    got: list[Any] = []

    def look(i: int) -> None:
        start.wait()
        got.append(rules[family[i % len(family)]])

    threads = [threading.Thread(target=look, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 8 and len({id(rx) for rx in got}) == 1
    assert rules.compiled() == frozenset(family)
