"""The default rules compiled per combination, at start and off the thread that filters.

Why this exists: a text runs only the default rules whose trigger words it holds
(``engine.TriggerIndex``), joined into one regex per combination of rules, which
is faster than the whole set on every text. A combination was compiled the
first time a text asked for it, on the thread that filters: in the agent that is
the pipeline thread, and one compile took 50-130 ms on a quiet core and seconds
under load, during which intake stalled; a new combination could come at any
time mid-stream.

So the whole set is compiled once, when the first filter with the default rules
is built (the agent's start-up, before it connects: agent/pipeline.py), and a
combination not compiled yet runs the whole set while a background thread
compiles it. A rule whose triggers or gate a text fails cannot match it, so the
whole set redacts a text exactly as its combination does
(tests/unit/test_privacy_compile_bound.py); the thread that filters never
compiles (tests/unit/test_privacy_compile_off_thread.py).

The sets depend on nothing but the rules, so one ``DEFAULT_SETS`` serves every
filter of the process (a new privacy config compiles nothing again). At most
``MAX_COMPILED_SUBSETS`` combinations are compiled: a command line is text a
workload chooses, and 24 rules make millions of combinations; past the bound a
new combination keeps running the whole set. While the interpreter shuts down no
thread is started (a new thread never runs then, and ``Thread.start`` waited for
it for ever: the agent hung at its exit, tests/unit/test_privacy_compile_at_exit.py).
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Sequence

from stellaops_runtime.privacy.base import CompiledPatterns, SecretPattern, compile_patterns
from stellaops_runtime.privacy.patterns import DEFAULT_PATTERNS

# Combinations compiled (in practice a handful: which secrets appear together in one field); each
# costs 50-130 ms of a background thread and up to ~0.5 MiB.
MAX_COMPILED_SUBSETS = 32


class CompiledSets:
    """The whole rule set and its combinations (bit masks over ``patterns``), compiled."""

    def __init__(self, patterns: Sequence[SecretPattern], *, max_subsets: int = MAX_COMPILED_SUBSETS) -> None:
        self._patterns = tuple(patterns)
        self._max_subsets = max_subsets
        self._whole: CompiledPatterns | None = None
        # Written by the worker, read by any thread: one dict store or lookup each (atomic).
        self._by_mask: dict[int, CompiledPatterns] = {}
        self._lock = threading.Lock()  # guards the fields below and the whole set's first compile
        self._asked: set[int] = set()
        self._pending: deque[int] = deque()
        self._worker: threading.Thread | None = None

    def whole(self) -> CompiledPatterns:
        """Every rule in one regex, compiled by the first caller (start-up)."""
        whole = self._whole
        if whole is None:
            with self._lock:
                if self._whole is None:
                    self._whole = compile_patterns(self._patterns)
                whole = self._whole
        return whole

    def for_mask(self, mask: int) -> CompiledPatterns:
        """The rules of ``mask`` if compiled, else the whole set (and the combination is asked for)."""
        cp = self._by_mask.get(mask)
        if cp is not None:
            return cp
        if sys.is_finalizing():  # a thread started now never runs: start() would wait for ever
            return self.whole()  # (a record logged by the last garbage collection at exit)
        with self._lock:
            if mask not in self._asked and len(self._asked) < self._max_subsets:
                self._asked.add(mask)
                self._pending.append(mask)
                if self._worker is None:
                    self._worker = threading.Thread(target=self._run, name="privacy-compile", daemon=True)
                    self._worker.start()
        return self.whole()

    def compiled_masks(self) -> frozenset[int]:
        """The combinations compiled so far."""
        return frozenset(self._by_mask)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no combination is being compiled; False if one still is after ``timeout``."""
        with self._lock:
            worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def _run(self) -> None:
        """Compile the asked combinations one after another, then end (a new ask starts another)."""
        while True:
            with self._lock:
                if not self._pending:
                    self._worker = None
                    return
                mask = self._pending.popleft()
            try:
                cp = compile_patterns([p for i, p in enumerate(self._patterns) if mask >> i & 1])
            except BaseException:  # the combination keeps running the whole set
                with self._lock:
                    self._worker = None
                raise
            self._by_mask[mask] = cp


DEFAULT_SETS = CompiledSets(DEFAULT_PATTERNS)
