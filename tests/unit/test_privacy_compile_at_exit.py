"""A text filtered while the interpreter shuts down never hangs the process (the agent's exit).

Seen in tests/e2e/test_spool_shared.py under load: the agent logged "agent stopped" and then never
exited (SIGKILL after 30 s). Python's last garbage collection, at interpreter shutdown, found an
asyncio task whose exception was never retrieved and logged it; the agent's log filter redacts
every record, and the record asked for a combination of rules not compiled yet, so
privacy/compiled_sets.py started its compile thread. At shutdown a new thread never runs
(Python 3.11): ``Thread.start`` waited for it for ever. The faulthandler dump of the hung agent
ended in ``compiled_sets.for_mask`` -> ``threading.start`` under ``Garbage-collecting``. Now no
thread is started while the interpreter finalizes (the whole set redacts the text the same).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.cli_run import ROOT

SCRIPT = textwrap.dedent(
    """
    from stellaops_runtime.privacy.compiled_sets import DEFAULT_SETS

    DEFAULT_SETS.whole()  # compiled at start-up, as the agent's pipeline does

    class LoggedAtShutdown:  # an unretrieved task exception, logged by its __del__
        def __del__(self):
            DEFAULT_SETS.for_mask(0b101)  # a combination nobody asked for yet
            print("filtered at shutdown", flush=True)

    keep = LoggedAtShutdown()  # a module global: collected while the interpreter finalizes
    """
)


def test_a_new_rule_combination_asked_at_interpreter_shutdown_does_not_hang_the_exit() -> None:
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30,
                           cwd=ROOT)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError("the process hung at its exit (a thread started at shutdown)") from None
    assert (r.returncode, r.stdout) == (0, "filtered at shutdown\n"), r.stderr
