"""A pod no native policy selects keeps answers about its image unknown, named as such (real CLI).

The agent marks each window in which it dropped such a pod's probe events as
its image's gap, source ``not_selected`` (tests/unit/test_gaps_not_selected.py
through the real Pipeline). Here the store and the CLI: the gap row merges with
the watched pod's window of the same image, node and minute, and ``query
observed`` answers unknown (exit 3) with ``"not_watched": ["not_selected"]``,
never "not observed" from the watched pod alone; the coverage's source stays
the watching one. Seen failing before the fix (no ``GapTracker.not_selected``).
"""

from __future__ import annotations

from stellaops_runtime.hotsymbols.gaps import GapTracker
from tests.integration.test_answer_unwatched_spans import IMG, OTHER, T0, S, W, fill, observed, seen


def test_a_pod_no_policy_selects_keeps_answers_about_its_image_unknown(url: str) -> None:
    tracker = GapTracker(window_seconds=60)
    for ts in (T0 + W + 5 * S, T0 + W + 30 * S):  # the unselected pod's dropped probe events
        tracker.not_selected(IMG, "n1", ts)
    windows = tracker.drain([seen(IMG, T0), seen(IMG, T0 + W), seen(IMG, T0 + 3 * W), seen(OTHER, T0 + W)])
    fill(url, windows)
    code, doc, text = observed(url, IMG)
    assert (code, doc["answer"]) == (3, "unknown"), text
    [gap] = doc["gaps"]
    assert (gap["scope"], gap["not_watched"], gap["start"], gap["end"], gap["windows"]) == (
        "image", ["not_selected"], "2026-06-01T12:01:00Z", "2026-06-01T12:02:00Z", 1,
    )  # fmt: skip
    assert "no native policy selects" in doc["reason"] and "throttle" not in doc["reason"]
    assert doc["coverage"]["source"] == "tetragon"  # the drop is no source of coverage
    assert observed(url, IMG, "--since", "2026-06-01T12:02:00Z")[0] == 1  # after that window: answered
    assert observed(url, OTHER)[0] == 1  # another image on the node was not touched
