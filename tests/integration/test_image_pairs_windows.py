"""The windows, gaps, unseen runs and unnamed code of an image are read under every paired digest.

An image with no repo digest is filed under its manifest digest by agents with the containerd
lifecycle part and under its config digest by agents without it (store/image_pairs.py). The calls
were read under both (store/queries.py), but the windows, gaps, unseen runs and unnamed code a "no"
rests on under the digest asked about alone, and a "no" where another digest held rows was
unknown (evidence/paired_image.py): forever, after an upgrade left old rows under the config
digest; and what another digest's rows held (a gap, a node that could not see calls, code under no
name) was never named. Now every reader reads the paired digests as one image's rows: their
watched time and gaps are unions, no count is read twice, and a "no" is unknown only for what is
still uncertain (more digests paired than are read).

Real rows through the store's writer (SQLite and PostgreSQL); the CLI in-process.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import (
    NODE_WIDE,
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import keys

S = 1_000_000_000
MANIFEST = "sha256:" + "1" * 64  # the key the lifecycle agent files the image under
CONFIG = "sha256:" + "c" * 64  # kubectl's imageID; the key of a lifecycle-off node
OTHER = "sha256:" + "d" * 64  # another image, unpaired
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"
# Days 1 and 2: the nodes' last day (3) is open (its agent may be down since: coverage_open.py).
PERIOD = ("--since", "2026-06-01T00:00:00Z", "--until", "2026-06-02T23:59:59Z")


def at(day: int) -> int:
    return datetime_to_ns(dt.datetime(2026, 6, day, 10, tzinfo=dt.UTC))


def fill(url: str, *extra: ObservationWindow, calls: tuple[HotSymbolDelta, ...] = ()) -> None:
    """EbpfDeep windows of the image under the manifest digest on node-1 and under the config digest
    on node-2 (an upgrade's old rows, or a lifecycle-off node), days 1 to 3, 9 events each; crc32
    mapped under the manifest digest (zlib seen loaded); the agent's pairing."""
    loaded = HotSymbolDelta(HotSymbolKey(MANIFEST, ZLIB, "", EvidenceKind.LOADED), at(1), 1, at(1) + S,
                            at(1) + S, purl=PURL, node_name="node-1")  # fmt: skip
    windows = [
        ObservationWindow(image, node, at(d), 9, Posture.EBPF_DEEP, 60, "tetragon")
        for image, node in ((MANIFEST, "node-1"), (CONFIG, "node-2"))
        for d in (1, 2, 3)
    ]
    with open_store(url) as s:
        s.write([loaded, *calls], [*windows, *extra])
        s.record_pairs([(CONFIG, MANIFEST)])


def ask(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def observed(capsys: pytest.CaptureFixture[str], url: str, image: str, function: str) -> tuple[int, Any]:
    argv = ("query", "observed", "--store", url, "--image", image, "--function", function, "--json")
    return ask(capsys, *argv, *PERIOD)


def evidence(capsys: pytest.CaptureFixture[str], url: str, image: str, function: str) -> tuple[int, Any]:
    return ask(capsys, "evidence", "--store", url, "--image", image, "--purl", "pkg:deb/debian/zlib1g",
               "--function", function, "--json")  # fmt: skip


def gap_of(image: str, node: str, day: int) -> ObservationWindow:
    """A throttle in the window of ``day`` on ``node``: the image's own gap, or a node-wide one."""
    return ObservationWindow(image, node, at(day) + 60 * S, 0, None, 60, "tetragon",
                             gap_start_ns=at(day) + 60 * S, gap_end_ns=at(day) + 120 * S,
                             throttles=1)  # fmt: skip


@pytest.mark.parametrize("image", [CONFIG, MANIFEST], ids=["by-config", "by-manifest"])
def test_a_no_rests_on_the_windows_of_every_digest_of_the_image(
    url: str, capsys: pytest.CaptureFixture[str], image: str
) -> None:
    """Before: unknown ("also stored under" the other digest), however well both were watched.
    The windows are read once each: 4 windows (2 days on 2 nodes), 36 events, never 8 or 72."""
    fill(url)
    code, doc = observed(capsys, url, image, "inflate")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    cov = doc["coverage"]
    assert (cov["nodes"], cov["windows"], cov["event_count"]) == (["node-1", "node-2"], 4, 36), cov


@pytest.mark.parametrize(
    ("gap_image", "asked"),
    [(CONFIG, MANIFEST), (MANIFEST, CONFIG), (NODE_WIDE, MANIFEST)],
    ids=["config-gap-by-manifest", "manifest-gap-by-config", "node-wide-by-manifest"],
)
def test_a_gap_under_the_other_digest_is_named(
    url: str, capsys: pytest.CaptureFixture[str], gap_image: str, asked: str
) -> None:
    """A throttle on the node that watched only the other digest (or a node-wide one there): the
    "no" is unknown naming it (before: unknown for the pairing alone, the gap never read)."""
    node = "node-1" if gap_image == MANIFEST else "node-2"
    fill(url, gap_of(gap_image, node, 2))
    code, doc = observed(capsys, url, asked, "inflate")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    scope = "node" if gap_image == NODE_WIDE else "image"
    assert [(g["node"], g["scope"], g["throttles"]) for g in doc["gaps"]] == [(node, scope, 1)], doc["gaps"]


def test_the_evidence_takes_a_gap_under_the_other_digest_out_of_the_watched_days(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Day 2 had a throttle on node-2 (config digest): asked by the manifest digest, day 1 alone is
    watched (before: days 1 and 2, the gap unread beside a watch of the same day on node-1)."""
    fill(url, gap_of(CONFIG, "node-2", 2))
    _, doc = evidence(capsys, url, MANIFEST, "inflate")
    data = doc["data"]
    assert (data["watched_days"], data["days_without_calls"]) == (1, 1), data
    assert ("node-2", "image") in {(g["node"], g["scope"]) for g in data["gaps"]}, data["gaps"]


def test_the_evidence_counts_the_days_watched_under_either_digest(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Day 4 watched only under the config digest (node-3): asked by the manifest digest, days 1 to 4
    are watched, each once (days 1 to 3 under both digests on two nodes), with calls on none.

    A node's last day stays open up to the question (ff9e82af: its agent may have died while the
    image ran on, so another node's watch that day or later proves nothing for it): node-1 and node-2
    run on with a row of another image on day 6, so the image's day 3 is no last day of theirs, and
    node-3's day 5 (its last) is open, not watched."""
    more = [ObservationWindow(CONFIG, "node-3", at(d), 9, Posture.EBPF_DEEP, 60, "tetragon") for d in (4, 5)]
    later = [
        ObservationWindow(OTHER, n, at(6), 9, Posture.EBPF_DEEP, 60, "tetragon") for n in ("node-1", "node-2")
    ]
    fill(url, *more, *later)
    _, doc = evidence(capsys, url, MANIFEST, "inflate")
    data = doc["data"]
    assert (data["watched_days"], data["days_without_calls"]) == (4, 4), data
    assert doc["reachability_state"] == "PotentiallyReachable" and "same image" not in doc["reason"], doc


def test_a_node_that_could_not_see_calls_under_the_other_digest_is_named(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """node-3 ran the image (config digest) at Passive only on day 1: by the manifest digest the
    "no" is unknown, naming that run (before: its unseen run was never read)."""
    fill(url, ObservationWindow(CONFIG, "node-3", at(1), 0, Posture.PASSIVE, 60, "lifecycle"))
    code, doc = observed(capsys, url, MANIFEST, "inflate")
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert [(u["node"], u["day"]) for u in doc["unseen"]] == [("node-3", "2026-06-01")], doc["unseen"]


def test_code_under_no_name_under_the_other_digest_is_named(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """zlib's code ran under no name on node-2 (config digest): by the manifest digest, inflate's
    "no" is unknown naming that code (before: only "also stored under", the code unread)."""
    nameless = HotSymbolDelta(HotSymbolKey(CONFIG, ZLIB, "0x1f00", EvidenceKind.ON_STACK), at(1), 7,
                              at(1) + S, at(1) + 2 * S, purl=PURL, node_name="node-2")  # fmt: skip
    fill(url, calls=(nameless,))
    code, doc = ask(capsys, "query", "observed", "--store", url, "--image", MANIFEST, "--function", "inflate",
                    "--purl", "pkg:deb/debian/zlib1g", "--json", *PERIOD)  # fmt: skip
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert [(u["module"], u["calls"]) for u in doc["unnamed"]] == [(ZLIB, 7)], doc["unnamed"]


@pytest.mark.parametrize("image", [CONFIG, MANIFEST], ids=["by-config", "by-manifest"])
def test_calls_under_both_digests_are_counted_once_each(
    url: str, capsys: pytest.CaptureFixture[str], image: str
) -> None:
    """crc32 called 5 times under the manifest digest and 3 under the config digest: 8 by either
    digest, in ``query observed`` and the evidence; the coverage's windows and events once each."""
    calls = tuple(
        HotSymbolDelta(
            HotSymbolKey(d, ZLIB, "crc32", EvidenceKind.ON_STACK),
            at(1),
            n,
            at(1) + S,
            at(1) + 2 * S,
            purl=PURL,
            node_name=node,
        )
        for d, node, n in ((MANIFEST, "node-1", 5), (CONFIG, "node-2", 3))
    )
    fill(url, calls=calls)
    code, doc = observed(capsys, url, image, "crc32")
    assert (code, sum(r["invocation_count"] for r in doc["records"])) == (0, 8), doc
    assert (doc["coverage"]["windows"], doc["coverage"]["event_count"]) == (4, 36), doc["coverage"]
    code, ev = evidence(capsys, url, image, "crc32")
    assert (code, ev["data"]["invocation_count"], ev["data"]["max_calls_in_a_day"]) == (0, 8, 8), ev["data"]


def test_vex_by_the_manifest_digest_is_never_not_affected_over_a_gap_under_the_config_digest(
    url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Both days watched on both nodes, day 2 throttled on node-2 (config digest): inflate is
    never not_affected by the manifest digest (the pairing no longer makes it unknown by itself:
    the gap, read under the config digest, does)."""
    fill(url, gap_of(CONFIG, "node-2", 2))
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    vulns = {"vulnerabilities": [{"id": "CVE-X", "affected": [{"purl": "pkg:deb/debian/zlib1g",
                                                                "functions": ["inflate"]}]}]}  # fmt: skip
    (tmp_path / "vulns.json").write_text(json.dumps(vulns))
    code = main(["vex", "--store", url, "--image", MANIFEST, "--vulns", str(tmp_path / "vulns.json"),
                 "--window-days", "2", "--until", "2026-06-02", "--key", str(tmp_path / "k"),
                 "--witness-dir", str(tmp_path / "w")])  # fmt: skip
    statements = json.loads(capsys.readouterr().out)["statements"]
    assert code == 0 and [s["status"] for s in statements] == ["under_investigation"], statements
