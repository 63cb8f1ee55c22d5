"""A uprobe address lookup that ends at its next step once its caller gave up waiting for it.

Why this module exists: native/lookup.py runs a lookup of a file attached
while the probes run on a thread of its own, and gives up the wait when the
probes stop. The thread cannot be killed; it went on reading the file within
its 1 GiB and 120 s (native/symaddr.py) for an answer nobody wanted, so a
container's hostile symbol table kept a core busy for up to two minutes after
a stop, a reload or a switch to Tetragon. The lookup's reads already stop at
each step to check their time budget (canonical/limits.py ``Budget.check_time``:
each chunk of a symbol or string table, each chunk of a debug file hashed); the
budgets of :class:`CancellableLimits` (native/symaddr.py's) check there too
whether the thread's caller gave up (:func:`cancellable`: the wait of
native/lookup.py, or a load of the probes the source switch gave up on,
native/source.py), and raise :class:`Cancelled`, which no reader takes for
a damaged or refused file (it is neither ``ElfError`` nor ``OSError``), so no
file is remembered as refused for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from stellaops_runtime.canonical.limits import Budget, Limits

_local = threading.local()  # the cancel event of the lookup running on this thread (None: none)


class Cancelled(Exception):
    """The lookup's caller gave up waiting (native/lookup.py): no answer is wanted."""


@contextmanager
def cancellable(event: threading.Event) -> Iterator[None]:
    """Within: the budgets made on this thread from :class:`CancellableLimits` end at their next
    check once ``event`` is set."""
    outer = given_up()
    _local.event = event
    try:
        yield
    finally:
        _local.event = outer


def given_up() -> threading.Event | None:
    """The cancel event of the lookup (or load) running on this thread, if any."""
    event: threading.Event | None = getattr(_local, "event", None)
    return event


def check_given_up(what: str) -> None:
    """Raise :class:`Cancelled` when this thread's lookup (or load) was given up: for a reader with
    no budget of its own (native/usdt.py's notes)."""
    event = given_up()
    if event is not None and event.is_set():
        raise Cancelled(f"{what}: the read was abandoned")


class CancellableBudget(Budget):
    """A :class:`Budget` whose time check also ends the work once the thread's lookup is given up."""

    __slots__ = ("cancel",)

    def __init__(self, limits: Limits, what: str = "") -> None:
        super().__init__(limits, what)
        self.cancel = given_up()

    def check_time(self, what: str) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled(f"{what}: the read was abandoned")
        super().check_time(what)


@dataclass(frozen=True, slots=True)
class CancellableLimits(Limits):
    """:class:`Limits` whose budgets are :class:`CancellableBudget`."""

    def budget(self, what: str = "") -> Budget:
        return CancellableBudget(self, what)
