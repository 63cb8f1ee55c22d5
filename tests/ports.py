"""Loopback ports for servers a test starts later (an agent's metrics endpoint, a fixed replay address).

``bind(("127.0.0.1", 0))`` then close hands out a port of the kernel's ephemeral
range, and the port is free again at once: until the test's server binds it
(an agent still importing, seconds on a loaded machine), the kernel may hand
the same port to another test's ``bind(0)``, whose server then takes it first
(the agent's endpoint is off, the test times out waiting for it). Below that
range the kernel never picks a port by itself. So each pytest-xdist worker
takes ports from its own slice below the range, in turn, from a random place
in the slice (two test sessions on one machine rarely meet), skipping a port
someone holds; never the same port twice in a process until the slice is used
up. Where no such slice fits, the kernel's choice is used as before.

Import it as ``tests.ports`` everywhere, so one process has one counter.
"""

from __future__ import annotations

import os
import random
import socket
import threading

SLICE = 1500  # ports per worker
WORKERS = 8  # slices below the ephemeral range
_lock = threading.Lock()
_taken = 0  # ports handed out by this process
_start = random.randrange(SLICE)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nobody holds now and that no other test of this run will be given."""
    global _taken
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) % WORKERS if worker[2:].isdigit() else 0
    base = _ephemeral_low() - WORKERS * SLICE + index * SLICE
    if base < 1024:
        return _kernel_port()
    with _lock:
        for _ in range(SLICE):
            port = base + (_start + _taken) % SLICE
            _taken += 1
            if _bindable(port):
                return port
    return _kernel_port()
