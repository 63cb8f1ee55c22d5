"""Witnesses dated in the future (signed by versions before the store-clock cap) are named as such.

Before d929f9c a witness took ``issued_at`` from its signer's clock: a node three days ahead issued
witnesses dated three days on, and they stay in stores and in files. Such a witness passed
``verify --not-before`` whatever time was asked (so a stale "PotentiallyReachable" passed as fresh
for three days), and ``list`` gave it first, as the newest of its claim. Now ``verify
--not-before`` refuses a witness issued later than the verifier's clock (by more than
``FUTURE_SLACK``: its age cannot be told), ``verify`` without it says so on stderr (exit 0: the
signature holds), and ``list`` marks each witness issued later than the store's clock
(``issued_in_future`` in JSON, a last column in text). A witness of now is none of these.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.store.engine import open_store
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness import store as wstore
from stellaops_runtime.witness.statement import encode
from tests.integration.test_witness_payload_text import IMG, _statement
from tests.witness_helpers import key_pair, run_witness

AHEAD = dt.timedelta(days=3)


def _stmt(issued: dt.datetime) -> dict[str, Any]:
    stmt = _statement()
    stmt["predicate"]["issued_at"] = issued.isoformat().replace("+00:00", "Z")
    return stmt


def _file(tmp_path: Path, priv: Path, issued: dt.datetime) -> Path:
    path = tmp_path / f"w-{issued.timestamp():.0f}.json"
    path.write_text(json.dumps(dsse.sign(encode(_stmt(issued)), keys.load_private(priv))))
    return path


def test_verify_not_before_refuses_a_witness_dated_in_the_future(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = key_pair(tmp_path)
    now = dt.datetime.now(dt.UTC)
    ahead = _file(tmp_path, priv, now + AHEAD)
    asked = (now - dt.timedelta(hours=1)).isoformat()
    code, out, err = run_witness(capsys, "verify", str(ahead), "--key", str(pub), "--not-before", asked)
    assert code == 1 and not out and "later than this machine's clock" in err, (code, out, err)
    code, out, err = run_witness(capsys, "verify", str(_file(tmp_path, priv, now)), "--key", str(pub),
                                 "--not-before", asked)  # fmt: skip
    assert code == 0 and "verified:" in out and "future" not in err, (out, err)


def test_verify_says_on_stderr_that_a_witness_is_dated_in_the_future(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    priv, pub = key_pair(tmp_path)
    ahead = _file(tmp_path, priv, dt.datetime.now(dt.UTC) + AHEAD)
    code, out, err = run_witness(capsys, "verify", str(ahead), "--key", str(pub))
    assert code == 0 and "verified:" in out, (out, err)
    assert "later than this machine's clock" in err and out.count("\n") == 1, err


def test_list_marks_a_witness_issued_later_than_the_store_s_clock(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = dt.datetime.now(dt.UTC)
    with open_store(url) as s, s.engine.connect() as conn:
        for issued in (now + AHEAD, now - dt.timedelta(minutes=1)):  # an old version's, and one of now
            stmt = _stmt(issued)
            wstore.save(conn, envelope=encode(stmt), stmt=stmt, key_id="k", issued_at=issued)
    code, out, _ = run_witness(capsys, "list", "--store", url, "--image", IMG, "--json")
    rows = json.loads(out)["witnesses"]
    assert code == 0 and [r["issued_in_future"] for r in rows] == [True, False], rows
    code, out, _ = run_witness(capsys, "list", "--store", url, "--image", IMG)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2, out
    assert "issued later than the store's clock" in lines[0] and "later" not in lines[1], out
