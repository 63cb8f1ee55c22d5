"""Turn a gap span into observation-window rows: one per window it touches, or per day past a bound.

Why this module exists: split from hotsymbols/gaps.py (which decides *what* is a
gap: throttles, drops, source switches, opted-out pods) so that file stays
small; this part only decides *which rows* a span becomes, and how the marks
join the aggregator's rows at drain (:func:`merge_marks`). A span marks every
aggregation window it touches, partial ones included (a window's rows claim
the whole window, so a window only partly watched is a gap), with its counts
(throttles, dropped events) on the last one. A span of more than
``max_windows`` windows (clock trouble, a replayed recording, an outage of
months) keeps its first and last windows and one row per UTC day between, whose
gap runs to the day's end, at most ``max_days`` of them. Pure: no I/O, no clock.
"""

from __future__ import annotations

from stellaops_runtime.contracts.hotsymbols import ObservationWindow

DAY_NS = 86_400 * 1_000_000_000

Marks = dict[tuple[str, str, int], ObservationWindow]


def mark_span(
    marks: Marks,
    image: str,
    node: str,
    start_ns: int,
    end_ns: int,
    *,
    window_seconds: int,
    source: str,
    throttles: int = 0,
    dropped: int = 0,
    max_windows: int,
    max_days: int,
) -> bool:
    """Merge [start_ns, end_ns] into ``marks`` as gap rows; True if it was capped (day rows between)."""
    if end_ns < start_ns:
        return False
    wn = window_seconds * 1_000_000_000
    first = start_ns - start_ns % wn
    last = end_ns - end_ns % wn
    if end_ns > start_ns and end_ns == last:  # ends exactly on a boundary: not the next window
        last -= wn
    skip_from = skip_to = last + wn  # windows in [skip_from, skip_to) are not marked
    capped = (last - first) // wn >= max_windows
    if capped:
        keep = max_windows - min(max_days, (last - first) // DAY_NS + 2)  # room for day rows
        skip_from = first + (keep // 2) * wn
        skip_to = last - (keep - keep // 2 - 1) * wn
    if skip_to > skip_from:
        _mark_days(marks, image, node, skip_from, skip_to, wn, window_seconds, source, max_days)
    w = first
    while w <= last:
        if w == skip_from:
            w = skip_to
        row = ObservationWindow(
            image, node, w, 0, None, window_seconds, source,
            gap_start_ns=max(start_ns, w, 1), gap_end_ns=max(min(end_ns, w + wn), 1),
            throttles=throttles if w == last else 0, dropped_events=dropped if w == last else 0,
        )  # fmt: skip
        _merge(marks, row)
        w += wn
    return capped


def _mark_days(
    marks: Marks, image: str, node: str, start_ns: int, end_ns: int, wn: int, window_seconds: int,
    source: str, max_days: int,
) -> None:  # fmt: skip
    """The windows [start_ns, end_ns) of a capped gap: one row a UTC day, at its first window in the
    span, whose gap runs to the day's end (past that window: the rows of a day are the gap days'
    evidence, and its periods' too). At most ``max_days`` rows."""
    day = start_ns - start_ns % DAY_NS
    for _ in range(max_days):
        if day >= end_ns:
            return
        a, b = max(day, start_ns), min(day + DAY_NS, end_ns)
        w = a - a % wn
        row = ObservationWindow(image, node, w, 0, None, window_seconds, source,
                                gap_start_ns=max(a, 1), gap_end_ns=max(b, 1))  # fmt: skip
        _merge(marks, row)
        day += DAY_NS


def _merge(marks: Marks, row: ObservationWindow) -> None:
    k = (row.image_digest, row.node_name, row.window_start_ns)
    have = marks.get(k)
    marks[k] = row if have is None else have.merged(row)


def merge_marks(windows: list[ObservationWindow], marks: Marks) -> list[ObservationWindow]:
    """``windows`` with each mark merged into its window's first row with events (or a posture).

    Never into the rows with each other, nor into a row without either: a restate row
    (window_counts.py) must reach the store as one, to clear a mark (store/marks.py), also when
    the drain holds no event of its window. A mark whose window has no such row is a row of its own.
    """
    out = list(windows)
    first: dict[tuple[str, str, int], int] = {}
    for i, w in enumerate(out):
        if w.event_count or w.posture is not None:
            first.setdefault((w.image_digest, w.node_name, w.window_start_ns), i)
    for k, m in marks.items():
        at = first.get(k)
        if at is None:
            out.append(m)
        else:
            out[at] = out[at].merged(m)
    return out
