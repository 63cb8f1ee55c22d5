"""Events run through a default PrivacyFilter, for the privacy tests: an exec's arguments, a write's buffer.

Why this exists: seven privacy test files each built the same two events by hand to see what the
filter leaves of an exec's command line or of a traced ``sys_write`` buffer (the paths Tetragon's
events take through agent/pipeline.py), not only of a bare field (``filter_field``).
"""

from __future__ import annotations

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import Argument, EventKind, ProcessInfo, RuntimeCallEvent
from stellaops_runtime.privacy import PrivacyFilter

__all__ = ["exec_arguments", "written_buffer"]


def exec_arguments(binary: str, arguments: str) -> str:
    """The arguments of an exec of ``binary`` with ``arguments``, as the default filter leaves them."""
    ev = RuntimeCallEvent(
        kind=EventKind.EXEC,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, exec_id="e1", binary=binary, arguments=arguments),
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    assert ev.process is not None
    return ev.process.arguments


def written_buffer(text: str) -> str:
    """A ``sys_write`` buffer (a ``bytes_arg``) of ``text``, as the default filter leaves it."""
    ev = RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=1,
        node_name="n",
        process=ProcessInfo(pid=7, exec_id="e1", binary="/usr/bin/app"),
        function_name="sys_write",
        arguments=[Argument(label="buf", type="bytes_arg", value=text)],
    )
    PrivacyFilter(PrivacyConfig()).apply(ev)
    return str(ev.arguments[0].value)
