"""An older witness of a claim cannot pass for the current one; witnesses of one claim never add up.

A witness states what the store held for the claim when it was issued. One signed before the
function was first called (PotentiallyReachable) still verifies after a newer one says
DynamicReachable: whoever hands the verifier a witness picks which. ``verify`` prints when each
was issued, and ``--not-before`` refuses an older one (exit 1, naming both times). Each witness
carries the totals the store holds, not the calls since the previous witness: the newer one
supersedes, and summing them would count calls twice (docs/witnesses.md).
"""

from __future__ import annotations

import base64
import datetime as dt
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
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness.statement import encode
from tests.node_alive import alive_after
from tests.witness_helpers import run_witness as run

S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
DAY = 86_400 * S
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"


def calls(at: int, n: int) -> HotSymbolDelta:
    return HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), at, n, at + S, at + 2 * S,
                          purl=PURL, node_name="n")  # fmt: skip


def statement_of(path: Path) -> dict[str, Any]:
    stmt: dict[str, Any] = json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))
    return stmt


@pytest.fixture
def two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sqlite_at_head: Callable[[Path], str]
) -> dict[str, Any]:
    """w1 signed on day 1 (no call yet), w2 after 42 calls on day 2, then 8 more on day 3."""
    url = sqlite_at_head(tmp_path / "hot.db")
    loaded = HotSymbolDelta(
        HotSymbolKey(IMG, ZLIB, "", EvidenceKind.LOADED), T0, 1, T0 + S, T0 + S, purl=PURL
    )
    priv, pub = tmp_path / "w.key", tmp_path / "w.pub"
    assert run(capsys, "keygen", "--private", str(priv), "--public", str(pub))[0] == 0
    claim = ["--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "crc32",
             "--key", str(priv), "--save"]  # fmt: skip
    out = {"pub": pub, "url": url}
    for name, deltas, day in (
        ("w1", [loaded], 0),
        ("w2", [calls(T0 + DAY, 42)], 1),
        ("w3", [calls(T0 + 2 * DAY, 8)], 2),
    ):
        with open_store(url) as s:  # n's agent ran on past the day (a record of it the next day): not open
            s.write(
                deltas, [ObservationWindow(IMG, "n", T0 + day * DAY, 50, Posture.EBPF_DEEP, 60, "tetragon")]
            )
            s.write([], alive_after("n", T0 + (day + 1) * DAY))
        out[name] = tmp_path / f"{name}.json"
        code, _, err = run(capsys, "sign", *claim, "--out", str(out[name]))
        assert code == 0, err
    return out


def test_an_older_witness_verifies_showing_its_age_and_not_before_refuses_it(
    two: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    w1, w2 = statement_of(two["w1"]), statement_of(two["w2"])
    t1, t2 = w1["predicate"]["issued_at"], w2["predicate"]["issued_at"]
    assert t1 < t2
    assert w1["predicate"]["assessment"]["reachability_state"] == "PotentiallyReachable"
    assert w2["predicate"]["assessment"]["reachability_state"] == "DynamicReachable"
    # without --not-before both verify: the line says when each was issued
    code, out, _ = run(capsys, "verify", str(two["w1"]), "--key", str(two["pub"]), "--image", IMG)
    assert code == 0 and f"PotentiallyReachable, issued {t1}, signed by key" in out, out
    code, out, _ = run(capsys, "verify", str(two["w2"]), "--key", str(two["pub"]))
    assert code == 0 and f"DynamicReachable, issued {t2}, signed by key" in out, out
    # --not-before: the newer one (at its own time, or in another offset) verifies, the older fails
    t2_plus2 = (dt.datetime.fromisoformat(t2.replace("Z", "+00:00")) + dt.timedelta(hours=2)).replace(
        tzinfo=dt.timezone(dt.timedelta(hours=2))
    )
    for when in (t2, t2_plus2.isoformat()):
        code, _, err = run(capsys, "verify", str(two["w2"]), "--key", str(two["pub"]), "--not-before", when)
        assert code == 0, err
    code, out, err = run(capsys, "verify", str(two["w1"]), "--key", str(two["pub"]), "--not-before", t2)
    assert code == 1 and not out, out
    assert f"issued at {t1}, before {t2} (--not-before)" in err, err


@pytest.mark.parametrize("when", ["yesterday", "2026-06-01T00:00:00", "0001-01-01T00:00:00+01:00", ""])
def test_a_not_before_that_is_no_rfc3339_time_is_a_usage_error(
    two: dict[str, Any], capsys: pytest.CaptureFixture[str], when: str
) -> None:
    code, out, err = run(capsys, "verify", str(two["w2"]), "--key", str(two["pub"]), "--not-before", when)
    assert code == 2 and not out and "--not-before" in err, err


@pytest.mark.parametrize("issued", [None, 17, "", "soon", "2026-06-01T00:00:00"])
def test_a_statement_whose_issue_time_does_not_read_fails_not_before(
    two: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str], issued: Any
) -> None:
    # signed by the key (it may sign other statements): its age cannot be told, so not-before fails
    stmt = statement_of(two["w2"])
    stmt["predicate"]["issued_at"] = issued
    forged = tmp_path / "forged.json"
    private = keys.load_private(tmp_path / "w.key")
    forged.write_text(json.dumps(dsse.sign(encode(stmt), private)))
    assert run(capsys, "verify", str(forged), "--key", str(two["pub"]))[0] == 0
    code, _, err = run(
        capsys, "verify", str(forged), "--key", str(two["pub"]), "--not-before", "2026-01-01T00:00:00Z"
    )
    assert code == 1 and "is not an RFC 3339 time: its age cannot be told" in err, err


def test_witnesses_of_one_claim_carry_totals_and_the_newest_supersedes(
    two: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    o1, o2, o3 = (statement_of(two[w])["predicate"]["observation"] for w in ("w1", "w2", "w3"))
    # totals the store held at each issue, never the calls since the previous witness
    assert [o["invocation_count"] for o in (o1, o2, o3)] == [0, 42, 50]
    assert [o["watched_days"] for o in (o1, o2, o3)] == [1, 2, 3]
    start = o1["observation_window"].split("/")[0]
    assert all(o["observation_window"].startswith(start + "/") for o in (o2, o3))
    # the store lists the newest first: the one to read
    claim = ["--purl", "pkg:deb/debian/zlib1g", "--function", "crc32"]
    code, out, _ = run(capsys, "list", "--store", two["url"], "--image", IMG, *claim, "--json")
    assert code == 0
    listed = json.loads(out)["witnesses"]
    assert [w["issued_at"] for w in listed] == [
        statement_of(two[w])["predicate"]["issued_at"] for w in ("w3", "w2", "w1")
    ]


def test_rows_of_one_call_seen_two_ways_do_not_add_up_to_the_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 42 calls invoked, 30 of them also on sampled stacks: the witness's total is 42, not 72
    url = f"sqlite:///{tmp_path}/two_ways.db"
    key = HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.ON_STACK)
    stacked = HotSymbolDelta(key, T0, 30, T0 + S, T0 + 2 * S, purl=PURL, node_name="n")
    with open_store(url) as s:
        s.write(
            [calls(T0, 42), stacked], [ObservationWindow(IMG, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")]
        )
        s.write([], alive_after("n", T0 + DAY))  # n's agent ran on: T0's day is not open
    priv, pub, out = tmp_path / "k", tmp_path / "k.pub", tmp_path / "w.json"
    assert run(capsys, "keygen", "--private", str(priv), "--public", str(pub))[0] == 0
    code, _, err = run(capsys, "sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
                       "--function", "crc32", "--key", str(priv), "--out", str(out))  # fmt: skip
    assert code == 0, err
    o = statement_of(out)["predicate"]["observation"]
    assert sorted((f["evidence_kind"], f["invocation_count"]) for f in o["functions"]) == [
        ("invoked", 42), ("on_stack", 30)
    ]  # fmt: skip
    assert (o["invocation_count"], o["max_calls_in_a_day"]) == (42, 42)
