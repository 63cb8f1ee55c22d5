"""A function asked by file offset where an unprobed split tail may lie: unknown, never "not observed".

Static analysis names a function of a stripped file by where it starts, ``<build-id>:+0x<offset>``
(docs/function-ids.md). When that function is a split tail the PURL or ``binaryPath`` probes left
unprobed (``split_fn.part.0``, called directly by callers that inlined the head), its calls were
never counted, and the store holds only an ``unprobed`` fact of it: a name, not where in the file
it lies. With the file seen loaded and no named call of that build, the offset question answered
``not_observed`` about code nobody watched (evidence/probed_in_part.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.native.purl_targets import function_offsets
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_json
from tests.integration.test_answer_replaced_in_place import APP, MAIN, _build, _windows, needs_gcc
from tests.integration.test_probed_in_part_stripped import PROGRAM
from tests.integration.test_vex import DAY, T0, S

IMG = "sha256:" + "7e" * 32


@needs_gcc
def test_a_file_offset_in_an_unprobed_tail_is_unknown(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Seen failing before the fix: the tail's own file offset answered not_observed (exit 1)."""
    host = tmp_path / "host"
    bid = _build(tmp_path, host, PROGRAM + MAIN)
    exe = str(host) + APP
    fd = os.open(exe, os.O_RDONLY)
    try:
        offsets, _ = function_offsets(fd, ["split_fn.part.0", "split_fn"])
    finally:
        os.close(fd)
    tail, head = offsets["split_fn.part.0"], offsets["split_fn"]
    at = T0 + 3 * DAY
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, APP, "", EvidenceKind.LOADED),
        at,
        1,
        at + S,
        at + S,
        build_id=bid,
        node_name="node-1",
    )
    fact = HotSymbolDelta(
        HotSymbolKey(IMG, APP, "split_fn.part.0", EvidenceKind.UNPROBED), at, 0, at, at, build_id=bid,
        node_name="node-1",
    )  # fmt: skip
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        s.write([loaded], _windows(IMG))
        assert not s.write_batch(Batch("node-1/a", 1, [fact])).errors
    ask = ("query", "observed", "--image", IMG, "--store", url, "--json", "--function")
    for off in (tail, head):  # the tail's start; the head's (its calls probed, but the name is not where)
        code, doc = cli_json(*ask, f"{bid}:+0x{off:x}")
        assert (code, doc["answer"]) == (3, "unknown"), doc
        assert "split_fn.part.0" in doc["reason"] and doc["probed_in_part"], doc
    # another build's offset is no file of the image (unknown, file_not_seen); by name: unknown as before
    code, doc = cli_json(*ask, f"{'ab' * 20}:+0x{tail:x}")
    assert (code, doc["answer"]) == (3, "unknown") and "file_not_seen" in doc, doc
