"""TCP state probe on the real kernel: a client connecting to a loopback listener, both real processes.

By default the probe emits exactly the changes the operator's Tetragon
tracepoint posts (controller/render_tcp.py, from contracts/tcp_state.py),
each under the process that made it, so a policy counts the same on a
Tetragon node and a native one; every kernel event is checked against the
rendered selectors and against what the Tetragon adapters make of the same
change. With ``tcp_all_transitions`` every change is emitted: the ones the
network makes (in softirq) carry the socket's remembered owner, or nobody
(pid 0) for an accepted socket its process has not yet touched: never the
task that happened to be on the CPU.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.adapter import from_json
from stellaops_runtime.adapter.common import AdapterStats
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.render_tcp import tcp_tracepoint
from stellaops_runtime.native.config import NativeConfig
from stellaops_runtime.native.detect import Report, detect
from stellaops_runtime.native.session import run_session

pytestmark = pytest.mark.bpf
TCP_STATES = tcp_state.TCP_STATES

SERVER = r"""
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
while c.recv(100):
    pass
c.close()
s.close()
"""
CLIENT = r"""
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print(c.getsockname()[1], flush=True)
c.sendall(b"hello")
time.sleep(0.05)
c.close()
time.sleep(0.2)
"""

# What Tetragon is given of one loopback connection, in time order, with ports and pids by role.
TETRAGONS_FIVE = [
    ("CLOSE", "LISTEN", "server", "lport", 0),
    ("CLOSE", "SYN_SENT", "client", 0, "lport"),  # connect() moves to SYN_SENT before it has a port
    ("ESTABLISHED", "FIN_WAIT1", "client", "cport", "lport"),
    ("CLOSE_WAIT", "LAST_ACK", "server", "lport", "cport"),
    ("LISTEN", "CLOSE", "server", "lport", 0),
]


@pytest.fixture(scope="module")
def report() -> Report:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=str(Path(".cache/native").resolve()))
    if rep.posture < Posture.PASSIVE or not rep.ok("tracepoint sock:inet_sock_set_state"):
        pytest.skip(f"native probes give {rep.posture} here, no TCP tracepoint: {rep.missing}")
    return rep


def _connect_once(pids: dict[str, int]) -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    pids["server"], pids["lport"] = server.pid, int(server.stdout.readline())
    client = subprocess.Popen([sys.executable, "-c", CLIENT, str(pids["lport"])], stdout=subprocess.PIPE)
    out, _ = client.communicate(timeout=30)
    assert client.returncode == 0
    pids["client"], pids["cport"] = client.pid, int(out)
    assert server.wait(timeout=30) == 0


def _run(cfg: NativeConfig, report: Report) -> tuple[list[RuntimeCallEvent], dict[str, int], dict]:
    pids: dict[str, int] = {}
    res = asyncio.run(run_session(cfg, seconds=1.0, report=report, during=lambda: _connect_once(pids)))
    assert not res.error, res.error
    assert ("sock:inet_sock_set_state" in res.attached) == cfg.tcp_state, res.attached
    return res.events, pids, res.kernel_counters


def _args(ev: RuntimeCallEvent) -> dict[str, str]:
    return {a.label: a.value for a in ev.arguments}


def _ours(events: list[RuntimeCallEvent], lport: int) -> list[RuntimeCallEvent]:
    """The TCP events touching the listener's port, in kernel time order."""
    out = [
        e
        for e in events
        if e.kind is EventKind.TRACEPOINT and lport in (int(_args(e)["sport"]), int(_args(e)["dport"]))
    ]
    return sorted(out, key=lambda e: e.timestamp_ns)


def _transitions(events: list[RuntimeCallEvent], lport: int) -> list[tuple[str, str, int, int, int, str]]:
    """(old, new, pid, sport, dport, binary) of every TCP event touching the listener's port."""
    out = []
    for e in _ours(events, lport):
        a = _args(e)
        old, new = TCP_STATES[int(a["oldstate"])], TCP_STATES[int(a["newstate"])]
        out.append((old, new, e.process.pid, int(a["sport"]), int(a["dport"]), e.process.binary))
    return out


def _roles(seen: list[tuple[str, str, int, int, int, str]], pids: dict[str, int]) -> list[tuple]:
    """``seen`` with pids and ports replaced by their role, so two runs compare."""
    name = {
        pids["server"]: "server",
        pids["client"]: "client",
        pids["lport"]: "lport",
        pids["cport"]: "cport",
    }
    return [(o, n, name.get(pid, pid), name.get(sp, sp), name.get(dp, dp)) for o, n, pid, sp, dp, _ in seen]


def _rendered_posts(old: int, new: int) -> bool:
    """Whether the Tetragon tracepoint the operator renders posts ``old`` -> ``new`` (selectors ORed)."""
    values = {tcp_state.INDEX["oldstate"]: old, tcp_state.INDEX["newstate"]: new}
    return any(
        all(m["operator"] == "Equal" and str(values[m["index"]]) in m["values"] for m in sel["matchArgs"])
        for sel in tcp_tracepoint()["selectors"]
    )


def _as_tetragon_gives_it(ev: RuntimeCallEvent) -> RuntimeCallEvent:
    """The same change as Tetragon exports it (unlabelled args, socket as sock_arg), through the adapter."""
    a = _args(ev)
    family = {v: k for k, v in tcp_state.FAMILY_NUMBER.items()}[int(a["family"])]
    protocol = {v: k for k, v in tcp_state.PROTOCOL_NUMBER.items()}[int(a["protocol"])]
    sock = {
        "family": family,
        "type": "SOCK_STREAM",
        "protocol": protocol,
        "saddr": a["saddr"],
        "daddr": a["daddr"],
    }
    args = [
        {"int_arg": int(a["oldstate"])}, {"int_arg": int(a["newstate"])},
        {"uint_arg": int(a["sport"])}, {"uint_arg": int(a["dport"])}, {"sock_arg": sock},
    ]  # fmt: skip
    obj = {
        "process_tracepoint": {
            "process": {"pid": ev.process.pid, "binary": ev.process.binary},
            "subsys": tcp_state.SUBSYSTEM,
            "event": tcp_state.EVENT,
            "args": args,
        },
        "node_name": ev.node_name,
    }
    tet = from_json.adapt(orjson.loads(orjson.dumps(obj)), stats=AdapterStats())
    assert tet is not None
    return tet


def test_by_default_exactly_what_tetragon_is_given_under_the_calling_process(report: Report) -> None:
    events, pids, counters = _run(NativeConfig(tcp_state=True, exec_events=False), report)
    tcp = [e for e in events if e.kind is EventKind.TRACEPOINT]
    # every change the kernel let through, from any socket on the node, is one Tetragon is given
    for e in tcp:
        a = _args(e)
        assert _rendered_posts(int(a["oldstate"]), int(a["newstate"])), a
        assert e.process.pid != 0, e
    seen = _transitions(events, pids["lport"])
    assert _roles(seen, pids) == TETRAGONS_FIVE, seen
    for e in _ours(events, pids["lport"]):
        tet = _as_tetragon_gives_it(e)
        assert (tet.kind, tet.function_name, tet.arguments) == (e.kind, e.function_name, e.arguments)
        assert e.process.binary in (sys.executable, str(Path(sys.executable).resolve()))
        assert e.process.tid == e.process.pid  # our processes are single-threaded
        assert e.process.uid == os.getuid()
    c = counters["tcp"]
    assert c["seen"] == c["emitted"] + c["lost"] >= len(seen) and c["cgroup_filtered"] == 0, c


def test_all_transitions_each_with_its_owner(report: Report) -> None:
    events, pids, counters = _run(NativeConfig(tcp_state=True, tcp_all_transitions=True), report)
    lport, cport, server, client = pids["lport"], pids["cport"], pids["server"], pids["client"]
    seen = _transitions(events, lport)
    client_side = [(o, n, pid) for o, n, pid, sp, dp, _ in seen if sp in (cport, 0) and dp == lport]
    server_side = [(o, n, pid) for o, n, pid, sp, dp, _ in seen if (sp, dp) == (lport, cport)]
    listener = [(o, n, pid) for o, n, pid, sp, dp, _ in seen if (sp, dp) == (lport, 0)]
    assert listener == [("CLOSE", "LISTEN", server), ("LISTEN", "CLOSE", server)], seen

    # The client: connect() names it; the rest (SYN-ACK, FIN exchange) carry the remembered owner.
    assert {pid for _, _, pid in client_side} == {client}, seen
    states = [(o, n) for o, n, _ in client_side]
    assert states[:3] == [("CLOSE", "SYN_SENT"), ("SYN_SENT", "ESTABLISHED"), ("ESTABLISHED", "FIN_WAIT1")]
    assert states[-1][1] == "CLOSE" and ("FIN_WAIT1", "FIN_WAIT2") in states, states

    # The accepted socket: unattributed until the server's close(), then the server.
    assert server_side[0] == ("LISTEN", "SYN_RECV", 0), server_side
    assert ("SYN_RECV", "ESTABLISHED", 0) in server_side and ("ESTABLISHED", "CLOSE_WAIT", 0) in server_side
    assert server_side[-2:] == [("CLOSE_WAIT", "LAST_ACK", server), ("LAST_ACK", "CLOSE", server)]
    for e in events:
        if e.kind is EventKind.TRACEPOINT and e.process.pid == 0:
            assert e.process.binary == "" and e.container is None
    ev = next(e for e in events if e.kind is EventKind.TRACEPOINT and e.process.pid == server)
    assert ev.function_name == "sock/inet_sock_set_state" and ev.source == "bcc"
    assert _args(ev)["saddr"] == "127.0.0.1" and _args(ev)["family"] == "2" and _args(ev)["protocol"] == "6"
    assert len(seen) == 12, seen  # each transition once: 2 listener, 5 client, 5 accepted
    # Of the twelve, those Tetragon is given are the five the default emits, pid for pid.
    n = tcp_state.STATE_NUMBER
    given = [t for t in seen if _rendered_posts(n[t[0]], n[t[1]])]
    assert _roles(given, pids) == TETRAGONS_FIVE, seen
    c = counters["tcp"]
    assert c["emitted"] >= len(seen) and c["seen"] == c["emitted"] + c["lost"], c


def _own_cgroup_id() -> int | None:
    """The cgroup v2 id (inode number) of our cgroup (children start there too); None without v2."""
    mounts = [ln.split() for ln in Path("/proc/self/mounts").read_text().splitlines()]
    v2 = next((m[1] for m in mounts if m[2] == "cgroup2"), None)
    line = next(
        (ln for ln in Path("/proc/self/cgroup").read_text().splitlines() if ln.startswith("0::")), None
    )
    if v2 is None or line is None:
        return None
    return os.stat(v2 + line[3:].rstrip("/")).st_ino


def test_cgroup_filter_and_off_switch(report: Report) -> None:
    """Not asked for: nothing seen. Our cgroup allowed: the caller's cgroup decides; pid 0 never passes."""
    events, pids, counters = _run(NativeConfig(tcp_state=False, exec_events=False), report)
    assert _transitions(events, pids["lport"]) == [] and counters["tcp"]["seen"] == 0
    own = _own_cgroup_id()
    if own is None:
        pytest.skip("needs a cgroup v2 hierarchy")
    mine = (own,)
    cfg = NativeConfig(tcp_state=True, exec_events=False, cgroup_allow=mine, force_perf_buffer=True)
    events, pids, counters = _run(cfg, report)
    assert _roles(_transitions(events, pids["lport"]), pids) == TETRAGONS_FIVE  # on the perf buffer too
    cfg = NativeConfig(tcp_state=True, exec_events=False, cgroup_allow=mine, tcp_all_transitions=True)
    events, pids, counters = _run(cfg, report)
    seen = _transitions(events, pids["lport"])
    assert len(seen) == 9 and all(pid in (pids["client"], pids["server"]) for _, _, pid, *_ in seen), seen
    assert counters["tcp"]["cgroup_filtered"] >= 3, counters


def test_token_bucket_applies_to_the_callers_cgroup(report: Report) -> None:
    """One token a second for our cgroup: the five changes come faster, so some are rate limited."""
    own = _own_cgroup_id()
    if own is None:
        pytest.skip("needs a cgroup v2 hierarchy")
    cfg = NativeConfig(tcp_state=True, exec_events=False, cgroup_allow=(own,), rate_per_second=1, burst=1)
    events, pids, counters = _run(cfg, report)
    got = _roles(_transitions(events, pids["lport"]), pids)
    assert len(got) < len(TETRAGONS_FIVE) and [t for t in TETRAGONS_FIVE if t in got] == got, got
    assert counters["tcp"]["rate_limited"] >= len(TETRAGONS_FIVE) - len(got), counters


def test_missing_tracepoint_is_reported_and_the_rest_loads(
    report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without sock:inet_sock_set_state (an empty tracefs stands in for it): exec still works."""
    from stellaops_runtime.native import loader

    monkeypatch.setattr(loader, "TRACEFS_DIRS", ("/nonexistent-tracefs",))
    pids: dict[str, int] = {}
    res = asyncio.run(
        run_session(
            NativeConfig(tcp_state=True), seconds=1.0, report=report, during=lambda: _connect_once(pids)
        )
    )
    assert not res.error, res.error
    assert (
        "sock:inet_sock_set_state",
        "the tracepoint is not in tracefs (kernel 4.16+ has it)",
    ) in res.failed
    assert "sock:inet_sock_set_state" not in res.attached
    assert any(e.kind is EventKind.EXEC and e.process.pid == pids["server"] for e in res.events)
    assert not any(e.kind is EventKind.TRACEPOINT for e in res.events)
