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

Scrapes that fail for longer than one interval (two in a row: the endpoint gone, refused, slow,
or never reachable) leave the losses since the last good scrape unknown: :meth:`take_unknown` hands
that span out, up to now, on every tick of the outage marker, a node-wide gap until a scrape
answers again (tests/integration/test_tetragon_metrics_default_url.py). One failed scrape alone
is not: the next good one still compares its counters with the last good one. The span is read on
the boot clock too (hotsymbols/clock_span.py ``covering``), so a wall clock stepped back while scrapes
fail puts the wall time lived again in it; and before any good scrape the watch record claims no later
than the first try (:meth:`known_through`: an agent killed before the second failure leaves that time
to the next agent's restart gap; tests/unit/test_tetragon_metrics_clock_edges.py).

The page's text and the URL's are read by sources/tetragon_metrics_text.py (pure: the watched
counters, ``$(NODE_IP)``); this module scrapes the endpoint (a body over :data:`MAX_BODY_BYTES`
or a status other than 200 fails the scrape) and turns the counters into spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from stellaops_runtime.contracts.redact import redact, redact_error
from stellaops_runtime.hotsymbols.clock_span import boot_bracket, boot_of, covering, now_pair
from stellaops_runtime.sources.tetragon_metrics_text import (
    EXPANDED_NAMES,
    WATCHED,
    Series,
    expand_url,
    parse_drops,
    parse_series,
    sum_series,
    watched_lines,
)

__all__ = [  # the page's text is read in tetragon_metrics_text; its names are still read from here
    "EXPANDED_NAMES",
    "MAX_BODY_BYTES",
    "MAX_SPANS",
    "WATCHED",
    "Series",
    "TetragonDropStats",
    "TetragonMetricsPoller",
    "expand_url",
    "fetch_page",
    "parse_drops",
    "parse_series",
    "sum_series",
    "watched_lines",
]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 << 20  # Tetragon's exposition is a few hundred KiB
MAX_SPANS = 1000  # drop spans held between two takes (the marker takes them every second)


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
    unread_spans: int = 0  # spans handed out as unknown: scrapes failing for over an interval


async def fetch_page(url: str, *, timeout: float) -> str:  # noqa: ASYNC109 (the whole exchange)
    """The page's text, read to its end on plain asyncio streams (kube/streams_http.py: the agent
    loads no aiohttp, ~10 MB on every node, now that every operator-managed agent scrapes). A URL's
    user and password are sent as basic authentication, an https URL's certificate is verified.
    OSError (refused, not HTTP, a body over :data:`MAX_BODY_BYTES`), TimeoutError, or ValueError
    (a status other than 200, a URL that is not http(s))."""
    import ssl

    from stellaops_runtime.kube.streams_http import basic_auth, request

    parts = urlsplit(url)
    headers = {"Accept": "text/plain"}
    if parts.username is not None:
        headers["Authorization"] = basic_auth(unquote(parts.username), unquote(parts.password or ""))
    ctx = ssl.create_default_context() if parts.scheme == "https" else False
    r = await request("GET", url, headers=headers, ssl_context=ctx, timeout=timeout, max_body=MAX_BODY_BYTES)
    if r.status != 200:
        raise ValueError(f"HTTP {r.status} from the metrics endpoint")
    return r.text


class TetragonMetricsPoller:
    def __init__(self, url: str, *, interval: float = 15.0, timeout: float = 5.0) -> None:
        self.url = url
        self.shown_url = redact(url)  # for messages: tetragon.metricsUrl may hold a password or token
        self.interval = interval
        self.timeout = timeout
        self.stats = TetragonDropStats()
        # the last good scrape: wall ns at which it asked (Tetragon read its counters after), values
        self._last: tuple[int, Mapping[Any, float]] | None = None
        self._last_boot: int | None = None  # its boottime
        self._asking: int | None = (
            None  # wall ns of a first try not answered yet (no good scrape, none failed)
        )
        self._first_failed: int | None = None  # wall ns of the first try, when it and all since failed
        self._spans: list[tuple[int, int, int]] = []  # (start, end wall ns, events lost) not taken yet
        # known_through() when the spans taken then were all in the pipeline's gap tracker (the outage
        # marker sets it): the watch record never claims past it (agent/watch_record.py)
        self.marked_through: int | None = None
        self._failures = 0  # failed scrapes in a row
        self._unknown_from: int | None = None  # while failing: where the unknown time not taken starts
        self._unknown_boot: int | None = None  # its boottime (a wall clock step since is seen)
        self._unknown_back: tuple[int, int] | None = None  # an unknown span taken but not recorded

    def asking(self, asked_ns: int) -> None:
        """A scrape asks at ``asked_ns``: before any answer, the watch record claims no later."""
        if self._last is None and self._first_failed is None and self._asking is None:
            self._asking = asked_ns

    def failed(self, asked_ns: int, asked_boot: int | None = None) -> None:
        """A scrape asked at ``asked_ns`` (boottime ``asked_boot``) read nothing: before any good one,
        the first good one's counts may all have been lost since this try (:meth:`note`)."""
        if self._last is None and self._first_failed is None:
            self._first_failed = asked_ns
        self._asking = None
        self._failures += 1
        if self._unknown_from is None:
            if self._last is not None:
                self._unknown_from, self._unknown_boot = self._last[0], self._last_boot
            else:
                self._unknown_from = asked_ns
                self._unknown_boot = boot_of(asked_ns) if asked_boot is None else asked_boot
        if self._failures == 2:
            log.warning(
                "cannot read Tetragon's metrics at %s (%s): its losses are unknown, the time is a gap "
                "until a scrape answers", self.shown_url, self.stats.last_error or "failed",
            )  # fmt: skip

    @property
    def unreadable(self) -> bool:
        """Scrapes have failed for longer than an interval (two in a row): the time is a gap."""
        return self._failures >= 2

    def take_unknown(self, now_ns: int, now_boot: int | None = None) -> tuple[int, int] | None:
        """The span (start, end wall ns) whose losses no scrape can tell, up to ``now_ns`` (boottime
        ``now_boot``), while scrapes have failed for longer than an interval (two in a row), with any
        span given back; None when there is none. The next call starts where this one ended. A wall
        clock stepped back since widens the span over the wall time lived again (``covering``)."""
        span = None
        start = self._unknown_from
        if self._failures >= 2 and start is not None:
            # ``now_ns`` ends this span at its latest boottime and starts the next at its earliest
            next_boot, now_boot = boot_bracket(now_ns) if now_boot is None else (now_boot, now_boot)
            a, b = covering(start, self._unknown_boot, now_ns, now_boot)
            if b > a:
                span = (a, b)
                self._unknown_from, self._unknown_boot = now_ns, next_boot
        back, self._unknown_back = self._unknown_back, None
        if back is not None:
            span = back if span is None else (min(back[0], span[0]), max(back[1], span[1]))
        if span is not None:
            self.stats.unread_spans += 1
        return span

    def give_back_unknown(self, span: tuple[int, int]) -> None:
        """A span of :meth:`take_unknown` not recorded: handed out again next time."""
        back = self._unknown_back
        self._unknown_back = span if back is None else (min(back[0], span[0]), max(back[1], span[1]))

    def unread_from(self) -> int | None:
        """Where the time whose losses no scrape has told yet starts: the unknown span not taken yet
        while failing, else the last good scrape's asking moment, else the first failed try; None
        before any try. The outage marker marks it up to the switch to the native probes (review
        RTM: moving the baseline past it left Tetragon's last seconds as the source watched)."""
        if self._unknown_from is not None:
            return self._unknown_from
        return self._last[0] if self._last is not None else self._first_failed

    def watched_elsewhere(self, now_ns: int) -> None:
        """Another source watched up to ``now_ns`` (the source switch's native probes, Tetragon down):
        what Tetragon lost before then does not matter, so its next good scrape counts from here, not
        from the last good one or the first failed try (that span would be BCC's watched time)."""
        if self._last is not None:
            self._last = (max(self._last[0], now_ns), self._last[1])
        elif self._first_failed is not None:
            self._first_failed = max(self._first_failed, now_ns)
        if self._unknown_from is not None and now_ns > self._unknown_from:
            self._unknown_from, self._unknown_boot = now_ns, boot_of(now_ns)

    def note(
        self,
        drops: Mapping[Any, float],
        now_ns: int,
        asked_ns: int | None = None,
        asked_boot: int | None = None,
    ) -> None:
        """One good scrape's values, asked at ``asked_ns`` (default ``now_ns``; boottime ``asked_boot``)
        and answered by ``now_ns`` (per series or summed: each key against itself): a span since the
        last good one asked, if any rose."""
        last, self._last = self._last, (now_ns if asked_ns is None else asked_ns, drops)
        self._last_boot = boot_of(self._last[0]) if asked_boot is None else asked_boot
        self._asking = None
        if self._failures >= 2:
            log.info("Tetragon's metrics at %s answer again", self.shown_url)
        self._failures, self._unknown_from = 0, None  # the counters tell what was lost meanwhile
        if last is None:
            if self._first_failed is None:
                return  # counted before this agent: cannot be placed in time
            last = (self._first_failed, {})  # tries failed since: all it counts may fall after the first
        since, before = last
        lost, reset = 0.0, False
        for k, v in drops.items():
            was = before.get(k, 0.0)
            lost += v - was if v >= was else v  # went down: Tetragon started over, v lost since
            reset = reset or v < was
        if lost <= 0:
            if reset:  # what it lost before its restart died with its counters: unknown (review RTM)
                self.give_back_unknown((since, now_ns))
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
        """Every loss Tetragon counted before this moment (wall ns) is in a span noted by now, or will be
        in the first good scrape's span: the last good scrape asked then; before any, the first failed
        try (that span starts there) or the first try on its way. None before any try."""
        if self._last is not None:
            return self._last[0]
        return self._first_failed if self._first_failed is not None else self._asking

    def give_back(self, spans: list[tuple[int, int, int]]) -> None:
        """Spans taken but not recorded: taken again next time."""
        self._spans[:0] = spans

    async def scrape_once(self) -> None:
        asked, asked_boot = now_pair()
        self.asking(asked)
        try:
            series = parse_series(await fetch_page(self.url, timeout=self.timeout))
        except (OSError, TimeoutError, ValueError) as e:
            self.stats.scrape_errors += 1
            self.stats.last_error = redact_error(e)  # an error may quote the URL
            log.debug("tetragon metrics scrape of %s failed: %s", self.shown_url, self.stats.last_error)
            self.failed(asked, asked_boot)
            return
        self.stats.scrapes += 1
        for k, v in sum_series(series).items():
            setattr(self.stats, k, v)
        self.note(series, time.time_ns(), asked, asked_boot)  # each series against itself

    async def scrape_last(self) -> None:
        """One more scrape as the agent stops (agent/shutdown.py), before its last gaps are marked:
        what Tetragon lost since the last scrape fell in this agent's watched time, and the next agent's
        first scrape takes it as its baseline (tests/integration/test_tetragon_metrics_span_edges.py)."""
        await self.scrape_once()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.scrape_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
