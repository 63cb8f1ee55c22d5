"""The ``listed`` rows of the JARs packages list (agent/listed_jars.py), and the JAR an answer of
several containers' roots keeps (attribution/agreement.py): pure logic, no store."""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.agent import listed_jars
from stellaops_runtime.agent.listed_jars import ListedJars
from stellaops_runtime.attribution import owners
from stellaops_runtime.attribution.agreement import attribute_in_roots
from stellaops_runtime.attribution.model import Attribution, Package
from stellaops_runtime.attribution.owners import KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey

IMG = "sha256:" + "b" * 64
LIB = "/usr/lib64/libatk-wrapper.so.0"
JAR = "/usr/lib/java/java-atk-wrapper.jar"
PURL = "pkg:rpm/fedora/java-atk-wrapper@0.40.0-1.fc39?arch=x86_64"


def delta(purl: str = PURL, image: str = IMG) -> HotSymbolDelta:
    key = HotSymbolKey(image, LIB, "", EvidenceKind.LOADED)
    return HotSymbolDelta(key, 60_000_000_000, 3, 61_000_000_000, 62_000_000_000, purl=purl, node_name="n1")


def test_one_listed_row_per_image_package_and_jar_of_no_call() -> None:
    jars = ListedJars()
    (row,) = jars.deltas([(delta(), JAR), (delta(), JAR)])
    assert row.key == HotSymbolKey(IMG, JAR, "", EvidenceKind.LISTED)
    assert (row.invocation_count, row.purl, row.node_name, row.build_id) == (0, PURL, "n1", "")
    assert (row.window_start_ns, row.first_seen_ns, row.last_seen_ns) == (
        60_000_000_000,
        61_000_000_000,
        62_000_000_000,
    )
    assert jars.deltas([(delta(), JAR)]) == []  # handed over once per agent
    assert len(jars.deltas([(delta(image="sha256:" + "c" * 64), JAR)])) == 1  # another image: its own


def test_a_purl_taken_back_or_no_jar_gives_no_row() -> None:
    assert ListedJars().deltas([(delta(purl=""), JAR), (delta(), "")]) == []


def test_the_sent_set_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listed_jars, "MAX_SENT", 2)
    jars = ListedJars()
    for i in range(5):
        assert len(jars.deltas([(delta(image=f"sha256:{i:064x}"), JAR)])) == 1
    assert len(jars._sent) <= 2


class _Roots:
    """An attributor whose answer per root is given (attribute_in_roots asks attribute_file)."""

    def __init__(self, answers: dict[str, Attribution]) -> None:
        self.answers = answers

    def attribute_file(self, *, image_digest: str, root: str, path: str) -> Attribution:
        return self.answers[root]

    def count_ambiguous(self) -> None:
        raise AssertionError("the roots agree")


def test_the_jar_any_agreeing_root_lists_is_kept() -> None:
    """A container that removed the JAR from its database cannot take it away (the answer would be
    "no function ran" again); one that forged it makes the package unknown, the safe way."""
    plain = Attribution(LIB, PURL, "rpm", evidence="db")
    listing = Attribution(LIB, PURL, "rpm", evidence="db", jar=JAR)
    for order in (["/r1", "/r2"], ["/r2", "/r1"]):
        got = attribute_in_roots(
            _Roots({"/r1": plain, "/r2": listing}),  # type: ignore[arg-type]
            image_digest=IMG,
            roots=order,
            path=LIB,
        )
        assert (got.purl, got.jar) == (PURL, JAR)


def test_a_listed_row_outlives_the_outage_bound() -> None:
    """Sent once and read for every period, as an ``unprobed`` fact: the bound never drops it (a gap
    over its one window would not stand for it), in the buffer and in a frozen batch."""
    from stellaops_runtime.store.pending import PendingWrites

    def count(fn: str, window: int) -> HotSymbolDelta:
        key = HotSymbolKey(IMG, LIB, fn, EvidenceKind.INVOKED)
        return HotSymbolDelta(key, window * 60_000_000_000, 1, 1, 1, node_name="n1")

    (listed,) = ListedJars().deltas([(delta(), JAR)])
    listed.window_start_ns = 0
    for frozen in (False, True):
        p = PendingWrites(max_pending_rows=2, window_seconds=60)
        p.add([count("adler32", 0), listed], [])
        if frozen:
            p._freeze_buffer()  # as a failed flush leaves it
        for w in range(1, 6):
            p.add([count(f"f{w}", w)], [])
        units = [u for b in p.take_all() for u in b.units if isinstance(u, HotSymbolDelta)]
        assert listed.key in {u.key for u in units}, frozen


def test_the_jar_paths_an_index_keeps_are_bounded(tmp_path: Path) -> None:
    """An image's database is written by whoever made it: a ``.jar`` name of megabytes (no file
    can have it: PATH_MAX), or tens of thousands of packages each listing one, were each kept
    whole for the index's life (64 images cached): the agent's memory grew without bound. A name
    longer than PATH_MAX is passed over for the package's next JAR; past the budget none is kept
    (the image's own database could as well list none)."""
    long = "/usr/lib/java/" + "x" * 1_000_000 + ".jar"
    n = 5_000
    pkgs = [Package(f"pkg:deb/debian/p{i}@1?arch=amd64", f"p{i}", "1") for i in range(n)]
    entries = [(long, 0), ("/usr/share/java/p0.jar", 0)]
    entries += [(f"/usr/share/java/{'y' * 4000}{i}.jar", i) for i in range(1, n)]
    index = OwnerIndex(pkgs, entries, keys=KeyBuilder(RootFS(str(tmp_path))))
    assert index.jars[0] == "/usr/share/java/p0.jar"
    assert 0 < sum(len(j) for j in index.jars.values()) <= owners.MAX_JAR_CHARS
    hit = index.lookup("/usr/share/java/p0.jar")
    assert hit is not None and hit.jar == "/usr/share/java/p0.jar"
