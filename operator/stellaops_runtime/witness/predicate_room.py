"""What a witness predicate holds of its lists, and how they share its bounded size.

A witness must stay well under the ~100 KB public transparency logs accept (statement.py,
``MAX_PREDICATE_BYTES``), whatever the names' length, the number of nodes or the years watched.
Four lists can grow without bound: the function rows, the gaps, the coverage's node names and
the watched days' ranges. :func:`share_room` cuts them, each keeping at least an equal share of
the room, and counts what it left out.

The watched days are signed as ranges (:func:`day_ranges`), not only counted: a ``not_affected``
VEX statement rests on every day of its window watched gap-free, and a count over all time
(``watched_days``) cannot say whether a missing day falls in that window. Past the room the
oldest ranges go first: a VEX window ends at the image's last known day.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any


def canonical(value: Any) -> bytes:
    """Canonical JSON (sorted keys, no spaces): what gets signed, and what is measured."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def day_ranges(days: Iterable[dt.date]) -> list[str]:
    """Runs of consecutive days as ISO 8601 date intervals ``first/last``, oldest first."""
    out: list[str] = []
    first = last = None
    for d in sorted(set(days)):
        if last is not None and (d - last).days == 1:
            last = d
            continue
        if first is not None and last is not None:
            out.append(f"{first.isoformat()}/{last.isoformat()}")
        first = last = d
    if first is not None and last is not None:
        out.append(f"{first.isoformat()}/{last.isoformat()}")
    return out


def _kept(items: list[Any], room: int) -> int:
    """How many of ``items``, from the first, fit in ``room`` bytes of canonical JSON."""
    kept = 0
    for item in items:
        room -= len(canonical(item)) + 1
        if room < 0:
            break
        kept += 1
    return kept


def share_room(predicate: dict[str, Any], rows: list[dict[str, Any]], all_rows: int, limit: int) -> None:
    """Cut the function rows (the least called go first), the gaps (the node-wide ones go before the
    image's own), the coverage's node names and the watched days' ranges (the oldest go first)
    until the predicate fits ``limit`` bytes, each list keeping at least an equal share of the
    room, the omitted ones counted: long names (C++ templates), a cluster of thousands of nodes,
    each with its own gap, or years watched every other day stay under ~100 KB."""
    o = predicate["observation"]
    cov = o["coverage"] = dict(o["coverage"]) if isinstance(o["coverage"], dict) else o["coverage"]
    gaps = sorted(o["gaps"], key=lambda g: g.get("scope") != "image")  # stable: node order kept
    nodes = list(cov["nodes"]) if isinstance(cov, dict) else []
    ranges = list(reversed(o.get("watched_day_ranges", [])))  # the newest kept first
    lists = [rows, gaps, nodes, ranges]
    # measured empty, with each omitted count at its largest (its digits never grow)
    o["functions"], o["gaps"], o["watched_day_ranges"] = [], [], []
    o["functions_omitted"], o["gaps_omitted"], o["nodes_omitted"] = all_rows, len(gaps), len(nodes)
    o["watched_day_ranges_omitted"] = len(ranges)
    if isinstance(cov, dict):
        cov["nodes"] = []
    room = limit - len(canonical(predicate))
    sizes = [sum(len(canonical(x)) + 1 for x in items) for items in lists]
    shares = [0] * len(lists)
    for n, i in enumerate(sorted(range(len(lists)), key=lambda i: sizes[i])):  # water-filling, smallest first
        shares[i] = max(0, min(sizes[i], room // (len(lists) - n)))
        room -= shares[i]
    kept = [_kept(items, share) for items, share in zip(lists, shares, strict=True)]
    o["functions"], o["gaps"] = rows[: kept[0]], gaps[: kept[1]]
    o["functions_omitted"] = all_rows - kept[0]
    o["gaps_omitted"], o["nodes_omitted"] = len(gaps) - kept[1], len(nodes) - kept[2]
    o["watched_day_ranges"] = list(reversed(ranges[: kept[3]]))
    o["watched_day_ranges_omitted"] = len(ranges) - kept[3]
    if isinstance(cov, dict):
        cov["nodes"] = nodes[: kept[2]]
