"""std's private copy of a crates.io crate is not credited to the application's crate of that name.

rustc's std depends on crates.io crates (hashbrown for ``HashMap``, memchr,
libc, gimli, ...) and compiles them into std under their own crate names. A
binary that uses ``std::collections::HashMap`` and lists its own ``hashbrown``
in ``.dep-v0`` therefore holds two crates named ``hashbrown``: v0 symbols tell
them apart only by the crate disambiguator (``Cs<hash>_9hashbrown``), legacy
symbols only by the per-symbol hash, and demangling drops both. Before, every
``hashbrown::...`` function was filed under the listed ``pkg:cargo/hashbrown``,
std's code included: "did hashbrown@0.15.0's reserve_rehash run" answered yes
when only std's copy (another version) had run. Such a function is now unknown.
The binary is built by cargo from a local crate named hashbrown.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.canonical.demangle import demangle
from tests import attribution_roots as roots

APP = "/usr/local/bin/stella-app"
MAIN = """use std::collections::HashMap;
fn main() {
    let mut m: HashMap<String, u64> = HashMap::new();
    for i in 0..std::env::args().count() as u64 * 100 { m.insert(format!("{i}"), i); }
    let mut t = hashbrown::raw::RawTable { v: vec![] };
    println!("{} {}", m.len(), t.reserve_rehash(3));
}
"""


@pytest.fixture(scope="module")
def two_hashbrowns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("cargo")
    lib_rs = (
        "pub mod raw {\n    pub struct RawTable { pub v: Vec<u64> }\n    impl RawTable {\n"
        "        #[inline(never)]\n        pub fn reserve_rehash(&mut self, n: u64) -> u64 {\n"
        "            self.v.push(n);\n            self.v.iter().sum()\n        }\n    }\n}\n"
    )
    manifest = '[package]\nname = "hashbrown"\nversion = "0.15.0"\nedition = "2021"\n'
    binary = roots.cargo_app(
        ws, ("hashbrown", manifest, lib_rs), MAIN, dependency='hashbrown = { path = "../hashbrown" }', v0=True
    )
    packages: list[dict[str, object]] = [
        {"name": "stella-app", "version": "0.1.0", "source": "local", "dependencies": [1], "root": True},
        {"name": "hashbrown", "version": "0.15.0", "source": "crates.io"},
    ]
    return roots.add_dep_v0(binary, ws / "audited", roots.dep_v0(packages))


def test_std_s_hashbrown_is_not_the_listed_hashbrown(two_hashbrowns: Path, tmp_path: Path) -> None:
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(two_hashbrowns, tmp_path / APP.lstrip("/"))
    mangled = [s.split()[-1] for s in roots.run(["nm", str(two_hashbrowns)]).stdout.splitlines()]
    # two crates named hashbrown: two disambiguators in the v0 names (std's and the application's)
    assert len({m.group(1) for s in mangled if (m := re.search(r"Cs([0-9A-Za-z]+)_9hashbrown", s))}) == 2
    names = {demangle(s) for s in mangled}
    mine = "<hashbrown::raw::RawTable>::reserve_rehash"  # the application's crate
    stds = sorted(n for n in names if n.startswith("<hashbrown::raw::RawTable<") and "reserve_rehash" in n)
    assert mine in names and stds, sorted(n for n in names if "hashbrown" in n)
    att = Attributor()
    for f in (mine, stds[0]):  # after demangling, only the crate's name is left: both say hashbrown
        a = att.attribute_function(image_digest="sha256:hb", root=str(tmp_path), path=APP, function=f)
        assert (a.purl, a.source, a.scope) == (None, "none", "function"), f  # never pkg:cargo/hashbrown
        assert a.error is not None and "std's private copy" in a.error, a.error
    a = att.attribute_function(
        image_digest="sha256:hb", root=str(tmp_path), path=APP, function="stella_app::main"
    )
    assert (a.purl, a.scope) == ("pkg:cargo/stella-app@0.1.0", "function")
