"""Alias groups of an address table: which member names the group, decided when first needed.

Why this module exists: several function symbols at one start (C++'s C1/C2
constructors and D1/D2 destructors, libc's ``read``/``__read``) keep one name,
chosen by a rule that reads every member's name (:func:`best_member`). Deciding
that for every group while indexing decoded 3,066 names for libLLVM-14's 1,533
groups (about a quarter of indexing it), while a batch of lookups reaches a
fraction of the groups. The table's start and end of a group do not depend on
the winner when every member with a size has the same size (the winner is
then one of them, and its size is that size), so such a group is left
*pending* (:class:`PendingAliases`): its entry's pick is stored as
``base + g``, past the source's last record (``base`` is the number of
records), so reading the name of that record raises ``IndexError``, and the
reader settles the group with the same rule, once. (An out-of-range pick
rather than a negative one: Python reads a negative index from the end
without complaint, so a negative pick would need a test on every first
lookup, where a ``try`` costs nothing until it is taken.) Other groups
(members of different sizes, or none with a size, where the winner's section
bounds the end; groups of more than 32 members, so that one first lookup ranks
at most 32 names on the caller's thread) are decided while indexing.

Pure: no I/O. canonical/addrindex.py builds and reads these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

__all__ = ["BIND_RANK", "PendingAliases", "best_member"]

# STB_GLOBAL (1) over STB_WEAK (2) over STB_LOCAL (0); anything else last
BIND_RANK = {1: 0, 2: 1, 0: 2}


def best_member(
    members: Iterable[int], sizes: Iterable[int], binds: Iterable[int], name_of: Callable[[int], str]
) -> int:
    """The member that names an alias group: a size over none, then fewest leading underscores,
    then GLOBAL > WEAK > LOCAL, then the shortest name, then the first by name; the first of
    equal ranks (in ``members``' order) wins. ``sizes`` and ``binds`` go with ``members``."""
    bind_rank = BIND_RANK.get
    best, best_rank = -1, None
    for o, size, bind in zip(members, sizes, binds, strict=False):
        name = name_of(o)
        rank = (0 if size else 1, len(name) - len(name.lstrip("_")), bind_rank(bind, 3), len(name), name)
        if best_rank is None or rank < best_rank:
            best, best_rank = o, rank
    return best


class PendingAliases:
    """Alias groups whose winner is not chosen yet: group ``g`` (an entry's pick ``base + g``) is
    ``members[bounds[g]:bounds[g + 1]]`` (record numbers of the source's columns, in table order:
    only members with a size), with their bindings in ``binds``; ``name_of(record)`` is the
    source's raw name."""

    __slots__ = ("base", "binds", "bounds", "members", "name_of")

    def __init__(
        self,
        base: int,
        members: list[int],
        binds: list[int],
        bounds: list[int],
        name_of: Callable[[int], str],
    ) -> None:
        self.base = base
        self.members = members
        self.binds = binds
        self.bounds = bounds
        self.name_of = name_of

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def settle(self, picks: list[int], i: int) -> int:
        """The record naming entry ``i`` (``picks[i]``), choosing it now if its group is pending.

        Idempotent: two threads settling one entry compute and store the same record.
        """
        g = picks[i] - self.base
        if g < 0:
            return picks[i]
        bounds, members, binds, name_of = self.bounds, self.members, self.binds, self.name_of
        # best_member() over members that all have a size, inlined (settled on the lookup path)
        best, best_rank = -1, None
        for k in range(bounds[g], bounds[g + 1]):
            o = members[k]
            name = name_of(o)
            rank = (len(name) - len(name.lstrip("_")), BIND_RANK.get(binds[k], 3), len(name), name)
            if best_rank is None or rank < best_rank:
                best, best_rank = o, rank
        picks[i] = best
        return best

    def settle_all(self, picks: Sequence[int]) -> None:
        """Settle every pending entry of ``picks`` (before reading them all: names, the index cache)."""
        base = self.base
        if isinstance(picks, list) and max(picks, default=0) >= base:
            for i, p in enumerate(picks):
                if p >= base:
                    self.settle(picks, i)
