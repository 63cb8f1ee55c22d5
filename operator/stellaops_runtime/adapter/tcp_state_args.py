"""Tetragon's TCP state tracepoint events in the argument shape the native probes give.

The operator renders ``tcpState: true`` into the tracepoint
``sock/inet_sock_set_state`` reading ``oldstate``, ``newstate``, ``sport``,
``dport`` and the socket (``controller/render_tcp.py``). Tetragon reports
tracepoint arguments without their labels, 16-bit fields as ``uint_arg`` and
the socket as a ``sock_arg``, which the adapters render as one text
(``adapter/common.sock_text``: ``AF_INET IPPROTO_TCP 10.0.0.1:40000 ->
10.0.0.2:443``). The native probes give the tracepoint's own fields, named
(``native/events.py``). :func:`normalize` rewrites a Tetragon event's
arguments into that shape, so the same state change becomes the same
RuntimeCallEvent from either source:

``oldstate``, ``newstate``, ``sport``, ``dport``, ``family``, ``protocol``
(``int_arg``, decimal) then ``saddr``, ``daddr`` (``string_arg``, as Python's
``ipaddress`` writes them; an IPv4-mapped IPv6 address, which Go prints as
dotted IPv4, is turned back into the IPv6 address first).

Ports, states and addresses are taken as the tracepoint reported them; the
socket gives family, protocol and addresses (its ports are not used). Pure:
an event in another shape is left as it is and the call says so.
"""

from __future__ import annotations

import ipaddress

from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.events import Argument, EventKind, RuntimeCallEvent

SHAPE = (*tcp_state.EVENT_INT_ARGS, *tcp_state.EVENT_TEXT_ARGS)
_TETRAGON_TYPES = ("int_arg", "int_arg", "uint_arg", "uint_arg", "sock_arg")
_TETRAGON_LABELS = tuple(label for label, _, _, _ in tcp_state.TETRAGON_ARGS)
# A module global: on Python 3.11 reading an enum member through its class costs ~90 ns, a global ~7 ns
# (is_tcp_state runs on every tracepoint event).
_TRACEPOINT = EventKind.TRACEPOINT


class _Unrecognised(ValueError):
    pass


def _int(text: str, lo: int, hi: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise _Unrecognised(text) from None
    if not lo <= v <= hi:
        raise _Unrecognised(text)
    return v


def _address(text: str, family: int) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise _Unrecognised(text) from None
    if family == 10 and ip.version == 4:  # Go prints ::ffff:a.b.c.d as a.b.c.d
        ip = ipaddress.IPv6Address(f"::ffff:{ip}")
    if (ip.version == 4) != (family == 2):
        raise _Unrecognised(text)
    return str(ip)


def _sock(text: str) -> tuple[int, int, str, str]:
    """Family, protocol and the two addresses of ``sock_text``'s rendering."""
    left, sep, right = text.partition(" -> ")
    head, _, src = left.rpartition(" ")
    names = head.split()
    if not sep or len(names) != 2:
        raise _Unrecognised(text)
    family = tcp_state.FAMILY_NUMBER.get(names[0])
    protocol = tcp_state.PROTOCOL_NUMBER.get(names[1])
    if family is None or protocol is None:
        raise _Unrecognised(text)
    saddr = _address(src.rpartition(":")[0], family)
    daddr = _address(right.rpartition(":")[0], family)
    return family, protocol, saddr, daddr


def _rewrite(args: list[Argument]) -> list[Argument]:
    if len(args) != len(_TETRAGON_TYPES):
        raise _Unrecognised(f"{len(args)} arguments")
    for a, ty, label in zip(args, _TETRAGON_TYPES, _TETRAGON_LABELS, strict=True):
        if a.type != ty or a.label not in ("", label):
            raise _Unrecognised(f"{a.label}:{a.type}")
    old = _int(args[0].value, 1, 12)
    new = _int(args[1].value, 1, 12)
    sport = _int(args[2].value, 0, 65535)
    dport = _int(args[3].value, 0, 65535)
    family, protocol, saddr, daddr = _sock(args[4].value)
    ints = (old, new, sport, dport, family, protocol)
    out = [
        Argument(label=k, type="int_arg", value=str(v))
        for k, v in zip(tcp_state.EVENT_INT_ARGS, ints, strict=True)
    ]
    out += [Argument(label="saddr", type="string_arg", value=saddr)]
    out += [Argument(label="daddr", type="string_arg", value=daddr)]
    return out


def is_tcp_state(ev: RuntimeCallEvent) -> bool:
    return ev.kind is _TRACEPOINT and ev.function_name == tcp_state.FUNCTION_NAME


def normalize(ev: RuntimeCallEvent) -> bool:
    """Rewrite a Tetragon TCP state event's arguments in place into the native shape.

    True when ``ev`` is a TCP state event now in the shared shape (already
    was, or rewritten); False when it is not a TCP state event, or one whose
    arguments are not the rendered tracepoint's (then it is left unchanged).
    """
    if not is_tcp_state(ev):
        return False
    if tuple(a.label for a in ev.arguments) == SHAPE:
        return True
    try:
        ev.arguments = _rewrite(ev.arguments)
    except _Unrecognised:
        return False
    return True
