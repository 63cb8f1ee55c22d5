"""The text of Tetragon's metrics page and of the URL the agent scrapes it at: pure parsing.

Split from sources/tetragon_metrics.py (the scraping and the spans it makes) so each stays
small; that module re-exports these names.

The URL may name the node's address as ``$(NODE_IP)`` (:func:`expand_url`; no other variable of
the agent's environment, which holds the store's password, is expanded): the operator renders
``http://$(NODE_IP):2112/metrics`` and the pod's ``NODE_IP`` from the downward API
(``status.hostIP``): Tetragon's metrics server listens on the node's network, not in the agent
pod's, so ``localhost`` there is not Tetragon.

The endpoint's text is not trusted: a watched counter whose value is not a
finite count (NaN, ±Inf, negative) fails the scrape (counted, the last good
values kept); it made every later rendering of the agent's own /metrics fail
with HTTP 500 (a body too large or a status other than 200 fails it too: sources/tetragon_metrics.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import os
import re
from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from stellaops_runtime.contracts.crd_names import NODE_IP_ENV

# The logger of sources/tetragon_metrics.py, where expand_url lived: its warnings keep their name.
log = logging.getLogger("stellaops_runtime.sources.tetragon_metrics")

WATCHED = {
    "tetragon_notify_overflowed_events": "overflowed",
    "tetragon_bpf_missed_events": "bpf_missed",
    "tetragon_observer_ringbuf_events_lost": "ringbuf_lost",
    "tetragon_observer_ringbuf_queue_events_lost": "ringbuf_queue_lost",  # reader -> handlers channel
    "tetragon_missed_prog_probes": "missed_probes",  # probe runs the kernel skipped
    "tetragon_missed_link_probes": "missed_probes",
}


_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


# The only names expanded: those the operator renders into the URL. Any other variable of the
# agent's environment stays as written: STELLA_RUNTIME_STORE holds the store's password, and a URL
# naming it would send it to the URL's server (tests/integration/test_tetragon_metrics_url_env.py).
EXPANDED_NAMES = frozenset({NODE_IP_ENV})


def expand_url(url: str, env: Mapping[str, str] | None = None) -> str:
    """``$(NODE_IP)`` replaced by the environment's value, as Kubernetes expands a container's
    arguments: ``$$`` is a literal ``$``, an unset name stays as written (the scrape then fails,
    which :meth:`TetragonMetricsPoller.take_unknown` makes a gap). An IPv6 address not already in
    brackets gets them (``status.hostIP`` on an IPv6 node). A name not in :data:`EXPANDED_NAMES`
    is kept as written, with a warning naming it (never its value)."""
    env = os.environ if env is None else env

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        if m.group(1) not in EXPANDED_NAMES:
            log.warning(
                "tetragon.metricsUrl: $(%s) kept as written: only %s are expanded",
                m.group(1),
                ", ".join(f"$({n})" for n in sorted(EXPANDED_NAMES)),
            )
            return m.group(0)
        value = env.get(m.group(1))
        if value is None:
            return m.group(0)
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(value).version == 6 and not url[: m.start()].endswith("["):
                return f"[{value}]"
        return value

    return _VAR.sub(one, url)


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
