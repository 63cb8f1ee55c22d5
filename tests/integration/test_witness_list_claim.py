"""``witness list --claim``: the claim id anyone computes from the claim finds its witnesses.

docs/witnesses.md: a claim's id is ``sha256:`` + the SHA-256 of image, purl, function and
vulnerability joined by newlines, so a policy engine computes it from the claim alone. This
computes it here from the docs' formula. An id in capitals or with blanks around it is the same
id; text that is no claim id (``crc32``, a short digest, empty) is a usage error (exit 2), never
"exit 1: no witness" of a claim nobody asked about; ``--claim`` with ``--purl``/``--function``
(one of them would be ignored) is a usage error too. A well-formed id of no kept witness is exit 1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from tests.witness_helpers import run_witness as run

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def docs_claim_id(image: str, purl: str, function: str, vulnerability: str | None) -> str:
    """The docs' formula, written here: image, purl, function, vulnerability joined by newlines."""
    return (
        "sha256:"
        + hashlib.sha256("\n".join([image, purl, function, vulnerability or ""]).encode()).hexdigest()
    )


@pytest.fixture
def kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sqlite_at_head: Callable[[Path], str]
) -> dict[str, Any]:
    url = sqlite_at_head(tmp_path / "hot.db")
    d = HotSymbolDelta(
        HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), T0, 42, T0 + S, T0 + 2 * S, purl=PURL
    )
    with open_store(url) as s:
        s.write([d], [ObservationWindow(IMG, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])
    priv, pub = tmp_path / "w.key", tmp_path / "w.pub"
    assert run(capsys, "keygen", "--private", str(priv), "--public", str(pub))[0] == 0
    ids = {}
    for vuln in (None, "CVE-2022-37434"):
        extra = ["--vuln", vuln] if vuln else []
        code, _, err = run(capsys, "sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                           "--function", "crc32", *extra, "--key", str(priv), "--save", "--out",
                           str(tmp_path / f"{vuln}.json"))  # fmt: skip
        assert code == 0, err
        ids[vuln] = docs_claim_id(IMG, "pkg:deb/debian/zlib1g", "crc32", vuln)
    return {"url": url, "ids": ids}


def listed(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, Any, str]:
    code, out, err = run(capsys, "list", "--store", url, "--image", IMG, *args, "--json")
    return code, json.loads(out) if out else None, err


def test_the_claim_id_computed_from_the_claim_finds_its_witness_in_any_case(
    kept: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    for vuln, cid in kept["ids"].items():
        for spelled in (cid, cid.upper(), f"  {cid}\t", "SHA256:" + cid[7:]):
            code, doc, err = listed(capsys, kept["url"], "--claim", spelled)
            assert code == 0, (spelled, err)
            assert doc["claim_id"] == cid
            [w] = doc["witnesses"]
            assert (w["claim_id"], w["vulnerability"], w["function"]) == (cid, vuln, "crc32")


@pytest.mark.parametrize(
    "ref",
    ["crc32", "", " ", "sha256:", "sha256:" + "a" * 63, "sha256:" + "g" * 64, "sha256:" + "a" * 65,
     "md5:" + "a" * 32, "a" * 64, "sha256:" + "a" * 32 + "\n" + "a" * 31],
)  # fmt: skip
def test_text_that_is_no_claim_id_is_a_usage_error_not_no_witness(
    kept: dict[str, Any], capsys: pytest.CaptureFixture[str], ref: str
) -> None:
    code, out, err = run(capsys, "list", "--store", kept["url"], "--image", IMG, "--claim", ref)
    assert code == 2 and not out and "malformed claim id" in err, (code, err)


def test_claim_with_purl_or_function_is_a_usage_error(
    kept: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    cid = kept["ids"][None]
    for extra in (
        ["--purl", "pkg:deb/debian/other", "--function", "f"],
        ["--function", "crc32"],
        ["--vuln", "X"],
    ):
        code, out, err = run(capsys, "list", "--store", kept["url"], "--image", IMG, "--claim", cid, *extra)
        assert code == 2 and not out and "not both" in err, (extra, err)


def test_a_well_formed_id_of_no_kept_witness_is_exit_1(
    kept: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc, _ = listed(
        capsys, kept["url"], "--claim", docs_claim_id(IMG, "pkg:deb/debian/zlib1g", "adler32", None)
    )
    assert code == 1 and doc["witnesses"] == []
