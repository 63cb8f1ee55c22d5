"""An image the store knows only through gap rows is unknown, and the answer says which gaps.

A pod that opted out leaves gap-only rows of its image (source ``opted_out``, docs/privacy.md);
an image whose every event Tetragon throttled leaves its own gap rows with no events. Before
the fix ``query observed``, ``functions`` and ``hot`` answered such an image "unknown: no
observation window for image …" with ``"gaps": []``: read as an image that never ran here,
when it ran unwatched. Now the reason names the gaps (an opted-out pod, throttling) and
``--json`` lists them; an image the store knows nothing of still gets "no observation window".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.store.engine import open_store
from tests.cli_run import stella
from tests.integration.test_vex import DAY, T0, S

OPTED = "sha256:" + "a" * 64  # ran only in a pod that opted out
THROTTLED = "sha256:" + "b" * 64  # every event of it throttled
NEVER = "sha256:" + "c" * 64  # nothing of it in the store


def cli(url: str, *argv: str, real: bool = False) -> subprocess.CompletedProcess[str]:
    """``stella-runtime <argv> --store url`` in this process, or ``real``ly as a subprocess
    (tests/cli_run.py ``stella``)."""
    return stella(*argv, "--store", url, real=real)


def seeded(url: str) -> str:
    rows = []
    for d in range(3):
        start, end = T0 + d * DAY, T0 + d * DAY + 60 * S
        rows.append(ObservationWindow(OPTED, "node-1", start, 0, None, 60, "opted_out", start, end))
        rows.append(ObservationWindow(THROTTLED, "node-1", start, 0, None, 60, "tetragon", start, end, 2))
    with open_store(url) as s:
        s.write([], rows)
    return url


QUESTIONS = {
    "observed": ("query", "observed", "--function", "crc32"),
    "functions": ("query", "functions", "--purl", "pkg:deb/debian/zlib1g"),
    "hot": ("query", "hot"),
}
WHY = {OPTED: "opted out of observation", THROTTLED: "throttled the image's cgroup (6 throttle signals)"}


@pytest.mark.parametrize("question", sorted(QUESTIONS))
@pytest.mark.parametrize("image", [OPTED, THROTTLED], ids=["opted-out", "throttled"])
def test_a_gap_only_image_is_unknown_naming_its_gaps(url: str, image: str, question: str) -> None:
    seeded(url)
    r = cli(url, *QUESTIONS[question], "--image", image)
    assert r.returncode == 3 and r.stdout.startswith("unknown:"), r.stdout
    assert WHY[image] in r.stdout and "node-1" in r.stdout and "was never watched" in r.stdout, r.stdout
    assert "2026-06-01T00:00:00Z/2026-06-03T00:01:00Z" in r.stdout, r.stdout


def test_json_lists_the_gaps_of_a_gap_only_image(url: str) -> None:
    seeded(url)
    doc: dict[str, Any] = json.loads(cli(url, *QUESTIONS["observed"], "--image", OPTED, "--json").stdout)
    assert doc["answer"] == "unknown" and doc["coverage"] is None, doc
    [gap] = doc["gaps"]
    assert (gap["node"], gap["windows"], gap["not_watched"]) == ("node-1", 3, ["opted_out"]), gap


def test_a_period_holding_only_a_gap_names_it(url: str) -> None:
    seeded(url)
    r = cli(url, *QUESTIONS["observed"], "--image", THROTTLED, "--since", "2026-06-02T00:00:00Z",
            "--until", "2026-06-02T00:05:00Z")  # fmt: skip
    assert r.returncode == 3 and WHY[THROTTLED].replace("6", "2") in r.stdout, r.stdout


def test_an_image_never_seen_still_has_no_observation_window(url: str) -> None:
    seeded(url)
    r = cli(url, *QUESTIONS["observed"], "--image", NEVER, "--json", real=True)
    doc = json.loads(r.stdout)
    assert r.returncode == 3 and doc["gaps"] == [] and "no observation window" in doc["reason"], doc


def test_vex_on_a_gap_only_image_names_its_gaps(tmp_path: Path, url: str) -> None:
    """VEX said "package never seen loaded …; never watched at a posture that can see calls" of
    an image whose pods all opted out: as of an image without the package. The note now names
    the gaps (under_investigation, as before)."""
    from tests.integration.test_vex import VULNS, vex_cli

    r = vex_cli(tmp_path, seeded(url), VULNS, image=OPTED)
    assert r.returncode == 0, r.stderr
    for st in json.loads(r.stdout)["statements"]:
        assert st["status"] == "under_investigation", st
        if st["vulnerability"]["name"] != "CVE-NOFUNC":  # no function: nothing of the store asked
            assert "opted out of observation" in st["status_notes"] and "node-1" in st["status_notes"], st
