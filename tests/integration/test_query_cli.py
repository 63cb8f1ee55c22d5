"""``stella-runtime query``: tables, JSON and exit codes against real stores (SQLite and PostgreSQL)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

import pytest
from pg import free_port

from stellaops_runtime.cli import exitcodes
from stellaops_runtime.cli import query as query_cli
from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import create_store_engine, open_store
from tests.native.rust_names import crate_names
from tests.node_alive import ALIVE_IMAGE, alive_after

S = 1_000_000_000
T0 = 1_740_787_200 * S  # 2025-03-01T00:00:00Z
DAY = 86_400 * S
IMG = "sha256:" + "d" * 64
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
PURL = "pkg:deb/debian/openssl@3.0.15-1?arch=amd64"


def _main_usable() -> bool:
    from stellaops_runtime.cli import main

    try:
        for name in main.SUBCOMMANDS:
            importlib.import_module(name)
    except ImportError:
        return False
    return True


def cli(*argv: str) -> int:
    """Run through ``stella-runtime``'s own main when every subcommand imports, else through register()."""
    if _main_usable():
        from stellaops_runtime.cli import main

        return main.main(list(argv))
    parser = argparse.ArgumentParser(prog="stella-runtime")
    query_cli.register(parser.add_subparsers(dest="command"))
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as e:
        return int(e.code or 0)
    return int(args.func(args))


def d(fn: str, count: int, **kw: object) -> HotSymbolDelta:
    return HotSymbolDelta(
        key=HotSymbolKey(IMG, kw.pop("module", LIBSSL), fn, kw.pop("evidence", EvidenceKind.INVOKED)),  # type: ignore[arg-type]
        window_start_ns=T0,
        invocation_count=count,
        first_seen_ns=T0 + S,
        last_seen_ns=T0 + 2 * S,
        purl=PURL,
        node_name="node-1",
        confidence=1.0,
        **kw,  # type: ignore[arg-type]
    )


def seed(url: str) -> None:
    with open_store(url) as store:
        store.write(
            [
                d("SSL_read", 1500, sample={"binary": "/usr/sbin/nginx"}),
                d("SSL_write", 900),
                d("EVP_Digest", 12, evidence=EvidenceKind.ON_STACK),
                d("", 1, evidence=EvidenceKind.LOADED),
            ],
            # node-1's agent ran on (a record of it the next day): T0's day is watched whole, not open
            [
                ObservationWindow(IMG, "node-1", T0, 2413, Posture.EBPF_DEEP, 60, "tetragon"),
                *alive_after("node-1", T0 + DAY),
            ],
        )


@pytest.fixture
def url(url: str) -> str:  # tests/integration/conftest.py's store (SQLite, PostgreSQL), seeded here
    u = url
    seed(u)
    return u


def test_observed_table_and_exit_codes(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("query", "observed", "--image", IMG, "--function", "SSL_read", "--store", url) == exitcodes.OK
    out = capsys.readouterr().out
    assert "observed: SSL_read" in out and "(invoked 1500)" in out
    header, row = out.splitlines()[1:3]
    assert header.split()[:3] == ["MODULE", "EVIDENCE", "PURL"]
    assert row.split()[:4] == [LIBSSL, "invoked", PURL, "1500"]
    assert "2025-03-01T00:00:01Z" in row
    assert header.index("INVOCATIONS") + len("INVOCATIONS") == row.index("1500") + 4  # right-aligned

    assert (
        cli("query", "observed", "--image", IMG, "--function", "SSL_free", "--store", url)
        == exitcodes.NOT_FOUND
    )
    out = capsys.readouterr().out
    assert out == (
        f"not observed: SSL_free in {IMG}, under observation 2025-03-01T00:00:00Z/2025-03-01T00:01:00Z "
        "(1 window on 1 node, posture EbpfDeep, source tetragon, 2413 events)\n"
    )
    # No row of libc6 in the image: the store knows nothing of that package (a mistyped purl
    # reads the same), so no "not observed" of it: unknown (test_answer_interpreted.py).
    wrong_purl = ("--purl", "pkg:deb/debian/libc6@2.36")
    assert (
        cli("query", "observed", "--image", IMG, "--function", "SSL_read", *wrong_purl, "--store", url) == 3
    )


def test_observed_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("query", "observed", "--image", IMG, "--function", "SSL_read", "--purl", PURL, "--store", url)
    assert cli(*argv, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["image"] == IMG and doc["function"] == "SSL_read" and doc["observed"] is True
    [rec] = doc["records"]
    assert rec["invocation_count"] == 1500 and rec["purl"] == PURL and rec["module"] == LIBSSL
    assert rec["first_seen"] == "2025-03-01T00:00:01Z" and rec["last_seen"] == "2025-03-01T00:00:02Z"
    assert rec["sample"] == {"binary": "/usr/sbin/nginx"}
    assert cli("query", "observed", "--image", IMG, "--function", "nope", "--store", url, "--json") == 1
    coverage = {
        "start": "2025-03-01T00:00:00Z",
        "end": "2025-03-01T00:01:00Z",
        "interval": "2025-03-01T00:00:00Z/2025-03-01T00:01:00Z",
        "windows": 1,
        "nodes": ["node-1"],
        "posture": {"lowest": "EbpfDeep", "highest": "EbpfDeep"},
        "source": "tetragon",
        "event_count": 2413,
    }
    assert json.loads(capsys.readouterr().out) == {
        "image": IMG,
        "function": "nope",
        "answer": "not_observed",
        "observed": False,
        "reason": f"image {IMG} was under observation 2025-03-01T00:00:00Z/2025-03-01T00:01:00Z "
        "(1 window on 1 node, posture EbpfDeep, source tetragon, 2413 events)",
        "coverage": coverage,
        "gaps": [],
        "unnamed": [],
        "unseen": [],
        "records": [],
    }


def test_functions_and_hot(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("query", "functions", "--image", IMG, "--purl", PURL, "--store", url, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["function_name"] for f in doc["functions"]] == ["EVP_Digest", "SSL_read", "SSL_write"]
    assert doc["purl"] == PURL and doc["prefix"] is False

    assert (
        cli(
            "query",
            "functions",
            "--image",
            IMG,
            "--purl",
            "pkg:deb/debian/openssl@",
            "--prefix",
            "--store",
            url,
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "FUNCTION" and [ln.split()[0] for ln in lines[1:]] == [
        "EVP_Digest",
        "SSL_read",
        "SSL_write",
    ]
    # A purl without a version is every version of the package (not a raw prefix).
    assert cli("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/openssl", "--store", url) == 0
    # A package with no row in the image is unknown, not "none ran" (test_answer_interpreted.py).
    assert cli("query", "functions", "--image", IMG, "--purl", "pkg:deb/debian/libc6", "--store", url) == 3
    capsys.readouterr()

    assert cli("query", "hot", "--image", IMG, "--limit", "2", "--store", url, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(h["function_name"], h["invocation_count"]) for h in doc["hot"]] == [
        ("SSL_read", 1500),
        ("SSL_write", 900),
    ]
    assert cli("query", "hot", "--image", IMG, "--store", url) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in out[1:]] == ["SSL_read", "SSL_write", "EVP_Digest"]
    assert cli("query", "hot", "--image", "sha256:" + "e" * 64, "--store", url) == exitcodes.UNKNOWN
    assert cli("query", "hot", "--image", "sha256:none", "--store", url) == exitcodes.ERROR


def test_store_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/env.db"
    seed(url)
    monkeypatch.setenv(query_cli.STORE_ENV, url)
    assert cli("query", "observed", "--image", IMG, "--function", "SSL_write") == 0


def test_missing_sqlite_file_is_an_error_and_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "absent.db"
    assert cli("query", "observed", "--image", IMG, "--function", "f", "--store", f"sqlite:///{db}") == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err
    assert not db.exists()


def test_never_migrated_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "empty.db"
    create_store_engine(f"sqlite:///{db}").connect().close()  # an empty SQLite file
    assert db.exists()
    assert cli("query", "hot", "--image", IMG, "--store", f"sqlite:///{db}") == 2
    assert "no hot-symbol data" in capsys.readouterr().err


@pytest.mark.postgres
def test_never_migrated_postgres_is_an_error(pg_empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("query", "hot", "--image", IMG, "--store", pg_empty_url) == 2
    assert "no hot-symbol data" in capsys.readouterr().err


@pytest.mark.postgres
def test_unreachable_postgres_is_an_error(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/stella"
    assert cli("query", "observed", "--image", IMG, "--function", "f", "--store", url) == 2
    err = capsys.readouterr().err
    assert "cannot query store" in err and "Traceback" not in err


@pytest.mark.parametrize("bad", ["mysql://u@h/db", "not a url", "postgresql+nodriver://u@h/db"])
def test_bad_urls_are_errors(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("query", "hot", "--image", IMG, "--store", bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("stella-runtime query:") and "Traceback" not in err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("query", "observed", "--image", IMG) == 2  # --function missing
    assert cli("query", "hot", "--image", IMG, "--limit", "0") == 2
    assert cli("query") == 2
    capsys.readouterr()


# -- three-valued answers, coverage, references (issue 9 §3) ------------------------

IMG2 = "sha256:" + "2" * 64  # watched at Passive only
IMG3 = "sha256:" + "3" * 64  # two nodes, several postures
BID = "93ac61ec5a8eb1396f9fbd350e3169a558528a40"
M = 60 * S


def seed_answers(url: str) -> None:
    with open_store(url) as store:
        store.write(
            [
                d("SSL_read", 5, function_id=f"{BID}:SSL_read+0x0", build_id=BID),
                d("_ZN3foo3barEv", 1),  # a name stored as given (no canonicalizer ran)
                d("foo::baz()", 2, build_id=BID),  # resolved without an ID: build_id + name
                d("0x1a2b", 3, build_id=BID, evidence=EvidenceKind.ON_STACK),  # unresolved frame
            ],
            [
                ObservationWindow(IMG2, "node-1", T0, 4, Posture.PASSIVE, 60, "tetragon"),
                ObservationWindow(IMG3, "node-1", T0, 10, Posture.EBPF_DEEP, 60, "tetragon"),
                ObservationWindow(IMG3, "node-2", T0 + M, 20, Posture.FULL_INSTRUMENTATION, 60, "tetragon"),
                ObservationWindow(IMG3, "node-2", T0 + 5 * M, 7, Posture.PASSIVE, 60, "tetragon"),
                ObservationWindow(IMG3, "node-3", T0 + 9 * M, 1),  # unknown posture
            ],
        )


def ask(url: str, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:
    code = cli("query", *argv, "--store", url, "--json")
    return code, json.loads(capsys.readouterr().out)


def test_three_answers_rest_on_coverage(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_answers(url)
    with open_store(url) as store:  # the nodes' agents ran on (a record of each the next day): not open
        store.write([], alive_after(["node-1", "node-2", "node-3"], T0 + DAY))
    # All time holds node-3's window at an unknown posture: a run there could not be seen to see calls.
    code, doc = ask(url, capsys, "observed", "--image", IMG3, "--function", "f")
    assert (code, doc["answer"], doc["observed"]) == (exitcodes.UNKNOWN, "unknown", None)
    assert "on node node-3 on 2025-03-01 only at posture unknown (1 window)" in doc["reason"], doc["reason"]
    assert [(u["node"], u["posture"], u["windows"]) for u in doc["unseen"]] == [("node-3", "unknown", 1)]
    code, doc = ask(
        url, capsys, "observed", "--image", IMG3, "--function", "f", "--until", "2025-03-01T00:08:59Z"
    )
    assert (code, doc["answer"], doc["observed"]) == (exitcodes.NOT_FOUND, "not_observed", False)
    assert doc["coverage"] == {
        "start": "2025-03-01T00:00:00Z",
        "end": "2025-03-01T00:02:00Z",
        "interval": "2025-03-01T00:00:00Z/2025-03-01T00:02:00Z",
        "windows": 2,
        "nodes": ["node-1", "node-2"],
        "posture": {"lowest": "EbpfDeep", "highest": "FullInstrumentation"},
        "source": "tetragon",
        "event_count": 30,
    }
    # A period holding only the Passive and the unknown windows: no evidence either way.
    argv = ("observed", "--image", IMG3, "--function", "f", "--since", "2025-03-01T00:04:30Z")
    code, doc = ask(url, capsys, *argv)
    assert (code, doc["answer"], doc["observed"]) == (exitcodes.UNKNOWN, "unknown", None)
    assert doc["coverage"]["posture"] == {"lowest": "unknown", "highest": "Passive"}
    assert doc["reason"] == (
        f"image {IMG3} was observed since 2025-03-01T00:04:30Z only at posture Passive "
        "(lifecycle events), which cannot see function calls"
    )
    # A window overlapping the period counts even if it started before it.
    code, doc = ask(url, capsys, *argv[:-1], "2025-03-01T00:01:30Z", "--until", "2025-03-01T00:01:40Z")
    assert (code, doc["coverage"]["windows"], doc["coverage"]["nodes"]) == (1, 1, ["node-2"])
    code, doc = ask(url, capsys, "observed", "--image", IMG2, "--function", "f")
    assert (code, doc["answer"]) == (exitcodes.UNKNOWN, "unknown") and "Passive" in doc["reason"]
    assert cli("query", "observed", "--image", IMG2, "--function", "f", "--store", url) == 3
    assert capsys.readouterr().out == (
        f"unknown: f in {IMG2}: image {IMG2} was observed only at posture Passive (lifecycle events), "
        "which cannot see function calls\n"
    )


def test_observed_in_a_period_counts_only_its_calls(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = ask(
        url, capsys, "observed", "--image", IMG, "--function", "SSL_read", "--until", "2025-03-01T00:00:00Z"
    )
    assert (code, doc["answer"], doc["records"]) == (exitcodes.NOT_FOUND, "not_observed", [])
    code, doc = ask(
        url, capsys, "observed", "--image", IMG, "--function", "SSL_read", "--since", "2025-03-01T00:00:01Z"
    )
    assert (code, [r["invocation_count"] for r in doc["records"]]) == (0, [1500])
    assert (
        cli(
            "query",
            "observed",
            "--image",
            IMG,
            "--function",
            "f",
            "--since",
            "2025-03-02T00:00:00Z",
            "--until",
            "2025-03-01T00:00:00Z",
            "--store",
            url,
        )
        == exitcodes.ERROR
    )
    assert "--since is after --until" in capsys.readouterr().err


def test_function_ids_and_names(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_answers(url)
    for text in (f"{BID}:SSL_read+0x0", f"{BID}:SSL_read+0x2a"):
        code, doc = ask(url, capsys, "observed", "--image", IMG, "--function", text)
        assert (code, [r["function_id"] for r in doc["records"]]) == (0, [f"{BID}:SSL_read+0x0"])
    # a build-id of no file of the image: unknown (file_not_seen), never "not observed"
    assert ask(url, capsys, "observed", "--image", IMG, "--function", f"{'0' * 40}:SSL_read+0x0")[0] == 3
    code, doc = ask(url, capsys, "observed", "--image", IMG, "--function", f"{BID}:foo::baz()+0x4")
    assert (code, [r["function_name"] for r in doc["records"]]) == (0, ["foo::baz()"])
    code, doc = ask(url, capsys, "observed", "--image", IMG, "--function", f"{BID}:+0x1a2b")
    assert (code, [r["function_name"] for r in doc["records"]]) == (0, ["0x1a2b"])
    code, doc = ask(url, capsys, "observed", "--image", IMG, "--function", "_ZN3foo3barEv")
    assert (code, [r["function_name"] for r in doc["records"]]) == (0, ["_ZN3foo3barEv"])


def test_query_images(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_answers(url)
    code, doc = ask(url, capsys, "images")
    assert code == 0
    by_image = {i["image"]: i for i in doc["images"]}
    # ALIVE_IMAGE: seed()'s later record of node-1 (tests/node_alive.py), another image the node ran
    assert list(by_image) == sorted(by_image) == sorted([IMG, IMG2, IMG3, ALIVE_IMAGE])
    assert (by_image[IMG]["hot_symbol_rows"], by_image[IMG]["function_rows"]) == (7, 6)
    assert by_image[IMG3]["coverage"]["windows"] == 4
    assert by_image[IMG3]["coverage"]["posture"] == {"lowest": "unknown", "highest": "FullInstrumentation"}
    assert by_image[IMG2]["hot_symbol_rows"] == 0
    assert cli("query", "images", "--store", url) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "IMAGE",
        "FIRST",
        "START",
        "LAST",
        "END",
        "WINDOWS",
        "NODES",
        "EVENTS",
        "ROWS",
        "FUNCTIONS",
        "POSTURE",
        "STATE",
    ]
    assert lines[2].split()[1:] == [
        "2025-03-01T00:00:00Z",
        "2025-03-01T00:09:00Z",
        "4",
        "3",
        "38",
        "0",
        "0",
        "unknown..FullInstrumentation",
        "watched,",
        "nothing",
        "observed",
    ]


def test_empty_store_lists_no_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/empty.db"
    open_store(url).close()
    assert cli("query", "images", "--store", url) == exitcodes.NOT_FOUND
    assert capsys.readouterr().out == "no images observed\n"


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["evidence", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "f"], "evidence"),
        (["witness", "list", "--image", IMG], "witness"),
    ],
)
def test_store_errors_name_the_command_that_failed(
    argv: list[str], command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.db"
    assert cli(*argv, "--store", f"sqlite:///{missing}") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stella-runtime {command}: no hot-symbol store at"), err
    assert "Traceback" not in err


def test_a_name_without_parameters_names_every_overload(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Advisories write ``foo::bar``; the agent stores ``foo::bar(int)``. Exact otherwise: case,
    a longer name and LIKE's wildcards never match."""
    with open_store(url) as store:
        store.write(
            [
                d("foo::bar(int)", 2),
                d("foo::bar(char const*) const", 3),
                d("foo::barista(int)", 5),
                d("FOO::bar(long)", 7),
                d("a_b::c%d(int)", 11),
                d("(anonymous namespace)::scaled(double)", 13),
            ],
            [],
        )

    def counts(text: str) -> tuple[int, list[int]]:
        code, doc = ask(url, capsys, "observed", "--image", IMG, "--function", text)
        return code, sorted(r["invocation_count"] for r in doc["records"])

    assert counts("foo::bar") == (0, [2, 3])
    assert counts("foo::bar(int)") == (0, [2])
    assert counts("foo::bar(long)") == (exitcodes.NOT_FOUND, [])
    assert counts("foo::ba") == (exitcodes.NOT_FOUND, [])
    assert counts("a_b::c%d") == (0, [11])
    assert counts("aXb::c%d") == (exitcodes.NOT_FOUND, [])  # _ is no wildcard
    assert counts("a_b::c") == (exitcodes.NOT_FOUND, [])  # nor %
    assert counts("(anonymous namespace)::scaled") == (0, [13])


def test_a_rust_path_without_generics_names_what_rustc_demangle_prints(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """RustSec writes ``smallvec::SmallVec::insert_many``; the agent stores the names of a real build
    (legacy ``smallvec::SmallVec<A>::insert_many``, v0 ``<smallvec::SmallVec<u8>>::insert_many::<…>``,
    their closures). Before, nothing matched: not observed. Never another function: ``insert``,
    ``Other::insert_many``, std's functions instantiated with it, another case (SQLite's LIKE)."""
    real = sorted({*crate_names("legacy"), *crate_names("v0")})
    near = [
        "Smallvec::SmallVec<A>::insert_many",
        "smallvec::SmallVec<A>::INSERT_MANY",
        "smallvec::SmallVec<A>::insert_many_x",
    ]
    with open_store(url) as store:
        store.write([d(n, 1) for n in [*real, *near]], [])

    def found(text: str) -> tuple[int, list[str]]:
        code, doc = ask(url, capsys, "observed", "--image", IMG, "--function", text)
        return code, sorted(r["function_name"] for r in doc["records"])

    heads = ("smallvec::SmallVec<A>::insert_many", "<smallvec::SmallVec<u8>>::insert_many")
    want = sorted(n for n in real if n.startswith(heads))
    assert len(want) == 4  # each mangling's function and its closure
    assert found("smallvec::SmallVec::insert_many") == (exitcodes.OK, want)
    assert found("smallvec::SmallVec::insert") == (
        exitcodes.OK,
        ["<smallvec::SmallVec<u8>>::insert", "smallvec::SmallVec<A>::insert"],
    )
    assert found("smallvec::Other::insert_many") == (
        exitcodes.OK,
        ["<smallvec::Other>::insert_many", "smallvec::Other::insert_many"],
    )
    assert found("smallvec::SmallVec::insert_man")[0] == exitcodes.NOT_FOUND
    assert found("smallvec::smallvec::insert_many")[0] == exitcodes.NOT_FOUND


@pytest.mark.parametrize("limit", ["9223372036854775808", "99999999999999999999"])
def test_a_limit_no_database_takes_is_a_usage_error(
    url: str, capsys: pytest.CaptureFixture[str], limit: str
) -> None:
    """Before the fix ``--limit`` past 2**63 - 1 reached the database: an "internal error" with a
    traceback's frames in the log on SQLite, "bigint out of range" on PostgreSQL."""
    assert cli("query", "hot", "--image", IMG, "--limit", limit, "--store", url) == exitcodes.ERROR
    err = capsys.readouterr().err
    assert "--limit" in err and "at most 9223372036854775807" in err and "internal error" not in err, err
    biggest = str(2**63 - 1)
    assert cli("query", "hot", "--image", IMG, "--limit", biggest, "--store", url) == exitcodes.OK
