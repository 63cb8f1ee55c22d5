"""agent/prometheus_core.py: the library's text rendering byte for byte, without its ``__init__``.

The agent renders ``/metrics`` with its own :func:`generate_latest` so that it
need not import prometheus-client's exposition module (issue 13). Every
rendering here is compared with the installed library's
``prometheus_client.exposition.generate_latest``: every metric type, label
and help escaping, names outside the legacy character set, timestamps,
special numbers, OpenMetrics-only samples, errors, and seeded random families.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from prometheus_client import Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import exposition as lib
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
    StateSetMetricFamily,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample, Timestamp

from stellaops_runtime.agent import prometheus_core as ours


class _Families:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def _registry(families: list[Metric]) -> CollectorRegistry:
    r = CollectorRegistry()
    r.register(_Families(families))
    return r


def _same(registry: CollectorRegistry) -> str:
    mine, theirs = ours.generate_latest(registry), lib.generate_latest(registry)
    assert mine == theirs
    return mine.decode()


def test_the_content_type_is_the_librarys() -> None:
    assert ours.CONTENT_TYPE_LATEST == lib.CONTENT_TYPE_LATEST


def test_every_family_type_renders_as_the_library_does() -> None:
    c = CounterMetricFamily("jobs", 'Jobs "done"\\ so far\nsecond line', labels=["kind", "a.b"])
    made = CounterMetricFamily("made", "m", value=1, created=12.5)
    c.add_metric(["x\\y", 'q"uote'], 3)
    c.add_metric(["new\nline", "ünï"], 2.5, timestamp=1_700_000_000.123)
    c.add_metric(["t", "ts"], 1, timestamp=Timestamp(1_700_000_000, 500_000_000))
    g = GaugeMetricFamily("temp", "t", labels=["z"])
    for i, v in enumerate([0.0, -0.0, 1e20, 1234567.0, 12345678.9, 1e-7, math.inf, -math.inf, math.nan, 7]):
        g.add_metric([str(i)], v)
    h = HistogramMetricFamily("lat", "l", buckets=[("0.1", 1), ("1e3", 5), ("+Inf", 9)], sum_value=42.0)
    gh = GaugeHistogramMetricFamily("queue", "q", buckets=[("1", 2), ("+Inf", 3)], gsum_value=4.5)
    s = SummaryMetricFamily("req", "r", count_value=10, sum_value=3.25)
    info = InfoMetricFamily("build", "b", value={"version": "1.2", "commit": "abc"})
    ss = StateSetMetricFamily("mode", "m", value={"on": True, "off": False})
    unk = UnknownMetricFamily("odd", "o", value=1)
    untyped = Metric("raw_thing", "u", "untyped")
    untyped.add_sample("raw_thing", {}, 5)
    dotted = GaugeMetricFamily("my.metric", "not a legacy name", labels=["lé"])
    dotted.add_metric(["v"], 1)
    text = _same(_registry([c, made, g, h, gh, s, info, ss, unk, untyped, dotted]))
    assert "# TYPE jobs_total counter" in text and "# TYPE made_created gauge" in text


def test_the_librarys_own_metrics_render_as_it_does() -> None:
    r = CollectorRegistry()
    Counter("c", "c", ["l"], registry=r).labels("v").inc(3)
    Gauge("g", "g", registry=r).set(-2.5)
    Histogram("h", "h", registry=r).observe(0.3)
    Summary("s", "s", registry=r).observe(7)
    Info("i", "i", registry=r).info({"a": "b"})
    Enum("e", "e", states=["x", "y"], registry=r).state("y")
    _same(r)


@pytest.mark.parametrize("seed", range(40))
def test_random_families_render_as_the_library_does(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = 'abcXYZ_:019.-é😀\\\n" '
    legacy = "abcdefXYZ_"

    def word(chars: str, n: int) -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randint(1, n)))

    families: list[Metric] = []
    for _ in range(rng.randint(1, 6)):
        name = word(legacy, 8) + (word(alphabet, 4) if rng.random() < 0.3 else "")
        labels = sorted(
            {word(legacy if rng.random() < 0.7 else alphabet, 5) for _ in range(rng.randint(0, 3))}
        )
        kind = rng.choice(["counter", "gauge", "untyped", "info", "summary", "histogram"])
        m = Metric(name, word(alphabet, 20), kind)
        for _ in range(rng.randint(0, 4)):
            suffix = rng.choice(["", "_total", "_created", "_sum", "_count", "_gsum", "_bucket", "_info"])
            value = rng.choice([rng.uniform(-1e9, 1e9), rng.randint(0, 10**12), math.nan, math.inf, 0.0])
            stamp = rng.choice([None, rng.uniform(0, 2e9), Timestamp(rng.randint(0, 2**31), 123)])
            values = {k: word(alphabet, 6) for k in labels}
            m.samples.append(Sample(name + suffix, values, value, stamp))
        families.append(m)
    _same(_registry(families))


def test_a_family_that_cannot_be_rendered_fails_as_in_the_library() -> None:
    bad = Metric("bad", "b", "gauge")
    bad.samples.append(Sample("bad", {}, "not a number"))  # type: ignore[arg-type]
    errors = []
    for render in (ours.generate_latest, lib.generate_latest):
        with pytest.raises(ValueError) as e:
            render(_registry([bad]))
        errors.append((type(e.value), e.value.args))
    assert errors[0] == errors[1] and errors[0][1][-1] is bad


LEAN = textwrap.dedent(
    """
    import json, sys, threading
    from stellaops_runtime.agent import prometheus_core
    heavy = ("prometheus_client.exposition", "http.server", "wsgiref", "urllib.request", "gzip",
             "email", "prometheus_client.gc_collector", "prometheus_client.process_collector")
    lean = sorted(m for m in heavy if m in sys.modules)
    # The whole library is still there on first use, from any thread.
    import prometheus_client
    got, barrier = [], threading.Barrier(4)
    def use(name):
        barrier.wait()
        got.append(getattr(prometheus_client, name).__name__)
    names = ("Counter", "Gauge", "generate_latest", "Info")
    threads = [threading.Thread(target=use, args=(n,)) for n in names]
    [t.start() for t in threads]
    [t.join() for t in threads]
    from prometheus_client import REGISTRY, Counter, generate_latest
    Counter("lean_test", "x").inc()
    text = generate_latest(REGISTRY).decode()
    try:
        prometheus_client.no_such_name
        missing = False
    except AttributeError:
        missing = True
    print(json.dumps([lean, sorted(got), "lean_test_total 1.0" in text, "process_cpu" in text, missing]))
    """
)


def test_the_lean_package_loads_no_exposition_until_the_library_is_used() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LEAN], capture_output=True, text=True, check=True, timeout=120
    )
    lean, got, counted, process_collector, missing = json.loads(out.stdout)
    assert lean == []
    assert got == ["Counter", "Gauge", "Info", "generate_latest"]
    assert counted and process_collector and missing  # the default registry as the library builds it
