"""From what the store recorded to a reachability state and the Runtime (RTS) factor.

The seed's "Runtime Evidence -> Policy Engine" mapping, made exact:

- the function was observed (calls recorded under any function evidence) ->
  **DynamicReachable**, confidence 0.90; with a confirmed vulnerable flow
  recorded for the claim -> **LiveExploitPath**, 1.00;
- not observed, while the image was watched at a posture that can see
  function calls on at least one gap-free day, and its package was seen
  loaded -> **PotentiallyReachable**, 0.50;
- anything else (never observed, posture None or only Passive, every
  watched day covered by a gap (dropped events, an outage, an opted-out pod
  of the image: store/coverage_gaps.py), or a package never seen
  loaded in the image) -> **defer to static analysis** (state ``None``): the
  runtime has nothing to say, and saying "not reachable" would be a lie.

The RTS factor (weight 0.25), the seed's table with its boundaries pinned:

- 1.00: more than 1,000 calls in one UTC day (exactly 1,000 is not more);
- 0.80: any calls;
- 0.20: more than 30 distinct gap-free days observed without a call
  (exactly 30 is not more), unless the package's code ran under no name
  (store/unnamed.py), or calls that may be the function's hide elsewhere
  (evidence/doubts.py: a file of no package, a row the store refused, a
  function of an interpreted package asked by name): then
  0.50, as those days may hold calls of the function;
- 0.50: watched, no calls, 30 days or fewer;
- 0.50: no posture that can see calls;
- 0.50: the package was never seen loaded in the image (no row of it, or facts only: a mistyped purl, a
  package not in the image): the store knows nothing of it, so no "Likely unused".

Days come from the recorded observation windows (UTC days with a window at
EbpfDeep or above, contracts/posture.py, minus days with a gap and days on which
the image also ran where its calls could not be seen: store/coverage_unseen.py),
never from wall-clock guesses. Pure: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

RTS_WEIGHT = 0.25
HIGH_FREQUENCY_CALLS_PER_DAY = 1_000
LONG_WINDOW_DAYS = 30


class State(enum.StrEnum):
    DYNAMIC_REACHABLE = "DynamicReachable"
    LIVE_EXPLOIT_PATH = "LiveExploitPath"
    POTENTIALLY_REACHABLE = "PotentiallyReachable"


CONFIDENCE: dict[State, float] = {
    State.DYNAMIC_REACHABLE: 0.90,
    State.LIVE_EXPLOIT_PATH: 1.00,
    State.POTENTIALLY_REACHABLE: 0.50,
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What the store knows about one (image, package, function)."""

    invocations: int  # calls recorded (the largest count of any one evidence kind)
    max_calls_in_a_day: int  # the most calls in one UTC day (per evidence kind, the largest)
    watched_days: int  # distinct gap-free UTC days at a posture that can see calls
    days_without_calls: int  # of those, the days with no call of the function
    package_loaded: bool  # a row of the package in the image (a file mapped, a function seen; no fact row)
    exploit_path: bool = False  # the claim records a confirmed vulnerable flow
    unnamed_calls: int = 0  # times the package's code was on a stack under no name (store/unnamed.py)
    doubts: tuple[str, ...] = ()  # calls that may be the function's, in words (evidence/doubts.py)
    unseen_days: int = 0  # gap-free days a window saw calls on, out: the image also ran unseen then


@dataclass(frozen=True, slots=True)
class Rts:
    score: float
    scenario: str
    weight: float = RTS_WEIGHT


@dataclass(frozen=True, slots=True)
class Assessment:
    state: State | None  # None: defer to static analysis
    confidence: float | None
    rts: Rts
    reason: str


def rts(f: Facts) -> Rts:
    """The Runtime factor for these facts (the seed's table; boundaries in the module docstring)."""
    if f.invocations > 0:
        if f.max_calls_in_a_day > HIGH_FREQUENCY_CALLS_PER_DAY:
            return Rts(1.00, "High frequency observation (more than 1000 calls in a day)")
        return Rts(0.80, "Moderate observation (calls observed)")
    if f.watched_days <= 0:
        return Rts(0.50, "No runtime posture (no gap-free day at a posture that can see calls)")
    if not f.package_loaded:  # a mistyped purl, a package not in the image: nothing known of it
        return Rts(0.50, "No observation (neutral: the package was never seen loaded in the image)")
    if f.unnamed_calls > 0:  # days "without calls" may hold calls no symbol named
        ran = f"the package's code ran {f.unnamed_calls} times under no name"
        return Rts(0.50, f"No observation (neutral: {ran})")
    if f.doubts:  # calls that may be the function's: the days "without calls" may hold them
        return Rts(0.50, f"No observation (neutral: {'; '.join(f.doubts)})")
    if f.days_without_calls > LONG_WINDOW_DAYS:
        return Rts(0.20, f"No observation (long window: {f.days_without_calls} days without calls)")
    return Rts(0.50, f"No observation (neutral: {f.days_without_calls} days without calls)")


def assess(f: Facts) -> Assessment:
    """The reachability state, its confidence and the RTS factor, with the reason in words."""
    score = rts(f)
    if f.invocations > 0:
        state = State.LIVE_EXPLOIT_PATH if f.exploit_path else State.DYNAMIC_REACHABLE
        flow = ", with a confirmed vulnerable flow" if f.exploit_path else ""
        why = f"observed: {f.invocations} calls{flow}"
        return Assessment(state, CONFIDENCE[state], score, why)
    unseen = (
        f" ({f.unseen_days} day{'s' * (f.unseen_days != 1)} with a window that could see calls left out: "
        "the image also ran where its calls could not be seen then)"
        if f.unseen_days
        else ""
    )
    if f.watched_days <= 0:
        return Assessment(None, None, score, "never observed at a posture that can see function calls "
                          f"without a gap{unseen}: defer to static analysis")  # fmt: skip
    if not f.package_loaded:
        return Assessment(None, None, score, "the package was never seen loaded in the image: "
                          "defer to static analysis")  # fmt: skip
    state = State.POTENTIALLY_REACHABLE
    why = f"package loaded, function not observed over {f.watched_days} gap-free watched days{unseen}"
    if f.unnamed_calls > 0:
        why += (
            f", but the package's code ran {f.unnamed_calls} times under no name (no symbol table or "
            "debug file covers it): a call of the function cannot be ruled out"
        )
    if f.doubts:
        why += f", but {'; and '.join(f.doubts)}: a call of the function cannot be ruled out"
    return Assessment(state, CONFIDENCE[state], score, why)
