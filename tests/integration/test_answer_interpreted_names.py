"""``query observed`` without ``--purl`` in an image that runs interpreted code (evidence/interpreted.py).

Both directions of the ``interpreted`` doubt, through the real CLI on SQLite and PostgreSQL:

- An image whose only interpreter is Deno (a JavaScript runtime stored as ``/usr/bin/deno``) was
  not known to run interpreted code: a JavaScript function asked of no package answered "not
  observed" (exit 1), though no sampled stack could have named it. Now unknown (exit 3).
- A function asked by its mangled native name (C++ ``_Z...``, Rust ``_R...``/legacy ``_ZN...h<hash>E``)
  cannot be an interpreted function's, as one asked by function ID cannot: in an image running
  Python it keeps its "not observed" (exit 1), and its answer rests on the windows as any native
  function's does. The same name demangled (``Poco::Net::HTTPRequest::read(std::istream&)``)
  could be a Java method's spelling and stays unknown.
- A plain name the store holds as native code of the image (an ELF symbol of its libz called before
  the period, or under the build-id of its libz in another image) keeps its "not observed"; one also
  held as a Python function's (no build-id) stays unknown.
- An interpreter built into a binary of another name is known by its own functions on the stacks;
  a package that is an interpreter (``libnode108``) holds interpreted code (its standard library).

And how a name meets the stored names (store/function_refs.py): a C++ clone asked with other spaces in its
parameter list, LLVM's clones (``.specialized.1``, ``.argelim``). Each case was seen failing
before its fix.
"""

from __future__ import annotations

import dataclasses

from stellaops_runtime.contracts.hotsymbols import EvidenceKind, HotSymbolDelta
from tests.integration.test_answer_interpreted import BID, CASES, ZLIB, filled, row
from tests.integration.test_answer_unattributed import cli
from tests.integration.test_vex import IMG

MANGLED = "_ZN4Poco3Net11HTTPRequest4readERSi"  # Poco::Net::HTTPRequest::read(std::istream&)
RUST_V0 = "_RNvNtCs1234_7mycrate3foo3bar"  # mycrate::foo::bar


def test_an_image_running_deno_makes_a_name_asked_of_no_package_unknown(url: str) -> None:
    filled(
        url,
        row("/usr/bin/deno", "", EvidenceKind.LOADED, ""),
        row(ZLIB[0], "", EvidenceKind.LOADED, ZLIB[1]),
    )
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "parseHeaders")
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), doc
    assert "/usr/bin/deno" in doc["reason"]


def test_a_mangled_native_name_keeps_its_answer_in_an_image_running_python(url: str) -> None:
    deb = CASES["deb"]
    filled(
        url,
        row(ZLIB[0], "", EvidenceKind.LOADED, ZLIB[1]),
        row(deb[0], "", EvidenceKind.LOADED, deb[1], bid=BID),
        row("/usr/lib/libPocoNet.so.80", "Poco::Net::HTTPRequest::write(std::ostream&) const",
            EvidenceKind.ON_STACK, "pkg:deb/debian/libpoconet80"),
    )  # fmt: skip
    for name in (MANGLED, RUST_V0):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", name)
        assert (code, doc["answer"]) == (1, "not_observed"), doc
        assert "interpreted" not in doc
    # Named as a demangler writes it, the text could be a Java method's: still unknown.
    code, doc = cli(
        url, "query", "observed", "--image", IMG, "--function", "Poco::Net::HTTPRequest::read(std::istream&)"
    )
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), doc


def test_a_spaced_cxx_name_matches_its_clone(url: str) -> None:
    """Two of this session's matchings together (8ab62ef spaces, 1140278 clones): a C++ function
    whose calls ran only in its GCC clone ``f(std::istream&) (.isra.0)``, asked with another
    spacing of its parameter list, matched neither (exit 1 "not observed")."""
    poco, purl = "/usr/lib/libPocoNet.so.80", "pkg:deb/debian/libpoconet80"
    stored = "Poco::Net::HTTPRequest::read(std::istream&) (.isra.0)"
    filled(url, row(poco, stored, EvidenceKind.ON_STACK, purl))
    for spelled in ("Poco::Net::HTTPRequest::read(std::istream &)", "Poco::Net::HTTPRequest::read"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", spelled)
        assert (code, [r["function_name"] for r in doc["records"]]) == (0, [stored]), (spelled, doc)
    code, doc = cli(
        url, "query", "observed", "--image", IMG, "--function", "Poco::Net::HTTPRequest::read(int &)"
    )
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_an_interpreter_built_into_a_binary_of_another_name_is_seen_by_its_functions(url: str) -> None:
    """A Node.js single-executable app (node built into ``/app/server``), a PyInstaller-like static
    Python, a .NET single-file app: no file is named as an interpreter, but the interpreter's own
    loop is on the sampled stacks (``Builtins_JSEntry``, ``_PyEval_EvalFrameDefault``). Before
    the fix a JavaScript function asked of no package answered "not observed" (exit 1)."""
    filled(
        url,
        row("/app/server", "Builtins_JSEntry", EvidenceKind.ON_STACK, ""),
        row("/app/server", "node::Start(int, char**)", EvidenceKind.ON_STACK, ""),
        row(ZLIB[0], "crc32", EvidenceKind.ON_STACK, ZLIB[1]),
    )
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "parseHeaders")
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), doc
    assert "/app/server" in doc["reason"] and "Builtins_JSEntry" in doc["reason"]
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", "crc32")  # a call is a call
    assert (code, doc["answer"]) == (0, "observed"), doc


def test_llvm_clones_are_the_functions_code(url: str) -> None:
    """LLVM names its clones otherwise than GCC: function specialization ``f.specialized.1``,
    dead-argument elimination ``f.argelim`` (clang 17+, and rustc). A call seen only there was
    "not observed" (exit 1) of ``f``."""
    filled(
        url,
        row(ZLIB[0], "inflate_fast.specialized.1", EvidenceKind.ON_STACK, ZLIB[1]),
        row(ZLIB[0], "deflate_stored.argelim", EvidenceKind.ON_STACK, ZLIB[1]),
    )
    for fn, stored in (
        ("inflate_fast", "inflate_fast.specialized.1"),
        ("deflate_stored", "deflate_stored.argelim"),
    ):
        code, doc = cli(
            url, "query", "observed", "--image", IMG, "--purl", "pkg:deb/debian/zlib1g", "--function", fn
        )
        assert (code, [r["function_name"] for r in doc["records"]]) == (0, [stored]), doc


def test_a_package_that_is_an_interpreter_holds_interpreted_code(url: str) -> None:
    """Node's JavaScript standard library is built into ``libnode`` (Debian's libnode108), an
    Alpine ``python3`` ships ``libpython3.11.so`` with its ``.py`` modules: a function of such a
    package asked by name may be interpreted code (``Module._load``, ``tarfile.extractall``). The
    package was seen loaded only through the interpreter's file, which no module-directory rule
    knows, so the answer was "not observed" (exit 1) and RTS 0.20."""
    libnode = (
        "/usr/lib/x86_64-linux-gnu/libnode.so.108",
        "pkg:deb/debian/libnode108@18.19.0+dfsg-6?arch=amd64",
    )
    filled(url, row(libnode[0], "", EvidenceKind.LOADED, libnode[1], bid=BID))
    argv = ("--image", IMG, "--purl", "pkg:deb/debian/libnode108", "--function", "Module._load")
    code, doc = cli(url, "query", "observed", *argv)
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), doc
    assert libnode[0] in doc["reason"]
    code, doc = cli(url, "evidence", *argv)
    assert (code, doc["rts"]["score"]) == (3, 0.5), doc


def test_a_go_build_id_in_another_case_is_no_file_of_the_image(url: str) -> None:
    """A Go build-id is case-sensitive and may hold ``_``. A function ID whose build-id is the stored
    one in lower case (a tool that lower-cased the ID) is of no file of the image: unknown
    (``file_not_seen``). On SQLite the check read the stored IDs with LIKE, which ignores case
    there (and takes ``_`` for any character): "not observed" exit 1, PostgreSQL unknown."""
    bid = "Kf1A8kVvh8T6dd4_Eb6W/xZ9_Qm2LpR7sTuVwXyZaBc"
    d = row("/app/server", "main.handler", EvidenceKind.ON_STACK, "", bid=bid)
    filled(url, dataclasses.replace(d, function_id=f"{bid}:main.handler+0x0"))
    for asked in (f"{bid.lower()}:main.other+0x0", f"{bid.replace('_', 'X')}:main.other+0x0"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", asked)
        assert (code, doc["answer"], doc.get("file_not_seen")) == (3, "unknown", []), (asked, doc)
    code, doc = cli(url, "query", "observed", "--image", IMG, "--function", f"{bid}:main.other+0x0")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_name_the_index_holds_as_native_code_keeps_its_answer_in_an_image_running_python(url: str) -> None:
    """Asked of no package in an image running Python, every plain name was unknown (exit 3), ``inflate``
    too, though the store's own rows name it as native code of the image: an ELF symbol of its libz,
    called before the period asked about, or seen under the build-id of the libz this image holds in
    another image. Such a name is that native code, which no interpreter runs unseen: its answer
    rests on the windows (exit 1). A name the index does not hold as native code, or also holds as
    interpreted code (a Python function of that name seen through USDT, no build-id), stays unknown."""
    other, lib = "sha256:" + "c" * 64, ZLIB[0]

    def native(fn: str, *, image: str = IMG) -> HotSymbolDelta:
        d = row(lib, fn, EvidenceKind.ON_STACK, ZLIB[1], bid=BID)
        return dataclasses.replace(
            d, key=dataclasses.replace(d.key, image_digest=image), function_id=f"{BID}:{fn}+0x0"
        )

    filled(
        url,
        row("/usr/bin/python3.11", "", EvidenceKind.LOADED, "pkg:deb/debian/python3.11", bid="ef" * 20),
        row(lib, "", EvidenceKind.LOADED, ZLIB[1], bid=BID),
        native("inflate"),  # day 0
        native("deflate", image=other),
        native("compress"),
        row("/app/util.py", "compress", EvidenceKind.INVOKED, ""),  # a Python function of that name
    )  # fmt: skip
    period = ("--since", "2026-06-10T00:00:00Z", "--until", "2026-06-11T00:00:00Z")
    for fn in ("inflate", "deflate"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn, *period)
        assert (code, doc["answer"]) == (1, "not_observed"), (fn, doc)
        assert "interpreted" not in doc, doc
    for fn in ("compress", "parseHeaders"):
        code, doc = cli(url, "query", "observed", "--image", IMG, "--function", fn, *period)
        assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), (fn, doc)


def test_a_c_function_of_an_interpreters_package_the_index_holds_as_native_keeps_its_answer(url: str) -> None:
    """``libnode108`` holds Node's JavaScript standard library, so a name asked of it may be interpreted
    code (``Module._load``: unknown). Its C function ``uv_run``, held by the index as an ELF symbol of
    that package's file (called before the period asked about), is that native code: its answer rests
    on the windows (exit 1; before the fix unknown, exit 3)."""
    lib, purl = (
        "/usr/lib/x86_64-linux-gnu/libnode.so.108",
        "pkg:deb/debian/libnode108@18.19.0+dfsg-6?arch=amd64",
    )
    uv = row(lib, "uv_run", EvidenceKind.ON_STACK, purl, bid=BID)
    filled(
        url,
        row(lib, "", EvidenceKind.LOADED, purl, bid=BID),
        dataclasses.replace(uv, function_id=f"{BID}:uv_run+0x0"),
    )
    period = ("--since", "2026-06-10T00:00:00Z", "--until", "2026-06-11T00:00:00Z")
    argv = ("--image", IMG, "--purl", "pkg:deb/debian/libnode108", *period)
    code, doc = cli(url, "query", "observed", *argv, "--function", "uv_run")
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    code, doc = cli(url, "query", "observed", *argv, "--function", "Module._load")
    assert (code, doc["answer"], doc["interpreted"]) == (3, "unknown", []), doc
