"""Tetragon's own drop counters, read from its Prometheus endpoint.

Tetragon drops events for a slow gRPC client silently: the only trace is its
metric ``tetragon_notify_overflowed_events_total``. Reading it lets the agent
report Tetragon's drops next to its own, so "we saw no calls" can be told
apart from "we were not sent the calls".

A rise of a watched counter between two good scrapes is also a span in which
Tetragon lost events (for its gRPC clients, in its ring buffer or kprobes): the
poller keeps it (:meth:`TetragonMetricsPoller.take`) and the outage marker
(agent/outages.py) records it as a node-wide gap carrying the count, so no
"not observed" rests on that time. A counter that went down (Tetragon
restarted and counts from zero) and is above zero lost that many since its
restart: a span too. The first scrape only sets the baseline (what Tetragon
counted before this agent cannot be placed in time), unless scrapes before it
failed: then all it counts may have been lost since the first try (a node
reboot or Tetragon restart, when its start-up flood overflows its buffers and
its metrics server is not up yet), a span from that try, carrying all it
counts. A span starts when the scrape before it asked, not when its answer came:
Tetragon read its counters in between.

A loss is known only from the next good scrape, and stored only by the flush
after the marker took its span: an agent killed before that leaves it in no
gap (the next agent's first scrape takes it as its baseline). So the watch
record (agent/watch_record.py) is never written past :attr:`marked_through`,
the last good scrape's asking moment as of the marker's last complete take:
the next agent's restart gap covers every loss not stored
(tests/integration/test_tetragon_drop_crash_window.py).

The endpoint's text is not trusted: a watched counter whose value is not a
finite count (NaN, ±Inf, negative) fails the scrape (counted, the last good
values kept); it made every later rendering of the agent's own /metrics fail
with HTTP 500. A body over :data:`MAX_BODY_BYTES` fails the scrape too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from stellaops_runtime.contracts.redact import redact, redact_error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 << 20  # Tetragon's exposition is a few hundred KiB
MAX_SPANS = 1000  # drop spans held between two takes (the marker takes them every second)

WATCHED = {
    "tetragon_notify_overflowed_events": "overflowed",
    "tetragon_bpf_missed_events": "bpf_missed",
    "tetragon_observer_ringbuf_events_lost": "ringbuf_lost",
    "tetragon_observer_ringbuf_queue_events_lost": "ringbuf_queue_lost",  # reader -> handlers channel
    "tetragon_missed_prog_probes": "missed_probes",  # probe runs the kernel skipped
    "tetragon_missed_link_probes": "missed_probes",
}


@dataclass(slots=True)
class TetragonDropStats:
    overflowed: float = 0.0
    bpf_missed: float = 0.0
    ringbuf_lost: float = 0.0
    ringbuf_queue_lost: float = 0.0
    missed_probes: float = 0.0
    scrapes: int = 0
    scrape_errors: int = 0
    last_error: str = ""
    drop_spans: int = 0  # spans between two scrapes in which a watched counter rose (gaps)


# One watched series: (field, sample name, its labels sorted)
Series = tuple[str, str, tuple[tuple[str, str], ...]]


def parse_series(text: str) -> dict[Series, float]:
    """Every series of the watched counters, by name and labels.

    The spans compare each series with itself: summed, the rise of one and the end of another (the
    missed-probe counters are one series per policy and probe, gone with an unloaded policy) could
    cancel (tests/integration/test_tetragon_metrics_span_edges.py)."""
    out: dict[Series, float] = {}
    for family in text_string_to_metric_families(watched_lines(text)):
        field = WATCHED.get(family.name.removesuffix("_total"))
        if field is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") or sample.name == family.name:
                v = sample.value
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"{sample.name} is {v!r}, not a count")
                key = (field, sample.name, tuple(sorted(sample.labels.items())))
                out[key] = out.get(key, 0.0) + v
    return out


_WATCHED_NAMES = tuple(WATCHED)
_COMMENTS = tuple(f"# {kind} {name}" for kind in ("HELP", "TYPE") for name in WATCHED)


def watched_lines(text: str) -> str:
    """The lines of the watched counters (their samples, HELP and TYPE), picked out by name.

    The page holds all of Tetragon's metrics (on a busy node 20,000 series of
    ``tetragon_events_total`` are 2.5 MB): parsing all of it held the agent's event loop for about
    a second every scrape, and one line of another metric the parser refuses failed the scrape
    (tests/integration/test_tetragon_metrics_large_page.py). A name that merely starts like a watched
    one is parsed and then ignored (``WATCHED`` is looked up by family)."""
    keep = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(_WATCHED_NAMES) or stripped.startswith(_COMMENTS):
            keep.append(stripped)
    return "\n".join(keep) + "\n" if keep else ""


def sum_series(series: dict[Series, float]) -> dict[str, float]:
    """The watched counters summed over their label sets (what /metrics shows)."""
    out = dict.fromkeys(WATCHED.values(), 0.0)
    for (field, _, _), v in series.items():
        out[field] += v
    return out


def parse_drops(text: str) -> dict[str, float]:
    """Sum the watched counters over all their label sets."""
    return sum_series(parse_series(text))


async def _read_page(content: aiohttp.StreamReader) -> bytes:
    """The whole body, to its end (``read(n)`` returns what has arrived so far: a large page was cut
    after its first chunk, and the counters near its end read as missing); ValueError past the bound."""
    body = bytearray()
    async for chunk in content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ValueError(f"the metrics page is larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


class TetragonMetricsPoller:
    def __init__(self, url: str, *, interval: float = 15.0, timeout: float = 5.0) -> None:
        self.url = url
        self.shown_url = redact(url)  # for messages: tetragon.metricsUrl may hold a password or token
        self.interval = interval
        self.timeout = timeout
        self.stats = TetragonDropStats()
        # the last good scrape: wall ns at which it asked (Tetragon read its counters after), values
        self._last: tuple[int, Mapping[Any, float]] | None = None
        self._first_failed: int | None = None  # wall ns of the first try, when it and all since failed
        self._spans: list[tuple[int, int, int]] = []  # (start, end wall ns, events lost) not taken yet
        # known_through() when the spans taken then were all in the pipeline's gap tracker (the outage
        # marker sets it): the watch record never claims past it (agent/watch_record.py)
        self.marked_through: int | None = None

    def failed(self, asked_ns: int) -> None:
        """A scrape asked at ``asked_ns`` read nothing: before any good one, the first good one's counts
        may all have been lost since this try (:meth:`note`)."""
        if self._last is None and self._first_failed is None:
            self._first_failed = asked_ns

    def note(self, drops: Mapping[Any, float], now_ns: int, asked_ns: int | None = None) -> None:
        """One good scrape's values, asked at ``asked_ns`` (default ``now_ns``) and answered by
        ``now_ns`` (per series or summed: each key against itself): a span since the last good one
        asked, if any rose."""
        last, self._last = self._last, (now_ns if asked_ns is None else asked_ns, drops)
        if last is None:
            if self._first_failed is None:
                return  # counted before this agent: cannot be placed in time
            last = (self._first_failed, {})  # tries failed since: all it counts may fall after the first
        since, before = last
        lost = 0.0
        for k, v in drops.items():
            was = before.get(k, 0.0)
            lost += v - was if v >= was else v  # went down: Tetragon started over, v lost since
        if lost <= 0:
            return
        self.stats.drop_spans += 1
        count = max(1, int(lost))
        # Joins the span before it when they touch or overlap (the scrape asked before the last answer
        # came), or when spans were not taken for long: one wider span, never a lost one.
        if self._spans and (self._spans[-1][1] >= since or len(self._spans) >= MAX_SPANS):
            start, end, n = self._spans.pop()
            self._spans.append((min(start, since), max(end, now_ns), n + count))
        else:
            self._spans.append((since, now_ns, count))

    def take(self) -> list[tuple[int, int, int]]:
        """The spans (start, end wall ns, events lost) noted since the last call."""
        spans, self._spans = self._spans, []
        return spans

    def known_through(self) -> int | None:
        """Every loss Tetragon counted before this moment (wall ns) is in a span noted by now: the last
        good scrape asked then. None before any good scrape (its counters were never read)."""
        return self._last[0] if self._last is not None else None

    def give_back(self, spans: list[tuple[int, int, int]]) -> None:
        """Spans taken but not recorded: taken again next time."""
        self._spans[:0] = spans

    async def scrape_once(self, session: aiohttp.ClientSession) -> None:
        asked = time.time_ns()
        try:
            async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                r.raise_for_status()
                body = await _read_page(r.content)
            series = parse_series(body.decode("utf-8"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.stats.scrape_errors += 1
            self.stats.last_error = redact_error(e)  # aiohttp errors quote the URL
            log.debug("tetragon metrics scrape of %s failed: %s", self.shown_url, self.stats.last_error)
            self.failed(asked)
            return
        self.stats.scrapes += 1
        for k, v in sum_series(series).items():
            setattr(self.stats, k, v)
        self.note(series, time.time_ns(), asked)  # each series against itself

    async def scrape_last(self) -> None:
        """One more scrape as the agent stops (agent/shutdown.py), before its last gaps are marked:
        what Tetragon lost since the last scrape fell in this agent's watched time, and the next agent's
        first scrape takes it as its baseline (tests/integration/test_tetragon_metrics_span_edges.py)."""
        async with aiohttp.ClientSession() as session:
            await self.scrape_once(session)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                await self.scrape_once(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
