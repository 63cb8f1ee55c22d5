"""A file two architectures of one package own gets one PURL, whatever the database order.

rpm installs ``stella-multi-1.0-1.noarch`` and ``stella-multi-1.0-1.x86_64``
side by side, both owning ``/usr/share/doc/stella-multi/README`` (``rpm -qf``
names both). They are one package (one claimant), so the answer is that
package; before, its ``arch`` qualifier was the first row's in the database,
i.e. the install order: two images with the same packages gave the README
two PURLs, and a question with ``arch=x86_64`` missed one of them. The
choice is now fixed: an architecture-specific package before ``noarch``/``all``,
a 64-bit architecture before others, then the PURL's text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.model import Package
from stellaops_runtime.attribution.owners import KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS
from tests import attribution_roots as roots

README = "/usr/share/doc/stella-multi/README"

SPEC = """\
Name: stella-multi
Version: 1.0
Release: 1
Summary: attribution test package
License: MIT
BuildArch: {arch}
%global debug_package %{{nil}}
%global __os_install_post %{{nil}}
%description
t
%install
mkdir -p %{{buildroot}}/usr/share/doc/stella-multi %{{buildroot}}/usr/lib/stella-{arch}
printf 'shared\\n' > %{{buildroot}}{readme}
printf 'x\\n' > %{{buildroot}}/usr/lib/stella-{arch}/own.txt
%files
{readme}
/usr/lib/stella-{arch}/own.txt
"""


@pytest.fixture(scope="module")
def two_arch_rpms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    rpmbuild = roots.tool("rpmbuild")
    out: dict[str, Path] = {}
    for arch in ("x86_64", "noarch"):
        top = tmp_path_factory.mktemp(f"rpm-{arch}")
        (top / "SPECS").mkdir()
        spec = top / "SPECS/m.spec"
        spec.write_text(SPEC.format(arch=arch, readme=README))
        roots.run([rpmbuild, "--define", f"_topdir {top}", "-bb", str(spec)])
        out[arch] = next((top / "RPMS").rglob("*.rpm"))
    return out


def test_a_file_of_two_arches_of_one_rpm_has_one_purl_in_either_install_order(
    two_arch_rpms: dict[str, Path], tmp_path: Path
) -> None:
    answers = {}
    for order in (("x86_64", "noarch"), ("noarch", "x86_64")):
        root = tmp_path / "-".join(order)
        for arch in order:
            roots.rpm_install(two_arch_rpms[arch], root)
        qf = roots.run(
            [
                roots.tool("rpm"),
                "--root",
                str(root),
                "--dbpath",
                "/var/lib/rpm",
                "-qf",
                README,
                "--qf",
                "%{ARCH}\n",
            ]
        ).stdout.split()
        assert sorted(qf) == ["noarch", "x86_64"]  # rpm itself names both
        a = Attributor().attribute_file(image_digest=f"sha256:{order[0]}", root=str(root), path=README)
        assert a.source == "rpm" and a.error is None
        answers[order] = a.purl
    assert set(answers.values()) == {"pkg:rpm/stella-multi@1.0-1?arch=x86_64"}, answers


@pytest.mark.parametrize("first", ["i386", "amd64"])
def test_multi_arch_same_deb_documentation_prefers_the_64_bit_arch(tmp_path: Path, first: str) -> None:
    """libc6:amd64 and libc6:i386 of one version share /usr/share/doc/libc6/copyright."""
    arches = [first, "amd64" if first == "i386" else "i386"]
    pkgs = [Package(f"pkg:deb/debian/libc6@2.36-9?arch={a}", "libc6", "2.36-9") for a in arches]
    (tmp_path / "usr/share/doc/libc6").mkdir(parents=True)
    index = OwnerIndex(
        pkgs,
        [("/usr/share/doc/libc6/copyright", 0), ("/usr/share/doc/libc6/copyright", 1)],
        keys=KeyBuilder(RootFS(str(tmp_path))),
    )
    hit = index.lookup("/usr/share/doc/libc6/copyright")
    assert hit is not None and hit.claimants == 1
    assert hit.package.purl == "pkg:deb/debian/libc6@2.36-9?arch=amd64"


STANZA = """Package: {name}
Status: install ok installed
Multi-Arch: {multi}
Architecture: {arch}
Version: {version}

"""


@pytest.mark.parametrize("arch_file", [True, False])
def test_a_shared_file_of_an_arm64_image_gets_its_native_arch(tmp_path: Path, arch_file: bool) -> None:
    """An arm64 image with amd64 added (``dpkg --add-architecture amd64``): both are 64-bit, and
    the PURL's text put ``arch=amd64`` on libc6's shared copyright; the native arch is dpkg's own
    (``/var/lib/dpkg/arch`` names it first, as dpkg writes it; else the dpkg package's arch)."""
    db = tmp_path / "var/lib/dpkg"
    (db / "info").mkdir(parents=True)
    (tmp_path / "usr/share/doc/libc6").mkdir(parents=True)
    (tmp_path / "usr/share/doc/libc6/copyright").write_text("x\n")
    status = STANZA.format(name="dpkg", multi="foreign", arch="arm64", version="1.21.22")
    for arch in ("amd64", "arm64"):  # amd64 first in the status, as the text order would pick it
        status += STANZA.format(name="libc6", multi="same", arch=arch, version="2.36-9")
        (db / f"info/libc6:{arch}.list").write_text(
            f"/.\n/usr/share/doc/libc6/copyright\n/usr/lib/{arch}-linux-gnu/libc.so.6\n"
        )
    (db / "status").write_text(status)
    (db / "info/dpkg.list").write_text("/.\n/usr/bin/dpkg\n")
    if arch_file:
        (db / "arch").write_text("arm64\namd64\n")  # what `dpkg --add-architecture` leaves (seen)
    a = Attributor().attribute_file(
        image_digest="sha256:arm", root=str(tmp_path), path="/usr/share/doc/libc6/copyright"
    )
    assert (a.source, a.error) == ("dpkg", None)
    assert a.purl == "pkg:deb/debian/libc6@2.36-9?arch=arm64", a.purl
