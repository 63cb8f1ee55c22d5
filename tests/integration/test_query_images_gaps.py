"""``query images`` lists an image the store knows only through its gap rows, saying so.

A pod that opted out leaves gap-only rows of its image (source ``opted_out``); an image whose
every event Tetragon throttled leaves gap rows with no events. Before the fix ``query images``
listed neither ("no images observed", exit 4, on a store holding only them): a user listing
images read the absence as "never ran here", when the image ran unwatched. Now each such image
is listed with the state ``gaps only`` and why (text), and ``"state": "gaps_only"`` with its
gaps (``--json``); watched and observed images say their state too. Node-wide gap rows name no
image and list none.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.store.engine import open_store
from tests.integration.test_query_cli import cli
from tests.integration.test_vex import DAY, T0, S

OPTED = "sha256:" + "a" * 64  # ran only in a pod that opted out
THROTTLED = "sha256:" + "b" * 64  # every event of it throttled
WATCHED = "sha256:" + "e" * 64  # watched, nothing of it stored


def seed(url: str, *, watched: bool) -> None:
    rows = []
    for d in range(3):
        start, end = T0 + d * DAY, T0 + d * DAY + 60 * S
        rows.append(ObservationWindow(OPTED, "node-1", start, 0, None, 60, "opted_out", start, end))
        rows.append(ObservationWindow(THROTTLED, "node-2", start, 0, None, 60, "tetragon", start, end, 2))
        rows.append(ObservationWindow("", "node-3", start, 0, None, 60, "none", start, end))  # node-wide
    if watched:
        rows.append(ObservationWindow(WATCHED, "node-1", T0, 5, None, 60, "tetragon"))
    with open_store(url) as s:
        s.write([], rows)


def images(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = cli("query", "images", "--json", "--store", url)
    return code, {i["image"]: i for i in json.loads(capsys.readouterr().out)["images"]}


def test_gap_only_images_are_listed_with_their_gaps(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(url, watched=False)
    code, by_image = images(url, capsys)
    assert code == 0 and sorted(by_image) == [OPTED, THROTTLED], by_image
    opted, throttled = by_image[OPTED], by_image[THROTTLED]
    assert (opted["state"], opted["coverage"], opted["hot_symbol_rows"]) == ("gaps_only", None, 0)
    [gap] = opted["gaps"]
    assert (gap["node"], gap["windows"], gap["not_watched"]) == ("node-1", 3, ["opted_out"]), gap
    assert gap["interval"] == "2026-06-01T00:00:00Z/2026-06-03T00:01:00Z"
    [gap] = throttled["gaps"]
    assert (throttled["state"], gap["node"], gap["throttles"]) == ("gaps_only", "node-2", 6), gap


def test_the_table_says_gaps_only_and_why(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(url, watched=True)
    assert cli("query", "images", "--store", url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-1] == "STATE", lines
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows[OPTED].endswith("gaps only: the image was not watched throughout"), lines
    assert rows[THROTTLED].endswith("gaps only: events were dropped"), lines
    assert rows[WATCHED].endswith("watched, nothing observed"), lines
    assert rows[OPTED].split()[1:4] == ["-", "-", "0"]  # no window: no first start, last end


def test_watched_and_observed_images_say_their_state(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed(url, watched=True)
    _, by_image = images(url, capsys)
    assert by_image[WATCHED]["state"] == "watched_nothing_observed"
    assert "gaps" not in by_image[WATCHED]
