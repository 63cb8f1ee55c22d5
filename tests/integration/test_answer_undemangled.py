"""A function stored under a name that did not demangle is never "not observed" by its demangled name.

The agent stores the canonical demangled name; a mangled name that does not demangle (cut, hostile,
or an agent whose demangler bindings did not load) is stored as it came, and a question by the
demangled name matched nothing: ``query observed`` said "not observed" (exit 1) of a function that
ran. Now it answers unknown (exit 3) naming the rows (``undemangled`` in its JSON) while a stored
still-mangled name may be the function (evidence/undemangled.py); one that cannot be (another
function's identifier, or one the CLI reads as another function) changes nothing. The stored names
are what the real demangler returns for them; SQLite; the CLI as a subprocess for the first
answer and through its entry point in this process for the rest (tests/cli_run.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta, HotSymbolKey
from stellaops_runtime.evidence.undemangled import own_name, own_names, undemangled
from stellaops_runtime.store.engine import create_store_engine, open_store
from stellaops_runtime.store.function_refs import function_query
from stellaops_runtime.store.schema import hot_symbol_windows
from tests.cli_run import cli_in_process, observed_json
from tests.integration.test_vex import DAY, IMG, PURL, T0, S, by_vuln, watched

LIB = "/usr/lib/libapp.so"
CUT = "_ZN7mycrate3foo17h0123456789ab"  # a legacy Rust name cut inside its hash: no demangler reads it
V0 = "_RNvCs1234_7mycrate3baz"  # valid Rust v0, as an agent stores it whose bindings did not load


def row(fn: str, kind: EvidenceKind = EvidenceKind.ON_STACK, *, day: int = 3, n: int = 7) -> HotSymbolDelta:
    start = T0 + day * DAY
    key = HotSymbolKey(IMG, LIB, fn, kind)
    return HotSymbolDelta(key, start, n, start + S, start + 2 * S, purl=PURL, node_name="node-1")


def filled(tmp: Path, put: Callable[[Path], str], *stored: str) -> str:
    """40 days watched at EbpfDeep, the file loaded, one function named, and ``stored`` ran."""
    url = put(tmp / "hot.db")
    with open_store(url) as s:
        rows = [row("", EvidenceKind.LOADED, day=0, n=1), row("crc32"), *(row(n, day=5) for n in stored)]
        s.write(rows, watched())
    return url


def ask(url: str, function: str, *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = cli_in_process(
        "query", "observed", "--store", url, "--image", IMG, "--function", function, "--json", *extra
    )
    assert r.returncode in (0, 1, 3), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_a_call_stored_under_a_name_that_did_not_demangle_is_unknown_by_its_name(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    assert demangle(CUT) == CUT  # what the agent stores for it
    url = filled(tmp_path, sqlite_at_head)
    assert ask(url, "mycrate::foo")[0] == 1  # the control: nothing stored of it
    url = filled(tmp_path, sqlite_at_head, demangle(CUT))
    code, doc = observed_json(url, IMG, "mycrate::foo")  # the real CLI, a new process
    assert (code, doc["answer"], doc["observed"], doc["records"]) == (3, "unknown", None, [])
    assert [(r["function_name"], r["invocation_count"]) for r in doc["undemangled"]] == [(CUT, 7)]
    assert "did not demangle when stored" in doc["reason"] and CUT in doc["reason"]
    assert ask(url, "mycrate::Foo::foo(int)", "--purl", "pkg:deb/debian/zlib1g")[0] == 3  # of its package
    assert ask(url, CUT)[0] == 0  # asked as it is stored: observed
    of_it = ("--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", "mycrate::foo", "--json")
    e = cli_in_process("evidence", "--store", url, *of_it)
    assert (e.returncode, json.loads(e.stdout)["rts"]["score"]) == (3, 0.5), e.stderr  # neutral, not a "no"
    # another function's identifier is not in it: it cannot be that function
    code, doc = ask(url, "other::bar")
    assert (code, doc["answer"], doc.get("undemangled")) == (1, "not_observed", None)
    assert ask(url, "net/http.(*Server).Serve")[0] == 1  # a Go name is never mangled
    assert ask(url, "mycrate::foo", "--since", "2026-06-10T00:00:00Z")[0] == 1  # ran before the period
    # vex: under investigation, not "not affected"
    affected = [{"purl": "pkg:deb/debian/zlib1g", "functions": ["mycrate::foo"]}]
    (tmp_path / "vulns.json").write_text(
        json.dumps({"vulnerabilities": [{"id": "CVE-R", "affected": affected}]})
    )
    key = tmp_path / "w.key"
    made = cli_in_process("witness", "keygen", "--private", str(key), "--public", str(tmp_path / "w.pub"))
    assert made.returncode == 0, made.stderr
    r = cli_in_process("vex", "--store", url, "--image", IMG, "--vulns", str(tmp_path / "vulns.json"),
                       "--key", str(key), "--witness-dir", str(tmp_path / "w"))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert by_vuln(json.loads(r.stdout))["CVE-R"]["status"] == "under_investigation"


def test_a_row_whose_history_retention_removed_is_unknown_in_a_period_its_life_meets(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = filled(tmp_path, sqlite_at_head, CUT)
    engine = create_store_engine(url)
    try:
        with engine.begin() as conn:  # as a retention cut of day 5's history does
            conn.execute(sa.delete(hot_symbol_windows).where(hot_symbol_windows.c.function_name == CUT))
    finally:
        engine.dispose()
    code, doc = ask(url, "mycrate::foo", "--since", "2026-06-03T00:00:00Z")
    assert (code, [r["function_name"] for r in doc["undemangled"]]) == (3, [CUT])
    assert ask(url, "mycrate::foo", "--since", "2026-06-10T00:00:00Z")[0] == 1  # after its last call


def test_a_stored_mangled_name_the_cli_reads_is_that_function_or_another(url: str) -> None:
    filled(Path(), lambda _: url, V0)  # stored by an agent whose bindings did not load; both stores
    code, doc = ask(url, "mycrate::baz")
    assert (code, [r["function_name"] for r in doc["undemangled"]]) == (3, [V0])
    assert "(here: mycrate::baz)" in doc["reason"]
    assert ask(url, "mycrate::qux")[0] == 1  # it reads here as another function


def test_a_question_by_a_mangled_name_that_does_not_demangle_is_unknown(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    url = filled(tmp_path, sqlite_at_head)
    code, doc = ask(url, "_ZN7other3bar17h0123456789ab")  # cut: read here as nothing
    assert (code, doc["answer"], doc["undemangled"]) == (3, "unknown", [])
    assert "does not demangle here" in doc["reason"]
    assert ask(url, "_ZN5other3barEv")[0] == 1  # one that demangles: the control


def test_the_function_s_own_name_is_the_last_identifier_of_its_path() -> None:
    assert own_name("smallvec::SmallVec::insert_many") == "insert_many"
    assert own_name("void ns::f<int>(int) const") == "f"
    assert own_name("(anonymous namespace)::g(std::vector<int, std::allocator<int>>&)") == "g"
    assert own_name("<mycrate::Foo as core::fmt::Debug>::fmt") == "fmt"
    assert own_name("mycrate::foo::{closure#0}") == "foo"
    assert own_name("mycrate::foo.cold") == own_name("foo(int) (.cold)") == "foo"
    assert own_name("h[abi:cxx11](int)") == "h"
    assert own_name("void (*ns::get<int>())(int)") == own_name("int (&ns::get<3>())[3]") == "get"
    assert own_name(demangle("_ZN2ns3getIiEEDTcl1fEET_")) == "get"  # decltype (f()) ns::get<int>(int)
    assert own_name("ns::operator<(a const&, a const&)") is None and own_name("crate::größe") is None
    assert own_names(function_query("mycrate::foo")) == {"foo"}
    # a mangling writes std::allocator as "Sa": the name alone cannot rule such a row out
    assert own_names(function_query("std::allocator<char>::allocator()")) is None


def test_a_still_mangled_name_the_store_refused_is_unknown_by_its_name(url: str) -> None:
    """PostgreSQL's key index holds at most ~2.7 KB: a still-mangled name longer (every name cut at
    the symbol table's 16 KiB) is refused and quarantined there, not stored: the refused doubt must
    read it as this doubt does. SQLite stores it: the same answer."""
    import random

    from stellaops_runtime.store.batches import Batch

    rnd = random.Random(7)  # not compressible below the index's limit
    cut = "_ZN7mycrate3foo" + "".join(f"8{rnd.getrandbits(32):08x}" for _ in range(600))  # no end
    assert demangle(cut) == cut
    filled(Path(), lambda _: url)
    start = T0 + 5 * DAY
    d = HotSymbolDelta(HotSymbolKey(IMG, LIB, cut, EvidenceKind.ON_STACK), start, 7, start + S, start + 2 * S)
    with open_store(url) as s:
        s.write_batch(Batch("node-1/q", 1, [d]))
    assert ask(url, "mycrate::foo")[0] == 3
    assert ask(url, "other::bar")[0] == 1  # it spells another function's identifier


def _bounded_by_the_name_index(conn: sa.Connection, statement: str, params: object) -> bool:
    """Whether the plan of ``statement`` reads hot_symbols only through a range of function_name in the
    (image_digest, function_name) index (PostgreSQL: where it can; the tests' server is in locale C)."""
    if conn.dialect.name == "sqlite":
        plan = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params)]  # type: ignore[arg-type]
        return all("(image_digest=? AND function_name>? AND function_name<?)" in p for p in plan)
    plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, params))  # type: ignore[arg-type]
    return "Seq Scan" not in plan and all(
        "function_name >= " in line for line in plan.splitlines() if "Index Cond" in line
    )


def test_an_image_with_no_still_mangled_name_costs_a_look_up_in_the_name_index(url: str) -> None:
    """The doubt asks every "no" (vex: every function): with no still-mangled name in the image, it
    reads no row, only a range of the name index (before: every row of the image, 40-55 ms at
    120,000 rows; /tmp/rdm/bench.py)."""
    filled(Path(), lambda _: url)
    with open_store(url) as s:  # enough rows for PostgreSQL's planner to prefer an index to reading all
        s.write([row(f"ns{i}::f{i}(int)") for i in range(3_000)], [])
    engine = create_store_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE signals.hot_symbols")
    seen: list[tuple[str, object]] = []

    def spy(_c: object, _cur: object, statement: str, params: object, *_: object) -> None:
        seen.append((statement, params))

    try:
        with engine.connect() as conn:
            sa.event.listen(engine, "before_cursor_execute", spy)
            assert undemangled(conn, image=IMG, function=function_query("mycrate::foo"), purl=None) is None
            sa.event.remove(engine, "before_cursor_execute", spy)
            read = [(s, p) for s, p in seen if "hot_symbols" in s]
            assert read and all(_bounded_by_the_name_index(conn, s, p) for s, p in read)
    finally:
        engine.dispose()
    mach_o = "__RNvCs1234_7mycrate3foo"  # Mach-O's extra underscore: another range
    filled(Path(), lambda _: url, mach_o)
    assert [r["function_name"] for r in ask(url, "mycrate::foo")[1]["undemangled"]] == [mach_o]


HIDDEN = "import sys; sys.modules['pycxxfilt'] = sys.modules['pyderust'] = None  # c++filt answers\n"


def test_hostile_still_mangled_names_are_not_ruled_out(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """Names as the agent stores them (what the real demangler returns), each in a store of its own."""
    cases = [  # (the symbol read, a question about the function it may be, a question it cannot be)
        ("_ZN7mycr\x00ate3foo17h0123456789ab", "mycrate::foo", "other::bar"),  # SQLite's LIKE stops at NUL
        # a template function returning a function pointer, as c++filt prints it (not "void")
        ("_ZN2ns3getIiEEPFviE", "void (*ns::get<int>())(int)", "void (*ns::put<int>())(int)"),
        # one pass of the decorations' rules leaves ".llvm.2": read here as the name without it
        ("_ZN7mycrate3foo17h0123456789ab.llvm.llvm.1.2", "mycrate::foo", "other::bar"),
        # a return type in decltype, as this demangler writes _Z3addIiiEDTplfp_fp0_ET_T0_ (here cut)
        ("_Z3addIiiEDTplfp_fp0_E", "decltype ({parm#1}+{parm#2}) add<int, int>(int, int)", "other::bar"),
        # a clone's name holds a dot, which language_of reads as Go's (never mangled)
        ("_ZN2ns3foo", "ns::foo(int) (.cold)", "ns::bar(int) (.cold)"),
    ]
    for i, (symbol, it, other) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        url = filled(tmp_path / str(i), sqlite_at_head, demangle(symbol))
        assert (ask(url, it)[0], ask(url, other)[0]) == (3, 1), symbol
    # without the bindings c++filt reads the name to its NUL: no reading of it, still unknown
    (tmp_path / "nul").mkdir()
    url = filled(tmp_path / "nul", sqlite_at_head, "_ZN7mycrate3foo17h0123456789ab\x00\x00")
    run = HIDDEN + "from stellaops_runtime.cli.main import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run(
        [sys.executable, "-c", run, "query", "observed", "--store", url, "--image", IMG,
         "--function", "mycrate::foo", "--json"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert (r.returncode, json.loads(r.stdout)["answer"]) == (3, "unknown"), r.stderr
