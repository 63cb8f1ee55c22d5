"""rpm multilib: which architecture's package a file is, on real rpm databases.

Two checks, both on databases made by ``rpmbuild --target`` + ``rpm --root --ignorearch``:

* x86_64 and i686 copies of one package at *different* versions (rpm installs
  both; the brief of s41 feared a file could go to the wrong arch's version): the
  ELF binary both ship is the preferred colour's (x86_64's; the i686 copy is
  "wrong color" in the database and is not its file, as ``rpm -qf`` says), and
  the data file both list is ambiguous (two versions), never one of them. Not a
  defect; pinned here.
* One package in two arches of *one* version sharing a file is one claimant and
  gets one PURL: the image's native arch (the ``filesystem`` package's arch,
  else the ``rpm`` package's) must come first. Before, a ppc64 image got
  ``arch=ppc`` (neither is in the 64-bit list, and the PURL's text put ``ppc``
  first) and an x86_64 image with aarch64 copies got ``arch=aarch64``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from tests import attribution_roots as roots

SPEC = """\
Name: {name}
Version: {version}
Release: 1
Summary: multilib test package
License: MIT
%global debug_package %{{nil}}
%global __os_install_post %{{nil}}
%global _build_id_links none
%description
t
%install
mkdir -p %{{buildroot}}/usr/share/{name} %{{buildroot}}/usr/bin
printf 'shared\\n' > %{{buildroot}}/usr/share/{name}/data.txt
{install}
%files
/usr/share/{name}/data.txt
{files}
"""


def _rpm(top: Path, name: str, version: str, arch: str, elf: Path | None = None) -> Path:
    top.mkdir(parents=True, exist_ok=True)
    spec = top / f"{name}-{arch}.spec"
    install = f"cp {elf} %{{buildroot}}/usr/bin/{name}" if elf else ""
    files = f"/usr/bin/{name}" if elf else ""
    spec.write_text(SPEC.format(name=name, version=version, install=install, files=files))
    roots.run([roots.tool("rpmbuild"), "--define", f"_topdir {top}", "--target", arch, "-bb", str(spec)])
    return next((top / "RPMS" / arch).glob(f"{name}-{version}-1.{arch}.rpm"))


def _install(root: Path, packages: list[Path]) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    db = [roots.tool("rpm"), "--root", str(root), "--dbpath", "/var/lib/rpm"]
    for p in packages:
        roots.run([*db, "--nodeps", "--ignorearch", "--oldpackage", "-i", str(p)])
    return db


def _elf(tmp_path: Path, bits: int) -> Path:
    src = tmp_path / "start.S"
    src.write_text(".globl _start\n_start: nop\n")
    out = tmp_path / f"e{bits}"
    roots.run([roots.tool("gcc"), f"-m{bits}", "-nostdlib", "-static", str(src), "-o", str(out)])
    return out


def test_x86_64_and_i686_copies_at_two_versions_never_give_a_file_the_wrong_version(tmp_path: Path) -> None:
    top = tmp_path / "top"
    x64 = _rpm(top, "stella-ml", "1.0", "x86_64", _elf(tmp_path, 64))
    x32 = _rpm(top, "stella-ml", "2.0", "i686", _elf(tmp_path, 32))
    for order in ((x64, x32), (x32, x64)):
        root = tmp_path / order[0].name
        db = _install(root, list(order))
        states = roots.run([*db, "-qs", "stella-ml.i686"]).stdout
        assert "wrong color   /usr/bin/stella-ml" in states  # rpm kept the 64-bit binary on disk
        qf = roots.run([*db, "-qf", "/usr/bin/stella-ml", "--qf", "%{NEVRA}\n"]).stdout.split()
        assert qf == ["stella-ml-1.0-1.x86_64"]
        att = Attributor()
        binary = att.attribute_file(
            image_digest="sha256:" + "a1" * 32, root=str(root), path="/usr/bin/stella-ml"
        )
        assert binary.purl == "pkg:rpm/stella-ml@1.0-1?arch=x86_64", binary
        data = att.attribute_file(
            image_digest="sha256:" + "a1" * 32, root=str(root), path="/usr/share/stella-ml/data.txt"
        )
        assert data.purl is None and data.error is not None and "2 packages" in data.error, data


@pytest.mark.parametrize(
    ("native", "foreign", "base"),
    [("ppc64", "ppc", "filesystem"), ("x86_64", "aarch64", "filesystem"), ("ppc64", "ppc", "rpm")],
)
def test_a_file_two_arches_of_one_rpm_share_gets_the_images_native_arch(
    tmp_path: Path, native: str, foreign: str, base: str
) -> None:
    top = tmp_path / "top"
    packages = [_rpm(top, base, "3.18", native)]
    packages += [_rpm(top, "stella-multi", "1.0", arch) for arch in (foreign, native)]
    root = tmp_path / "root"
    db = _install(root, packages)
    qf = roots.run([*db, "-qf", "/usr/share/stella-multi/data.txt", "--qf", "%{ARCH}\n"]).stdout.split()
    assert sorted(qf) == sorted([native, foreign])  # rpm itself names both
    a = Attributor().attribute_file(
        image_digest="sha256:" + "b2" * 32, root=str(root), path="/usr/share/stella-multi/data.txt"
    )
    assert (a.source, a.error) == ("rpm", None)
    assert a.purl == f"pkg:rpm/stella-multi@1.0-1?arch={native}", a.purl
