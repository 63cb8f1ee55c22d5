"""Run the real ``stella-runtime`` CLI as a subprocess and read its JSON answer.

The answer tests ask the CLI what a user would (``evidence``, ``query observed``) over a store
they filled; each had its own copy of this runner. A traceback on stderr fails the test: the CLI
must answer with an exit code and a clear message, never a crash.

:func:`cli_in_process` asks the same entry point (cli/main.py's ``main``, which the console
script and ``python -m`` call as ``sys.exit(main())``) inside the test process: an answer-level
case then costs the question, not a new interpreter importing SQLAlchemy (~0.35 s of CPU each).
What lives at the process level (exit status, closed stdout) keeps a real subprocess, and so do
the long-running commands (``agent`` re-executes its process under jemalloc, ``operator`` and
``tetragon-replay`` serve until stopped): :func:`cli_in_process` refuses them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROCESSES = frozenset({"agent", "operator", "tetragon-replay"})  # they run until stopped: never here


def cli_json(*args: str, timeout: float = 180, real: bool = True) -> tuple[int, Any]:
    """Exit code and parsed stdout (None when empty) of ``stella-runtime <args>``: a subprocess, or in
    this process when not ``real`` (:func:`stella`)."""
    r = stella(*args, real=real, timeout=timeout)
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else None


def observed_json(url: str, image: str, function: str, *extra: str, real: bool = True) -> tuple[int, Any]:
    """``query observed --json`` of ``function`` in ``image`` (``extra``: a period, a purl): exit code
    and answer, from a subprocess or, when not ``real``, in this process (:func:`stella`). An exit
    other than 0, 1 or 3 is an error, not an answer: the test fails with stderr."""
    argv = ("query", "observed", "--store", url, "--image", image, "--function", function, "--json", *extra)
    r = stella(*argv, real=real, timeout=60)
    assert r.returncode in (0, 1, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``stella-runtime <args>`` through its own ``main`` in this process, as a finished process.

    stdout and stderr are captured, and the root logger is handed to ``main`` bare (as in a new
    process), so its ``logging.basicConfig`` sends the logs to the captured stderr as the CLI
    does; pytest's handlers are put back afterwards. A ``SystemExit`` is its exit status.
    ``agent``, ``operator`` and ``tetragon-replay`` raise ValueError: asked here, the agent replaced
    the test process itself (agent/jemalloc.py's re-exec, pytest's output going to its capture file)."""
    from stellaops_runtime.cli import main

    if (command := main._command_of(list(args))) in PROCESSES:
        raise ValueError(f"stella-runtime {command} runs as its own process: start it as a subprocess")

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main.main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, int | None):  # the interpreter prints such a code
                    print(e.code, file=err)
    finally:
        for added in root.handlers:
            added.close()
        root.handlers = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["stella-runtime", *args], code, out.getvalue(), err.getvalue())


def stella(*args: str, real: bool = False, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``stella-runtime <args>``: in this process (:func:`cli_in_process`), or ``real``ly as a
    subprocess (a new interpreter, what a file keeps for one question so the process level is
    asked too). A traceback on stderr fails the test either way."""
    if real:
        r = subprocess.run([sys.executable, "-m", "stellaops_runtime.cli.main", *args], capture_output=True,
                           text=True, timeout=timeout, cwd=ROOT)  # fmt: skip
    else:
        r = cli_in_process(*args)
    assert "Traceback" not in r.stderr, r.stderr
    return r
