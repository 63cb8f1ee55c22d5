"""rpm's per-file install state: a file another package replaced is no longer this package's.

``rpm -i --replacefiles`` (and multilib's "wrong color" copies, and files
``--excludedocs`` left out) keeps the path in the old header with a
``FILESTATES`` entry other than normal/netshared, and ``rpm -qf`` names only
the package whose file is on disk. Before the fix every path of every header
was indexed, so the replacing package's file was "ambiguous" (both listed it)
and the package whose code ran read "not observed".
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.attribution.attributor import Attributor
from tests import attribution_roots as roots

SPEC = """\
Name: stella-{name}
Version: 1.0
Release: 1
Summary: file state test
License: MIT
BuildArch: noarch
%global __os_install_post %{{nil}}

%description
file state test

%install
mkdir -p %{{buildroot}}/usr/bin
echo {name} > %{{buildroot}}/usr/bin/stella-shared
echo {name} > %{{buildroot}}/usr/bin/stella-{name}

%files
/usr/bin/stella-shared
/usr/bin/stella-{name}
"""


def test_a_replaced_file_belongs_to_the_package_that_replaced_it(tmp_path: Path) -> None:
    rpmbuild, rpm = roots.tool("rpmbuild"), roots.tool("rpm")
    packages = []
    for name in ("alpha", "beta"):
        spec = tmp_path / f"{name}.spec"
        spec.write_text(SPEC.format(name=name))
        roots.run([rpmbuild, "--define", f"_topdir {tmp_path / 'top'}", "-bb", str(spec)])
        packages.append(next((tmp_path / "top" / "RPMS").rglob(f"stella-{name}-*.rpm")))
    root = tmp_path / "root"
    root.mkdir()
    db = ["--root", str(root), "--dbpath", "/var/lib/rpm"]
    roots.run([rpm, *db, "--nodeps", "-i", str(packages[0])])
    roots.run([rpm, *db, "--nodeps", "--replacefiles", "-i", str(packages[1])])
    owner = roots.run([rpm, *db, "-qf", "--qf", "%{NAME}\n", "/usr/bin/stella-shared"]).stdout.split()
    assert owner == ["stella-beta"]  # rpm's own answer

    att = Attributor()
    ask = {p: att.attribute_file(image_digest="sha256:" + "f1" * 32, root=str(root), path=p) for p in (
        "/usr/bin/stella-shared", "/usr/bin/stella-alpha", "/usr/bin/stella-beta")}  # fmt: skip
    assert ask["/usr/bin/stella-shared"].purl == "pkg:rpm/stella-beta@1.0-1?arch=noarch"
    assert ask["/usr/bin/stella-alpha"].purl == "pkg:rpm/stella-alpha@1.0-1?arch=noarch"
    assert ask["/usr/bin/stella-beta"].purl == "pkg:rpm/stella-beta@1.0-1?arch=noarch"
