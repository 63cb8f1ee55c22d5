"""Calls the store refused (``quarantined_rows``) are never read as "not called".

A row the database refuses is quarantined and every other row of its batch stored
(docs/operations.md, "A failing store"): its observation window stays, its calls do not. A
library at a path that is not valid UTF-8 (a lone surrogate once decoded: any process can
choose its paths) is refused on both backends, a function name too long for PostgreSQL's key
index there. Before the fix, ``inflateGetHeader`` called 9 times from such a library read as
"not observed" (exit 1) while the image was watched, ``evidence`` gave RTS 0.20 "likely unused"
and ``vex`` wrote ``not_affected``. Now: unknown (exit 3), PotentiallyReachable at 0.50 (exit 3),
under_investigation, each naming the refused rows; a refused row of another function or package,
or outside the period asked about, changes nothing. The store's own write path, the real CLI.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import string
from pathlib import Path

import pytest
import sqlalchemy as sa

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.evidence import doubts
from stellaops_runtime.evidence.doubt import MAX_ROWS
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.refs import PurlQuery
from stellaops_runtime.store.schema import quarantined_rows
from tests.integration.test_answer_unattributed import FN, VULNS, cli, filled, row
from tests.integration.test_vex import DAY, IMG, PURL, T0, S, by_vuln, vex_cli, watched

BAD_PATH = "/usr/lib/libz\udcff.so.1"  # a path that was not UTF-8, as the agent decodes it
ASK = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", FN)


def row_loaded() -> HotSymbolDelta:
    return row("", EvidenceKind.LOADED, PURL, day=0, n=1)


def refused(
    url: str, fn: str = FN, *, module: str = BAD_PATH, purl: str = PURL, day: int = 3, seq: int = 1
) -> None:
    start = T0 + day * DAY
    d = HotSymbolDelta(
        HotSymbolKey(IMG, module, fn, EvidenceKind.INVOKED), start, 9, start + S, start + 2 * S, purl=purl
    )
    with open_store(url) as s:
        result = s.write_batch(Batch("node-1/q", seq, [d]))
    assert result.quarantined == 1, result


def answers(tmp: Path, url: str, *period: str) -> tuple[int, int, float, str]:
    """(query observed exit, evidence exit, RTS score, vex status) for inflateGetHeader of zlib1g."""
    q, _ = cli(url, "query", "observed", *ASK, *period)
    e, doc = cli(url, "evidence", *ASK)
    r = vex_cli(tmp, url, VULNS)
    assert r.returncode == 0, r.stderr
    return q, e, doc["rts"]["score"], by_vuln(json.loads(r.stdout))["CVE-H"]["status"]


def test_calls_the_store_refused_are_never_not_called(tmp_path: Path, url: str) -> None:
    filled(url)
    assert answers(tmp_path, url) == (1, 1, 0.20, "not_affected")  # the control: 40 days, no call
    refused(url)
    assert answers(tmp_path, url) == (3, 3, 0.50, "under_investigation")
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", FN)
    assert (code, doc["answer"], doc["observed"]) == (3, "unknown", None)
    [row] = doc["refused"]
    assert (row["function_name"], row["invocation_count"], row["evidence_kind"]) == (FN, 9, "invoked")
    assert "quarantined_rows" in doc["reason"]
    _, ev = cli(url, "evidence", *ASK)
    assert ev["reachability_state"] == "PotentiallyReachable" and "refused" in ev["reason"]
    statement = by_vuln(json.loads(vex_cli(tmp_path, url, VULNS).stdout))["CVE-H"]
    assert "justification" not in statement and "quarantined_rows" in statement["status_notes"]
    # a period that starts after the refused window: the windows left back a "not observed"
    assert cli(url, "query", "observed", *ASK, "--since", "2026-06-10T00:00:00Z")[0] == 1


@pytest.mark.parametrize(
    "other",
    [{"fn": "crc32"}, {"purl": "pkg:deb/debian/other@1"}],
    ids=["another function", "another package"],
)
def test_a_refused_row_of_something_else_changes_nothing(
    tmp_path: Path, url: str, other: dict[str, str]
) -> None:
    filled(url)
    refused(url, **other)
    assert answers(tmp_path, url) == (1, 1, 0.20, "not_affected")


def test_a_name_too_long_for_the_key_index_is_never_not_observed(url: str) -> None:
    """PostgreSQL refuses a 12,000-character name (its key index); SQLite stores it. Asked as
    the overload's name without parameters, it is observed or unknown, never "not observed"."""
    filled(url)
    letters = random.Random(7).choices(string.ascii_letters + string.digits, k=12_000)  # no compression
    long_name = "ns::f(" + "".join(letters) + ")"
    start = T0 + 3 * DAY
    d = HotSymbolDelta(
        HotSymbolKey(IMG, "/usr/lib/libz.so.1", long_name, EvidenceKind.INVOKED), start, 4, start, start
    )
    with open_store(url) as s:
        quarantined = s.write_batch(Batch("node-1/q", 1, [d])).quarantined
    assert quarantined == (0 if url.startswith("sqlite") else 1)
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "ns::f")
    assert (code, doc["answer"]) in ((0, "observed"), (3, "unknown")), doc["reason"]


def test_hot_and_functions_with_nothing_to_list_but_refused_rows_are_unknown(url: str) -> None:
    with open_store(url) as s:  # watched, zlib1g loaded, and the only calls refused
        s.write([row_loaded()], watched())
    functions = ("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g")
    assert cli(url, "query", "hot", "--image", IMG)[0] == 1  # the control: watched, nothing ran
    assert cli(url, *functions)[0] == 1
    refused(url, purl="pkg:deb/debian/other@1")
    assert cli(url, *functions)[0] == 1  # another package's refused row: zlib1g's answer stands
    code, doc = cli(url, "query", "hot", "--image", IMG)
    assert (code, doc["answer"], len(doc["refused"])) == (3, "unknown", 1)
    refused(url, "crc32", day=5, seq=2)
    code, doc = cli(url, *functions)
    assert (code, doc["answer"]) == (3, "unknown") and "quarantined_rows" in doc["reason"]
    assert [r["function_name"] for r in doc["refused"]] == ["crc32"]


def test_an_image_key_longer_than_sqlites_like_pattern_is_answered_on_both_backends(url: str) -> None:
    """With a refused row in the store, a ``host:`` key of more than SQLite's 50,000-byte LIKE
    pattern (the refused rows were found by a LIKE of the key) failed there, exit 2 'cannot query
    store', where PostgreSQL answered: no window of that key, unknown (exit 3)."""
    filled(url)
    refused(url)
    key = "host:" + "n" * 60_000
    code, doc = cli(url, "query", "observed", "--image", key, "--function", FN)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", FN)  # the key's own rows still
    assert (code, doc["answer"], len(doc["refused"])) == (3, "unknown", 1), doc


def test_the_refused_doubt_reads_each_stored_purl_once(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every quarantined row of the image is read to find the refused doubt; each row's purl was
    parsed again (packageurl, ~0.1 ms): a store holding 200,000 refused rows of one package (files
    whose paths are not UTF-8, one row per offset) took 28 s (of 30) per answer here. Same rows,
    same answer; the purl of one text is parsed once per question."""
    refused(url)
    engine = create_store_engine(url)
    with engine.begin() as conn:
        one = dict(conn.execute(sa.select(quarantined_rows)).mappings().one())
        del one["id"]
        copies = [one | {"row_json": one["row_json"].replace(FN, f"{FN}_{i}")} for i in range(299)]
        conn.execute(sa.insert(quarantined_rows), copies)
    seen: list[str] = []
    matches = PurlQuery.matches
    monkeypatch.setattr(PurlQuery, "matches", lambda self, p: seen.append(p) or matches(self, p))
    with engine.connect() as conn:
        d = doubts.refused(conn, image=IMG, function=None, purl=PurlQuery.parse("pkg:deb/debian/zlib1g"))
    engine.dispose()
    assert d is not None and (len(d.rows), d.to_json()["refused_count"]) == (MAX_ROWS, 300)
    assert seen == [PURL]


def test_the_whole_package_refused_doubt_counts_every_row_and_lists_the_first(url: str) -> None:
    """``query functions --purl`` / ``query hot``: the refused doubt of any function counts every
    refused row that may be the package's (and every unreadable one), sums their calls, names
    their files, and lists the first MAX_ROWS rows. It made a row of the answer of each (11.9 s at
    200,000 rows); now only of those it lists. Same count, calls, files and rows as before."""
    refused(url)
    engine = create_store_engine(url)
    with engine.begin() as conn:
        one = dict(conn.execute(sa.select(quarantined_rows)).mappings().one())
        del one["id"]
        base = json.loads(one["row_json"])
        rows = [base | {"function_name": f"f{i}", "module": f"/lib/m{i % 30}\udcff.so",
                        "invocation_count": 1 + i % 11, "first_seen_ns": T0 + (i % 9) * DAY,
                        "last_seen_ns": T0 + (i % 9) * DAY + S} for i in range(249)]  # fmt: skip
        others = [base | {"purl": "pkg:deb/debian/other@1"}, base | {"evidence": "loaded"},
                  base | {"image_digest": "sha256:" + "e" * 64}, base | {"invocation_count": 0}]  # fmt: skip
        texts = [json.dumps(r) for r in rows + others] + [f'{{"image_digest": "{IMG}", cut', f'["{IMG}"]']
        conn.execute(sa.insert(quarantined_rows), [one | {"row_json": t} for t in texts])
    zlib = PurlQuery.parse("pkg:deb/debian/zlib1g")
    with engine.connect() as conn:
        d = doubts.refused(conn, image=IMG, function=None, purl=zlib, unattributed_too=False)
        late = doubts.refused(
            conn, image=IMG, function=None, purl=zlib, since=dt.datetime(2026, 6, 8, tzinfo=dt.UTC)
        )
    engine.dispose()
    assert d is not None and late is not None
    doc = d.to_json()
    assert (len(doc["refused"]), doc["refused_count"], doc["refused_truncated"]) == (MAX_ROWS, 251, True)
    calls = 9 + sum(1 + i % 11 for i in range(249))  # the first row's 9, the unreadable row's none
    assert f"the store refused 251 rows of {calls} calls" in d.why
    assert "/lib/m0\\udcff.so" in d.why and "(unreadable)" in d.why and "and 12 more files" in d.why
    assert {r["function_name"] for r in doc["refused"]} <= {FN, "", *(f"f{i}" for i in range(249))}
    # a period: rows seen in it, and the unreadable row (it may be of any time)
    in_period = [i for i in range(249) if i % 9 >= 7]  # T0 is 2026-06-01: days 7 and 8
    assert late.to_json()["refused_count"] == len(in_period) + 1
    assert f"of {sum(1 + i % 11 for i in in_period)} calls" in late.why


def test_a_refused_clone_of_a_function_asked_by_its_id_is_never_not_observed(url: str) -> None:
    """``<build-id>:inflateGetHeader+0x0`` while the store refused the rows of its clone
    ``inflateGetHeader.part.0`` of that build: the refused doubt matched a function ID's own name
    only, so the answer was "not observed" (exit 1). Seen failing before the fix. A refused clone
    of another function is not the function."""
    filled(url)
    bid = "1f95d5498d283b79505861523e20b3db2afdf518"
    with open_store(url) as s:  # the build ran (another function of it): "not observed" can be said
        s.write([dataclasses.replace(row("adler32", EvidenceKind.INVOKED, PURL), build_id=bid)], [])
    asked = ("--image", IMG, "--function", f"{bid}:{FN}+0x0")
    for seq, fn in enumerate(("adler32.part.0", f"{FN}.part.0"), start=1):
        start = T0 + 3 * DAY
        key = HotSymbolKey(IMG, BAD_PATH, fn, EvidenceKind.ON_STACK)
        d = HotSymbolDelta(key, start, 9, start + S, start + 2 * S, purl=PURL, build_id=bid,
                           function_id=f"{bid}:{fn}+0x0")  # fmt: skip
        with open_store(url) as s:
            assert s.write_batch(Batch("node-1/q", seq, [d])).quarantined == 1
        code, doc = cli(url, "query", "observed", *asked)
        if fn.startswith("adler32"):
            assert (code, doc["answer"]) == (1, "not_observed"), doc  # another function's clone
    assert (code, doc["answer"], doc.get("refused_count")) == (3, "unknown", 1), doc
