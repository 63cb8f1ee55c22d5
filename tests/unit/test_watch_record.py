"""agent/watch_record.py: the node's last-watching record is written safely, and a hostile one is ignored.

The record makes the hole between two agents on a node a gap; a record that
cannot be trusted must be ignored and counted, never crash the agent, and
never move the gap's start (a future time would hide the hole).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from stellaops_runtime.agent import watch_record as wr
from stellaops_runtime.contracts.config import TetragonConfig
from stellaops_runtime.sources.queue import EventQueue
from stellaops_runtime.sources.tetragon_grpc import TetragonGrpcSource

NODE = "node-a"


class Source:
    """A source as the record sees it."""

    def __init__(self, watching: int | None = None) -> None:
        self.resumed: list[int] = []
        self.watching = watching

    def resume_outage(self, from_ns: int, from_boot: int | None = None) -> None:
        self.resumed.append(from_ns)

    def watching_ns(self) -> int | None:
        return self.watching


def test_write_then_read_round_trips_with_mode_0600_and_no_temporary_left(tmp_path: Path) -> None:
    p = str(tmp_path / "spool.alive")
    now = time.time_ns()
    wr.write_record(p, NODE, "node-a/1", now - 5)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    assert wr.read_record(p, node=NODE, now_ns=now)[:2] == (now - 5, "node-a/1")
    wr.write_record(p, NODE, "node-a/1", now - 1)  # replaced, not appended
    assert wr.read_record(p, node=NODE, now_ns=now)[0] == now - 1
    assert sorted(os.listdir(tmp_path)) == ["spool.alive"]


class Queue:
    """The agent's queue as the record sees it: payloads enqueued, and those not taken yet."""

    def __init__(self) -> None:
        self.enqueued = 0
        self.waiting = 0

    def __len__(self) -> int:
        return self.waiting


def record(path: str, agent_id: str = "a") -> wr.WatchRecord:
    return wr.WatchRecord(path, node=NODE, agent_id=agent_id, queue=Queue())


def stored(p: str) -> int:
    return wr.read_record(p, node=NODE, now_ns=time.time_ns())[0]


def test_no_spool_path_means_no_record() -> None:
    rec = record(wr.record_path(""))
    src = Source(watching=123)
    assert not rec.enabled and rec.resume(src) is None
    rec.tick(src)
    rec.flushed(rec.flush_starts(), True)
    rec.final(456, True)
    assert src.resumed == [] and rec.write_errors == 0


def test_a_missing_record_adds_no_gap(tmp_path: Path) -> None:
    rec = record(str(tmp_path / "s.alive"))
    src = Source()
    assert rec.resume(src) is None
    assert src.resumed == [] and not rec.ignored and rec.restart_gaps == 0


def test_a_record_of_this_node_resumes_the_outage(tmp_path: Path) -> None:
    p = str(tmp_path / "s.alive")
    then = time.time_ns() - 3_000_000_000
    wr.write_record(p, NODE, "node-a/old", then)
    rec = record(p, "node-a/new")
    src = Source()
    assert rec.resume(src) == then and src.resumed == [then] and rec.restart_gaps == 1
    rec.tick(src)  # not watching yet
    rec.flushed(rec.flush_starts(), True)
    assert wr.read_record(p, node=NODE, now_ns=time.time_ns())[:2] == (then, "node-a/old")


def test_a_watching_moment_is_recorded_only_once_a_flush_stored_what_arrived_by_then(tmp_path: Path) -> None:
    """SIGKILL loses what was not flushed: the record must never claim a moment whose counts are lost."""
    p = str(tmp_path / "s.alive")
    rec = record(p)
    q = rec.queue
    src = Source(watching=100)
    q.enqueued, q.waiting = 10, 4  # 10 arrived by moment 100, 6 taken by the pipeline
    rec.tick(src)
    taken = rec.flush_starts()
    assert taken == 6
    rec.flushed(taken, True)  # stored 6 of the 10: moment 100 is not covered
    assert not os.path.exists(p)
    src.watching, q.enqueued, q.waiting = 200, 20, 0
    rec.tick(src)
    taken = rec.flush_starts()  # 20 taken: covers both samples
    rec.flushed(taken, False)  # the store failed: nothing new is claimed
    assert not os.path.exists(p)
    src.watching = 300
    q.enqueued = 25
    rec.tick(src)  # (300, 25) not covered by a flush that started at 20
    rec.flushed(taken, True)
    assert stored(p) == 200
    rec.flushed(25, True)
    assert stored(p) == 300
    src.watching = 250  # never backwards
    rec.tick(src)
    rec.flushed(30, True)
    rec.final(260, True)
    assert stored(p) == 300


def test_shutdown_writes_the_stop_moment_only_if_every_count_was_stored_or_spooled(tmp_path: Path) -> None:
    p = str(tmp_path / "s.alive")
    rec = record(p)
    rec.final(500, False)  # counts lost at shutdown: the record keeps its older moment
    assert not os.path.exists(p)
    rec.final(None, True)  # the source was not watching when stop was asked
    assert not os.path.exists(p)
    rec.final(500, True)
    assert stored(p) == 500


def test_samples_are_bounded_while_nothing_is_stored(tmp_path: Path) -> None:
    rec = record(str(tmp_path / "s.alive"))
    src = Source()
    for t in range(1, wr.MAX_SAMPLES + 100):
        src.watching = t
        rec.tick(src)
    assert len(rec._samples) == wr.MAX_SAMPLES
    rec.flushed(0, True)  # every sample at 0 enqueued: the latest kept one is written
    assert stored(rec.path) == wr.MAX_SAMPLES


def _hostile(tmp_path: Path, name: str) -> str:
    p = tmp_path / "s.alive"
    now = time.time_ns()
    good = {"format": wr.FORMAT, "node": NODE, "agent_id": "x", "alive_ns": now - 10**9}
    content: bytes
    if name == "not_json":
        content = b"\x00\xff{not json"
    elif name == "too_large":
        content = json.dumps({**good, "pad": "x" * 10_000}).encode()
    elif name == "empty":
        content = b""
    elif name == "list":
        content = b"[1, 2]"
    elif name == "no_format":
        content = json.dumps({k: v for k, v in good.items() if k != "format"}).encode()
    elif name == "float_time":
        content = json.dumps({**good, "alive_ns": float(now)}).encode()
    elif name == "bool_time":
        content = json.dumps({**good, "alive_ns": True}).encode()
    elif name == "string_time":
        content = json.dumps({**good, "alive_ns": str(now)}).encode()
    elif name == "zero_time":
        content = json.dumps({**good, "alive_ns": 0}).encode()
    elif name == "negative_time":
        content = json.dumps({**good, "alive_ns": -5}).encode()
    elif name == "future":
        content = json.dumps({**good, "alive_ns": now + 3600 * 10**9}).encode()
    elif name == "huge_time":
        content = json.dumps({**good, "alive_ns": 10**400}).encode()
    elif name == "other_node":
        content = json.dumps({**good, "node": "node-b"}).encode()
    elif name == "node_not_string":
        content = json.dumps({**good, "node": ["node-a"]}).encode()
    elif name == "symlink":
        target = tmp_path / "elsewhere"
        target.write_bytes(json.dumps(good).encode())
        p.symlink_to(target)
        return str(p)
    elif name == "directory":
        p.mkdir()
        return str(p)
    elif name == "fifo":
        os.mkfifo(p)
        return str(p)
    else:
        raise AssertionError(name)
    p.write_bytes(content)
    return str(p)


EXPECTED = {
    "not_json": "not_json", "too_large": "too_large", "empty": "not_json", "list": "bad_shape",
    "no_format": "bad_shape", "float_time": "bad_shape", "bool_time": "bad_shape",
    "string_time": "bad_shape", "zero_time": "bad_time", "negative_time": "bad_time",
    "other_node": "other_node",
    "node_not_string": "bad_shape", "symlink": "unreadable", "directory": "unreadable",
    "fifo": "unreadable",
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_a_hostile_record_is_ignored_counted_and_never_crashes(tmp_path: Path, kind: str) -> None:
    p = _hostile(tmp_path, kind)
    rec = record(p)
    src = Source()
    assert rec.resume(src) is None
    assert src.resumed == []
    assert rec.ignored == {EXPECTED[kind]: 1}, rec.ignored


def test_a_time_slightly_ahead_is_taken_as_now(tmp_path: Path) -> None:
    p = str(tmp_path / "s.alive")
    now = time.time_ns()
    wr.write_record(p, NODE, "x", now + 2_000_000_000)  # within FUTURE_SKEW_NS
    assert wr.read_record(p, node=NODE, now_ns=now)[0] == now


def test_a_write_that_fails_is_counted_and_the_agent_goes_on(tmp_path: Path) -> None:
    rec = record(str(tmp_path / "missing-dir" / "s.alive"))
    rec.final(5, True)
    rec.final(6, True)
    assert rec.write_errors == 2


def test_stale_temporaries_of_a_killed_agent_are_removed_at_start(tmp_path: Path) -> None:
    p = tmp_path / "s.alive"
    stale = tmp_path / ".s.alive.tmp-1-abcd"
    stale.write_text("{}")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    record(str(p)).resume(Source())
    assert not stale.exists()


def test_the_tetragon_source_hands_the_restart_hole_over_like_a_reconnect() -> None:
    src = TetragonGrpcSource(TetragonConfig(address="127.0.0.1:1"), queue=EventQueue(10))
    assert src.watching_ns() is None  # no stream: nothing to record
    then = time.time_ns() - 2_000_000_000
    src.resume_outage(then)
    first = src.take_outage()
    assert first is not None and first[0] == then  # still down: up to now, piece by piece
    src.stats.connected = True  # the first stream opens, and its first message arrives
    src._connected_at = src.alive_ns = first[1] + 1000
    src._delivered = (src.alive_ns, src._connected_boot)
    assert src.take_outage() == (first[1], first[1] + 1000)
    assert src.take_outage() is None
    assert src.watching_ns() == src.alive_ns - src.hold.ns()  # less what Tetragon may still hold


# -- the wall clock stepped since the record was written ------------------------------------------

HOUR = 3600 * 1_000_000_000
SECOND = 1_000_000_000


def _boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def _boot() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def _taken_after_resume(p: str) -> tuple[int, int]:
    """The span a real (never connected) Tetragon source hands over after resuming from the record."""
    src = TetragonGrpcSource(TetragonConfig(address="127.0.0.1:1"), queue=EventQueue(10))
    rec = record(p)
    assert rec.resume(src) is not None and not rec.ignored, rec.ignored
    span = src.take_outage()
    assert span is not None
    return span


def test_a_record_ahead_of_a_clock_stepped_back_on_this_boot_is_a_gap_on_both_sides(tmp_path: Path) -> None:
    """The last agent watched 5 s ago by the boot clock, then the wall clock stepped back an hour:
    the hole is the 5 s after its moment on the old clock and the 5 s before now on the new one."""
    p = tmp_path / "s.alive"
    now = time.time_ns()
    alive = now + HOUR
    doc = {"format": wr.FORMAT, "node": NODE, "agent_id": "old", "alive_ns": alive,
           "boot_id": _boot_id(), "boot_ns": _boot() - 5 * SECOND}  # fmt: skip
    p.write_text(json.dumps(doc))
    start, end = _taken_after_resume(str(p))
    assert start <= now - 5 * SECOND + 100_000_000 and end >= now  # the new clock's side
    assert start <= alive and end >= alive + 5 * SECOND - 100_000_000  # the old clock's side


@pytest.mark.parametrize(
    "kind", ["other_boot", "other_boot_just_ahead", "other_boot_behind", "no_boot", "huge"]
)
def test_a_record_ahead_of_the_clock_without_a_measure_is_a_gap_from_the_boot(
    tmp_path: Path, kind: str
) -> None:
    """A record of another boot (or without the boot clock, or at no clock's time) ahead of the clock:
    where the hole began on the old clock is unknowable; on this one it began by the boot at the latest."""
    p = tmp_path / "s.alive"
    now = time.time_ns()
    doc = {"format": wr.FORMAT, "node": NODE, "agent_id": "old", "alive_ns": now + HOUR}
    if kind.startswith("other_boot"):
        doc.update(boot_id="00000000-0000-0000-0000-000000000000", boot_ns=1)
        if kind == "other_boot_just_ahead":  # within the 10 s taken for clock skew on one boot
            doc["alive_ns"] = now + 5 * SECOND
        elif kind == "other_boot_behind":  # after this boot began: the clock went back across the reboot
            doc["alive_ns"] = now - 5 * SECOND
    elif kind == "huge":
        doc["alive_ns"] = 10**400
    p.write_text(json.dumps(doc))
    uptime = _boot()
    start, end = _taken_after_resume(str(p))
    assert start <= now - uptime + SECOND and end >= now


def test_a_record_carries_the_boot_clock_and_moves_on_after_a_step_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a step back the record keeps moving (by the boot clock): a stuck record would make the
    next agent's gap start at the step, hours of watched time marked unwatched."""
    p = str(tmp_path / "s.alive")
    rec = record(p)
    src = Source(watching=time.time_ns())
    rec.tick(src)
    rec.flushed(rec.flush_starts(), True)
    first = json.loads(Path(p).read_text())
    real, b0 = time.time_ns, _boot()
    monkeypatch.setattr(time, "time_ns", lambda: real() - HOUR)
    while _boot() < b0 + 5_000_000:  # the boot clock moves on (a few milliseconds)
        time.sleep(0.001)
    src.watching = time.time_ns()
    rec.tick(src)
    rec.flushed(rec.flush_starts(), True)
    assert json.loads(Path(p).read_text())["alive_ns"] == src.watching
    assert first["boot_id"] == _boot_id() and 0 < _boot() - first["boot_ns"] < 60 * SECOND
