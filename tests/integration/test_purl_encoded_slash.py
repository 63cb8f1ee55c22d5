"""A package name holding ``/`` is written ``%2F``, and either spelling finds the package's rows.

The purl spec percent-encodes the name as one segment and reads the text after the last ``/`` as
the name, so ``pkg:npm/a%2Fb@1`` is the package named ``a/b`` and ``pkg:npm/a/b@1`` the package
``b`` of namespace ``a``. packageurl-python writes the name without encoding its ``/``
(package-url/packageurl-python#154): the store filed an SBOM's ``a%2Fb`` under ``pkg:npm/a/b@1``,
and the claim a witness signed and the VEX document's products named the other package. Now the
name's ``/`` is written ``%2F`` everywhere (attribution/purls.py ``purl_text``); rows stored
before keep the old spelling, and a question by either spelling matches both (store/refs.py
``PurlQuery.matches``): a function that ran before the upgrade is never "not observed".
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stellaops_runtime.attribution.sbom import SbomData
from stellaops_runtime.cli.main import main
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.store import refs
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.witness.statement import claim_mismatch
from tests.integration.test_vex import DAY, IMG, OPENVEX, T0, S, watched
from tests.witness_helpers import statement

NEW, OLD = "pkg:npm/a%2Fb@1", "pkg:npm/a/b@1"  # one package, as written now and before


@pytest.mark.parametrize(
    ("text", "namespace", "name"),
    [
        ("pkg:npm/a%2Fb@1", None, "a/b"),
        ("pkg:generic/ns/a%2Fb@1", "ns", "a/b"),
        ("pkg:npm/%40scope/x%20y%2Fz%2F@2?arch=amd64", "@scope", "x y/z"),
    ],
)
def test_a_name_holding_a_slash_round_trips(text: str, namespace: str | None, name: str) -> None:
    canonical = PurlQuery.parse(text).canonical()
    back = PurlQuery.parse(canonical).purl
    assert (back.namespace, back.name) == (namespace, name), canonical
    assert PurlQuery.parse(canonical).canonical() == canonical
    sbom = SbomData("sbom.json", "CycloneDX 1.6")
    idx = sbom.add_package(text, what="component")
    assert idx is not None
    stored = sbom.packages[idx].purl
    assert (PurlQuery.parse(stored).purl.namespace, PurlQuery.parse(stored).purl.name) == (namespace, name)


def test_either_spelling_matches_the_rows_of_the_other_and_no_other_package() -> None:
    for question in (NEW, OLD, "pkg:npm/a%2Fb", "pkg:npm/a/b"):
        pq = PurlQuery.parse(question)
        assert pq.matches(NEW) and pq.matches(OLD), question
        for other in (
            "pkg:npm/a/c@1",
            "pkg:npm/x/a/b@1",
            "pkg:npm/a%2Fb%2Fc@1",
            "pkg:npm/b@1",
            "pkg:npm/a@1",
        ):
            assert not pq.matches(other), (question, other)
    assert PurlQuery.parse(NEW).canonical() == NEW
    assert PurlQuery.parse(OLD).canonical() == OLD


def _ran(fn: str, day: int, purl: str) -> HotSymbolDelta:
    start = T0 + day * DAY
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, "/app/node_modules/a/b/index.node", fn, EvidenceKind.INVOKED),
        window_start_ns=start, invocation_count=4, first_seen_ns=start + S, last_seen_ns=start + 2 * S,
        purl=purl, node_name="node-1",
    )  # fmt: skip


def test_the_store_answers_either_spelling_and_vex_names_the_package_as_the_spec_writes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/hot.db"
    with open_store(url) as s:  # old_fn ran before the upgrade, new_fn after it
        s.write([_ran("old_fn", 3, OLD), _ran("new_fn", 20, NEW)], watched(range(40)))
    for question in (NEW, OLD):
        for fn in ("old_fn", "new_fn"):
            code = main(
                ["query", "observed", "--store", url, "--image", IMG, "--purl", question, "--function", fn]
            )
            assert code == 0, (question, fn, capsys.readouterr())
    capsys.readouterr()

    key = tmp_path / "w.key"
    assert main(["witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub")]) == 0
    affected = [{"purl": "pkg:npm/a%2Fb", "functions": ["old_fn", "never_fn"]}]
    (tmp_path / "vulns.json").write_text(
        json.dumps({"vulnerabilities": [{"id": "CVE-S", "affected": affected}]})
    )
    capsys.readouterr()
    argv = ["vex", "--store", url, "--image", IMG, "--vulns", str(tmp_path / "vulns.json"), "--key", str(key)]
    assert main([*argv, "--witness-dir", str(tmp_path / "w")]) == 0
    doc = json.loads(capsys.readouterr().out)
    OPENVEX.validate(doc)
    [st] = doc["statements"]
    assert st["status"] == "affected", st
    assert [sub["@id"] for sub in st["products"][0]["subcomponents"]] == ["pkg:npm/a%2Fb"]
    claimed = {statement(w)["predicate"]["claim"]["purl"] for w in (tmp_path / "w").iterdir()}
    assert claimed == {"pkg:npm/a%2Fb"}
    assert main([*argv, "--witness-dir", str(tmp_path / "w2"), "--format", "cyclonedx"]) == 0
    [component] = json.loads(capsys.readouterr().out)["components"]
    assert (component["purl"], component["name"]) == ("pkg:npm/a%2Fb", "a/b"), component


def test_witness_verify_reads_either_spelling_as_one_claim() -> None:
    """``witness verify --purl`` (witness/statement.py claim_mismatch): a witness signed by an
    earlier version names ``pkg:npm/a/b@1``; asked by the new spelling it is the claim asked, and
    the other way round. Another name, or a version on one side only, is another claim."""
    for asked, signed in ((NEW, OLD), (OLD, NEW), (NEW, NEW)):
        assert claim_mismatch({"purl": signed}, purl=PurlQuery.parse(asked)) is None, (asked, signed)
    for asked, signed in ((NEW, "pkg:npm/a%2Fc@1"), ("pkg:npm/a%2Fb", OLD), (NEW, "pkg:npm/b@1")):
        assert claim_mismatch({"purl": signed}, purl=PurlQuery.parse(asked)), (asked, signed)


class _CountedSeparators:
    """refs._SEPARATORS' PyPI pattern, counting the names it normalises."""

    def __init__(self) -> None:
        self.calls = 0
        self._re = re.compile(r"[-_.]+")

    def sub(self, repl: str, text: str) -> str:
        self.calls += 1
        return self._re.sub(repl, text)


def test_a_question_is_normalised_once_not_once_per_stored_purl(monkeypatch: pytest.MonkeyPatch) -> None:
    """``query --purl`` takes up to 128 KiB: a PyPI name that long, normalised again for each stored
    purl ``matches`` was given, took 90 s of CPU over 10,000 stored purls, and a question matches
    the image's purls several times. Now the question's type and ``namespace/name`` are read once."""
    counted = _CountedSeparators()
    monkeypatch.setitem(refs._SEPARATORS, "pypi", counted)
    pq = PurlQuery.parse("pkg:pypi/" + "a-b_" * 100)
    stored = [f"pkg:pypi/pkg{i}@1" for i in range(40)]
    assert not any(pq.matches(s) for s in stored)
    assert counted.calls <= 41, counted.calls  # each stored name once, the question's once
    assert PurlQuery.parse("pkg:pypi/Zope_Interface").matches("pkg:pypi/zope.interface@5")
