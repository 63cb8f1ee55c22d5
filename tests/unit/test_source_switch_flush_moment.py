"""A killed agent's watch record claims what its last flush stored, not an older sample (SW4, s43).

While the native probes run, the watch record's moment (agent/watch_record.py)
is also where the next agent cuts the probes' loads (agent/source_switch_loads.py):
Tetragon's cached calls stamped before it are skipped as the probes' own, those
after it counted. The record took the latest sample (about once a second) its
last flush covered, so the calls the probes had counted between that sample and
the flush's start were stored, yet counted again from Tetragon's cache after a
kill. A flush now samples the source's watching moment as it starts: when the
pipeline has taken everything queued by then, the flush covers it.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from stellaops_runtime.agent.source_switch import TETRAGON
from stellaops_runtime.agent.watch_record import WatchRecord, record_path
from tests.unit.test_source_switch_overlap import S, assert_counted_without, stamped
from tests.unit.test_source_switch_overlap_attach import on_bcc, restarted, switch


def test_a_killed_agents_record_claims_what_its_last_flush_stored(tmp_path: Any) -> None:
    """A's probes had read their buffer whole up to t0 + 2 s at the record's last sample, and up to
    t0 + 9 s when a flush started with everything queued taken: it stored the calls up to there.
    Seen failing before the fix: the record claimed t0 + 2 s, and B counted the crc32 calls of
    [t0 + 2 s, t0 + 9 s) again from Tetragon's cache."""
    events = stamped()
    t0 = min(t for _, t, _ in events)
    spool = str(tmp_path / "spool")
    # drops marked through t0 + 30 s, the loads on disk
    a, probes = on_bcc(spool, t0, queued_ns=t0 + 2 * S, noted_ns=t0 + 30 * S, in_flight_ns=t0 + 30 * S)
    rec = WatchRecord(record_path(spool), node="n", agent_id="n/a", queue=a.queue)
    rec.source = a  # agent/watch_record_attach.py attach_watch_record
    rec.tick(a)  # the outage marker's sample: t0 + 2 s
    for _ in range(3):  # the probes' next polls, read whole up to t0 + 9 s ...
        a.queue.put(b"record")
    probes.queued_ns = t0 + 9 * S
    a.queue.take(10)  # ... taken by the pipeline
    rec.flushed(rec.flush_starts(), True)  # stored; then A is killed
    alive = rec._written[0]
    assert alive == t0 + 9 * S, (alive - t0) / S

    twice = [x for x in events if x[2] == "crc32" and x[1] < t0 + 9 * S]
    assert len([x for x in twice if x[1] >= t0 + 2 * S]) > 5
    assert_counted_without(restarted(spool, alive, events), events, twice)

    # never more than a flush stored: what is queued and not taken as it starts, or a flush whose
    # COMMIT acknowledgement was lost (not ok), moves nothing
    a.queue.put(b"record")
    probes.queued_ns = t0 + 12 * S
    rec.flushed(rec.flush_starts(), True)  # the record queued at t0 + 12 s is not in this flush
    assert rec._written[0] == t0 + 9 * S
    a.queue.take(10)
    probes.queued_ns = t0 + 15 * S
    rec.flushed(rec.flush_starts(), False)
    assert rec._written[0] == t0 + 9 * S
    rec.flushed(rec.flush_starts(), True)  # the retry stored it: up to where that flush began
    assert rec._written[0] == t0 + 15 * S


def test_a_flush_samples_no_moment_of_tetragons_stream(tmp_path: Any) -> None:
    """Tetragon's own outages (a reconnect within the fallback delay) and loop stalls are handed to
    the pipeline by the outage marker's tick, which samples only after marking them; a flush starting
    between two ticks must not claim past one not marked yet (killed then, its hole would be in no
    gap). Seen failing before the fix: the flush sampled the stream's moment past the outage."""
    from stellaops_runtime.agent.watch_record import WatchRecord as Record

    q = switch().queue
    src = SimpleNamespace(watching_ns=lambda: 100 * S)  # a stream: delivering since its reconnect
    rec = Record(record_path(str(tmp_path / "spool")), node="n", agent_id="n/a", queue=q)
    rec.source = src
    rec.tick(src)  # the marker's tick: outages marked, then sampled
    src.watching_ns = lambda: 200 * S  # reconnected after an outage the next tick marks
    rec.flushed(rec.flush_starts(), True)
    assert rec._written[0] == 100 * S

    # the switch itself, with Tetragon as its source, gives a flush no moment (RSW4: the stand-in above
    # has no flush_moment_ns at all, so it alone would not see the switch give the stream's)
    sw = switch()
    sw.tetragon.watching_ns = lambda: 300 * S  # type: ignore[method-assign]
    assert sw.mode == TETRAGON and sw.watching_ns() == 300 * S
    assert sw.flush_moment_ns() is None
