"""``stella-runtime probes run --tcp`` as a user runs it: a subprocess on the real kernel, real sockets.

A client process keeps connecting to a loopback listener while the CLI runs;
the CLI's JSON lines must name that client, by pid, for its connect()
(CLOSE -> SYN_SENT to the listener's port), and its summary must list the
tracepoint as attached. The text form prints the states by name.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from stellaops_runtime.cli.probes import _event_text
from stellaops_runtime.contracts import tcp_state
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.native import records
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.events import Decoder

CACHE = str(Path(".cache/native").resolve())
SERVER = r"""
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""
CLIENT = r"""
import socket, sys, time
end = time.monotonic() + 120
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
    except OSError:
        pass
    time.sleep(0.05)
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "probes", *args],
        capture_output=True, text=True, timeout=180, check=False,
        env=dict(os.environ, STELLA_CACHE_DIR=CACHE),
    )  # fmt: skip


@pytest.mark.bpf
def test_run_tcp_json_names_the_connecting_process() -> None:
    rep = detect(mount_tracefs=True, compile_test=True, cache_dir=CACHE)
    if rep.posture < Posture.PASSIVE or not rep.ok("tracepoint sock:inet_sock_set_state"):
        pytest.skip(f"native probes give {rep.posture} here, no TCP tracepoint: {rep.missing}")
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert server.stdout is not None
        lport = int(server.stdout.readline())
        client = subprocess.Popen([sys.executable, "-c", CLIENT, str(lport)])
        r = cli("run", "--seconds", "2", "--json", "--tcp", "--no-exec")
    finally:
        for p in (client, server):
            if p is not None:
                p.kill()
                p.wait(timeout=30)
    assert r.returncode == 0, r.stderr
    lines = [orjson.loads(line) for line in r.stdout.splitlines()]
    summary = lines[-1]["summary"]
    assert "sock:inet_sock_set_state" in summary["attached"], summary
    tcp = [e for e in lines[:-1] if e["function_name"] == tcp_state.FUNCTION_NAME]
    assert tcp and all(e["kind"] == "tracepoint" and e["source"] == "bcc" for e in tcp)
    connects = []
    for e in tcp:
        a = {arg["label"]: arg["value"] for arg in e["arguments"]}
        if (a["oldstate"], a["newstate"], a["dport"]) == ("7", "2", str(lport)):
            connects.append((e["process"]["pid"], a["daddr"], a["family"]))
    assert connects, tcp[:5]
    assert set(connects) == {(client.pid, "127.0.0.1", "2")}  # type: ignore[union-attr]
    # What Tetragon is asked for (changes made in a system call) names the calling process here too.
    ours = {client.pid, server.pid}  # type: ignore[union-attr]
    in_syscall = 0
    for e in tcp:
        a = {arg["label"]: arg["value"] for arg in e["arguments"]}
        if str(lport) in (a["sport"], a["dport"]) and tcp_state.is_syscall_transition(
            int(a["oldstate"]), int(a["newstate"])
        ):
            in_syscall += 1
            assert e["process"]["pid"] in ours, e
    assert in_syscall > len(connects)  # besides the connects, the closes of both ends
    assert summary["kernel"]["tcp"]["emitted"] >= len(tcp)


def test_text_form_prints_the_states_by_name() -> None:
    s = ipaddress.ip_address("10.0.0.1").packed.ljust(16, b"\0")
    d = ipaddress.ip_address("10.0.0.2").packed.ljust(16, b"\0")
    head = (records.KIND_TCP, records.FLAG_TCP_ATTRIBUTED, 0, 42, 42, 0, 1, 0, b"curl")
    rec = records.STRUCTS[records.KIND_TCP].pack(*head, 2, 1, 40000, 443, 2, 6, s, d)
    ev = Decoder(node_name="n", targets=[], wall_minus_monotonic_ns=0).decode(rec)
    assert ev is not None
    assert _event_text(ev) == (
        "tracepoint pid=42 tid=42 binary= sock/inet_sock_set_state "
        "SYN_SENT->ESTABLISHED 10.0.0.1:40000->10.0.0.2:443"
    )
