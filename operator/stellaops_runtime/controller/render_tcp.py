"""The Tetragon tracepoint an ObservationPolicy's ``tcpState: true`` renders into.

``controller/render_policy.py`` puts it into its own object,
``stellaops-<policy>-tcp`` (a kernel without the tracepoint then fails only
that object), selecting pods at ActiveTracing. The tracepoint reads the
fields ``contracts/tcp_state.py`` lists by their index in the tracepoint's
format, and posts only the transitions a socket's own task makes in a system
call: one selector per transition (Tetragon allows five per hook, there are
five), each matching ``newstate`` and, where it matters, ``oldstate``.
Selectors are ORed, first match wins; the filters inside one are ANDed.
Changes made in softirq or timer context (a SYN-ACK or FIN arriving) are not
posted, because Tetragon would name whichever task the CPU had interrupted.
"""

from __future__ import annotations

from typing import Any

from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.controller.naming import dns_subdomain

MAX_SELECTORS = 5  # Tetragon's limit per hook


def tcp_policy_name(*, name: str) -> str:
    """The name of the object holding the TCP state tracepoint of a policy called ``name``."""
    return dns_subdomain("stellaops", name, "tcp")


def tcp_tracepoint() -> dict[str, Any]:
    """The ``sock/inet_sock_set_state`` tracepoint entry of a TracingPolicy's ``spec.tracepoints``."""
    index = tcp_state.INDEX
    selectors = []
    for old, new in tcp_state.SYSCALL_TRANSITIONS:
        match = (
            [] if old is None else [{"index": index["oldstate"], "operator": "Equal", "values": [str(old)]}]
        )
        match.append({"index": index["newstate"], "operator": "Equal", "values": [str(new)]})
        selectors.append({"matchArgs": match, "matchActions": [{"action": "Post"}]})
    assert len(selectors) <= MAX_SELECTORS
    return {
        "subsystem": tcp_state.SUBSYSTEM,
        "event": tcp_state.EVENT,
        "args": [{"index": i, "type": ty, "label": label} for label, _, i, ty in tcp_state.TETRAGON_ARGS],
        "selectors": selectors,
    }
