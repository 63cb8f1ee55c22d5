"""The watch record's file: its format, its atomic (and, when asked, durable) write, and the
reading back of where the hole since the last agent starts.

Split from :mod:`stellaops_runtime.agent.watch_record` (which says what the record is for
and keeps it while the agent runs); the rules for a record that cannot be trusted and for
a wall clock stepped since it was written are in that module's docstring.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
from typing import Any, NamedTuple

from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.hotsymbols.clock_span import boot_ns

log = logging.getLogger("stellaops_runtime.agent.watch_record")

SUFFIX = ".alive"
MAX_RECORD_BYTES = 4096  # the record is ~150 bytes; anything larger is not ours
FUTURE_SKEW_NS = 10 * 1_000_000_000  # a time this far ahead of the clock is taken as now
MAX_STEP_NS = 86_400 * 1_000_000_000  # a record further ahead than this is no clock's time
FORMAT = "stellaops-runtime-alive"


class RecordIgnored(Exception):
    """The record cannot be used; ``reason`` is its metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def record_path(spool_path: str) -> str:
    """Where the record of a spool path lives ("" without a spool path: no record)."""
    return spool_path + SUFFIX if spool_path else ""


def encode(
    node: str, agent_id: str, alive_ns: int, alive_boot: int | None = None, export: Any = None
) -> bytes:
    """The record; ``export``: the export source's checkpoints (agent/export_resume.py), kept
    only with the boot clock (they are used on the same boot only)."""
    doc: dict[str, Any] = {"format": FORMAT, "node": node, "agent_id": agent_id, "alive_ns": int(alive_ns)}
    boot_id = this_boot() if alive_boot is not None else ""
    if boot_id:
        doc["boot_id"], doc["boot_ns"] = boot_id, int(alive_boot)  # type: ignore[arg-type]
        if export:
            doc["export"] = export
    return json.dumps(doc, ensure_ascii=True, sort_keys=True).encode()


class Hole(NamedTuple):
    """Where the hole since the last agent starts: wall ns, its boottime (None: unknown), the agent."""

    alive_ns: int
    agent_id: str
    boot_ns: int | None = None
    export: Any = None  # the export source's checkpoints, as written
    # The checkpoints' moments can be used (this boot, a sane time); else they position the file
    # only and the gap stays whole (another boot, a record further ahead than any clock step).
    export_timed: bool = True


def write_record(
    path: str,
    node: str,
    agent_id: str,
    alive_ns: int,
    alive_boot: int | None = None,
    export: Any = None,
    *,
    durable: bool = False,
) -> None:
    """Replace the record (temporary file beside it, mode 0600, renamed). Raises OSError.

    ``durable``: on disk before this returns (the file and the rename synced): an export
    checkpoint in flight must survive a power loss that the rows it lets into the store
    survive, or the next boot's agent would read those lines again."""
    write_atomically(path, encode(node, agent_id, alive_ns, alive_boot, export), mode=0o600, durable=durable)


def read_record(path: str, *, node: str, now_ns: int, now_boot: int | None = None) -> Hole:
    """Where the hole of a usable record starts (see the module docstring); failures raise
    :class:`RecordIgnored`. ``now_boot``: the boot clock now (read when None).

    A missing file raises FileNotFoundError (not an error: the node's first agent).
    """
    doc, agent_id, alive = read_moment(path, node=node)
    now_boot = boot_ns() if now_boot is None else now_boot
    boot, boot_id, here = doc.get("boot_ns"), doc.get("boot_id"), this_boot()
    other_boot = isinstance(boot_id, str) and bool(boot_id) and bool(here) and boot_id != here
    if boot_id != here or type(boot) is not int or not 0 <= boot <= now_boot:
        boot = None  # another boot's (or an older record's): its boot-clock time means nothing here
    hole = _hole_start(alive, boot, now_ns, now_boot, agent_id[:128], other_boot=other_boot)
    if boot is not None and hole.boot_ns == boot and "export" in doc:
        hole = hole._replace(export=doc["export"])  # checked by its user (agent/export_resume.py)
    elif "export" in doc:  # a reboot (the file kept on a persistent hostPath), a clock stepped far back
        hole = hole._replace(export=doc["export"], export_timed=False)
    return hole


def read_moment(path: str, *, node: str) -> tuple[dict[str, Any], str, int]:
    """The record of ``node`` at ``path``: its document, agent id and ``alive_ns`` as written (whatever
    the clock reads now: agent/history_days.py). Raises as :func:`read_record`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP: a symlink; EACCES, ...
        raise RecordIgnored("unreadable", f"cannot open: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RecordIgnored("unreadable", "not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_RECORD_BYTES + 1)
    except OSError as e:
        raise RecordIgnored("unreadable", f"cannot read: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_RECORD_BYTES:
        raise RecordIgnored("too_large", f"larger than {MAX_RECORD_BYTES} bytes")
    try:
        doc: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise RecordIgnored("not_json", "not a JSON document") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RecordIgnored("bad_shape", "not an alive record")
    rec_node, agent_id, alive = doc.get("node"), doc.get("agent_id"), doc.get("alive_ns")
    if not isinstance(rec_node, str) or not isinstance(agent_id, str):
        raise RecordIgnored("bad_shape", "node or agent_id is not a string")
    if type(alive) is not int:  # bool and float are not times
        raise RecordIgnored("bad_shape", "alive_ns is not an integer")
    if rec_node != node:
        raise RecordIgnored("other_node", f"written for node {rec_node[:64]!r}, this is {node!r}")
    if alive <= 0:
        raise RecordIgnored("bad_time", f"alive_ns {alive} is not a time")
    return doc, agent_id, alive


def _hole_start(
    alive: int, boot: int | None, now: int, now_boot: int, agent_id: str, *, other_boot: bool = False
) -> Hole:
    """The hole's start, the wall clock's steps allowed for (see the module docstring)."""
    ahead = alive - now
    if boot is not None and ahead <= MAX_STEP_NS:
        return Hole(alive, agent_id, boot)  # measured on the boot clock: both sides of any step
    if other_boot and ahead <= FUTURE_SKEW_NS:  # the node rebooted: nobody watched it since it booted
        return Hole(min(alive, now - now_boot), agent_id)
    if ahead <= FUTURE_SKEW_NS:
        return Hole(min(alive, now), agent_id)
    # The clock stepped back since (or the time is no clock's): the old clock's side is unknowable;
    # the new clock's side starts at least where the boot clock puts the hole's start, or at the boot.
    start = now - (now_boot - boot if boot is not None else now_boot)
    log.warning(
        "watch record time is %ss ahead of the clock (stepped back?): the gap starts at %s instead",
        min(ahead, 10**18) // 10**9, _iso(start),
    )  # fmt: skip
    return Hole(start, agent_id)


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))
