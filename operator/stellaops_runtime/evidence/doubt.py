"""One doubt on a "no", and how a doubt lists files: shared by evidence/doubts.py and
evidence/not_seen.py (split so that neither imports the other's module for its record type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stellaops_runtime.store.queries import SymbolRow


@dataclass(frozen=True, slots=True)
class Doubt:
    """Calls that may be the function asked about though no row of it says so."""

    kind: str  # the JSON key of ``rows``: "unattributed", "history_removed", "refused", ...
    why: str  # a clause for people
    rows: tuple[SymbolRow, ...]  # the busiest first when ``count`` says there are more
    count: int | None = None  # how many rows there are, when ``rows`` holds only some

    def to_json(self) -> dict[str, Any]:
        """``{kind: [the first MAX_ROWS rows], kind_count: all of them, kind_truncated: cut}``."""
        n = len(self.rows) if self.count is None else max(self.count, len(self.rows))
        shown = [r.to_json() for r in self.rows[:MAX_ROWS]]
        return {self.kind: shown, f"{self.kind}_count": n, f"{self.kind}_truncated": n > len(shown)}


# A doubt names at most this many files (each at most MAX_NAME_CHARS), then counts the rest: an
# image whose attribution failed for thousands of files would make a reason, an Evidence document
# and a witness of hundreds of KB (a witness stays under ~100 KB: docs/witnesses.md).
MAX_LISTED = 20
MAX_NAME_CHARS = 300
# An answer's JSON lists at most this many rows of a doubt (the busiest first), with their count and
# whether the list is cut: an image with a stripped binary no package claims has a row per offset.
MAX_ROWS = 100


def listed(items: set[str], what: str, sep: str = ", ", total: int | None = None) -> str:
    """``items`` sorted, at most MAX_LISTED of them, each cut at MAX_NAME_CHARS, then how many more
    (of ``total``, when ``items`` are only the first of them)."""
    shown = [i if len(i) <= MAX_NAME_CHARS else i[: MAX_NAME_CHARS - 1] + "…" for i in sorted(items)]
    more = max(len(shown), total or 0) - min(len(shown), MAX_LISTED)
    return sep.join(shown[:MAX_LISTED]) + (f"{sep}and {more} more {what}" if more > 0 else "")
