"""Tetragon's own drop counters, read from its Prometheus endpoint.

Tetragon drops events for a slow gRPC client silently: the only trace is its
metric ``tetragon_notify_overflowed_events_total``. Reading it lets the agent
report Tetragon's drops next to its own, so "we saw no calls" can be told
apart from "we were not sent the calls".

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
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from stellaops_runtime.contracts.redact import redact, redact_error

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 << 20  # Tetragon's exposition is a few hundred KiB

WATCHED = {
    "tetragon_notify_overflowed_events": "overflowed",
    "tetragon_bpf_missed_events": "bpf_missed",
    "tetragon_observer_ringbuf_events_lost": "ringbuf_lost",
}


@dataclass(slots=True)
class TetragonDropStats:
    overflowed: float = 0.0
    bpf_missed: float = 0.0
    ringbuf_lost: float = 0.0
    scrapes: int = 0
    scrape_errors: int = 0
    last_error: str = ""


def parse_drops(text: str) -> dict[str, float]:
    """Sum the watched counters over all their label sets."""
    out = dict.fromkeys(WATCHED.values(), 0.0)
    for family in text_string_to_metric_families(text):
        field = WATCHED.get(family.name.removesuffix("_total"))
        if field is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") or sample.name == family.name:
                v = sample.value
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"{sample.name} is {v!r}, not a count")
                out[field] += v
    return out


class TetragonMetricsPoller:
    def __init__(self, url: str, *, interval: float = 15.0, timeout: float = 5.0) -> None:
        self.url = url
        self.shown_url = redact(url)  # for messages: tetragon.metricsUrl may hold a password or token
        self.interval = interval
        self.timeout = timeout
        self.stats = TetragonDropStats()

    async def scrape_once(self, session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                r.raise_for_status()
                body = await r.content.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise ValueError(f"the metrics page is larger than {MAX_BODY_BYTES} bytes")
            drops = parse_drops(body.decode("utf-8"))
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.stats.scrape_errors += 1
            self.stats.last_error = redact_error(e)  # aiohttp errors quote the URL
            log.debug("tetragon metrics scrape of %s failed: %s", self.shown_url, self.stats.last_error)
            return
        self.stats.scrapes += 1
        for k, v in drops.items():
            setattr(self.stats, k, v)

    async def run(self, stop: asyncio.Event) -> None:
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                await self.scrape_once(session)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
