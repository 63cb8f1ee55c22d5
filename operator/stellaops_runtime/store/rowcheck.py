"""Say why a row read back from a spool file cannot be stored as it is, before any database sees it.

The aggregator builds its rows with the right types, but a spool file is
read back from disk (after a restart, possibly by another version of the
agent), and JSON gives whatever types the file holds. Two things went wrong
with a wrongly typed row: SQLite stored it as it was (a count of ``5.5``, or
``'abc'`` that the next sum read as 0: a wrong answer), and a value no driver
could convert (a sample that is no JSON, a window start that is text) raised
an error that was not the database's, so the whole batch was retried for
ever and every later flush waited behind it.

:func:`row_problem` checks one row's fields against what the store's columns
hold; the ledger (store/ledger.py) treats a row with a problem as a row the
database refused: the others of its batch are written, it goes to
``quarantined_rows`` with the problem as its error.
"""

from __future__ import annotations

import math
from typing import Any

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, ObservationWindow
from stellaops_runtime.contracts.posture import Posture

MAX_SAMPLE_DEPTH = 64  # far deeper than any sample the agent builds; deeper is refused, not recursed

_DELTA_COUNTS = ("invocation_count", "unique_callers", "total_latency_ns", "max_latency_ns")
_DELTA_TIMES = ("window_start_ns", "first_seen_ns", "last_seen_ns")
_DELTA_TEXTS = ("build_id", "purl", "function_id", "node_name")
_OBS_COUNTS = ("event_count", "window_seconds", "gap_start_ns", "gap_end_ns", "throttles", "dropped_events")
_OBS_TEXTS = ("image_digest", "node_name", "source", "marked_by")


def _is_int(v: Any) -> bool:
    return type(v) is int  # a bool is no count


def _json_problem(v: Any, depth: int) -> str | None:
    if v is None or isinstance(v, str | bool | int):
        return None
    if isinstance(v, float):
        return None if math.isfinite(v) else "a number that is not finite"
    if depth >= MAX_SAMPLE_DEPTH:
        return f"nested deeper than {MAX_SAMPLE_DEPTH}"
    if isinstance(v, dict):
        for k, item in v.items():
            if not isinstance(k, str):
                return f"a key of type {type(k).__name__}"
            if (p := _json_problem(item, depth + 1)) is not None:
                return p
        return None
    if isinstance(v, list | tuple):
        for item in v:
            if (p := _json_problem(item, depth + 1)) is not None:
                return p
        return None
    return f"a value of type {type(v).__name__}"


def _delta_problem(d: HotSymbolDelta) -> str | None:
    k = d.key
    for name in ("image_digest", "module", "function_name"):
        if not isinstance(getattr(k, name), str):
            return f"{name} is not text"
    if not isinstance(k.evidence, EvidenceKind):
        return "evidence is not an evidence kind"
    for name in _DELTA_TIMES:
        if not _is_int(getattr(d, name)):
            return f"{name} is not an integer"
    for name in _DELTA_COUNTS:
        v = getattr(d, name)
        if not _is_int(v) or v < 0:
            return f"{name} is not a non-negative integer"
    c = d.confidence
    if type(c) not in (int, float) or not 0 <= c <= 1:  # NaN fails both bounds
        return "confidence is not a number from 0 to 1"
    for name in _DELTA_TEXTS:
        if not isinstance(getattr(d, name), str):
            return f"{name} is not text"
    if not isinstance(d.sample, dict):
        return "sample is not an object"
    if (p := _json_problem(d.sample, 0)) is not None:
        return f"sample holds {p}"
    return None


def _observation_problem(o: ObservationWindow) -> str | None:
    for name in _OBS_TEXTS:
        if not isinstance(getattr(o, name), str):
            return f"{name} is not text"
    if not _is_int(o.window_start_ns):
        return "window_start_ns is not an integer"
    for name in _OBS_COUNTS:
        v = getattr(o, name)
        if not _is_int(v) or v < 0:
            return f"{name} is not a non-negative integer"
    if o.posture is not None and not isinstance(o.posture, Posture):
        return "posture is not a posture"
    if o.evidenced is not None and not isinstance(o.evidenced, Posture):
        return "evidenced is not a posture"
    return None


def row_problem(unit: HotSymbolDelta | ObservationWindow) -> str | None:
    """Why ``unit`` cannot be stored as it is (its first wrong field), or None when it can."""
    if isinstance(unit, HotSymbolDelta):
        return _delta_problem(unit)
    return _observation_problem(unit)
