"""The open gap of a node that watched an image only under its paired digest is read by either digest.

store/coverage_open.py's node list (``image_last_records``) and its same-day check (``_watched_on``)
read every digest of the image (store/same_image.py ``of_image``); with the asked digest alone, a
node watched only under the other digest, its agent down since its last record, was no open gap,
and a "no" over the rest of its day said not_observed (seen: exit 1 with those two clauses
reverted to ``image_digest == image``). Real rows (SQLite and PostgreSQL); the CLI in-process.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.hotsymbols import ObservationWindow
from stellaops_runtime.contracts.posture import Posture
from tests.integration.test_image_pairs_windows import CONFIG, MANIFEST, at, fill, observed


def test_the_open_gap_of_a_node_watched_only_under_the_other_digest_forbids_a_no(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """node-3 watched the image only under the config digest, its last record day 2 10:00 (its
    agent down since): asked by the manifest digest over days 1 and 2, the rest of its day 2 is an
    open gap, never watched."""
    fill(url, ObservationWindow(CONFIG, "node-3", at(2), 9, Posture.EBPF_DEEP, 60, "tetragon"))
    code, doc = observed(capsys, url, MANIFEST, "inflate")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert [(g["node"], g["scope"]) for g in doc["gaps"]] == [("node-3", "node")], doc["gaps"]
