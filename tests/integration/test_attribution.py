"""Package attribution against real package databases, real SBOM generators and real binaries.

Expected PURLs are assembled in the tests from what the real tools report
(``dpkg-query``, ``rpm -q``, ``go version -m``, the wheels' versions), never
from our own PURL builders, so the test checks the rendering too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.binaries import read_binary_info
from stellaops_runtime.attribution.model import AttributionError, ErrorKind
from stellaops_runtime.canonical.demangle import demangle
from tests import attribution_roots as roots

ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
ZLIB_DPKG = "/lib/x86_64-linux-gnu/libz.so.1.2.13"  # what zlib1g's file list records (usrmerge)
NPM_TREE = Path("/usr/lib/node_modules/npm/node_modules")


def host_distro() -> str:
    rel = roots.os_release()
    return f"{rel['ID']}-{rel['VERSION_ID']}"


def zlib_purl() -> str:
    version = roots.dpkg_field("zlib1g", "Version")
    arch = roots.dpkg_field("zlib1g", "Architecture")
    # packageurl-python leaves the epoch's ':' as it is (the PURL spec allows it in a version)
    return f"pkg:deb/{roots.os_release()['ID']}/zlib1g@{version}?arch={arch}&distro={host_distro()}"


@pytest.fixture(scope="module")
def host() -> Attributor:
    if not Path(ZLIB).exists():
        pytest.skip(f"{ZLIB} is not on this machine (zlib1g, Debian 12 amd64)")
    return Attributor()


# -- dpkg on this machine ----------------------------------------------------------------------


def test_host_dpkg_gives_the_exact_deb_purl(host: Attributor) -> None:
    listed = Path("/var/lib/dpkg/info/zlib1g:amd64.list").read_text().splitlines()
    assert ZLIB_DPKG in listed and ZLIB not in listed  # the usrmerge trap is real here
    a = host.attribute_file(image_digest="host", root="/", path=ZLIB)
    assert a.purl == zlib_purl()
    assert (a.source, a.evidence, a.scope, a.name) == ("dpkg", "db", "file", "zlib1g")
    assert a.version == roots.dpkg_field("zlib1g", "Version")
    assert ":" in a.version and a.purl.startswith("pkg:deb/debian/zlib1g@1:")  # epoch kept, unencoded


@pytest.mark.parametrize(
    "path",
    [
        ZLIB_DPKG,  # through the /lib -> usr/lib symlink
        "/usr/lib/x86_64-linux-gnu/libz.so.1",  # symlink shipped by zlib1g
        "/lib/x86_64-linux-gnu/libz.so.1",  # both at once
        "/usr/lib/x86_64-linux-gnu/../x86_64-linux-gnu/./libz.so.1.2.13",
    ],
)
def test_usrmerge_and_symlinks_resolve_inside_the_root(host: Attributor, path: str) -> None:
    a = host.attribute_file(image_digest="host", root="/", path=path)
    assert a.purl == zlib_purl()
    assert a.resolved == ZLIB


def test_symlink_owned_by_another_package_reports_the_owner_of_the_bytes(host: Attributor) -> None:
    link = "/usr/lib/x86_64-linux-gnu/libz.so"  # zlib1g-dev's symlink to zlib1g's library
    if not Path(link).is_symlink():
        pytest.skip("zlib1g-dev is not installed")
    assert host.attribute_file(image_digest="host", root="/", path=link).purl == zlib_purl()


def test_debian_packaged_python_is_dpkg_not_pypi(host: Attributor) -> None:
    python = os.path.realpath("/usr/bin/python3")
    owner = subprocess.run(["dpkg-query", "-S", python], capture_output=True, text=True).stdout.split(":")[0]
    a = host.attribute_file(image_digest="host", root="/", path="/usr/bin/python3")
    assert a.source == "dpkg" and a.name == owner and a.resolved == python


def test_file_no_source_claims_is_unattributed_not_guessed(host: Attributor) -> None:
    before = host.stats.files.get("none", 0)
    a = host.attribute_file(image_digest="host", root="/", path="/etc/hostname")
    assert (a.purl, a.source, a.error) == (None, "none", None)
    assert host.stats.files["none"] == before + 1


# -- dpkg in scratch roots: usrmerge, split /usr, distroless, corruption ----------------------


def _debian_root(root: Path, *, merged: bool, status: str | None = None) -> Path:
    """A root with this machine's zlib1g: the real library, status stanza and file list."""
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy2(ZLIB, root / "usr/lib/x86_64-linux-gnu")
    if merged:
        (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    shutil.copy2("/etc/os-release", root / "etc/os-release")
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    shutil.copy2("/var/lib/dpkg/info/zlib1g:amd64.list", info)
    (root / "var/lib/dpkg/status").write_text(status if status is not None else _zlib_stanza())
    return root


def _zlib_stanza() -> str:
    stanzas = Path("/var/lib/dpkg/status").read_text().split("\n\n")
    return next(s for s in stanzas if s.startswith("Package: zlib1g\n")) + "\n"


def test_merged_usr_root_resolves_like_the_loader(tmp_path: Path) -> None:
    root = _debian_root(tmp_path / "merged", merged=True)
    a = Attributor().attribute_file(image_digest="sha256:merged", root=str(root), path=ZLIB)
    assert a.purl == zlib_purl()


def test_split_usr_root_does_not_alias_lib_and_usr_lib(tmp_path: Path) -> None:
    # /lib is a real directory here: /usr/lib/... is not the file dpkg installed at /lib/...
    root = _debian_root(tmp_path / "split", merged=False)
    att = Attributor()
    assert att.attribute_file(image_digest="sha256:split", root=str(root), path=ZLIB).purl is None
    assert att.attribute_file(image_digest="sha256:split", root=str(root), path=ZLIB_DPKG).purl == zlib_purl()


def test_ubuntu_namespace_and_distro_from_os_release(tmp_path: Path) -> None:
    root = _debian_root(tmp_path / "ubuntu", merged=True)
    (root / "etc/os-release").write_text('NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\nID_LIKE=debian\n')
    a = Attributor().attribute_file(image_digest="sha256:u", root=str(root), path=ZLIB)
    version = roots.dpkg_field("zlib1g", "Version")
    assert a.purl == f"pkg:deb/ubuntu/zlib1g@{version}?arch=amd64&distro=ubuntu-22.04"


def test_distroless_status_d_with_md5sums(tmp_path: Path) -> None:
    root = tmp_path / "distroless"
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    shutil.copy2(ZLIB, root / "usr/lib/x86_64-linux-gnu")
    (root / "lib").symlink_to("usr/lib")
    (root / "etc").mkdir()
    shutil.copy2("/etc/os-release", root / "etc/os-release")
    status_d = root / "var/lib/dpkg/status.d"
    status_d.mkdir(parents=True)
    (status_d / "zlib1g").write_text(_zlib_stanza())
    shutil.copy2("/var/lib/dpkg/info/zlib1g:amd64.md5sums", status_d / "zlib1g.md5sums")
    a = Attributor().attribute_file(image_digest="sha256:dl", root=str(root), path=ZLIB)
    assert (a.purl, a.source) == (zlib_purl(), "dpkg")


def test_corrupt_stanza_is_skipped_and_counted(tmp_path: Path) -> None:
    stanzas = Path("/var/lib/dpkg/status").read_text().split("\n\n")
    zlib = _zlib_stanza().rstrip("\n")
    broken = zlib.replace("\nVersion:", "\nthis line is not a field\nVersion:")
    others = [s for s in stanzas if s.startswith("Package: ") and not s.startswith("Package: zlib1g\n")]
    root = _debian_root(tmp_path / "corrupt", merged=True, status="\n\n".join([*others, broken]) + "\n")
    shutil.copy2("/var/lib/dpkg/info/base-files.list", root / "var/lib/dpkg/info")
    att = Attributor()
    a = att.attribute_file(image_digest="sha256:c", root=str(root), path=ZLIB)
    assert a.purl is None  # its stanza was damaged: no version, so no PURL, and no guess
    assert att.stats.errors["dpkg_corrupt"] == 1
    os_rel = att.attribute_file(image_digest="sha256:c", root=str(root), path="/etc/debian_version")
    assert os_rel.source == "dpkg" and os_rel.name == "base-files"  # the rest of the database still works


def test_garbage_status_file_is_a_clear_error(tmp_path: Path) -> None:
    root = _debian_root(tmp_path / "garbage", merged=True, status="\x00\x01binary junk\n" * 20)
    att = Attributor()
    a = att.attribute_file(image_digest="sha256:g", root=str(root), path=ZLIB)
    assert a.purl is None and a.error is not None and "dpkg" in a.error
    assert "no readable package stanza" in att.image_errors("sha256:g")["dpkg"]
    assert att.stats.errors["dpkg_corrupt"] >= 1


# -- Python: a real virtualenv and real SBOM generators ----------------------------------------


VENV = "opt/app/venv"


@pytest.fixture(scope="session")
def pyroot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pyroot")
    root = base / "root"
    python = roots.make_venv(root, VENV, roots.WHEELS)
    old = roots.make_venv(base / "old", "venv", {"six": roots.OLD_SIX})
    return {
        "root": root,
        "site": root / VENV / roots.SITE,
        "cdx": roots.cyclonedx_environment(python, base / "cdx.json"),
        "cdx_old": roots.cyclonedx_environment(old, base / "cdx-old.json"),
        "spdx": roots.sbom4python(root, f"{VENV}/bin/python", base / "spdx.json", kind="spdx"),
        "cdx_files": roots.sbom4python(root, f"{VENV}/bin/python", base / "cdx-files.json", kind="cyclonedx"),
    }


def _site(rel: str) -> str:
    return f"/{VENV}/{roots.SITE}/{rel}"


@pytest.mark.parametrize(
    ("rel", "purl"),
    [
        ("six.py", f"pkg:pypi/six@{roots.WHEELS['six']}"),
        ("idna/core.py", f"pkg:pypi/idna@{roots.WHEELS['idna']}"),
        ("packaging/version.py", f"pkg:pypi/packaging@{roots.WHEELS['packaging']}"),
        (f"six-{roots.WHEELS['six']}.dist-info/METADATA", f"pkg:pypi/six@{roots.WHEELS['six']}"),
    ],
)
def test_venv_files_get_exact_pypi_purls(pyroot: dict[str, Path], rel: str, purl: str) -> None:
    assert (pyroot["site"] / rel).is_file()
    a = Attributor().attribute_file(image_digest="sha256:py", root=str(pyroot["root"]), path=_site(rel))
    assert (a.purl, a.source, a.evidence) == (purl, "pypi", "record")


def test_cyclonedx_from_cyclonedx_py_names_the_packages(pyroot: dict[str, Path]) -> None:
    doc = json.loads(pyroot["cdx"].read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    att = Attributor()
    data = att.register_sbom("sha256:py", str(pyroot["cdx"]))
    assert {p.purl for p in data.packages} >= {f"pkg:pypi/{n}@{v}" for n, v in roots.WHEELS.items()}
    a = att.attribute_file(image_digest="sha256:py", root=str(pyroot["root"]), path=_site("idna/core.py"))
    # the file's owner comes from the wheel's RECORD; the PURL is the SBOM's for that same package
    assert (a.purl, a.source, a.evidence) == (f"pkg:pypi/idna@{roots.WHEELS['idna']}", "sbom", "package:pypi")


def test_spdx_from_sbom4python_claims_files_by_path_and_by_hash(pyroot: dict[str, Path]) -> None:
    doc = json.loads(pyroot["spdx"].read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["files"]
    root = pyroot["root"]
    copy = root / "srv/copied/core.py"  # the same bytes somewhere the SBOM never listed
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pyroot["site"] / "idna/core.py", copy)
    att = Attributor()
    att.register_sbom("sha256:spdx", str(pyroot["spdx"]))
    idna = f"pkg:pypi/idna@{roots.WHEELS['idna']}"
    by_path = att.attribute_file(image_digest="sha256:spdx", root=str(root), path=_site("idna/core.py"))
    assert (by_path.purl, by_path.source, by_path.evidence) == (idna, "sbom", "path")
    by_hash = att.attribute_file(image_digest="sha256:spdx", root=str(root), path="/srv/copied/core.py")
    assert (by_hash.purl, by_hash.source, by_hash.evidence) == (idna, "sbom", "hash")
    # sbom4python lists no file for the single-module six: RECORD finds it, the SBOM names it
    six = att.attribute_file(image_digest="sha256:spdx", root=str(root), path=_site("six.py"))
    assert (six.purl, six.evidence) == (f"pkg:pypi/six@{roots.WHEELS['six']}", "package:pypi")
    # the empty py.typed is in the SBOM too, but an empty file's digest claims nothing
    empty = root / "srv/copied/empty.txt"
    empty.write_bytes(b"")
    assert (
        att.attribute_file(image_digest="sha256:spdx", root=str(root), path="/srv/copied/empty.txt").purl
        is None
    )


def test_cyclonedx_file_components_from_sbom4python(pyroot: dict[str, Path]) -> None:
    doc = json.loads(pyroot["cdx_files"].read_text())
    assert any(c.get("type") == "file" for c in doc["components"])
    att = Attributor()
    att.register_sbom("sha256:cf", str(pyroot["cdx_files"]))
    a = att.attribute_file(
        image_digest="sha256:cf", root=str(pyroot["root"]), path=_site("packaging/tags.py")
    )
    assert (a.purl, a.source, a.evidence) == (
        f"pkg:pypi/packaging@{roots.WHEELS['packaging']}",
        "sbom",
        "path",
    )


def test_stale_sbom_is_counted_and_the_image_wins(pyroot: dict[str, Path]) -> None:
    att = Attributor()
    att.register_sbom("sha256:stale", str(pyroot["cdx_old"]))  # lists six 1.16.0; the image has 1.17.0
    a = att.attribute_file(image_digest="sha256:stale", root=str(pyroot["root"]), path=_site("six.py"))
    assert (a.purl, a.source) == (f"pkg:pypi/six@{roots.WHEELS['six']}", "pypi")
    assert att.stats.sbom_version_mismatch == 1


def test_sbom_dir_per_digest(pyroot: dict[str, Path], tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    shutil.copy2(pyroot["spdx"], tmp_path / f"sha256-{'ab' * 32}.spdx.json")  # ConfigMap-safe key
    att = Attributor(sbom_dir=str(tmp_path))
    a = att.attribute_file(image_digest=digest, root=str(pyroot["root"]), path=_site("idna/core.py"))
    assert (a.source, a.evidence) == ("sbom", "path")
    other = att.attribute_file(
        image_digest="sha256:" + "cd" * 32, root=str(pyroot["root"]), path=_site("idna/core.py")
    )
    assert other.source == "pypi"  # no SBOM for that digest


def _malformed_variants(cdx: Path, spdx: Path, tmp: Path) -> dict[str, Path]:
    good_cdx, good_spdx = json.loads(cdx.read_text()), json.loads(spdx.read_text())
    variants: dict[str, bytes] = {
        "truncated": cdx.read_bytes()[: len(cdx.read_bytes()) // 2],
        "array": b"[]",
        "unknown-format": json.dumps({"hello": "world"}).encode(),
        "old-cyclonedx": json.dumps({**good_cdx, "specVersion": "1.2"}).encode(),
        "components-not-list": json.dumps({**good_cdx, "components": {"a": 1}}).encode(),
        "spdx-1": json.dumps({**good_spdx, "spdxVersion": "SPDX-1.2"}).encode(),
        "spdx-packages-string": json.dumps({**good_spdx, "packages": "six"}).encode(),
    }
    out = {}
    for name, data in variants.items():
        out[name] = tmp / f"{name}.json"
        out[name].write_bytes(data)
    return out


def test_malformed_sboms_are_clear_errors(pyroot: dict[str, Path], tmp_path: Path) -> None:
    att = Attributor()
    for name, path in _malformed_variants(pyroot["cdx"], pyroot["spdx"], tmp_path).items():
        with pytest.raises(AttributionError) as e:
            att.register_sbom("sha256:bad", str(path))
        assert e.value.kind is ErrorKind.SBOM_MALFORMED, name
        assert str(path) in str(e.value), name


def test_malformed_sbom_in_sbom_dir_is_counted_and_the_image_still_answers(
    pyroot: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "sha256:feed.json").write_bytes(pyroot["cdx"].read_bytes()[:100])
    att = Attributor(sbom_dir=str(tmp_path))
    a = att.attribute_file(image_digest="sha256:feed", root=str(pyroot["root"]), path=_site("six.py"))
    assert (a.purl, a.source) == (f"pkg:pypi/six@{roots.WHEELS['six']}", "pypi")
    assert att.stats.errors["sbom_malformed"] == 1
    assert "not JSON" in att.image_errors("sha256:feed")["sbom"]


# -- rpm: a package built with rpmbuild, installed with rpm --root --------------------------------


@pytest.fixture(scope="session")
def rpm_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return roots.build_rpm(tmp_path_factory.mktemp("rpmbuild"))


def test_rpmdb_is_sqlite_and_headers_match_rpm(rpm_package: Path, tmp_path: Path) -> None:
    root = tmp_path / "fedora"
    roots.rpm_install(rpm_package, root)
    assert (root / "var/lib/rpm/rpmdb.sqlite").is_file()  # Debian's rpm 4.18: the sqlite backend
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=40\n')
    name, epoch, version, release, arch = roots.rpm_query(
        root, "%{NAME} %{EPOCH} %{VERSION} %{RELEASE} %{ARCH}"
    ).split()
    files = roots.run(["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-ql", name]).stdout.split()
    expected = f"pkg:rpm/fedora/{name}@{version}-{release}?arch={arch}&distro=fedora-40&epoch={epoch}"
    att = Attributor()
    for f in files:
        a = att.attribute_file(image_digest="sha256:rpm", root=str(root), path=f)
        assert (a.purl, a.source, a.evidence) == (expected, "rpm", "db"), f
    assert expected == "pkg:rpm/fedora/stella-hello@1.0.3-7.fc40?arch=x86_64&distro=fedora-40&epoch=2"


def test_rpm_without_os_release_has_no_namespace(rpm_package: Path, tmp_path: Path) -> None:
    root = tmp_path / "bare"
    roots.rpm_install(rpm_package, root)
    a = Attributor().attribute_file(image_digest="sha256:bare", root=str(root), path="/usr/bin/stella-hello")
    assert a.purl == "pkg:rpm/stella-hello@1.0.3-7.fc40?arch=x86_64&epoch=2"


def test_corrupt_rpmdb_is_a_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "r/var/lib/rpm/rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not an sqlite database" * 100)
    att = Attributor()
    a = att.attribute_file(image_digest="sha256:r", root=str(tmp_path / "r"), path="/usr/bin/x")
    assert a.purl is None and "rpm" in (a.error or "")
    assert att.stats.errors["rpm_corrupt"] == 1


# -- apk: the installed database written from apk's documented format ------------------------


APK_INSTALLED = """\
C:Q1SLkS9hBidUK9+xA3yFuRSfKzJ9E=
P:musl
V:1.2.4-r2
A:x86_64
S:383152
I:622592
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Timo Teräs <timo.teras@iki.fi>
t:1694606400
c:3a0ec85a6d3b5b3a1b7f5e0a7ca5d0b8a3e3c7a1
F:lib
R:ld-musl-x86_64.so.1
a:0:0:755
Z:Q1BvMr4fR+8m2aFbF0hsqgZ+0E2n4=
R:libc.musl-x86_64.so.1
a:0:0:777
Z:Q1ja1KEUpr0qz+NvnZeq+w9bXqCAk=

C:Q1Hy8G6F1lJ3gHXzcpg9Ol8X2YRYs=
P:busybox
V:1.36.1-r15
A:x86_64
o:busybox
F:bin
R:busybox
a:0:0:755
Z:Q1rZ5ZEUPbQn3s0lq3EHNvn4ZPE8o=
F:etc
R:securetty

"""


def _alpine_root(root: Path, installed: str) -> Path:
    for d in ("lib/apk/db", "bin", "etc", "usr/lib"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "lib/apk/db/installed").write_text(installed)
    (root / "usr/lib/os-release").write_text('NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\n')
    (root / "etc/os-release").symlink_to("../usr/lib/os-release")  # as Alpine ships it
    (root / "lib/ld-musl-x86_64.so.1").write_bytes(b"\x7fELF")
    (root / "lib/libc.musl-x86_64.so.1").symlink_to("ld-musl-x86_64.so.1")
    (root / "bin/busybox").write_bytes(b"\x7fELF")
    (root / "bin/sh").symlink_to("/bin/busybox")
    return root


def test_apk_installed_database(tmp_path: Path) -> None:
    root = _alpine_root(tmp_path / "alpine", APK_INSTALLED)
    att = Attributor()
    musl = "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1"
    busybox = "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1"
    for path, purl in [
        ("/lib/ld-musl-x86_64.so.1", musl),
        ("/lib/libc.musl-x86_64.so.1", musl),
        ("/bin/sh", busybox),  # an absolute symlink, followed inside the root
        ("/etc/securetty", busybox),
    ]:
        a = att.attribute_file(image_digest="sha256:alpine", root=str(root), path=path)
        assert (a.purl, a.source) == (purl, "apk"), path


def test_apk_malformed_record_is_skipped_and_counted(tmp_path: Path) -> None:
    broken = APK_INSTALLED.replace("P:busybox\n", "P:busybox\nthis is not a field\n")
    root = _alpine_root(tmp_path / "alpine", broken)
    att = Attributor()
    assert att.attribute_file(image_digest="sha256:a", root=str(root), path="/bin/busybox").purl is None
    assert (
        att.attribute_file(image_digest="sha256:a", root=str(root), path="/lib/ld-musl-x86_64.so.1").source
        == "apk"
    )
    assert att.stats.errors["apk_corrupt"] == 1


# -- npm: real packages from npm's own bundled tree ---------------------------------------------


def test_npm_nearest_package_json(tmp_path: Path) -> None:
    if not (NPM_TREE / "glob").is_dir():
        pytest.skip(f"{NPM_TREE} (npm, from the nodejs package) is not installed")
    root = tmp_path / "node"
    nm = root / "app/node_modules"
    shutil.copytree(NPM_TREE / "glob", nm / "glob")
    shutil.copytree(NPM_TREE / "@npmcli/fs", nm / "@npmcli/fs")
    (root / "app/package.json").write_text(json.dumps({"name": "stella-demo", "version": "0.0.1"}))
    (root / "app/server.js").write_text("console.log(1)\n")
    (root / "package.json").write_text(json.dumps({"name": "root-level", "version": "9.9.9"}))
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/node").write_bytes(b"\x7fELF")
    glob_v = json.loads((nm / "glob/package.json").read_text())["version"]
    fs_v = json.loads((nm / "@npmcli/fs/package.json").read_text())["version"]
    assert json.loads((nm / "glob/dist/esm/package.json").read_text()) == {"type": "module"}  # a marker file
    att = Attributor()
    cases = {
        "/app/node_modules/glob/dist/esm/glob.js": f"pkg:npm/glob@{glob_v}",
        "/app/node_modules/@npmcli/fs/lib/index.js": f"pkg:npm/%40npmcli/fs@{fs_v}",
        "/app/server.js": "pkg:npm/stella-demo@0.0.1",
        # not Node code and not under node_modules: the root-level package.json does not claim it
        "/usr/local/bin/node": None,
    }
    for path, purl in cases.items():
        a = att.attribute_file(image_digest="sha256:node", root=str(root), path=path)
        assert a.purl == purl, path


def test_npm_malformed_package_json_is_counted(tmp_path: Path) -> None:
    pkg = tmp_path / "r/app/node_modules/bad"
    pkg.mkdir(parents=True)
    (pkg / "package.json").write_text('{"name": "bad", "version": ')
    (pkg / "index.js").write_text("")
    att = Attributor()
    a = att.attribute_file(
        image_digest="sha256:n", root=str(tmp_path / "r"), path="/app/node_modules/bad/index.js"
    )
    assert a.purl is None and att.stats.errors["npm_corrupt"] == 1


# -- Go ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def go_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return roots.build_go_app(tmp_path_factory.mktemp("goapp"))


def _buildinfo(binary: Path):  # type: ignore[no-untyped-def]
    fd = os.open(binary, os.O_RDONLY)
    try:
        info = read_binary_info(fd, name=str(binary))
    finally:
        os.close(fd)
    assert info.go is not None, info.go_error
    return info.go


@pytest.mark.parametrize("binary", ["go_app", "/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc"])
def test_go_build_info_matches_go_version_m(binary: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue("go_app") if binary == "go_app" else Path(binary)
    if not path.exists():
        pytest.skip(f"{path} is not installed (Debian's containerd/runc)")
    ref = roots.go_version_m(path)
    ours = _buildinfo(path)
    assert ours.go_version == ref.go_version
    assert ours.path == ref.path
    assert ((ours.main.path, ours.main.version) if ours.main else None) == ref.mod
    deps = [
        (d.path, d.version, (d.replaced_by.path, d.replaced_by.version) if d.replaced_by else None)
        for d in ours.deps
    ]
    assert deps == ref.deps


def test_go_binary_file_and_functions(go_app: Path, tmp_path: Path) -> None:
    root = tmp_path / "scratch"
    (root / "app").mkdir(parents=True)
    shutil.copy2(go_app, root / "app/server")
    symbols = roots.run(["go", "tool", "nm", str(go_app)]).stdout
    go_version = roots.go_version_m(go_app).go_version.removeprefix("go")
    att = Attributor()
    f = att.attribute_file(image_digest="sha256:go", root=str(root), path="/app/server")
    assert (f.purl, f.source, f.evidence) == ("pkg:golang/example.com/app", "gomod", "buildinfo")  # (devel)
    cases = {
        "main.main": ("pkg:golang/example.com/app", "gomod"),
        "example.com/greet.Hello": ("pkg:golang/example.com/greet@v1.2.3", "gomod"),
        "example.com/util/strs.Twice": ("pkg:golang/example.com/util@v0.4.0", "gomod"),
        "example.com/shout.Loud": ("pkg:golang/example.com/shout", "gomod"),  # replaced by a local directory
        "fmt.Fprintln": (f"pkg:golang/stdlib@{go_version}", "gomod"),
        "type..eq.fmt.fmt": ("pkg:golang/example.com/app", "gomod"),  # linker-made: the file's answer
    }
    for function, (purl, source) in cases.items():
        assert f" T {function}\n" in symbols, function  # a real symbol of the binary
        a = att.attribute_function(
            image_digest="sha256:go", root=str(root), path="/app/server", function=function
        )
        assert (a.purl, a.source) == (purl, source), function
    assert (
        att.attribute_function(
            image_digest="sha256:go", root=str(root), path="/app/server", function="type..eq.fmt.fmt"
        ).scope
        == "file"
    )
    assert att.stats.functions["gomod"] == 5 and att.stats.functions["file"] == 1


def test_debian_go_binary_functions(host: Attributor) -> None:
    binary = "/usr/bin/containerd"
    if not Path(binary).exists():
        pytest.skip("containerd is not installed")
    dynsym = roots.run(["nm", "-D", "--defined-only", binary]).stdout
    deb = host.attribute_file(image_digest="host", root="/", path=binary)
    assert deb.source == "dpkg" and deb.name == "containerd"
    go_version = roots.go_version_m(Path(binary)).go_version.removeprefix("go")
    cases = {
        "runtime.mallocgc": (f"pkg:golang/stdlib@{go_version}", "function"),
        "vendor/golang.org/x/crypto/chacha20.(*Cipher).XORKeyStream": (
            f"pkg:golang/stdlib@{go_version}",
            "function",
        ),
        # a GOPATH build names no modules: its own and third-party packages fall back to the deb
        "github.com/containerd/containerd/content.ReadBlob": (deb.purl, "file"),
        "golang.org/x/net/http2.(*Framer).ReadFrame": (deb.purl, "file"),
    }
    for function, (purl, scope) in cases.items():
        assert f" {function}\n" in dynsym, function
        a = host.attribute_function(
            image_digest="host", root="/", path=binary, function=function, build_id="ctrd"
        )
        assert (a.purl, a.scope) == (purl, scope), function


# -- Rust (cargo-auditable) ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def rust_bins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("rust")
    plain = roots.build_rust_app(work)
    packages: list[dict[str, object]] = [
        {"name": "stella-app", "version": "0.1.0", "source": "local", "dependencies": [1, 2], "root": True},
        {"name": "mylib", "version": "0.3.1", "source": "crates.io"},
        {"name": "cc", "version": "1.0.83", "source": "crates.io", "kind": "build"},
    ]
    twice = [*packages, {"name": "mylib", "version": "0.2.0", "source": "crates.io"}]
    return {
        "plain": plain,
        "audited": roots.add_dep_v0(plain, work / "audited", roots.dep_v0(packages)),
        "two_mylibs": roots.add_dep_v0(plain, work / "two_mylibs", roots.dep_v0(twice)),
        "corrupt": roots.add_dep_v0(plain, work / "corrupt", b"not zlib at all"),
    }


def _rust_root(tmp: Path, binary: Path) -> Path:
    (tmp / "usr/local/bin").mkdir(parents=True)
    shutil.copy2(binary, tmp / "usr/local/bin/stella-app")
    return tmp


def test_rust_cargo_auditable_file_and_functions(rust_bins: dict[str, Path], tmp_path: Path) -> None:
    root = _rust_root(tmp_path, rust_bins["audited"])
    symbols = {
        demangle(s.split()[-1]) for s in roots.run(["nm", str(rust_bins["audited"])]).stdout.splitlines()
    }
    assert {"mylib::shout", "mylib::Counter::bump", "stella_app::main"} <= symbols
    att = Attributor()
    app = "/usr/local/bin/stella-app"
    f = att.attribute_file(image_digest="sha256:rs", root=str(root), path=app)
    assert (f.purl, f.source, f.evidence) == ("pkg:cargo/stella-app@0.1.0", "cargo", "dep-v0")
    for function, purl, scope in [
        ("mylib::shout", "pkg:cargo/mylib@0.3.1", "function"),
        ("mylib::Counter::bump", "pkg:cargo/mylib@0.3.1", "function"),
        ("stella_app::main", "pkg:cargo/stella-app@0.1.0", "function"),
        ("std::io::stdio::_print", "pkg:cargo/stella-app@0.1.0", "file"),  # the toolchain's std: not listed
        # a build dependency is not in the binary: a crate of its name that ran is some other
        # (renamed) crate's, unknown rather than the root's (test_attribution_rust_renamed_lib.py)
        ("cc::Build::compile", None, "function"),
    ]:
        a = att.attribute_function(image_digest="sha256:rs", root=str(root), path=app, function=function)
        assert (a.purl, a.scope) == (purl, scope), function


def test_rust_two_versions_of_a_crate_are_ambiguous(rust_bins: dict[str, Path], tmp_path: Path) -> None:
    root = _rust_root(tmp_path, rust_bins["two_mylibs"])
    att = Attributor()
    a = att.attribute_function(
        image_digest="sha256:two", root=str(root), path="/usr/local/bin/stella-app", function="mylib::shout"
    )
    assert (a.purl, a.scope) == (None, "function")  # never the root crate's: mylib's code ran
    assert a.error is not None and "mylib@0.2.0, mylib@0.3.1" in a.error
    assert att.stats.ambiguous == 1


def test_rust_without_or_with_a_broken_dep_v0(rust_bins: dict[str, Path], tmp_path: Path) -> None:
    plain = Attributor().attribute_file(
        image_digest="sha256:p",
        root=str(_rust_root(tmp_path / "p", rust_bins["plain"])),
        path="/usr/local/bin/stella-app",
    )
    assert plain.purl is None
    att = Attributor()
    bad = att.attribute_file(
        image_digest="sha256:b",
        root=str(_rust_root(tmp_path / "b", rust_bins["corrupt"])),
        path="/usr/local/bin/stella-app",
    )
    assert bad.purl is None and att.stats.errors["cargo_corrupt"] == 1


# -- Maven -------------------------------------------------------------------------------------------


def test_jar_pom_properties(tmp_path: Path) -> None:
    root = tmp_path / "java"
    lib = root / "opt/app/lib"
    lib.mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy2(
        roots.make_jar(work, "hello-1.4.2.jar", [("org.example", "hello", "1.4.2")]), lib / "hello-1.4.2.jar"
    )
    shaded = [("org.example", "bundle", "2.0.0"), ("com.google.guava", "guava", "33.0.0-jre")]
    shutil.copy2(roots.make_jar(work, "bundle-2.0.0.jar", shaded), lib / "bundle-2.0.0.jar")
    shutil.copy2(lib / "bundle-2.0.0.jar", lib / "app.jar")
    att = Attributor()
    expect = {
        "/opt/app/lib/hello-1.4.2.jar": "pkg:maven/org.example/hello@1.4.2",
        "/opt/app/lib/bundle-2.0.0.jar": "pkg:maven/org.example/bundle@2.0.0",  # shaded: its own by file name
        "/opt/app/lib/app.jar": None,  # shaded and renamed: which artifact is "the" JAR is unknown
    }
    for path, purl in expect.items():
        a = att.attribute_file(image_digest="sha256:j", root=str(root), path=path)
        assert a.purl == purl and a.source == ("maven" if purl else "none"), path
    assert att.stats.ambiguous == 1


# -- the root's boundary ----------------------------------------------------------------------------


def test_paths_and_symlinks_outside_the_root_are_errors(tmp_path: Path) -> None:
    root = tmp_path / "jail"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "evil").symlink_to("../../../../../../etc/passwd")
    (root / "abs").symlink_to("/etc/passwd")  # absolute: means the root's own /etc/passwd
    (root / "loop-a").symlink_to("loop-b")
    (root / "loop-b").symlink_to("loop-a")
    att = Attributor()
    cases = {
        "../../etc/passwd": ErrorKind.OUTSIDE_ROOT,
        "/../etc/passwd": ErrorKind.OUTSIDE_ROOT,
        "/evil": ErrorKind.SYMLINK_ESCAPE,
        "/loop-a": ErrorKind.SYMLINK_LOOP,
    }
    for path, kind in cases.items():
        a = att.attribute_file(image_digest="sha256:jail", root=str(root), path=path)
        assert a.purl is None and a.resolved is None and a.error, path
        assert att.stats.errors[kind.value] >= 1, path
    ok = att.attribute_file(image_digest="sha256:jail", root=str(root), path="/abs")
    assert ok.error is None and ok.resolved == "/etc/passwd"
    assert att.stats.errors == {"outside_root": 2, "symlink_escape": 1, "symlink_loop": 1}


def test_missing_root_is_an_error_that_is_not_cached(tmp_path: Path) -> None:
    att = Attributor()
    gone = tmp_path / "proc-root"
    a = att.attribute_file(image_digest="sha256:x", root=str(gone), path="/usr/bin/x")
    assert a.purl is None and "root filesystem" in (a.error or "")
    assert att.stats.errors["bad_root"] == 1 and att.stats.cached_files == 0


# -- caches ------------------------------------------------------------------------------------------


def test_answers_are_cached_per_image_and_path_and_bounded(tmp_path: Path) -> None:
    root = _debian_root(tmp_path / "cache", merged=True)
    att = Attributor(max_entries=2)
    first = att.attribute_file(image_digest="sha256:c", root=str(root), path=ZLIB)
    assert att.attribute_file(image_digest="sha256:c", root=str(root), path=ZLIB) is first
    assert att.stats.files == {"dpkg": 1} and att.stats.index_builds["dpkg"] == 1
    att.attribute_file(image_digest="sha256:c", root=str(root), path=ZLIB_DPKG)
    att.attribute_file(image_digest="sha256:c", root=str(root), path="/usr/lib/x86_64-linux-gnu/libz.so.1")
    stats = att.stats
    assert stats.cached_files == 2 and stats.evictions == 1
    assert stats.index_builds["dpkg"] == 1  # the image's index is built once


def test_a_claimed_build_id_never_shares_another_images_build_info(go_app: Path, tmp_path: Path) -> None:
    """Image two's file claims image one's build-id but is another file: it is read, not trusted."""
    roots_ = []
    for name in ("one", "two"):
        r = tmp_path / name
        (r / "bin").mkdir(parents=True)
        shutil.copy2(go_app, r / "bin/app")
        roots_.append(r)
    att = Attributor()
    a1 = att.attribute_function(
        image_digest="sha256:1", root=str(roots_[0]), path="/bin/app", function="fmt.Fprintln", build_id="b1"
    )
    (roots_[1] / "bin/app").write_bytes(b"replaced, though it claims the same build-id")
    a2 = att.attribute_function(
        image_digest="sha256:2", root=str(roots_[1]), path="/bin/app", function="fmt.Fprintln", build_id="b1"
    )
    assert a1.scope == "function" and a1.purl is not None
    assert a2.purl is None and a2.scope == "file"
