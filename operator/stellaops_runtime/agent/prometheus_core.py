"""prometheus-client's metric types for the agent, without its package ``__init__``'s imports.

Why it exists (issue 13): ``import prometheus_client`` (and so any of its
submodules, ``prometheus_client.core`` included) first runs the package's
``__init__``, which imports its exposition module: an HTTP server, a WSGI and
an ASGI app, a push gateway client, gzip. That is ``http.server``,
``email``, ``urllib.request``, ``wsgiref``, ``html`` and ~70 modules, about
4 MB of every node's idle agent, for code the agent never runs: it serves
``/metrics`` itself (agent/httpserver.py) and needs only the metric families,
the registry and the text rendering.

:func:`lean_package` puts the package in ``sys.modules`` without running its
``__init__``: its submodules (``core``, ``registry``, ``samples``...) import
as usual and are the library's own, unchanged. The first read of a name the
``__init__`` defines (``from prometheus_client import Counter``,
``prometheus_client.REGISTRY``), by anyone, runs the real ``__init__`` in that
module (PEP 562 ``__getattr__``), so nothing the library offers is missing;
it only costs its memory when used. Nothing changes when the package is
already imported.

:func:`generate_latest` renders a registry in the Prometheus text format,
byte for byte what ``prometheus_client.exposition.generate_latest`` gives
with its default escaping (tests/unit/test_prometheus_core.py holds it to the
installed library's), using the library's own name escaping and number format.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any

_PACKAGE = "prometheus_client"
_lock = threading.RLock()


def lean_package() -> None:
    """Make ``prometheus_client``'s submodules importable without its ``__init__`` (see above)."""
    with _lock:
        if _PACKAGE in sys.modules:
            return
        spec = importlib.util.find_spec(_PACKAGE)
        if spec is None or spec.loader is None:
            return  # not installed: the imports below fail as they would have
        package = importlib.util.module_from_spec(spec)
        package.__getattr__ = _full_init(package, spec)  # type: ignore[method-assign]
        sys.modules[_PACKAGE] = package


def _full_init(package: types.ModuleType, spec: Any) -> Any:
    state = {"loading": False, "loaded": False}

    def __getattr__(name: str) -> Any:
        if importlib.machinery.PathFinder.find_spec(f"{_PACKAGE}.{name}", package.__path__) is not None:
            # A submodule not imported yet (`from . import values` in the library's own modules,
            # or `prometheus_client.exposition`): import it, as the import system would.
            return importlib.import_module(f"{_PACKAGE}.{name}")
        with _lock:
            if state["loading"]:  # the __init__ is running in this thread: not bound yet
                raise AttributeError(name)
            if not state["loaded"]:
                state["loading"] = True
                try:
                    spec.loader.exec_module(package)
                finally:
                    state["loading"] = False
                state["loaded"] = True
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {_PACKAGE!r} has no attribute {name!r}") from None

    return __getattr__


lean_package()

# The names the agent uses, from the library's own submodules (ruff keeps these after the call).
from prometheus_client.metrics_core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import (  # noqa: E402
    UNDERSCORES,
    escape_label_name,
    escape_metric_name,
)
from prometheus_client.registry import Collector, CollectorRegistry  # noqa: E402
from prometheus_client.samples import Sample  # noqa: E402
from prometheus_client.utils import floatToGoString  # noqa: E402

__all__ = [
    "CONTENT_TYPE_LATEST",
    "Collector",
    "CollectorRegistry",
    "CounterMetricFamily",
    "GaugeMetricFamily",
    "HistogramMetricFamily",
    "Metric",
    "Sample",
    "generate_latest",
    "lean_package",
]

# prometheus_client.exposition.CONTENT_TYPE_LATEST (the test checks they are the same)
CONTENT_TYPE_LATEST = "text/plain; version=1.0.0; charset=utf-8"

# Prometheus text format names for OpenMetrics types; the name suffix a type gets.
_TEXT_TYPE = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_SUFFIX = {"counter": "_total", "info": "_info"}
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")  # moved to gauges of their own, after the family


def _label_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _doc(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _sample_line(s: Sample) -> str:
    labels = ""
    if s.labels:
        pairs = ",".join(
            f'{escape_label_name(k, UNDERSCORES)}="{_label_value(v)}"' for k, v in sorted(s.labels.items())
        )
        labels = "{" + pairs + "}"
    stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"  # milliseconds
    return f"{escape_metric_name(s.name, UNDERSCORES)}{labels} {floatToGoString(s.value)}{stamp}\n"


def generate_latest(registry: Collector) -> bytes:
    """The registry's metrics in the Prometheus text format (UTF-8), as prometheus-client renders them."""
    out: list[str] = []
    for metric in registry.collect():
        moved: dict[str, list[str]] = {}
        try:
            name = metric.name + _SUFFIX.get(metric.type, "")
            shown = escape_metric_name(name, UNDERSCORES)
            out.append(f"# HELP {shown} {_doc(metric.documentation)}\n")
            out.append(f"# TYPE {shown} {_TEXT_TYPE.get(metric.type, metric.type)}\n")
            for s in metric.samples:
                for suffix in _OM_SUFFIXES:
                    if s.name == metric.name + suffix:
                        moved.setdefault(suffix, []).append(_sample_line(s))
                        break
                else:
                    out.append(_sample_line(s))
        except Exception as e:  # as the library does: which metric could not be rendered
            e.args = (e.args or ("",)) + (metric,)
            raise
        for suffix, lines in sorted(moved.items()):
            shown = escape_metric_name(metric.name + suffix, UNDERSCORES)
            out.append(f"# HELP {shown} {_doc(metric.documentation)}\n# TYPE {shown} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")
