"""tests/cli_run.py asks the CLI in the test process only what a question is, never a long-running command.

``stella-runtime agent`` re-executes its own process under jemalloc where Debian's libjemalloc2 is
installed (agent/jemalloc.py, before anything else): asked through ``cli_in_process`` it replaced the
test process itself (the pytest worker started again from its first line), and ``operator`` serves
until stopped. Both are processes: tests start them as subprocesses (tests/e2e/harness.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_run import cli_in_process

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from tests.cli_run import cli_in_process
print("started", flush=True)
try:
    cli_in_process("agent", "--config", sys.argv[1])
except ValueError as e:
    print("refused:", e, flush=True)
"""


def test_the_agent_asked_in_process_never_replaces_the_asking_process(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "missing.yaml")], capture_output=True,
                       text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert r.stdout.count("started") == 1, r.stdout + r.stderr  # twice: the process was re-executed
    assert "refused: stella-runtime agent runs as its own process" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize(
    "argv", [("agent", "--config", "x"), ("--log-level", "DEBUG", "operator"), ("tetragon-replay", "x")]
)
def test_long_running_commands_are_refused_in_process(argv: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="runs as its own process"):
        cli_in_process(*argv)


def test_a_question_is_still_asked_in_process() -> None:
    r = cli_in_process("--version")
    assert r.returncode == 0 and r.stdout.startswith("stella-runtime "), r
