"""Was an image under observation, when, and how well: what a "no" rests on.

DESIGN.md: answers are three-valued. A function is *observed* when the store
has rows of it; *not observed* only when the image was watched at a posture
that can see function calls (EbpfDeep or more: user stacks were counted,
contracts/posture.py) in the period asked about; otherwise the answer is
*unknown*: never observed, or observed only at Passive (lifecycle events), at
ActiveTracing (kernel probes without user stacks, uprobes, USDT: no function
but a probed one shows; and every window only agents before migration 0009
wrote, whatever posture they recorded: store/watched_sql.py ``window_level``)
or at an unknown posture (windows recorded before migration 0003).
:func:`absence` is that rule, over :class:`Coverage` summaries of the
``observation_windows`` rows that :func:`image_windows` and
:func:`all_image_windows` read (grouped in SQL, so a month of one-minute
windows is a handful of rows).

A window in which Tetragon said it dropped events (a throttled cgroup, its
export rate limiter; migration 0005), an outage or an opted-out pod of the
image has a *gap*: :func:`image_gaps` (store/coverage_gaps.py) reads the
image's own gaps and the node-wide ones of days on which the image was
observed on that node, and :func:`absence` answers unknown, naming them, whenever one
falls in the period asked about (all time without one). So it does when code of
the image ran under no name (store/unnamed.py): a frame no symbol named may be
the function asked about. So it does when the image also ran in the period
on a node none of whose windows of a UTC day could see calls, beside windows
that could (another node at ActiveTracing, or where it only ran:
store/coverage_unseen.py): a "not observed" is about every run of it. Gap-only and
node-wide rows (no events, no posture) are never coverage; a row with no
events but a posture is: the agent's lifecycle observer saw the image's
container run through that window while the source was connected
(:func:`is_coverage`, hotsymbols/run_windows.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stellaops_runtime.contracts.posture import Posture, posture_text
from stellaops_runtime.store.coverage_first import before_first_day
from stellaops_runtime.store.coverage_first import first_record as first_record  # as coverage.first_record
from stellaops_runtime.store.coverage_gaps import NOT_WATCHED, OUTAGE_SOURCE, Gap, gaps_lead
from stellaops_runtime.store.coverage_gaps import image_gaps as image_gaps  # read as coverage.image_gaps
from stellaops_runtime.store.coverage_unseen import Unseen, describe_all
from stellaops_runtime.store.coverage_unseen import image_unseen as image_unseen  # as coverage.image_unseen
from stellaops_runtime.store.coverage_windows import WindowGroup as WindowGroup  # as coverage.WindowGroup
from stellaops_runtime.store.coverage_windows import all_image_windows as all_image_windows
from stellaops_runtime.store.coverage_windows import image_windows as image_windows
from stellaops_runtime.store.coverage_windows import rank
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.unnamed import UnnamedCode, describe

if TYPE_CHECKING:
    from stellaops_runtime.evidence.doubts import Doubt

OBSERVED = "observed"
NOT_OBSERVED = "not_observed"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Coverage:
    """A summary of observation windows: the interval they span and what backs it."""

    start: dt.datetime
    end: dt.datetime
    windows: int
    nodes: tuple[str, ...]
    lowest: Posture | None
    highest: Posture | None
    sources: tuple[str, ...]
    event_count: int

    @property
    def interval(self) -> str:
        """ISO 8601 ``start/end``."""
        return f"{rfc3339(self.start)}/{rfc3339(self.end)}"

    @property
    def posture_range(self) -> str:
        lo, hi = posture_text(self.lowest), posture_text(self.highest)
        return lo if lo == hi else f"{lo}..{hi}"

    def describe(self) -> str:
        """One line for people: interval, windows, nodes, posture, source, events."""
        n, k = self.windows, len(self.nodes)
        source = ",".join(self.sources) or "unknown"
        return (
            f"{self.interval} ({n} window{'s' * (n != 1)} on {k} node{'s' * (k != 1)}, "
            f"posture {self.posture_range}, source {source}, {self.event_count} events)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
            "interval": self.interval,
            "windows": self.windows,
            "nodes": list(self.nodes),
            "posture": {"lowest": posture_text(self.lowest), "highest": posture_text(self.highest)},
            "source": ",".join(self.sources),
            "event_count": self.event_count,
        }


# Sources of gap rows alone, never of a watch: a window's row that holds one names how it was not watched.
_GAP_ONLY = frozenset(NOT_WATCHED) - {OUTAGE_SOURCE}


def summarize(groups: Iterable[WindowGroup]) -> Coverage | None:
    """The coverage of these windows; None when there are none."""
    gs = list(groups)
    if not gs:
        return None
    postures = sorted((g.posture for g in gs), key=rank)
    return Coverage(
        start=min(g.first_start for g in gs),
        end=max(g.last_end for g in gs),
        windows=sum(g.windows for g in gs),
        nodes=tuple(sorted({g.node_name for g in gs})),
        lowest=postures[0],
        highest=postures[-1],
        sources=tuple(sorted({p for g in gs for p in g.source.split(",") if p and p not in _GAP_ONLY})),
        event_count=sum(g.event_count for g in gs),
    )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the store can say about an absence: not observed (with coverage) or unknown (why)."""

    answer: str  # NOT_OBSERVED | UNKNOWN
    reason: str
    coverage: Coverage | None
    gaps: tuple[Gap, ...] = ()
    unnamed: tuple[UnnamedCode, ...] = ()  # code that ran under no name (store/unnamed.py)
    doubts: tuple[Doubt, ...] = ()  # calls that may be the function's (evidence/doubts.py)
    unseen: tuple[Unseen, ...] = ()  # runs that could not see calls beside windows that could


# What windows at a posture below FUNCTION_VISIBLE showed (contracts/posture.py).
_SHOWED = {
    Posture.PASSIVE: "lifecycle events",
    Posture.ACTIVE_TRACING: "kernel probes without user stacks; uprobes and USDT show only their functions",
}


def _period_text(since: dt.datetime | None, until: dt.datetime | None) -> str:
    if since is not None and until is not None:
        return f" between {rfc3339(since)} and {rfc3339(until)}"
    if since is not None:
        return f" since {rfc3339(since)}"
    return f" until {rfc3339(until)}" if until is not None else ""


def absence(
    image: str,
    groups: Sequence[WindowGroup],
    *,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    gaps: Sequence[Gap] = (),
    unnamed: Sequence[UnnamedCode] = (),
    doubts: Sequence[Doubt] = (),
    unseen: Sequence[Unseen] = (),
    recorded_from: dt.datetime | None = None,
) -> Verdict:
    """What "no rows" means for ``image`` given its windows, gaps, the code that ran under no
    name, the calls that may be the function's (``doubts``) and the runs of it that could not see
    calls (``unseen``, store/coverage_unseen.py), each already narrowed to the period and, for
    ``unnamed``, to the question's package; ``recorded_from``, the store's first record: a period
    starting before its UTC day is never "not observed" (store/coverage_first.py)."""
    period = _period_text(since, until)
    if not groups:
        if gaps:  # it ran here, unwatched (an opted-out pod) or with every event dropped
            why = (
                f"image {image} was never watched{period}; it ran with every event of it missing: "
                f"{'; '.join(g.describe() for g in gaps)}"
            )
            return Verdict(UNKNOWN, why, None, tuple(gaps))
        return Verdict(UNKNOWN, f"no observation window for image {image}{period}", None)
    seeing = [g for g in groups if g.sees_functions]
    if not seeing:
        cov = summarize(groups)
        assert cov is not None
        if cov.highest is None:
            why = (
                f"image {image} was observed{period} only at an unknown posture (windows recorded "
                "before postures were stored), which cannot back a 'not observed'"
            )
        else:
            why = (
                f"image {image} was observed{period} only at posture {posture_text(cov.highest)} "
                f"({_SHOWED.get(cov.highest, 'no events')}), which cannot see function calls"
            )
        legacy = sorted({g.recorded for g in groups if g.recorded is not None}, key=rank)
        if legacy:
            n = sum(g.windows for g in groups if g.recorded is not None)
            why += (
                f"; {n} window{'s' * (n != 1)} recorded at posture {'/'.join(p.value for p in legacy)} "
                "by agents before store migration 0009 read as ActiveTracing: those agents gave uprobe "
                "and USDT events that posture, and whether the events carried user stacks was not recorded"
            )
        mixed = sorted({g.shown for g in groups if g.shown is not None}, key=rank)
        if mixed:
            n = sum(g.windows for g in groups if g.shown is not None)
            why += (
                f"; {n} window{'s' * (n != 1)} had events at posture {'/'.join(p.value for p in mixed)} "
                "that some containers of the image showed and another did not (one container's stacks "
                "do not see another's calls; a running container that sent none counts at Passive), "
                "or that agents before store migration 0009 recorded for "
                "uprobe and USDT events"
            )
        if gaps:  # named too: events of the period were lost, whatever the posture could see
            why += f"; and {gaps_lead(gaps)}: {'; '.join(g.describe() for g in gaps)}"
        return Verdict(UNKNOWN, why, cov, tuple(gaps))
    cov = summarize(seeing)
    assert cov is not None
    ran = f"it also ran where its calls could not be seen: {describe_all(list(unseen))}" if unseen else ""
    if doubts:  # the gaps and unseen runs named too: each alone would forbid the "no"
        lost = [f"{gaps_lead(gaps)}: {'; '.join(g.describe() for g in gaps)}"] if gaps else []
        parts = [*lost, *(d.why for d in doubts), *([ran] if ran else [])]
        why = f"image {image} was under observation{period} {cov.describe()}, but {'; and '.join(parts)}"
        return Verdict(UNKNOWN, why, cov, tuple(gaps), doubts=tuple(doubts), unseen=tuple(unseen))
    if gaps:
        why = (
            f"image {image} was under observation{period} {cov.describe()}, but {gaps_lead(gaps)}: "
            f"{'; '.join(g.describe() for g in gaps)}{'; and ' + ran if ran else ''}; a 'not observed' "
            "cannot rest on windows with gaps (ask about a period without them with --since/--until)"
        )
        return Verdict(UNKNOWN, why, cov, tuple(gaps), unseen=tuple(unseen))
    if unseen:
        why = (
            f"image {image} was under observation{period} {cov.describe()}, but {ran}; a 'not observed' "
            "is about every run of the image, and a function only those runs called would not be "
            "seen (ask about a period without them with --since/--until)"
        )
        return Verdict(UNKNOWN, why, cov, unseen=tuple(unseen))
    if unnamed:
        why = (
            f"image {image} was under observation{period} {cov.describe()}, but code ran there that "
            f"no symbol names: {describe(list(unnamed))}; the function asked about may be that code "
            "(no symbol table or debug file covers it: docs/symbolization.md)"
        )
        return Verdict(UNKNOWN, why, cov, unnamed=tuple(unnamed))
    if since is not None and (unrecorded := before_first_day(since, recorded_from)) is not None:
        why = f"image {image} was under observation{period} {cov.describe()}, but {unrecorded}"
        return Verdict(UNKNOWN, why, cov)
    return Verdict(NOT_OBSERVED, f"image {image} was under observation {cov.describe()}", cov)


def backing(groups: Sequence[WindowGroup]) -> Coverage | None:
    """The coverage an answer rests on: the windows that can see functions, else all of them."""
    seeing = [g for g in groups if g.sees_functions]
    return summarize(seeing or groups)
