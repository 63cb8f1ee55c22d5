"""A later record of a node: a test that means "the node's agent kept running" says so.

An agent that is down writes nothing, so the store takes a node's watched time to end at its latest
record (store/coverage_open.py): once a question is more than three windows after it, the rest of
that record's UTC day is an ``open`` gap of the node, and answers over it are unknown. A test whose
point is a day or a period its nodes watched throughout writes, after its windows, what a live agent
would have written: a window of another image on the node (:data:`ALIVE_IMAGE`, which no test asks
about). It takes nothing away from the image asked about and adds no day of it.

- :func:`alive_after`: at a fixed moment after the test's windows (a test of past, fixed dates:
  its answers do not depend on the time of day it runs);
- :func:`alive_now`: at the moment the test runs, for a test of "today" (the question comes within
  the three-window grace of the record);
- :func:`each_node_alive_after`: into a store an end-to-end test's agents filled and left (they exit
  after their stream), a record of each node the UTC day after its own latest row;
- :func:`proof_now`: a node whose agent wrote a proof of life (``node_liveness``, migration 0015) is
  judged by it, not by its records (store/coverage_open.py): a test of "today" whose real agent
  stopped says the node ran on with a proof of life written now, as its live agent's next flush
  would (the agent's own statement, store/node_liveness.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.node_liveness import Liveness, write_liveness
from stellaops_runtime.store.queries import _as_utc
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows

ALIVE_IMAGE = "sha256:" + ("a11ce" * 13)[:64]  # another image the node ran: no test asks about it
WINDOW_SECONDS = 60


def alive_after(nodes: str | Iterable[str], at_ns: int) -> list[ObservationWindow]:
    """A record of each of ``nodes`` starting at ``at_ns`` (nanoseconds since the epoch)."""
    names = [nodes] if isinstance(nodes, str) else list(nodes)
    return [
        ObservationWindow(ALIVE_IMAGE, n, at_ns, 1, Posture.EBPF_DEEP, WINDOW_SECONDS, "tetragon")
        for n in names
    ]


def alive_now(nodes: str | Iterable[str]) -> list[ObservationWindow]:
    """A record of each of ``nodes`` starting now (the grace, three windows, runs from its start)."""
    return alive_after(nodes, datetime_to_ns(dt.datetime.now(dt.UTC)))


def each_node_alive_after(url: str) -> None:
    """Write into the store at ``url`` a record of each node at the start of the UTC day after its own
    latest row (per node: an agent's own gap rows are stamped at the wall clock, a replayed stream's
    windows at its recorded day)."""
    with open_store(url) as s, s.engine.connect() as c:
        o = observation_windows.c
        lasts = c.execute(sa.select(o.node_name, sa.func.max(o.window_start)).group_by(o.node_name)).all()
    day = 86_400 * 1_000_000_000
    rows = []
    for node, last in lasts:
        ns = datetime_to_ns(_as_utc(last))
        rows += alive_after(node, ns - ns % day + day)
    with open_store(url) as s:
        s.write([], rows)


def proof_now(url: str, nodes: str | Iterable[str]) -> None:
    """Write a proof of life of each of ``nodes`` now: an agent started an hour ago that watched and
    stored everything up to now (flushes every 10 s, one-minute windows)."""
    names = [nodes] if isinstance(nodes, str) else list(nodes)
    now = datetime_to_ns(dt.datetime.now(dt.UTC))
    hour = 3600
    with open_store(url) as s:
        for n in names:
            write_liveness(s.db, Liveness(n, f"{n}/alive", hour, now - hour * 10**9, 0.0, now, 10.0, 60))
