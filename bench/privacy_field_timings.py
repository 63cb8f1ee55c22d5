"""Per-event cost of the privacy filter on typical and hostile argument text (docs/benchmarks.md).

It was a unit test that printed timings and checked nothing; a timing is a benchmark's job, and
the suite takes no timing tests. Each row times ``PrivacyFilter.apply`` on 5,000 events with the
default rules: repeated text (the filter's per-process cache), new text each time (no cache), a
bearer JWT, and a 4 KiB argument. Machines here are shared: compare rows of one run.
Usage::

    .venv/bin/python bench/privacy_field_timings.py [--events N]
"""

from __future__ import annotations

import argparse
import timeit

from stellaops_runtime.contracts.config import PrivacyConfig
from stellaops_runtime.contracts.events import (
    ContainerInfo,
    EventKind,
    PodInfo,
    ProcessInfo,
    RuntimeCallEvent,
    StackFrame,
)
from stellaops_runtime.privacy import PrivacyFilter

INNOCENT = "--port 8080"
TYPICAL = "/usr/local/bin/app --config /etc/app/config.yaml --workers 4 --log-level=info"
BEARER = "--port 8080 -H Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl"
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def event(arguments: str) -> RuntimeCallEvent:
    return RuntimeCallEvent(
        kind=EventKind.KPROBE,
        timestamp_ns=1,
        node_name="node-1",
        process=ProcessInfo(pid=42, binary="/usr/bin/app", arguments=arguments, cwd="/app"),
        container=ContainerInfo(id="abc", image_digest="sha256:" + "0" * 64),
        pod=PodInfo(namespace="shop", name="app-1"),
        function_name="__x64_sys_openat",
        module=LIBC,
        arguments=[],
        user_stack=[StackFrame(module=LIBC, symbol="open", offset=0x10)],
    )


def per_event_us(pf: PrivacyFilter, arguments: str, *, fresh: bool, n: int) -> float:
    """Microseconds per ``apply``; ``fresh``: every event has new text (no per-process cache hit)."""
    events = [event(f"{arguments} {i}" if fresh else arguments) for i in range(n)]
    it = iter(events)
    return timeit.timeit(lambda: pf.apply(next(it)), number=n) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000)
    n = ap.parse_args().events
    pf = PrivacyFilter(PrivacyConfig())
    rows = {
        "no arguments": ("", False),
        "innocent short, repeated": (INNOCENT, False),
        "innocent short, new each time": (INNOCENT, True),
        "typical command line, new each time": (TYPICAL, True),
        "bearer JWT, repeated": (BEARER, False),
        "4 KiB innocent, new each time": ("/opt/x " * 585, True),
    }
    for name, (text, fresh) in rows.items():
        print(f"privacy filter, {name}: {per_event_us(pf, text, fresh=fresh, n=n):.2f} us/event")


if __name__ == "__main__":
    main()
