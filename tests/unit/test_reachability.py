"""The reachability mapping and the RTS table, at every boundary (docs/evidence.md)."""

from __future__ import annotations

import pytest

from stellaops_runtime.evidence.reachability import Facts, State, assess, rts


def facts(**kw: object) -> Facts:
    base: dict[str, object] = {
        "invocations": 0,
        "max_calls_in_a_day": 0,
        "watched_days": 10,
        "days_without_calls": 10,
        "package_loaded": True,
    }
    return Facts(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("busiest_day", "score"), [(1, 0.80), (999, 0.80), (1000, 0.80), (1001, 1.00), (50_000, 1.00)]
)
def test_calls_per_day_boundary(busiest_day: int, score: float) -> None:
    a = assess(facts(invocations=busiest_day, max_calls_in_a_day=busiest_day, days_without_calls=0))
    assert a.state is State.DYNAMIC_REACHABLE and a.confidence == 0.90
    assert a.rts.score == score and a.rts.weight == 0.25


@pytest.mark.parametrize(("days", "score"), [(0, 0.50), (1, 0.50), (30, 0.50), (31, 0.20), (400, 0.20)])
def test_days_without_calls_boundary(days: int, score: float) -> None:
    a = assess(facts(watched_days=max(days, 1), days_without_calls=days))
    assert a.state is State.POTENTIALLY_REACHABLE and a.confidence == 0.50
    assert a.rts.score == score


def test_a_confirmed_flow_makes_an_observed_function_a_live_exploit_path() -> None:
    a = assess(facts(invocations=3, max_calls_in_a_day=3, exploit_path=True))
    assert (a.state, a.confidence, a.rts.score) == (State.LIVE_EXPLOIT_PATH, 1.00, 0.80)
    # A flow recorded for a function that never ran proves nothing at runtime.
    assert assess(facts(exploit_path=True)).state is State.POTENTIALLY_REACHABLE


def test_never_watched_defers_to_static_analysis_with_the_no_posture_score() -> None:
    a = assess(facts(watched_days=0, days_without_calls=0))
    assert (a.state, a.confidence, a.rts.score) == (None, None, 0.50)
    assert "defer to static analysis" in a.reason and "No runtime posture" in a.rts.scenario


def test_a_package_never_loaded_defers_even_after_a_long_watch() -> None:
    a = assess(facts(watched_days=90, days_without_calls=90, package_loaded=False))
    assert (a.state, a.confidence) == (None, None)
    # No row of the package (a mistyped purl, a package not in the image): the store knows nothing
    # of it, so no "Likely unused" 0.20 however long the image was watched; the neutral 0.50.
    assert a.rts.score == 0.50 and "never seen loaded" in a.rts.scenario
    assert "never seen loaded" in a.reason
    assert rts(facts(watched_days=0, days_without_calls=0, package_loaded=False)).score == 0.50


def test_calls_win_over_any_watch() -> None:
    a = assess(facts(invocations=1, max_calls_in_a_day=1, watched_days=0, days_without_calls=0))
    assert a.state is State.DYNAMIC_REACHABLE and a.rts == rts(facts(invocations=1, max_calls_in_a_day=1))
    assert a.rts.score == 0.80


@pytest.mark.parametrize("days", [5, 31, 400])
def test_code_that_ran_under_no_name_keeps_the_neutral_score(days: int) -> None:
    """Days "without calls" may hold calls no symbol named (store/unnamed.py): never the 0.20 row."""
    a = assess(facts(watched_days=days, days_without_calls=days, unnamed_calls=42))
    assert (a.state, a.confidence, a.rts.score) == (State.POTENTIALLY_REACHABLE, 0.50, 0.50)
    assert "ran 42 times under no name" in a.rts.scenario
    assert "cannot be ruled out" in a.reason
    # calls found by name still win
    ran = assess(facts(invocations=3, max_calls_in_a_day=3, unnamed_calls=42))
    assert ran.state is State.DYNAMIC_REACHABLE and ran.rts.score == 0.80
