"""A Rust crate whose library is renamed (``[lib] name``) is not filed under the binary's root crate.

cargo-auditable's ``.dep-v0`` lists packages (``foo-sys``); symbols carry the
library's crate name (``foo_ffi::checksum``), which for a ``[lib] name =
"foo_ffi"`` is not the package's name with ``-`` as ``_``. Before, such a
function matched no crate and fell back to the file's attribution, the root
crate (``pkg:cargo/stella-app``): "is foo-sys's function executed" was "not
observed" while it ran. A ``package =`` rename of the dependency does not
change the symbols (the binary here uses one). The binary is built by cargo.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.canonical.demangle import demangle
from tests import attribution_roots as roots

APP = "/usr/local/bin/stella-app"


@pytest.fixture(scope="module")
def renamed_lib_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("cargo")
    manifest = '[package]\nname = "foo-sys"\nversion = "0.2.0"\nedition = "2021"\n[lib]\nname = "foo_ffi"\n'
    lib_rs = (
        "#[inline(never)]\npub fn checksum(b: &[u8]) -> u32 {\n"
        "    b.iter().fold(7u32, |a, x| a.wrapping_mul(31).wrapping_add(*x as u32))\n}\n"
    )
    binary = roots.cargo_app(
        ws,
        ("foo-sys", manifest, lib_rs),
        'fn main() { println!("{}", renamed::checksum(b"x")); }\n',
        dependency='renamed = { path = "../foo-sys", package = "foo-sys" }',
    )
    packages: list[dict[str, object]] = [  # what cargo-auditable records: package names
        {"name": "stella-app", "version": "0.1.0", "source": "local", "dependencies": [1], "root": True},
        {"name": "foo-sys", "version": "0.2.0", "source": "local"},
    ]
    return roots.add_dep_v0(binary, ws / "audited", roots.dep_v0(packages))


def test_a_function_of_a_renamed_lib_is_not_the_root_crates(renamed_lib_binary: Path, tmp_path: Path) -> None:
    (tmp_path / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(renamed_lib_binary, tmp_path / APP.lstrip("/"))
    symbols = {
        demangle(s.split()[-1]) for s in roots.run(["nm", str(renamed_lib_binary)]).stdout.splitlines()
    }
    assert {"foo_ffi::checksum", "stella_app::main"} <= symbols  # the lib's name, not the package's
    att = Attributor()
    got = {
        f: att.attribute_function(image_digest="sha256:rn", root=str(tmp_path), path=APP, function=f)
        for f in (
            "foo_ffi::checksum",
            "foo_ffi::checksum::{{closure}}",
            "stella_app::main",
            "std::io::stdio::_print",
        )
    }
    for f in ("foo_ffi::checksum", "foo_ffi::checksum::{{closure}}"):
        a = got[f]
        assert (a.purl, a.source, a.scope) == (None, "none", "function"), f  # never pkg:cargo/stella-app
        assert a.error is not None and "foo_ffi" in a.error
    assert (got["stella_app::main"].purl, got["stella_app::main"].scope) == (
        "pkg:cargo/stella-app@0.1.0",
        "function",
    )
    # the toolchain's std is in no .dep-v0: the file's attribution, as before
    assert (got["std::io::stdio::_print"].purl, got["std::io::stdio::_print"].scope) == (
        "pkg:cargo/stella-app@0.1.0",
        "file",
    )
    assert att.stats.ambiguous == 2  # each of the two unknown functions
