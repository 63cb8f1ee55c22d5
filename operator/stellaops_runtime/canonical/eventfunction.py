"""The FrameCanonicalizer's probed functions: the function ID of a uprobe or USDT event.

Why this module exists: split from canonical/frames.py (which fills stack
frames), it holds what the canonicalizer does with the function an event's
probe was attached to. A uprobe names a symbol of a file and a USDT probe a
note: the ID is ``<build-id>:<canonical name>+0x0`` of that file, read
through the locator like a frame's file (canonical/locate.py), the answer
cached per (content identity, module, name). A uprobe whose file cannot be
read keeps an ID built from the loader's build-id and the probed name (the
probe was attached to that very name), counted ``unverified``; a USDT probe
whose file cannot be read gets none.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

from stellaops_runtime.canonical.addrindex import LRU
from stellaops_runtime.canonical.binary import Hit
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.canonical.framefill import probed_function
from stellaops_runtime.canonical.function_id import format_function_id
from stellaops_runtime.canonical.locate import BinaryLocator, Ids
from stellaops_runtime.canonical.parseworker import ParseGate, ParsePending
from stellaops_runtime.canonical.resolution import Outcome
from stellaops_runtime.contracts.events import EventKind, RuntimeCallEvent

log = logging.getLogger(__name__)

_UPROBE = EventKind.UPROBE  # an enum member as a module name: a dict read, not a metaclass lookup


class EventFunctions:
    """Mixed into FrameCanonicalizer, which sets these attributes."""

    counters: Counter[str]
    locator: BinaryLocator
    gate: ParseGate
    _functions: LRU[tuple[str, str, str], str]
    _process_ids: Callable[[RuntimeCallEvent], Ids]  # the process's remembered build-ids

    def _event_function(self, ev: RuntimeCallEvent) -> str:
        module, name = ev.module, ev.function_name
        if not module:
            self.counters["events_function_no_module"] += 1
            return ""
        ids = self._process_ids(ev)
        bid, ident = self.locator.build_id(ev, ids, module)
        key = (ident or f"unverified:{bid}", module, name)
        if bid:
            cached = self._functions.get(key)
            if cached is not None:
                self.counters["events_function_cached"] += 1
                return cached
        binary, reason = self.locator.find_cached(ev, module, bid, ident)
        hit: Hit | None = None
        if binary is not None:
            try:  # reads notes, builds name indexes, may load lazy sources: a parse job
                found, kind = binary, ev.kind
                hit = self.gate.run(
                    ("function", found.identity, kind, name), lambda: probed_function(found, kind, name)
                )
            except ParsePending:
                bid, binary, reason = binary.build_id, None, Outcome.PARSE_PENDING
        if binary is None:
            if ev.kind is _UPROBE and bid:
                # The probe was attached to this very symbol name: the ID holds without the file.
                self.counters[f"events_function_unverified_{reason}"] += 1
                fid = format_function_id(bid, demangle(name), 0)
                if not self.locator.local(ev) and reason != Outcome.PARSE_PENDING:
                    self._functions.put(key, fid)
                return fid
            self.counters[f"events_function_{reason}"] += 1
            return ""
        if hit is None:
            if ev.kind is _UPROBE:
                self.counters["events_function_not_in_binary"] += 1
                fid = format_function_id(binary.build_id, demangle(name), 0)
            else:
                self.counters["events_function_no_probe"] += 1
                return ""
        else:
            self.counters[f"events_function_resolved_{hit.source}"] += 1
            fid = format_function_id(binary.build_id, hit.symbol, 0)
        ids[module] = (binary.build_id, binary.identity)
        self._functions.put((binary.identity, module, name), fid)
        return fid
