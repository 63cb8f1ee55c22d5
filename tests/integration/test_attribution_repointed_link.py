"""A package's symlink repointed at other bytes does not give those bytes to the package.

``stella-tool`` (a real .deb installed by dpkg) ships ``/usr/bin/stella-tool ->
stella-tool.real``. An image then repoints the link (``ln -sf``, as Dockerfiles
do for ``/usr/bin/python3``): at a hand-copied binary that no package owns, or
at a venv's console script that pip's RECORD owns. Before, the lookup of
``/usr/bin/stella-tool`` asked every database for the bytes' path *and* the
link's, source by source: dpkg still lists the link, so the hand-copied binary
and pip's script were both ``pkg:deb/debian/stella-tool`` (``dpkg -S`` of the
bytes' path: no package). The bytes' owner is now asked of every source
first; the link's owner is asked only when the link leads to no file.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from stellaops_runtime.attribution.attributor import Attributor
from tests import attribution_roots as roots

LINK = "/usr/bin/stella-tool"


def _deb(work: Path) -> Path:
    tree = work / "pkg"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "DEBIAN/control").write_text(
        "Package: stella-tool\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: t <t@example.org>\nDescription: t\n"
    )
    (tree / "usr/bin/stella-tool.real").write_text("#!/bin/sh\necho packaged\n")
    (tree / "usr/bin/stella-tool").symlink_to("stella-tool.real")
    roots.run([roots.tool("dpkg-deb"), "-b", "--root-owner-group", str(tree), str(work / "stella-tool.deb")])
    return work / "stella-tool.deb"


def _install(deb: Path, root: Path) -> None:
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    (root / "var/lib/dpkg/status").touch()
    dpkg = roots.tool("dpkg")
    roots.run([dpkg, f"--root={root}", "--force-script-chrootless", "--force-not-root", "-i", str(deb)])


def _dpkg_s(root: Path, path: str) -> str:
    proc = subprocess.run([roots.tool("dpkg"), f"--root={root}", "-S", path], capture_output=True, text=True)
    return proc.stdout.split(":")[0] if proc.returncode == 0 else ""


def test_a_repointed_package_link_is_not_the_package_of_its_new_target(tmp_path: Path) -> None:
    deb = _deb(tmp_path)
    root = tmp_path / "root"
    _install(deb, root)
    att = Attributor()
    before = att.attribute_file(image_digest="sha256:a", root=str(root), path=LINK)
    assert before.purl == "pkg:deb/debian/stella-tool@1.0-1?arch=all" and _dpkg_s(root, LINK) == "stella-tool"

    # a hand-copied binary no package owns
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/custom-tool").write_text("#!/bin/sh\necho custom\n")
    (root / LINK.lstrip("/")).unlink()
    (root / LINK.lstrip("/")).symlink_to("/usr/local/bin/custom-tool")
    assert _dpkg_s(root, "/usr/local/bin/custom-tool") == "" and _dpkg_s(root, LINK) == "stella-tool"
    custom = Attributor().attribute_file(image_digest="sha256:b", root=str(root), path=LINK)
    assert (custom.purl, custom.source, custom.resolved) == (None, "none", "/usr/local/bin/custom-tool")

    # a venv's console script, which pip's RECORD owns: jsonpointer as pip installed it in our own
    # environment (its RECORD lists ../../../bin/jsonpointer), copied into a venv of the image
    venv = root / "opt/venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True
    )
    dist = metadata.distribution("jsonpointer")
    site = Path(str(dist.locate_file("")))
    record = dist.read_text("RECORD") or ""
    assert "../../../bin/jsonpointer," in record
    target = next((venv / "lib").glob("python3*")) / "site-packages"
    shutil.copytree(
        site / f"jsonpointer-{dist.version}.dist-info", target / f"jsonpointer-{dist.version}.dist-info"
    )
    shutil.copy2(site / "jsonpointer.py", target / "jsonpointer.py")
    shutil.copy2(Path(sys.prefix) / "bin/jsonpointer", venv / "bin/jsonpointer")
    (root / LINK.lstrip("/")).unlink()
    (root / LINK.lstrip("/")).symlink_to("/opt/venv/bin/jsonpointer")
    script = Attributor().attribute_file(image_digest="sha256:c", root=str(root), path=LINK)
    assert (script.purl, script.source) == (f"pkg:pypi/jsonpointer@{dist.version}", "pypi")

    # a dangling link: no bytes, the link's owner as before
    (root / LINK.lstrip("/")).unlink()
    (root / LINK.lstrip("/")).symlink_to("/nowhere/tool")
    dangling = Attributor().attribute_file(image_digest="sha256:d", root=str(root), path=LINK)
    assert dangling.purl == "pkg:deb/debian/stella-tool@1.0-1?arch=all"
