"""The export file follower's counters: what its metrics and status report.

Split from :mod:`stellaops_runtime.sources.tetragon_export` (the follower's loop); the same
fields as the gRPC source's so every source has the same metrics.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class ExportStats:
    lines: int = 0
    rotations: int = 0
    truncations: int = 0
    oversized_lines: int = 0
    longest_held: int = 0  # the most bytes of one unfinished line held at once (<= MAX_LINE + CHUNK)
    missing_file_waits: int = 0
    open_errors: int = 0  # the path exists but cannot be followed (retried)
    read_errors: int = 0  # a read or stat of the followed file failed (retried)
    queue_waits: int = 0  # the queue was full: the reader waited (the file keeps the rest)
    connected: bool = False  # the file is open and being followed
    connects: int = 0  # times the file was opened (0: it never existed while we looked)
    last_error: str = ""
    other_agent: bool = False  # another agent follows the export file: nothing read (export_lock.py)
    unguarded: bool = False  # its directory cannot be locked: a second follower would go unnoticed
    reconnects: int = 0  # gRPC-source counters, always 0 here (same metrics for every source)
    stream_errors: int = 0
    resumed_at: int = -1  # the byte offset a restart resumed at (the last agent's checkpoint); -1: none
