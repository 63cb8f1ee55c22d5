"""The parse worker's waiting rules (canonical/parseworker.py), and the GIL-friendly symbol sort.

Jobs here are plain functions blocked on threading.Events, so every timing
is decided by the test, not by how fast this machine parses.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from stellaops_runtime.agent.canonicalizer_setup import make_canonicalizer
from stellaops_runtime.canonical.addrindex import STB_GLOBAL, RawSymbol, sorted_by_start
from stellaops_runtime.canonical.parseworker import DEFAULT_MAX_QUEUED, InlineGate, ParsePending, ParseWorker
from stellaops_runtime.contracts.config import ConfigError, parse_config

SLACK = 10.0  # seconds a finished wait may take to be noticed on a loaded machine (jobs block 30 s)
WAIT = 60.0  # a wait for a job that finishes at once: returns then, fails only if it never does


def _blocker(release: threading.Event, result: str = "slow") -> object:
    def job() -> str:
        release.wait(30)
        return result

    return job


def _wait_idle(w: ParseWorker) -> None:
    deadline = time.monotonic() + WAIT
    while w.in_flight:
        assert time.monotonic() < deadline, "parse worker never finished"
        time.sleep(0.005)


def test_a_quick_parse_is_waited_for_and_its_error_passed_on() -> None:
    w = ParseWorker(WAIT)
    assert w.run("a", lambda: 42) == 42

    def bad() -> int:
        raise OSError("unreadable")

    with pytest.raises(OSError, match="unreadable"):
        w.run("b", bad)
    st = w.stats()
    assert (st["parse_jobs_queued"], st["parse_jobs_done"], st["parse_jobs_failed"]) == (2, 2, 1)


def test_a_slow_parse_is_pending_then_never_waited_for_again() -> None:
    w = ParseWorker(0.05)
    release = threading.Event()
    t0 = time.monotonic()
    with pytest.raises(ParsePending):
        w.run("slow", _blocker(release))
    waited = time.monotonic() - t0
    assert 0.04 <= waited < 0.05 + SLACK
    # Asked again while it runs: answered at once, and nothing queued behind it is waited for. A
    # wait of 30 s from here on tells a call that waited from one that did not on a loaded machine.
    w.wait_seconds = 30
    t0 = time.monotonic()
    with pytest.raises(ParsePending):
        w.run("slow", _blocker(release))
    with pytest.raises(ParsePending):
        w.run("other", lambda: "quick")
    assert time.monotonic() - t0 < SLACK
    st = w.stats()
    assert st["parse_waits_timed_out"] == 1 and st["parse_not_waited"] == 2
    assert st["parse_jobs_queued"] == 2  # "slow" once (deduplicated), "other" once
    release.set()
    _wait_idle(w)
    # Both finished in the background; a new parse is waited for again.
    assert w.run("third", lambda: "ok") == "ok"
    assert w.stats()["parse_jobs_done"] == 3


def test_one_wait_per_batch() -> None:
    w = ParseWorker(0.1)
    release = threading.Event()
    t0 = time.monotonic()
    with w.batch():
        with pytest.raises(ParsePending):
            w.run("one", _blocker(release))
        with w.batch():  # re-entrant: still the outer batch's deadline
            for key in ("two", "three"):
                with pytest.raises(ParsePending):
                    w.run(key, _blocker(release))
    assert time.monotonic() - t0 < 0.1 + SLACK
    assert w.stats()["parse_waits_timed_out"] == 1  # the later ones were not waited for at all
    release.set()
    _wait_idle(w)


def test_the_queue_is_bounded() -> None:
    w = ParseWorker(0.0, max_queued=2)
    release = threading.Event()
    with pytest.raises(ParsePending):
        w.run("running", _blocker(release))
    deadline = time.monotonic() + WAIT
    while w._queue:  # the worker has taken "running"
        assert time.monotonic() < deadline, "the worker never took its first job"
        time.sleep(0.001)
    for key in ("q1", "q2"):
        with pytest.raises(ParsePending):
            w.run(key, lambda: None)
    with pytest.raises(ParsePending, match="queue full"):
        w.run("q3", lambda: None)
    st = w.stats()
    assert st["parse_queue_full"] == 1 and st["parse_jobs_queued"] == 3
    release.set()
    _wait_idle(w)


def test_a_parse_step_inside_a_job_runs_inline() -> None:
    w = ParseWorker(WAIT)
    seen: list[str] = []

    def outer() -> str:
        inner = w.run("inner", lambda: threading.current_thread().name)
        seen.append(inner)
        return inner

    assert w.run("outer", outer) == "symbol-parse"
    assert seen == ["symbol-parse"] and w.stats()["parse_jobs_queued"] == 1


def test_inline_gate_runs_at_once() -> None:
    g = InlineGate()
    with g.batch():
        assert g.run("k", lambda: threading.current_thread().name) == threading.current_thread().name
    assert g.stats() == {}


def test_sorting_in_runs_gives_the_plain_stable_sort() -> None:
    rng = random.Random(7)
    syms: list[RawSymbol] = [(rng.randrange(50_000) * 16, 16, f"f{i}", STB_GLOBAL, 0) for i in range(100_000)]
    assert sorted_by_start(syms) == sorted(syms, key=lambda s: s[0])
    assert sorted_by_start(iter(syms[:10])) == sorted(syms[:10], key=lambda s: s[0])


def test_the_agent_config_sets_the_wait() -> None:
    assert DEFAULT_MAX_QUEUED == ParseWorker(0.1).max_queued == 1024
    default = make_canonicalizer(parse_config({}), node_name="n")
    assert default is not None and isinstance(default.gate, ParseWorker)
    assert default.gate.wait_seconds == 0.2
    fc = make_canonicalizer(parse_config({"symbols": {"parseWaitMilliseconds": 50}}), node_name="n")
    assert fc is not None and isinstance(fc.gate, ParseWorker) and fc.gate.wait_seconds == 0.05
    for bad in (-1, 60_001):
        with pytest.raises(ConfigError):
            parse_config({"symbols": {"parseWaitMilliseconds": bad}})
