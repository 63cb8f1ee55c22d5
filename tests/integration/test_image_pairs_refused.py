"""A row the store refused under a paired digest forbids a "no" by the other digest, as its own do.

The ``refused`` doubt (evidence/refused_rows.py) reads the image's rows in ``quarantined_rows``: a
call row the database refused (a file path that was not UTF-8) had its window stored, its calls
not. Before 21170884 a "no" by the manifest digest was unknown whenever the config digest held
rows; since every reader reads the paired digests as one image's (store/same_image.py), that
doubt is gone, and the refused rows were still read under the asked digest alone: a refused call
of inflate under the config digest and a "no" by the manifest digest said not_observed.

Real rows through the store's writer (SQLite and PostgreSQL); the CLI in-process.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.integration.test_image_pairs_windows import CONFIG, MANIFEST, PURL, S, at, fill, observed


@pytest.mark.parametrize(
    ("filed", "asked"), [(CONFIG, MANIFEST), (MANIFEST, CONFIG)], ids=["by-manifest", "by-config"]
)
def test_a_call_refused_under_the_other_digest_forbids_a_no(
    url: str, capsys: pytest.CaptureFixture[str], filed: str, asked: str
) -> None:
    """Before: not_observed (exit 1), the refused call under the other digest unread."""
    fill(url)
    key = HotSymbolKey(filed, "/usr/lib/libz\udcff.so.1", "inflate", EvidenceKind.ON_STACK)
    bad = HotSymbolDelta(key, at(2), 4, at(2) + S, at(2) + S, purl=PURL, node_name="node-2")
    with open_store(url) as s:
        assert s.write_batch(Batch("node-2/agent", 1, [bad])).quarantined == 1
    code, doc = observed(capsys, url, asked, "inflate")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert doc["refused_count"] == 1 and "inflate" in str(doc["refused"]), doc
