"""The agent compiles the default privacy rules before the runner's imports (issue 13).

The rules' regexes allocate megabytes of short-lived parse objects while they compile;
compiled after the runner's imports, the freed room stayed in partly used allocator pages for the
agent's life (~1.3 MB of the idle agent, docs/benchmarks.md, Seventeenth pass). A fresh
interpreter (this test process has imported everything) runs ``stella-runtime agent``'s command
up to its node check, answered "another agent holds the node" so that it returns there, and
notes, at each compile of a rule set, whether the runner had been imported yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import stellaops_runtime
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS

CODE = textwrap.dedent(
    """
    import json, sys
    from stellaops_runtime.privacy import rule_scan

    compiles = []
    real = rule_scan.compile_patterns

    def noted(patterns):
        compiles.append("stellaops_runtime.agent.runner" in sys.modules)
        return real(patterns)

    rule_scan.compile_patterns = noted  # what rule_scan.default_rules() calls, once per rule
    from stellaops_runtime.agent import node_presence

    node_presence.wait_for_node = lambda presence: False  # the run returns before building the agent
    from stellaops_runtime.cli import main

    rc = main.main(["agent", "--config", sys.argv[1]])
    print(json.dumps([rc, compiles, "stellaops_runtime.agent.runner" in sys.modules]))
    """
)


def _run(tmp_path: Path, privacy: dict[str, object]) -> tuple[int, list[bool], bool]:
    config = {
        "store": {"url": f"sqlite:///{tmp_path}/hs.db", "spoolPath": f"{tmp_path}/spool/hs.spool"},
        "symbols": {"indexCacheDir": f"{tmp_path}/index-cache"},
        "privacy": privacy,
    }
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(stellaops_runtime.__file__).resolve().parents[1]),
        "STELLA_AGENT_ALLOCATOR": "system",  # no re-exec under jemalloc: the order is the same
    }
    done = subprocess.run(
        [sys.executable, "-c", CODE, str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rc, compiles, runner = json.loads(done.stdout.splitlines()[-1])
    return rc, compiles, runner


def test_the_default_rules_are_compiled_before_the_runner_is_imported(tmp_path: Path) -> None:
    rc, compiles, runner = _run(tmp_path, {})
    assert rc == 0 and runner  # it got as far as the runner's import
    # Each rule, once, before the runner (the pipeline finds them compiled: they are process-wide).
    assert compiles == [False] * len(DEFAULT_PATTERNS)


def test_without_the_default_rules_nothing_is_compiled_early(tmp_path: Path) -> None:
    rc, compiles, runner = _run(tmp_path, {"useDefaultRedactionPatterns": False})
    assert rc == 0 and runner
    assert compiles == []
