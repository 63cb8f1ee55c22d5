"""getopts and unicode-width are libtest's, not std's: a binary without libtest holds only the listed copy.

rustc's sysroot carries getopts (and, in older toolchains, unicode-width) for
libtest, the ``#[test]`` harness, and only a test binary links libtest. Since
s40 every crate of the sysroot's name was unknown when the binary listed it
(std's private copy may be the one that ran), so a production binary listing
getopts (or unicode-width, which clap and textwrap pull in) answered unknown
for functions that could only be the listed crate's. Now a binary whose
symbol table names no libtest code (no ``_ZN4test``/``Cs…_4test`` symbol)
files them under the listed package; a test binary, and a binary without a
symbol table (nothing says libtest is absent), keep unknown, and so does a test
binary whose table keeps only ``main`` (``strip -K main``; fat LTO with
``-Wl,--discard-all`` leaves the same): a table that names no Rust code of the
crate says nothing of libtest either (RAT2 s41: it was filed under the listed
package, seen failing before the fix). The binaries are
built by rustc from one local crate named getopts. Seen failing before the fix.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from tests import attribution_roots as roots

APP = "/usr/local/bin/app"
FN = "getopts::Options::new"
LIB = "pub struct Options { pub n: usize }\nimpl Options {\n    #[inline(never)]\n" \
      "    pub fn new() -> Options { Options { n: std::env::args().count() } }\n}\n"  # fmt: skip
MAIN = 'fn main() { println!("{}", getopts::Options::new().n); }\n' \
       "#[test]\nfn t() { assert!(getopts::Options::new().n > 0); }\n"  # fmt: skip


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("libtest")
    rustc = roots.tool("rustc", "/root/.cargo/bin")
    (work / "getopts.rs").write_text(LIB)
    (work / "main.rs").write_text(MAIN)
    lib = work / "libgetopts.rlib"
    roots.run([rustc, "--edition", "2021", "--crate-type", "rlib", "--crate-name", "getopts",
               "-C", "opt-level=1", "-o", str(lib), str(work / "getopts.rs")])  # fmt: skip
    packages: list[dict[str, object]] = [
        {"name": "app", "version": "0.1.0", "source": "local", "dependencies": [1], "root": True},
        {"name": "getopts", "version": "0.2.21", "source": "crates.io"},
    ]
    out: dict[str, Path] = {}
    for kind, extra in (("plain", []), ("test", ["--test"])):
        built = work / f"app-{kind}"
        roots.run([rustc, "--edition", "2021", *extra, "--crate-name", "app", "-C", "opt-level=1",
                   "--extern", f"getopts={lib}", "-o", str(built), str(work / "main.rs")])  # fmt: skip
        out[kind] = roots.add_dep_v0(built, work / f"audited-{kind}", roots.dep_v0(packages))
    stripped = work / "audited-stripped"
    roots.run([roots.tool("objcopy"), "--strip-all", str(out["plain"]), str(stripped)])
    out["stripped"] = stripped
    # a test binary whose symbol table keeps only ``main`` (strip -K main; LTO with --discard-all
    # leaves alike): a table, but one that no longer names libtest's code nor getopts'
    kept = work / "audited-test-main-only"
    roots.run([roots.tool("objcopy"), "--strip-all", "--keep-symbol=main", str(out["test"]), str(kept)])
    out["test-main-only"] = kept
    return out


def _ask(binary: Path, root: Path) -> tuple[str | None, str | None]:
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(binary, root / APP.lstrip("/"))
    a = Attributor().attribute_function(
        image_digest="sha256:" + "c3" * 32, root=str(root), path=APP, function=FN
    )
    assert a.scope == "function", a
    return a.purl, a.error


def test_getopts_of_a_binary_without_libtest_is_the_listed_package(
    binaries: dict[str, Path], tmp_path: Path
) -> None:
    symbols = roots.run(["nm", str(binaries["plain"])]).stdout
    assert "_ZN7getopts7Options3new" in symbols and "_4test" not in symbols and "_ZN4test" not in symbols
    assert _ask(binaries["plain"], tmp_path) == ("pkg:cargo/getopts@0.2.21", None)


@pytest.mark.parametrize("kind", ["test", "stripped", "test-main-only"])
def test_getopts_of_a_test_binary_or_one_without_symbols_stays_unknown(
    binaries: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    if kind == "test":  # the harness links libtest and the sysroot's getopts
        symbols = roots.run(["nm", str(binaries["test"])]).stdout
        assert "_4test" in symbols and symbols.count("_7getopts") > 1
    purl, error = _ask(binaries[kind], tmp_path)
    assert purl is None and error is not None and "std's private copy" in error, (purl, error)
