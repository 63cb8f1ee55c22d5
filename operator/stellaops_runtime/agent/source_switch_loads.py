"""The probe loads of a BCC period, kept on disk so a restarted agent does not count their calls again.

The switch back from the native probes to Tetragon skips Tetragon's cached
events of calls the probes counted (agent/source_switch_overlap.py). An agent
restarted while its probes ran (an upgrade, a kill) knew nothing of them: the
next agent starts on Tetragon, whose cache sends calls stamped while the old
probes ran, and the old agent had stored its counts of them. So while the
probes run, the switch writes their loads (watched time, attached functions)
and the spans they did not read to ``<store.spoolPath>.probe-loads`` beside
the watch record, and the next agent's first Tetragon segment carries an
Overlap built from them (``resumed``).

What the old agent stored ends at its watch record's moment (``cut``, handed
over by ``resume_outage``, agent/watch_record.py); a call it counted after that
was lost with it, and that time is the restart gap, so a cached call stamped
then is counted (Tetragon's is the only count). An agent that stopped
gracefully and stored (or spooled) every count rewrites the file with each
load's real detach and ``stored`` (``SwitchBack.stored_all``): the probes
counted on after stop was asked, and those counts are stored, so no cut. Without a record the cut is the
new agent's start: a call of the old agent's last moments is then skipped,
inside the restart gap the store's answer marks.

At the switch back the file is rewritten with each load's real detach and kept:
Tetragon's cache may still send their calls for ~32 s, and an agent restarted
meanwhile must skip them too (a later BCC period replaces it). The next start
reads it once, then removes it (a later start finds nothing to skip). One
of another boot (no process and no cache outlives a reboot), too large, not
JSON or of the wrong shape is ignored and logged: the result is a call counted
twice, never one lost; so is what is no regular file (a FIFO is not waited
on). Each write replaces the file whole (atomic_file.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from stellaops_runtime.agent.source_switch_overlap import MAX_LOADS, RUNNING, Key, Load, Overlap
from stellaops_runtime.atomic_file import write_atomically
from stellaops_runtime.boot_id import this_boot
from stellaops_runtime.contracts.events import EventKind
from stellaops_runtime.regular_file import read_regular

log = logging.getLogger(__name__)

SUFFIX = ".probe-loads"
FORMAT = "stellaops-runtime-probe-loads"
MAX_BYTES = 16 << 20
MAX_KEYS = 65_536  # per load: the probes' own limits are lower (native/config.py)
MAX_UNREAD = 1024
_KINDS = {k.value: k for k in EventKind}


class LoadsError(Exception):
    """The file exists and cannot be used; the message says why."""


def loads_path(spool_path: str) -> str:
    """Where the probe loads of an agent with this spool path are kept ('' without a spool path)."""
    return spool_path + SUFFIX if spool_path else ""


def encode(
    loads: Iterable[Load], unread: Iterable[tuple[int, int]], boot: str, *, stored: bool = False
) -> bytes:
    """The file's bytes. A running load has ``detached_ns`` 0 (the reader's cut ends it).
    ``stored``: the agent stopped and stored (or spooled) every count of the loads up to their
    detach, so the reader's cut does not end them earlier."""
    out = []
    for ld in loads:
        out.append({
            "since": ld.since_ns, "detached": 0 if ld.detached_ns >= RUNNING else ld.detached_ns,
            "keys": sorted([k.value, m, f] for k, m, f in ld.keys),
            "own": sorted([k.value, m, f, sorted(ids)] for (k, m, f), ids in ld.own.items()),
            "exec": ld.exec_events, "cgroups": sorted(ld.cgroups),
            "cgroup_containers": sorted(ld.cgroup_containers), "cgroups_unseen": ld.cgroups_unseen,
        })  # fmt: skip
    spans = [[a, b] for a, b in unread][-MAX_UNREAD:]
    doc = {"format": FORMAT, "boot": boot, "loads": out, "unread": spans, "stored": stored}
    return json.dumps(doc).encode()


def _int(v: object) -> int:
    if type(v) is not int or not 0 <= v < 1 << 63:
        raise LoadsError(f"not a time: {v!r:.40}")
    return v


def _str(v: object) -> str:
    if type(v) is not str or "\x00" in v or len(v) > 4096:
        raise LoadsError(f"not a name: {v!r:.40}")
    return v


def _key(v: object) -> Key:
    if type(v) is not list or len(v) < 3 or type(v[0]) is not str or v[0] not in _KINDS:
        raise LoadsError(f"not a function: {v!r:.60}")
    return (_KINDS[v[0]], _str(v[1]), _str(v[2]))


def _list(v: object, limit: int, what: str) -> list[Any]:
    if type(v) is not list or len(v) > limit:
        raise LoadsError(f"{what}: not a list of at most {limit}")
    return v


def decode(raw: bytes, *, boot: str, cut_ns: int) -> Overlap | None:
    """The old agent's loads, each ended at ``cut_ns`` at the latest. Raises LoadsError."""
    if len(raw) > MAX_BYTES:
        raise LoadsError(f"larger than {MAX_BYTES} bytes")
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise LoadsError(f"not JSON: {e}") from None
    if type(doc) is not dict or doc.get("format") != FORMAT:
        raise LoadsError("not a probe loads file")
    if not boot or doc.get("boot") != boot:
        raise LoadsError("written during another boot (or the boot is unknown)")
    stored = doc.get("stored", False)
    if type(stored) is not bool:
        raise LoadsError("stored: not true or false")
    loads = []
    for d in _list(doc.get("loads"), MAX_LOADS + 1, "loads"):
        if type(d) is not dict:
            raise LoadsError("a load is not an object")
        since, detached = _int(d.get("since")), _int(d.get("detached"))
        detached = (detached if stored else min(detached, cut_ns)) if detached else cut_ns
        keys = frozenset(_key(k) for k in _list(d.get("keys"), MAX_KEYS, "keys"))
        own = {}
        for o in _list(d.get("own"), MAX_KEYS, "own"):
            if type(o) is not list or len(o) != 4:
                raise LoadsError("own: not [kind, module, function, ids]")
            own[_key(o)] = frozenset(_str(c) for c in _list(o[3], MAX_KEYS, "ids"))
        cgroups = frozenset(_int(c) for c in _list(d.get("cgroups"), MAX_KEYS, "cgroups"))
        ids = frozenset(_str(c) for c in _list(d.get("cgroup_containers", []), MAX_KEYS, "cgroup_containers"))
        if type(d.get("exec")) is not bool:
            raise LoadsError("exec: not true or false")
        unseen = d.get("cgroups_unseen", False)  # absent: an older agent's file (matched by ids alone)
        if type(unseen) is not bool:
            raise LoadsError("cgroups_unseen: not true or false")
        if detached > since:
            loads.append(Load(since, detached, keys, own, d["exec"], cgroups, ids, bool(cgroups) and unseen))
    unread = []
    for s in _list(doc.get("unread"), MAX_UNREAD, "unread"):
        if type(s) is not list or len(s) != 2:
            raise LoadsError("unread: not [start, end]")
        unread.append((_int(s[0]), _int(s[1])))
    return Overlap(tuple(loads), tuple(sorted(unread))) if loads else None


def write(
    path: str, loads: Iterable[Load], unread: Iterable[tuple[int, int]], *, stored: bool = False
) -> bool:
    """Replace the file (no fsync: a lost write means a call counted twice after a restart)."""
    try:
        write_atomically(path, encode(loads, unread, this_boot(), stored=stored), durable=False)
    except OSError as e:
        log.warning("cannot write the probe loads to %s: %s", path, e)
        return False
    return True


def remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def resumed(path: str, cut_ns: int) -> Overlap | None:
    """The last agent's probe loads for this agent's first Tetragon segment; the file is taken."""
    try:  # not blocking: a FIFO there would hold the agent's start (regular_file.py)
        raw = read_regular(path, MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("probe loads %s not read: %s (their cached calls may count twice)", path, e)
        return None
    remove(path)
    try:
        return decode(raw, boot=this_boot(), cut_ns=cut_ns)
    except LoadsError as e:
        log.warning("probe loads %s ignored: %s (their cached calls may count twice)", path, e)
        return None
