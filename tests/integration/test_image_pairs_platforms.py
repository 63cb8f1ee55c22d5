"""A "no" by one platform's digest never rests on another platform's watched time.

An image imported from a multi-platform archive with no repo digest has an index as its target in
containerd: the lifecycle agent files it under the index digest and pairs that digest with the
config of ITS node's platform (lifecycle/containerd_client.py ``image_config``), so an index
used on amd64 and arm64 nodes is paired with two configs, and its windows hold both platforms'
runs with nothing saying which. Every reader reads the paired digests as one image's
(store/same_image.py): asked by the amd64 config digest, the arm64 nodes' windows under the index
were watched time of it, and a "no" said over amd64 code nobody watched. Such a digest (another
manifest paired with more than one config) leaves a "no" unknown (evidence/paired_image.py), and
so does a question by the index itself that names one platform's code (a function ID, a purl's arch).

Real rows through the store's writer (SQLite and PostgreSQL); the CLI in-process.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns

INDEX = "sha256:" + "a" * 64  # a multi-platform image's index: the lifecycle agents' key
OTHER_INDEX = "sha256:" + "b" * 64  # another index sharing the amd64 config
AMD64 = "sha256:" + "d" * 64  # the amd64 config digest (kubectl's imageID on amd64 nodes)
ARM64 = "sha256:" + "e" * 64
OTHER_ARM64 = "sha256:" + "f" * 64
PERIOD = ("--since", "2026-06-01T00:00:00Z", "--until", "2026-06-02T23:59:59Z")


def at(day: int) -> int:
    return datetime_to_ns(dt.datetime(2026, 6, day, 10, tzinfo=dt.UTC))


def watched(url: str, image: str, node: str, pairs: list[tuple[str, str]]) -> None:
    """EbpfDeep windows of ``image`` on ``node``, days 1 to 3 (day 3: the node's last, open), and
    the agents' pairings (config, manifest)."""
    windows = [ObservationWindow(image, node, at(d), 9, Posture.EBPF_DEEP, 60, "tetragon") for d in (1, 2, 3)]
    with open_store(url) as s:
        s.write([], windows)
        s.record_pairs(pairs)


def observed(capsys: pytest.CaptureFixture[str], url: str, image: str) -> tuple[int, Any]:
    code = main(["query", "observed", "--store", url, "--image", image, "--function", "inflate", "--json",
                 *PERIOD])  # fmt: skip
    return code, json.loads(capsys.readouterr().out)


def test_a_no_by_one_platforms_config_is_not_said_over_the_other_platforms_watch(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only an arm64 node watched the index; an amd64 agent paired it with the amd64 config. Asked
    by the amd64 config: unknown (before: not_observed, exit 1, over arm64 windows alone). The
    index's windows are no watch of it: none is read. With windows of its own (an amd64 node whose
    agent has no lifecycle part), a "no" is unknown still: the amd64 runs under the index are not
    told apart from the arm64 ones."""
    watched(url, INDEX, "arm-node", [(AMD64, INDEX), (ARM64, INDEX)])
    code, doc = observed(capsys, url, AMD64)
    assert (code, doc["answer"]) == (3, "unknown") and "no observation window" in doc["reason"], doc
    watched(url, AMD64, "amd-node", [])
    code, doc = observed(capsys, url, AMD64)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "paired_image" in doc and "several platforms" in doc["reason"], doc


def test_a_no_by_one_index_is_not_said_over_another_index_sharing_a_config(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two indexes share the amd64 config; only the other one's arm64 run (other code) was
    watched. Asked by the first index: unknown (before: not_observed over the other's arm64 run);
    the other index's windows are not read."""
    watched(url, OTHER_INDEX, "arm-node", [(AMD64, INDEX), (ARM64, INDEX), (AMD64, OTHER_INDEX),
                                           (OTHER_ARM64, OTHER_INDEX)])  # fmt: skip
    code, doc = observed(capsys, url, INDEX)
    assert (code, doc["answer"]) == (3, "unknown"), doc


def test_an_index_asked_by_itself_reads_its_platforms_as_before(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The index's own name covers all its platforms: its own windows answer, as before pairing."""
    watched(url, INDEX, "arm-node", [(AMD64, INDEX), (ARM64, INDEX)])
    code, doc = observed(capsys, url, INDEX)
    assert (code, doc["answer"]) == (1, "not_observed"), doc


AMD64_BUILD = "ab" * 20  # the build-id of the amd64 image's libz
PURL_AMD64 = "pkg:deb/debian/zlib1g@1.2.13?arch=amd64"


def test_a_no_about_one_platforms_build_asked_by_the_index_is_unknown(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """amd-node ran the index on day 1 (its amd64 libz seen: crc32 called), then other images only;
    arm-node ran it days 1 to 3. Asked by the index about inflate of the amd64 build (a function
    ID), the arm64 runs, which hold no such build, were its watched time: not_observed, exit 1
    (before). A function ID or a purl's arch names one platform's code: unknown, saying so. Asked by
    name, a "no" is about every platform's runs, each of which could call it: as before."""
    watched(url, INDEX, "arm-node", [(AMD64, INDEX), (ARM64, INDEX)])
    key = HotSymbolKey(INDEX, "/usr/lib/x86_64-linux-gnu/libz.so.1", "crc32", EvidenceKind.INVOKED)
    call = HotSymbolDelta(key, at(1), 3, at(1), at(1) + 1, build_id=AMD64_BUILD, purl=PURL_AMD64,
                          function_id=f"{AMD64_BUILD}:crc32+0x0")  # fmt: skip
    others = [
        ObservationWindow(OTHER_ARM64, "amd-node", at(d), 9, Posture.EBPF_DEEP, 60, "tetragon")
        for d in (2, 3)
    ]
    with open_store(url) as s:
        s.write(
            [call],
            [ObservationWindow(INDEX, "amd-node", at(1), 9, Posture.EBPF_DEEP, 60, "tetragon"), *others],
        )
    for how in (
        ("--function", f"{AMD64_BUILD}:inflate+0x0"),
        ("--function", "inflate", "--purl", PURL_AMD64),
    ):
        code = main(["query", "observed", "--store", url, "--image", INDEX, *how, "--json", *PERIOD])
        doc = json.loads(capsys.readouterr().out)
        assert (code, doc["answer"]) == (3, "unknown"), (how, doc)
        assert "paired_image" in doc and "one platform" in doc["reason"], doc
    code, doc = observed(capsys, url, INDEX)
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_call_of_another_platforms_run_is_no_call_by_this_platforms_config(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The arm64 run of the index called inflate; asked by the amd64 config digest, that call was
    read as the amd64 image's: observed, exit 0, with its count (before). Another index's rows are
    not read by a platform's digest: unknown, as its "no" was (the amd64 runs under the index are
    not told apart)."""
    watched(url, INDEX, "arm-node", [(AMD64, INDEX), (ARM64, INDEX)])
    key = HotSymbolKey(INDEX, "/usr/lib/aarch64-linux-gnu/libz.so.1", "inflate", EvidenceKind.INVOKED)
    with open_store(url) as s:
        s.write([HotSymbolDelta(key, at(1), 5, at(1), at(1) + 1)], [])
    code, doc = observed(capsys, url, AMD64)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    code, doc = observed(capsys, url, INDEX)  # the index's own call: observed by the index
    assert (code, doc["answer"]) == (0, "observed"), doc


def test_the_index_is_looked_up_once_per_question_not_per_function(url: str) -> None:
    """A vex run asks every function in one snapshot: whether the asked digest is an index of
    several platforms (same_image.several_platforms, for a function ID) was one statement per
    function (seen before: 3 for 3 functions); now one per snapshot, as paired() is."""
    import sqlalchemy as sa

    from stellaops_runtime.evidence.paired_image import paired_image
    from stellaops_runtime.store.engine import create_store_engine
    from stellaops_runtime.store.function_refs import function_query
    from stellaops_runtime.store.queries import snapshot

    watched(url, INDEX, "arm-node", [(AMD64, INDEX), (ARM64, INDEX)])
    engine = create_store_engine(url)
    having: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        if "HAVING" in statement.upper():
            having.append(statement)

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        with engine.connect() as conn:
            snapshot(conn)
            for name in ("inflate", "deflate", "crc32"):
                doubt = paired_image(conn, image=INDEX, function=function_query(f"{AMD64_BUILD}:{name}+0x0"))
                assert doubt is not None and "one platform" in doubt.why, doubt
    finally:
        engine.dispose()
    assert len(having) == 1, having
