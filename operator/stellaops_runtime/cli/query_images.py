"""``stella-runtime query images``: every image the store knows, and in what state.

Split from :mod:`stellaops_runtime.cli.query` (the questions about one image).
An image is known through its observation windows, its hot-symbol rows, or
only through gap rows of its own (a pod of it that opted out ran unwatched;
Tetragon throttled every event of it: store/coverage_gaps.py). Each line says
which (``STATE``; ``"state"`` in ``--json``):

- ``observed``: hot-symbol rows of it are stored, or of a digest paired with it
  (store/same_image.py: the image's config digest or another manifest of it, named in
  ``observed_under``; ``query observed`` by it reads them as its own); its counts stay its own;
- ``watched, nothing observed`` (``watched_nothing_observed``): windows, no rows;
- ``gaps only: …`` (``gaps_only``): no window and no row, only gaps, named
  (``"gaps"`` in ``--json``, as ``query observed`` lists them). Such an image
  ran here unwatched or with its events dropped: its absence from a listing
  would read as "never ran", which the store cannot say.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli.query_output import emit, emit_json, table
from stellaops_runtime.cli.store_access import with_store
from stellaops_runtime.store import coverage, queries
from stellaops_runtime.store.coverage import Coverage
from stellaops_runtime.store.coverage_gaps import Gap, gaps_lead, image_gaps, images_with_gaps
from stellaops_runtime.store.same_image import all_paired

OBSERVED = "observed"
WATCHED = "watched_nothing_observed"
GAPS_ONLY = "gaps_only"


class ImageLine:
    """One image of the listing."""

    def __init__(
        self,
        image: str,
        cov: Coverage | None,
        counts: queries.SymbolCounts,
        gaps: list[Gap],
        under: tuple[str, ...] = (),
    ) -> None:
        self.image, self.cov, self.counts, self.gaps = image, cov, counts, gaps
        self.under = [] if counts.rows else list(under)  # paired digests holding its image's rows
        observed = counts.rows or self.under
        self.state = OBSERVED if observed else (WATCHED if cov is not None else GAPS_ONLY)

    def state_text(self) -> str:
        if self.state == GAPS_ONLY:
            return f"gaps only: {gaps_lead(self.gaps)}"
        if self.state == OBSERVED:
            return f"observed (under {', '.join(self.under)})" if self.under else "observed"
        return "watched, nothing observed"

    def nodes(self) -> int:
        return len(self.cov.nodes) if self.cov else len({g.node_name for g in self.gaps})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image": self.image,
            "state": self.state,
            "coverage": self.cov.to_json() if self.cov is not None else None,
            "hot_symbol_rows": self.counts.rows,
            "function_rows": self.counts.function_rows,
            "observed_under": self.under,
        }
        if self.state == GAPS_ONLY:
            out["gaps"] = [g.to_json() for g in self.gaps]
        return out


IMAGES_COLUMNS: list[tuple[str, Callable[[ImageLine], str]]] = [
    ("IMAGE", lambda x: x.image),
    ("FIRST START", lambda x: queries.rfc3339(x.cov.start) if x.cov else "-"),
    ("LAST END", lambda x: queries.rfc3339(x.cov.end) if x.cov else "-"),
    ("WINDOWS", lambda x: str(x.cov.windows) if x.cov else "0"),
    ("NODES", lambda x: str(x.nodes())),
    ("EVENTS", lambda x: str(x.cov.event_count) if x.cov else "0"),
    ("ROWS", lambda x: str(x.counts.rows)),
    ("FUNCTIONS", lambda x: str(x.counts.function_rows)),
    ("POSTURE", lambda x: x.cov.posture_range if x.cov else "-"),
    ("STATE", lambda x: x.state_text()),
]


def image_lines(conn: sa.Connection) -> list[ImageLine]:
    """Every image with windows, rows or gap rows of its own, sorted."""
    queries.snapshot(conn)  # one snapshot: agents flush while this reads
    windows = coverage.all_image_windows(conn)
    counts = queries.symbol_counts(conn)
    none = queries.SymbolCounts(0, 0)
    gapped = images_with_gaps(conn) - windows.keys() - counts.keys()
    pairs = all_paired(conn)
    lines = []
    for img in sorted(windows.keys() | counts.keys() | gapped):
        gaps = image_gaps(conn, image=img) if img in gapped else []
        under = tuple(d for d in pairs.get(img, ()) if counts.get(d, none).rows)
        cov = coverage.summarize(windows.get(img, ()))
        lines.append(ImageLine(img, cov, counts.get(img, none), gaps, under))
    return lines


def run_images(args: argparse.Namespace) -> int:
    def ask(conn: sa.Connection) -> int:
        lines = image_lines(conn)
        if args.json:
            emit_json({"images": [line.to_json() for line in lines]})
        elif lines:
            emit(table(lines, IMAGES_COLUMNS))
        else:
            emit("no images observed")
        return exitcodes.OK if lines else exitcodes.NOT_FOUND

    return with_store(args, ask)
