"""Prometheus metric families for the agent: the shared constructors and the per-stage sets.

Split from :mod:`stellaops_runtime.agent.metrics` (the collector and the list
of every metric): this module holds the small constructors every family uses
and the frame canonicalizer's and package attribution's families, which are
built from those stages' own flat counters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from stellaops_runtime.agent.prometheus_core import CounterMetricFamily, GaugeMetricFamily, Metric, Sample
from stellaops_runtime.canonical.demangle import demangle_stats
from stellaops_runtime.canonical.resolution import Outcome

if TYPE_CHECKING:
    from stellaops_runtime.agent.fastpath_outcome import FastPathStats
    from stellaops_runtime.attribution.attributor import AttributionStats

P = "stellaops_runtime_"


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(P + name, doc, value=value)


def labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    m = CounterMetricFamily(P + name, doc, labels=[label])
    for k, v in sorted(values.items()):
        m.add_metric([str(k)], v)
    return m


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(P + name, doc, value=value)


def untyped(name: str, doc: str, value: float) -> Metric:
    """A family whose one sample is named exactly ``name`` (``# TYPE name untyped``)."""
    m = Metric(name, doc, "unknown")
    m.samples.append(Sample(name, {}, value))
    return m


_USER_FAILURES = frozenset(str(o) for o in Outcome) - {str(Outcome.RESOLVED)}


def canonicalizer_metrics(stats: dict[str, int]) -> Iterator[Metric]:
    """The frame canonicalizer's flat counters (FrameCanonicalizer.stats) as metric families."""
    resolved = CounterMetricFamily(
        P + "frames_resolved",
        "Stack frames resolved to a symbol, by stack and source.",
        labels=["stack", "source"],
    )
    unresolved = CounterMetricFamily(
        P + "frames_unresolved",
        "Stack frames left unresolved, by stack and reason.",
        labels=["stack", "reason"],
    )
    fids: dict[str, int] = {}
    caches: dict[str, int] = {}
    symbolizer: dict[str, int] = {}
    other: dict[str, int] = {}
    inline: dict[str, int] = {}
    inlined = 0
    for key, value in sorted(stats.items()):
        if key == "inlined_frames":
            inlined = value
        elif key.startswith("inline_"):
            inline[key.removeprefix("inline_")] = value
        elif key.startswith("resolved_"):
            src = key.removeprefix("resolved_")
            resolved.add_metric(["kernel" if src == "kallsyms" else "user", src], value)
        elif key.startswith("kernel_"):
            unresolved.add_metric(["kernel", key.removeprefix("kernel_")], value)
        elif key in _USER_FAILURES:
            unresolved.add_metric(["user", key], value)
        elif key.startswith("events_function_"):
            fids[key.removeprefix("events_function_")] = value
        elif key.startswith("cache_") and key != "cache_hits":
            caches[key.removeprefix("cache_")] = value
        elif key.startswith("symbolizer_"):
            symbolizer[key.removeprefix("symbolizer_")] = value
        else:
            other[key] = value
    yield resolved
    yield unresolved
    yield counter(
        "frames_inlined",
        "Functions found inlined at resolved user frames, each counted as a frame of its own.",
        inlined,
    )
    yield labelled(
        "inline_lookups_unanswered",
        "Lookups of inlined functions that gave no answer yet, by reason (parse_pending: asked again).",
        "reason",
        inline,
    )
    yield labelled("function_ids", "IDs of probed functions, by outcome.", "outcome", fids)
    g = GaugeMetricFamily(P + "symbol_cache_entries", "Entries held by the canonicalizer.", labels=["cache"])
    for k, v in sorted(caches.items()):
        g.add_metric([k], v)
    yield g
    yield labelled("symbolizer_operations", "The symbolizer's own counters.", "op", symbolizer | other)
    d = demangle_stats()
    yield labelled(
        "demangled",
        "Names demangled (cache misses), by language.",
        "language",
        {"cxx": d.cxx, "rust_legacy": d.rust_legacy, "rust_v0": d.rust_v0, "go": d.go, "plain": d.plain},
    )
    yield counter("demangle_failures", "Names that looked mangled but did not demangle.", d.failures)


def attribution_metrics(outcomes: dict[str, int], st: AttributionStats | None) -> Iterator[Metric]:
    """Package attribution counters (agent/purls.py, Attributor.stats) as metric families; ``st`` is
    None before the first key made the Attributor (the same families, every value 0)."""
    yield labelled(
        "hot_symbols_attributed", "Drained hot-symbol keys, by attribution outcome.", "outcome", outcomes
    )
    answers = CounterMetricFamily(
        P + "attribution_answers",
        "Cold attribution answers, by scope and source.",
        labels=["scope", "source"],
    )
    files, functions, errors = (st.files, st.functions, st.errors) if st else ({}, {}, {})
    for scope, values in (("file", files), ("function", functions)):
        for src, n in sorted(values.items()):
            answers.add_metric([scope, src], n)
    yield answers
    yield labelled("attribution_errors", "Bad input met while attributing, by kind.", "kind", dict(errors))
    yield counter(
        "attribution_ambiguous",
        "Files, digests or crates several packages claim: answered unknown, never one of them.",
        st.ambiguous if st else 0,
    )
    yield counter(
        "attribution_sbom_version_mismatches",
        "Packages whose version in the image's own SBOM differs from its package database.",
        st.sbom_version_mismatch if st else 0,
    )
    g = GaugeMetricFamily(P + "attribution_cache_entries", "Attribution cache entries.", labels=["cache"])
    g.add_metric(["files"], st.cached_files if st else 0)
    g.add_metric(["functions"], st.cached_functions if st else 0)
    g.add_metric(["images"], st.images if st else 0)
    yield g


def fastpath_metrics(stats: FastPathStats) -> Iterator[Metric]:
    """What the fast path (agent/fastpath.py) did: repeats counted without processing them again."""
    yield counter("fastpath_hits", "Events counted as repeats of an event just seen.", stats.hits)
    yield counter("fastpath_misses", "Events processed in full by the ordinary path.", stats.misses)
    yield counter(
        "fastpath_evictions", "Remembered outcomes evicted at the fast path's bounds.", stats.evictions
    )
    yield counter(
        "fastpath_stale",
        "Remembered outcomes found invalid (loader build-ids or containers changed).",
        stats.stale,
    )
    yield labelled("fastpath_not_kept", "Outcomes not remembered, by reason.", "reason", dict(stats.not_kept))
    yield counter(
        "fastpath_skipped", "Events sent straight to the ordinary path while nothing repeated.", stats.skipped
    )
