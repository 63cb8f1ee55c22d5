"""A VEX document and an Evidence document are not dated after the store's clock.

Witnesses are issued no later than the store's time (witness/issued.py,
test_witness_issued_clock_ahead.py), but ``vex`` dated its OpenVEX statements and CycloneDX
metadata, and ``evidence`` its Evidence document, by the clock of the machine that ran it. Run
where that clock is three days ahead, the ``not_affected`` statement was dated three days from
now: OpenVEX says a statement's timestamp is when what it states was known to be true, and a
consumer that keeps the newest statement of a product and vulnerability (merging documents)
took it over the ``affected`` statement made after the function first ran, for
three days. The cited witnesses were dated by the store, so the document was dated after them.
Every Python clock the commands read is moved ahead here (SQLite's and PostgreSQL's are not).
"""

from __future__ import annotations

import datetime as dt
import json
import types
from pathlib import Path

import pytest

from stellaops_runtime.cli import vex as cli_vex
from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.evidence import document
from stellaops_runtime.evidence import vex as evidence_vex
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.refs import parse_rfc3339
from stellaops_runtime.witness import issued, keys
from tests.integration.test_vex import IMG, VULNS, delta, watched
from tests.witness_helpers import run_main

AHEAD = dt.timedelta(days=3)


class _AnyDatetime(type):
    """Every datetime is one of :class:`_Ahead` (``isinstance`` of the store's ``now()``)."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, dt.datetime)


class _Ahead(dt.datetime, metaclass=_AnyDatetime):
    """``datetime`` as a machine whose clock runs three days ahead reads it."""

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
        return dt.datetime.now(tz) + AHEAD


def _latest() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)  # the store's clock is this machine's


@pytest.mark.parametrize("fmt", ["openvex", "cyclonedx"])
def test_documents_are_not_dated_after_the_store_s_clock(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    (tmp_path / "v.json").write_text(json.dumps(VULNS))
    ahead = types.SimpleNamespace(datetime=_Ahead, date=dt.date, timedelta=dt.timedelta, UTC=dt.UTC)
    for module in (cli_vex, evidence_vex, document, issued):
        monkeypatch.setattr(module, "dt", ahead)
    vulns, key, wdir = str(tmp_path / "v.json"), str(tmp_path / "k"), str(tmp_path / "w")
    code, out, err = run_main(capsys, "vex", "--store", url, "--image", IMG, "--vulns", vulns,
                              "--key", key, "--witness-dir", wdir, "--format", fmt)  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    stamps = (
        [doc["timestamp"], *(s["timestamp"] for s in doc["statements"])]
        if fmt == "openvex"
        else [doc["metadata"]["timestamp"]]
    )
    for stamp in stamps:
        assert parse_rfc3339(stamp) <= _latest(), stamp
    code, out, err = run_main(capsys, "evidence", "--store", url, "--image", IMG, "--purl",
                              "pkg:deb/debian/zlib1g", "--function", "inflate", "--json")  # fmt: skip
    assert code == 1, err  # watched 40 days, never called
    assert parse_rfc3339(json.loads(out)["timestamp"]) <= _latest()
