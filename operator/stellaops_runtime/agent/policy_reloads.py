"""When each of our Tetragon policies was last loaded anew: what ends a replaced node file's gap.

Tetragon sets a ``binaryPath`` uprobe on the file its TracingPolicy's path named when it loaded the
policy (agent/node_file_gaps.py); a load resolves the path anew. ListTracingPolicies says which
version of each object Tetragon holds (``objectUid``/``objectGeneration``, controller/loaded_version.py),
so an object of ours listed under another version than at the last answered poll, or listed where it
was not, was loaded by Tetragon after that poll asked. The policy watch (agent/policy_load_gaps.py)
hands every answered poll here; :meth:`PolicyReloads.settled_after` tells whether given objects
(or, when which ones cannot be told, every object of ours listed) were loaded after a moment and
have since been listed with every uprobe tracing, and from which poll on: ``ENABLED``, or
``PARTIALLY_ENABLED`` when the hooks that did not load are all told and none is a uprobe
(:func:`uprobes_trace`; a reload whose uprobe on the new build did not load, its symbol gone,
leaves the calls into the file unseen, so the gap stays open until a load traces them all).

The lower bound of a load is the moment the poll before the one that saw it asked (its request was
sent then: Tetragon answered later, still holding the version before), never the time its answer
came back. An object listed at the agent's first answered poll was loaded at a moment unknown: 0. An
object of ours listed twice in one answer (our name in another Tetragon ``domain``, or a policy of
our name loaded otherwise; :data:`LISTED_TWICE`) cannot be told from the other entry, and Tetragon
lists in no set order: no reload of it is seen at that poll nor the next, nor does it trace there
(the safe side). Tetragon also numbers every load of a policy (``TracingPolicyStatus.id``, a counter
of its own that each add, or delete and add again, takes the next of; the agent carries it as
:data:`TETRAGON_ID`): an object of ours listed under the same version with another number was loaded
anew too (a Tetragon restart, a reload on a Node's new labels or on a metadata-only change, none of
which moves the version). A number absent (0: a Tetragon that does not tell it) tells nothing. A
restart numbers its loads from 1 again, so one may give each object the number it had before; but
Tetragon makes its unix socket anew at each start, before it loads its policies: a socket of another
(device, inode) than at the last answered poll that told one (:func:`server_identity`, looked at
after the poll asked, off the event loop and bounded: agent/tetragon_poll.py) is a reload of every
object of ours listed, after that poll asked (Tetragon's pid file keeps a second one from starting
while one runs). A restart behind a TCP address with the same
numbers, and any other reload under the same version and number between two polls, is not seen (the
safe side: the gap stays open). Those moments, and the replacement's they are compared with, are the
monotonic clock's: a wall-clock step back between the look and the poll cannot put a load before the
replacement after it. The poll that saw the objects tracing is told in wall time: the gap ends
there.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Mapping
from typing import Any

from stellaops_runtime.controller.loaded_version import reported_version

Key = tuple[str, str]  # (namespace, name) of a Tetragon object ("" namespace: cluster-scoped)
TRACING = frozenset({"ENABLED", "PARTIALLY_ENABLED"})  # policy_load_gaps.TRACING_STATES (a test checks)
UPROBE_SECTIONS = ("uprobe", "usdt")  # a TracingPolicy's sections whose hooks are on node files
TETRAGON_ID = "tetragonId"  # an entry's TracingPolicyStatus.id, agent-side only (agent/capabilities.py)
LISTED_TWICE = "listedTwice"  # set by agent/policy_load_gaps.py on an object of ours listed twice in one poll


def server_identity(address: str) -> tuple[int, int] | None:
    """The (device, inode) of Tetragon's unix socket at ``address`` (``unix:///path`` or
    ``unix:path``); None for another address, or no socket there. Tetragon makes its socket anew at
    each start, before it loads its policies (and removes it when it stops)."""
    if not address.startswith("unix:"):
        return None
    path = address[len("unix:") :]
    if path.startswith("//"):
        path = path[2:]
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISSOCK(st.st_mode) else None


def tetragon_id(entry: Mapping[str, Any]) -> int | None:
    """The number Tetragon gave the load of a listed object (None: not told, or 0)."""
    n = entry.get(TETRAGON_ID)
    return n if type(n) is int and n > 0 else None


def numbered_as_before(was: Mapping[str, Any] | None, now: Mapping[str, Any]) -> Mapping[str, Any]:
    """``now``, with the number ``was`` told when ``now`` tells none: a number not told at one poll
    is no reload at the next."""
    if was is None or tetragon_id(now) is not None or tetragon_id(was) is None:
        return now
    return {**now, TETRAGON_ID: was[TETRAGON_ID]}


def loaded_anew(was: Mapping[str, Any], now: Mapping[str, Any]) -> bool:
    """Whether an object listed as ``was`` at one poll and as ``now`` at the next was loaded in
    between: another version (uid, generation), or both numbered and by other numbers."""
    if reported_version(was) != reported_version(now):
        return True
    before, after = tetragon_id(was), tetragon_id(now)
    return before is not None and after is not None and before != after


def uprobes_trace(entry: Mapping[str, Any]) -> bool:
    """Whether every uprobe of a listed object traces: it is listed ``ENABLED``, or
    ``PARTIALLY_ENABLED`` with every hook that did not load told (``failedHooks``, as many as
    ``hooksTotal`` less ``hooksLoaded``) and none of them a uprobe (or of a section not told): the
    hook a reload failed to load may be the one on the replaced file (its symbol gone from the new
    build), whose calls then go unseen."""
    state = str(entry.get("state") or "").upper().removeprefix("TP_STATE_")
    if state not in TRACING:
        return False
    if state == "ENABLED":
        return True
    failed, total, loaded = entry.get("failedHooks"), entry.get("hooksTotal"), entry.get("hooksLoaded")
    if not isinstance(failed, list) or not failed or type(total) is not int or type(loaded) is not int:
        return False
    if total - loaded != len(failed):  # some not told (the agent names the first 20)
        return False
    return all(
        isinstance(h, Mapping)
        and isinstance(h.get("section"), str)
        and h["section"] != ""
        and not h["section"].lower().startswith(UPROBE_SECTIONS)
        for h in failed
    )


class PolicyReloads:
    """Per object of ours: the version listed, since when it may have been loaded, since when it traces."""

    def __init__(self) -> None:
        self._asked: int | None = None  # when the last answered poll asked (None: no poll answered yet)
        self._entry: dict[Key, Mapping[str, Any]] = {}  # as last listed (its version, its number)
        self._loaded_after: dict[Key, int] = {}  # its current version was loaded after this moment
        self._tracing_from: dict[Key, int] = {}  # the first poll listing that version tracing
        self._twice: set[Key] = set()  # listed twice at the last answered poll
        self._server: tuple[int, int] | None = None  # Tetragon's socket at the last poll that told it
        self._server_asked = 0  # ... when the last answered poll that saw that socket asked (monotonic)
        self._server_seen = 0  # ... and read its answer (wall)

    def listed(
        self,
        ours: Mapping[Key, Mapping[str, Any]],
        *,
        asked_ns: int,
        now_ns: int,
        server: tuple[int, int] | None = None,
    ) -> int | None:
        """One answered poll: ``ours`` the objects of ours listed (by key), its request sent at
        ``asked_ns`` (monotonic), its answer read at ``now_ns`` (wall), ``server`` the identity of
        Tetragon's socket looked at after ``asked_ns`` (:func:`server_identity`; None: not known).
        Returns, when ``server`` tells a Tetragon restart, the wall time of the last poll that saw
        the socket before (every object of ours listed was loaded anew since; agent/policy_load_gaps.py
        records that time unwatched); None otherwise.

        A restart's loads came after the new socket was made, so after the last poll that saw the old
        one asked: not after a poll in between whose look told nothing (a stat that failed or timed
        out while the list answered, maybe from the new Tetragon already, loaded before it asked)."""
        restart: int | None = None
        restarted_after = self._server_asked
        if server is not None and self._server is not None and server != self._server:
            restart = self._server_seen
        if server is not None:
            self._server, self._server_asked, self._server_seen = server, asked_ns, now_ns
        for key, entry in ours.items():
            was = self._entry.get(key)
            twice = bool(entry.get(LISTED_TWICE))
            if twice or key in self._twice:  # which entry is the object's cannot be told: no reload seen
                pass
            elif was is None or loaded_anew(was, entry):  # (no version nor number: none told)
                self._loaded_after[key] = 0 if self._asked is None else self._asked
                self._tracing_from.pop(key, None)
            elif restart is not None:  # the same version and number, under a Tetragon started since
                self._loaded_after[key] = restarted_after
                self._tracing_from.pop(key, None)
            self._entry[key] = numbered_as_before(was, entry)
            if uprobes_trace(entry) and not twice:
                self._tracing_from.setdefault(key, now_ns)
            else:
                self._tracing_from.pop(key, None)  # not tracing now: settled again later, from then
        for key in [k for k in self._entry if k not in ours]:
            del self._entry[key]
            self._loaded_after.pop(key, None)
            self._tracing_from.pop(key, None)
        self._twice = {k for k, e in ours.items() if e.get(LISTED_TWICE)}
        self._asked = asked_ns
        return restart

    def settled_after(self, keys: Collection[Key] | None, since_ns: int) -> int | None:
        """The poll (wall ns) from which every one of ``keys`` (None: every object of ours listed; none
        listed: never) is listed tracing under a version loaded after ``since_ns`` (monotonic); None
        while one is not."""
        wanted = list(self._entry) if keys is None else list(keys)
        if not wanted:
            return None
        out = 0
        for key in wanted:
            loaded, tracing = self._loaded_after.get(key), self._tracing_from.get(key)
            if loaded is None or tracing is None or loaded < since_ns:
                return None
            out = max(out, tracing)
        return out
