"""A text filtered while the interpreter shuts down never hangs the process (the agent's exit).

Seen in tests/e2e/test_spool_shared.py under load: the agent logged "agent stopped" and then never
exited (SIGKILL after 30 s). Python's last garbage collection, at interpreter shutdown, found an
asyncio task whose exception was never retrieved and logged it; the agent's log filter redacts
every record, and the record asked for a combination of rules not compiled yet, so the privacy
filter started a thread to compile it. At shutdown a new thread never runs (Python 3.11):
``Thread.start`` waited for it for ever. No rule set is compiled after start-up any more (each
default rule is compiled once, at start: privacy/rule_scan.py), so no thread is started; the test
below runs the agent's log filter at shutdown.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cli_run import ROOT

AGENT_LOG_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    from stellaops_runtime.cli.agent import _redact_logs
    from stellaops_runtime.contracts.config import PrivacyConfig
    from stellaops_runtime.privacy.rule_scan import default_rules

    default_rules()  # as the agent's start-up does
    _redact_logs(PrivacyConfig())  # the agent's log filter, its rules built on the first traceback
    log = logging.getLogger("asyncio")
    try:
        raise ValueError("a traceback logged while the agent runs")
    except ValueError:
        log.exception("earlier")

    class Task:  # an unretrieved task exception, logged by its __del__ at shutdown
        def __del__(self):
            try:
                raise RuntimeError("login --password=hunter2SECRET ghp_abcdefghijklmnopqrstuvwxyz0123456789")
            except RuntimeError:
                log.exception("Task exception was never retrieved: postgresql://u:pw0SECRET@db/x")
            print("logged at shutdown", flush=True)

    keep = Task()
    """
)


def test_a_secret_logged_at_interpreter_shutdown_is_not_shown() -> None:
    """The agent's log filter at shutdown: the exit does not hang and no secret reaches the log.

    The message is masked by contracts/redact and the traceback by the privacy rules. At that stage
    Python refuses imports, and ``re``'s ``sub`` with a string template imports ``re`` to expand it,
    so the rules failed on every traceback and the filter failed closed: the traceback was always
    "(traceback not shown: the privacy rules failed on it: ImportError)" (review RST2 of session
    41; privacy/quoted_rest.py now replaces with functions). Before 09464b9 the process hung here.
    """
    try:
        r = subprocess.run([sys.executable, "-c", AGENT_LOG_SCRIPT], capture_output=True, text=True,
                           timeout=30, cwd=ROOT)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError("the process hung at its exit (a thread started at shutdown)") from None
    assert (r.returncode, r.stdout) == (0, "logged at shutdown\n"), r.stderr
    assert "Task exception was never retrieved: postgresql://u:***@db/x" in r.stderr, r.stderr
    assert "not shown" not in r.stderr, r.stderr
    # the traceback, through the privacy rules (ghp_ is theirs; contracts/redact masks the password too)
    assert "in __del__\nRuntimeError: login --password=*** ghp_[REDACTED]\n" in r.stderr, r.stderr
    for secret in ("hunter2SECRET", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "pw0SECRET"):
        assert secret not in r.stderr, r.stderr
