"""How ``stella-runtime query`` prints: aligned tables for people, one JSON document for scripts.

Everything goes through :func:`emit`, which survives a reader that closes the
pipe early (``| head -1``): the rest of the output is dropped, the exit
status stays the answer's.

Text the store holds came from the workloads watched: a file named ``x\nobserved: …``, a symbol
holding escape sequences. Table cells and answer lines (:func:`emit_line`) show what a terminal
does not show as itself escaped (:func:`shown`), so no stored text forges a line of an answer or
drives the user's terminal; ``--json`` escapes it as JSON does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from stellaops_runtime.cli import pipes
from stellaops_runtime.store.queries import SymbolRow, rfc3339

T = TypeVar("T")
Column = tuple[str, Callable[[T], str]]


def emit(text: str = "") -> None:
    """One line (or block) of output."""
    pipes.write(text + "\n")


def shown(text: str) -> str:
    """``text`` with control, format and line-separator characters escaped (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def emit_line(text: str) -> None:
    """One line of an answer, whatever stored text it quotes: :func:`shown`."""
    emit(shown(text))


def emit_json(doc: dict[str, Any]) -> None:
    pipes.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


OBSERVED_COLUMNS: list[Column[SymbolRow]] = [
    ("MODULE", lambda r: r.module),
    ("EVIDENCE", lambda r: r.evidence_kind),
    ("PURL", lambda r: r.purl or "-"),
    ("INVOCATIONS", lambda r: str(r.invocation_count)),
    ("CALLERS", lambda r: str(r.unique_callers)),
    ("CONFIDENCE", lambda r: f"{r.confidence:.2f}"),
    ("FIRST SEEN", lambda r: rfc3339(r.first_seen)),
    ("LAST SEEN", lambda r: rfc3339(r.last_seen)),
    ("NODE", lambda r: r.node_name or "-"),
]
FUNCTIONS_COLUMNS: list[Column[SymbolRow]] = [
    ("FUNCTION", lambda r: r.function_name),
    ("MODULE", lambda r: r.module),
    ("EVIDENCE", lambda r: r.evidence_kind),
    ("PURL", lambda r: r.purl or "-"),
    ("INVOCATIONS", lambda r: str(r.invocation_count)),
    ("LAST SEEN", lambda r: rfc3339(r.last_seen)),
]
HOT_COLUMNS: list[Column[SymbolRow]] = [
    ("INVOCATIONS", lambda r: str(r.invocation_count)),
    ("FUNCTION", lambda r: r.function_name),
    ("MODULE", lambda r: r.module),
    ("EVIDENCE", lambda r: r.evidence_kind),
    ("PURL", lambda r: r.purl or "-"),
    ("CONFIDENCE", lambda r: f"{r.confidence:.2f}"),
]
_NUMERIC = {"INVOCATIONS", "CALLERS", "CONFIDENCE", "WINDOWS", "NODES", "EVENTS", "ROWS", "FUNCTIONS"}


def table(rows: Sequence[T], columns: Sequence[Column[T]]) -> str:
    """Aligned plain-text columns: numbers right-aligned, the last column unpadded."""
    cells = [[h for h, _ in columns]] + [[shown(fmt(r)) for _, fmt in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        parts = []
        for i, (text, (head, _)) in enumerate(zip(row, columns, strict=True)):
            if i == len(columns) - 1:
                parts.append(text)
            elif head in _NUMERIC:
                parts.append(text.rjust(widths[i]))
            else:
                parts.append(text.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)
