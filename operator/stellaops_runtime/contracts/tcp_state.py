"""TCP state observation as a policy asks for it: the ``tcpState`` field and the tracepoint's facts.

An ObservationPolicy with ``tcpState: true`` asks for the state changes of
TCP sockets (``sock:inet_sock_set_state``), on Tetragon nodes and on nodes
running the native probes alike. This module holds what both renderings and
the Tetragon adapter must agree on, as plain data:

- the posture a tracepoint needs (ActiveTracing, as every kernel probe that
  is not a uprobe: ``contracts/posture.py``);
- which tracepoint fields the rendered Tetragon tracepoint reads, at which
  index of the tracepoint's format (Tetragon counts the four ``common_*``
  fields too) and as which Tetragon type. Only the five leading fields are
  read by index: their place is the same on every kernel since 4.16, whereas
  ``family`` and ``protocol`` moved when ``family`` was added. Family,
  protocol and addresses come from the socket itself (Tetragon type
  ``sock``, read through the ``skaddr`` pointer);
- the transitions a socket's own task makes in a system call
  (``connect``, ``listen``, ``close``/``shutdown``), the only ones Tetragon is
  asked to report: the others run in softirq or timer context, where Tetragon
  would file them under whichever task the CPU interrupted;
- the argument names and order of the events both sources produce.

No I/O, no imports from the rest of the package beyond contracts.
"""

from __future__ import annotations

from typing import Final

from stellaops_runtime.contracts.posture import Posture

FIELD: Final = "tcpState"  # spec field and probe-entry key
SUBSYSTEM: Final = "sock"
EVENT: Final = "inet_sock_set_state"
FUNCTION_NAME: Final = f"{SUBSYSTEM}/{EVENT}"  # the adapters' ``subsys/event`` form
LEVEL: Final = Posture.ACTIVE_TRACING
FIELD_DESCRIPTION: Final = (
    "Observe TCP state changes (tracepoint sock:inet_sock_set_state; ActiveTracing): the changes a "
    "socket's own process makes in connect, listen, close and shutdown, the same on Tetragon and on "
    "the native probes."
)

# Linux's TCP states (include/net/tcp_states.h): the tracepoint's oldstate/newstate values.
TCP_STATES: Final = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}  # fmt: skip
STATE_NUMBER: Final = {name: n for n, name in TCP_STATES.items()}

# (label, tracepoint field, index in the tracepoint's format, Tetragon arg type), in the order the
# rendered tracepoint lists them and Tetragon reports them (it drops the labels on tracepoint events).
TETRAGON_ARGS: Final = (
    ("oldstate", "oldstate", 5, "int32"),
    ("newstate", "newstate", 6, "int32"),
    ("sport", "sport", 7, "uint16"),
    ("dport", "dport", 8, "uint16"),
    ("sock", "skaddr", 4, "sock"),
)
INDEX: Final = {label: index for label, _, index, _ in TETRAGON_ARGS}

# Transitions made by the socket's own task in a system call, as (oldstate, newstate) with None
# for "any": connect (to SYN_SENT), listen (to LISTEN), close/shutdown (the other three).
SYSCALL_TRANSITIONS: Final = (
    (None, STATE_NUMBER["SYN_SENT"]),
    (None, STATE_NUMBER["LISTEN"]),
    (STATE_NUMBER["ESTABLISHED"], STATE_NUMBER["FIN_WAIT1"]),
    (STATE_NUMBER["CLOSE_WAIT"], STATE_NUMBER["LAST_ACK"]),
    (STATE_NUMBER["LISTEN"], STATE_NUMBER["CLOSE"]),
)

# The arguments of a TCP state event, in order, as both sources give them after adaptation:
# integers as ``int_arg``, addresses as text (``string_arg``).
EVENT_INT_ARGS: Final = ("oldstate", "newstate", "sport", "dport", "family", "protocol")
EVENT_TEXT_ARGS: Final = ("saddr", "daddr")
FAMILY_NUMBER: Final = {"AF_INET": 2, "AF_INET6": 10}
PROTOCOL_NUMBER: Final = {"IPPROTO_TCP": 6, "IPPROTO_SCTP": 132, "IPPROTO_MPTCP": 262}


def is_syscall_transition(old: int, new: int) -> bool:
    """Whether ``old`` -> ``new`` is made by the socket's own task in a system call."""
    return any((o is None or o == old) and n == new for o, n in SYSCALL_TRANSITIONS)
