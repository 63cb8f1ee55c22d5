"""A period that starts before the store's first recorded day is never "not observed".

``query observed --since`` over time nobody recorded: before any agent wrote a
window, or days ``store.retentionDays`` removed (their windows and their gaps go
together, store/partitions.py). What happened then is not known: an outage, a pod
that opted out, a node that could not see calls, all recorded as gaps and windows,
are gone with them, or were never there to record. Before, the answer rested on
the windows left and said "not observed" (exit 1) for the whole period: a 30-day
"never called" of which only a week was known. Now it is unknown (exit 3), naming
the store's first record; a period from its UTC day on keeps its answer (days are
the unit: retention removes whole days, and a real first agent's start day is a gap
already, tests/e2e/test_first_agent_window.py). The real CLI, in this process
(tests/cli_run.py ``cli_in_process``) and once as a subprocess; SQLite and PostgreSQL (the
``url`` fixture). Seen failing before the
fix (exit 1 "not_observed" in both cases below). The windows end yesterday and node-1 has a later
record today (tests/node_alive.py): the node was watched throughout, at whatever hour this runs.
"""

from __future__ import annotations

import datetime as dt

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.schema import datetime_to_ns
from tests.cli_run import observed_json
from tests.node_alive import alive_after

IMG = "sha256:" + "d" * 64
NOW = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)


def midnight(days_ago: int) -> dt.datetime:
    return dt.datetime.combine(NOW.date() - dt.timedelta(days=days_ago), dt.time(), dt.UTC)


def observed(url: str, *period: str, real: bool = False) -> tuple[int, dict]:  # type: ignore[type-arg]
    return observed_json(url, IMG, "crc32", *period, real=real)


def test_a_period_reaching_before_the_first_record_or_past_retention_is_unknown(url: str) -> None:
    # the image watched at EbpfDeep, one window a day, the 40 days up to yesterday; crc32 never called
    windows = [
        ObservationWindow(IMG, "node-1", datetime_to_ns(midnight(d) + dt.timedelta(hours=9)), 5,
                          Posture.EBPF_DEEP, 60, "tetragon")
        for d in range(1, 41)
    ]  # fmt: skip
    windows += alive_after("node-1", datetime_to_ns(midnight(0)))  # its agent lived on past its last window
    with open_store(url) as s:
        s.write([], windows)
    first = midnight(40) + dt.timedelta(hours=9)
    # before any agent recorded anything: 60 days asked, 40 known
    code, doc = observed(url, "--since", rfc3339(midnight(60)), real=True)
    assert (code, doc["answer"], doc["observed"]) == (3, "unknown", None), doc  # was (1, "not_observed")
    assert rfc3339(first) in doc["reason"] and "store.retentionDays" in doc["reason"], doc["reason"]
    code, doc = observed(url, "--since", rfc3339(midnight(40)))  # from the first record's UTC day on
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    # retention removes days 33..40 (windows and gaps alike): a period reaching into them is unknown
    with open_store(url, retention_days=31) as s:
        done = s.maintain(now=NOW)
    assert done.ran and done.cutoff == midnight(32)
    code, doc = observed(url, "--since", rfc3339(midnight(35)))
    assert (code, doc["answer"]) == (3, "unknown"), doc  # was (1, "not_observed")
    assert rfc3339(midnight(32) + dt.timedelta(hours=9)) in doc["reason"], doc["reason"]
    code, doc = observed(url, "--since", rfc3339(midnight(32)))  # the first day left, whole
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    code, doc = observed(url)  # no period: all the store knows, the coverage says from when
    assert (code, doc["answer"], doc["coverage"]["start"]) == (
        1,
        "not_observed",
        rfc3339(midnight(32) + dt.timedelta(hours=9)),
    )


def test_one_row_stamped_before_2020_does_not_move_the_first_record(url: str) -> None:
    """A node whose clock read 1970 (or any row before 2020, validate.MIN_EVENT_NS, no event's time) wrote
    one window of another image: the store's first record was taken from it, so over 40 recorded days
    ``--since`` 60 days ago said "not observed" again, for every image. Seen failing before the fix
    (exit 1, not_observed); such rows are clock trouble, not the day the store's records start."""
    windows = [
        ObservationWindow(IMG, "node-1", datetime_to_ns(midnight(d) + dt.timedelta(hours=9)), 5,
                          Posture.EBPF_DEEP, 60, "tetragon")
        for d in range(1, 41)
    ]  # fmt: skip
    windows += alive_after("node-1", datetime_to_ns(midnight(0)))  # its agent lived on past its last window
    windows.append(ObservationWindow("sha256:" + "e" * 64, "node-2", 0, 1, Posture.EBPF_DEEP, 60, "tetragon"))
    with open_store(url) as s:
        s.write([], windows)
    code, doc = observed(url, "--since", rfc3339(midnight(60)))
    assert (code, doc["answer"]) == (3, "unknown"), doc  # was (1, "not_observed")
    assert rfc3339(midnight(40) + dt.timedelta(hours=9)) in doc["reason"], doc["reason"]
    code, doc = observed(url, "--since", rfc3339(midnight(40)))
    assert (code, doc["answer"]) == (1, "not_observed"), doc
