"""The pure parsers of package attribution: each format's rules and each kind of damage.

Whole real databases and binaries are exercised in
tests/integration/test_attribution.py; these pin the edge cases with the
smallest inputs that show them.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from stellaops_runtime.attribution import (
    apk,
    cargo_auditable,
    dpkg,
    gobuildinfo,
    maven,
    npm,
    purls,
    pypi,
    rpmdb,
)
from stellaops_runtime.attribution.model import Attribution, AttributionError, ErrorKind
from stellaops_runtime.attribution.osrelease import parse_os_release
from stellaops_runtime.attribution.pathindex import PathIndex
from stellaops_runtime.attribution.rootfs import RootFS, normalize
from stellaops_runtime.attribution.sbom import parse_document, parse_sbom
from tests.wire_bytes import varint as _varint

# -- dpkg -------------------------------------------------------------------------------------------

STATUS = """\
Package: libfoo1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: foo (1.2-3)
Version: 1:1.2-3
Description: a library
 with a long description
 .
 over lines

Package: gone
Status: deinstall ok config-files
Architecture: all
Version: 0.1

 continuation at the start
Package: broken
Version: 1

Package: bad name
Version: 1

Package: noversion
Status: install ok installed
"""


def test_dpkg_status_parses_states_and_reports_bad_stanzas() -> None:
    packages, errors = dpkg.parse_status(STATUS, origin="status")
    assert [(p.name, p.version, p.arch, p.installed) for p in packages] == [
        ("libfoo1", "1:1.2-3", "amd64", True),
        ("gone", "0.1", "all", False),
    ]
    assert packages[0].source == "foo" and packages[0].multi_arch == "same"
    assert len(errors) == 3
    assert errors[0].startswith("status:17: continuation line outside a field (stanza at line 17)")
    assert "'bad name' is not a valid package name" in errors[1]
    assert "noversion" in errors[2] and "no Version" in errors[2]


def test_dpkg_list_and_md5sums_names() -> None:
    assert dpkg.list_file_name("zlib1g:amd64.list") == ("zlib1g", "amd64")
    assert dpkg.list_file_name("adduser.list") == ("adduser", None)
    assert dpkg.parse_list("/.\n/usr\n/usr/bin/x\n\n") == ["/usr", "/usr/bin/x"]
    md5 = "c7c774d91213e966a04b2e51c787be23  lib/x86_64-linux-gnu/libz.so.1.2.13\nbad line\n"
    assert dpkg.parse_md5sums(md5) == ["/lib/x86_64-linux-gnu/libz.so.1.2.13"]


# -- apk ----------------------------------------------------------------------------------------------


def test_apk_records_directories_and_damage() -> None:
    text = "P:musl\nV:1.2.4-r2\nA:x86_64\no:musl\nF:lib\nR:ld-musl-x86_64.so.1\nF:\nR:top\n"
    text += "\nP:x\nR:orphan\n\nP:y\n"
    packages, errors = apk.parse_installed(text, origin="installed")
    assert [(p.name, p.version, p.arch, p.origin, p.files) for p in packages] == [
        ("musl", "1.2.4-r2", "x86_64", "musl", ("/lib/ld-musl-x86_64.so.1", "/top"))
    ]
    assert "before any directory" in errors[0] and "without P: (name) or V: (version)" in errors[1]


# -- rpm ----------------------------------------------------------------------------------------------


def _header(entries: list[tuple[int, int, bytes, int]]) -> bytes:
    """An rpm header blob (il, dl, index entries, data) as the sqlite rpmdb stores it."""
    data = b""
    index = b""
    for tag, typ, payload, count in entries:
        if typ == rpmdb.TYPE_INT32:
            data += b"\0" * (-len(data) % 4)
        index += struct.pack(">iIiI", tag, typ, len(data), count)
        data += payload
    return struct.pack(">II", len(entries), len(data)) + index + data


def test_rpm_header_files_from_dirnames_and_basenames() -> None:
    blob = _header(
        [
            (rpmdb.TAG_NAME, rpmdb.TYPE_STRING, b"hello\0", 1),
            (rpmdb.TAG_VERSION, rpmdb.TYPE_STRING, b"1.0\0", 1),
            (rpmdb.TAG_RELEASE, rpmdb.TYPE_STRING, b"2.el9\0", 1),
            (rpmdb.TAG_EPOCH, rpmdb.TYPE_INT32, struct.pack(">I", 3), 1),
            (rpmdb.TAG_ARCH, rpmdb.TYPE_STRING, b"aarch64\0", 1),
            (rpmdb.TAG_BASENAMES, rpmdb.TYPE_STRING_ARRAY, b"hello\0libhello.so.1\0", 2),
            (rpmdb.TAG_DIRNAMES, rpmdb.TYPE_STRING_ARRAY, b"/usr/bin/\0/usr/lib64/\0", 2),
            (rpmdb.TAG_DIRINDEXES, rpmdb.TYPE_INT32, struct.pack(">II", 0, 1), 2),
        ]
    )
    p = rpmdb.package_of(blob)
    assert (p.name, p.version, p.release, p.epoch, p.arch) == ("hello", "1.0", "2.el9", 3, "aarch64")
    assert p.files == ("/usr/bin/hello", "/usr/lib64/libhello.so.1")


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"\0\0\0", "shorter than its 8-byte preamble"),
        (struct.pack(">II", 5, 10), "but the blob has"),
        (_header([(rpmdb.TAG_NAME, rpmdb.TYPE_STRING, b"no-nul", 1)]), "not NUL-terminated"),
        (_header([(rpmdb.TAG_NAME, 42, b"x\0", 1)]), "unexpected type"),
        (_header([(rpmdb.TAG_ARCH, rpmdb.TYPE_STRING, b"x86_64\0", 1)]), "no NAME or VERSION"),
    ],
)
def test_rpm_damaged_headers(blob: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rpmdb.package_of(blob)


# -- Go build info ----------------------------------------------------------------------------------

START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
END = bytes.fromhex("f932433186182072008242104116d8f2")


def _blob(version: str, modinfo: str, *, flags: int = 2, pad: int = 16) -> bytes:
    framed = (START + modinfo.encode() + END) if modinfo else b""
    header = gobuildinfo.MAGIC + bytes([8, flags]) + b"\0" * 16
    body = _varint(len(version)) + version.encode() + _varint(len(framed)) + framed
    return b"\0" * pad + header + body


MODINFO = (
    "path\texample.com/app/cmd/app\n"
    "mod\texample.com/app\t(devel)\t\n"
    "dep\tgithub.com/a/b/v2\tv2.1.0\th1:abc=\n"
    "dep\tgolang.org/x/net\tv0.17.0\th1:def=\n"
    "=>\tgithub.com/fork/net\tv0.17.1\th1:ghi=\n"
    "dep\texample.com/local\tv0.0.0\n"
    "=>\t../local\t(devel)\t\n"
    "build\t-compiler=gc\n"
)


def test_go_build_info_inline_format_and_module_lookup() -> None:
    info = gobuildinfo.parse(_blob("go1.21.4", MODINFO))
    assert (info.go_version, info.path) == ("go1.21.4", "example.com/app/cmd/app")
    assert info.main is not None and info.main.version == "(devel)"
    net = info.module_for("golang.org/x/net/http2/hpack")
    assert net is not None and net.effective.path == "github.com/fork/net" and not net.is_local_replacement
    local = info.module_for("example.com/local")
    assert local is not None and local.is_local_replacement
    assert info.module_for("github.com/a/b/v2/sub").version == "v2.1.0"  # type: ignore[union-attr]
    assert info.module_for("github.com/a/bb") is None  # a prefix only at a "/" boundary
    assert info.settings == (("-compiler", "gc"),)


def test_go_build_info_without_modules_and_damage() -> None:
    assert gobuildinfo.parse(_blob("go1.19.8", "")).has_modules is False
    with pytest.raises(ValueError, match="pointer format"):
        gobuildinfo.parse(_blob("go1.17", MODINFO, flags=0))
    with pytest.raises(ValueError, match="no Go build info header"):
        gobuildinfo.parse(_blob("go1.21", MODINFO, pad=3))  # not 16-byte aligned
    with pytest.raises(ValueError, match="runs past the end"):
        gobuildinfo.parse(_blob("go1.21.4", MODINFO)[:-40])
    with pytest.raises(ValueError, match="unknown key"):
        gobuildinfo.parse_modinfo("go1.21", "wat\tx\n")
    with pytest.raises(ValueError, match="replacement without a module"):
        gobuildinfo.parse_modinfo("go1.21", "=>\tx\tv1\n")


# -- cargo-auditable, Maven, npm, PyPI ---------------------------------------------------------------


def test_dep_v0_parsing_and_damage() -> None:
    doc = {"packages": [{"name": "serde-json", "version": "1.0.1", "source": "crates.io", "root": True}]}
    crates = cargo_auditable.parse_dep_v0(zlib.compress(json.dumps(doc).encode()))
    assert [(c.name, c.crate_name, c.kind, c.root) for c in crates] == [
        ("serde-json", "serde_json", "runtime", True)
    ]
    for payload, message in [
        (b"plain", "not zlib"),
        (zlib.compress(b"{"), "not JSON"),
        (zlib.compress(b'{"pkgs": []}'), 'no "packages" list'),
        (zlib.compress(b'{"packages": [{"name": 1}]}'), "lacks a string name"),
        (zlib.compress(b" " * (cargo_auditable.MAX_JSON_BYTES + 10)), "decompresses to more than"),
    ]:
        with pytest.raises(ValueError, match=message):
            cargo_auditable.parse_dep_v0(payload)


def test_maven_properties_and_own_artifact() -> None:
    a = maven.artifact_of("#c\n! c\ngroupId = org.x\nartifactId:lib\nversion 1.0\n", member="m")
    assert a == maven.MavenArtifact("org.x", "lib", "1.0")
    with pytest.raises(ValueError, match="no version"):
        maven.artifact_of("groupId=a\nartifactId=b\n", member="m")
    b = maven.MavenArtifact("org.x", "other", "2.0")
    assert maven.own_artifact([a, b], file_name="other-2.0.jar") == b
    assert maven.own_artifact([a, b], file_name="app.jar") is None


def test_a_single_pom_is_the_jars_own_only_when_named_or_vouched_for() -> None:
    """A fat JAR's only pom may be its one bundled dependency's (gradle shadowJar)."""
    a = maven.MavenArtifact("org.x", "lib", "1.0")
    assert maven.own_artifact([a], file_name="lib-1.0.jar") == a
    assert maven.own_artifact([a], file_name="app-all.jar") is None
    assert maven.own_artifact([a], file_name="app.jar", manifest={"main-class": "App"}) is None
    maven_made = maven.parse_manifest(
        "Manifest-Version: 1.0\r\ncreated-by: Apache Mav\r\n en 3.9.6\r\n\r\nName: x\r\n"
    )
    assert maven_made == {"manifest-version": "1.0", "created-by": "Apache Maven 3.9.6"}
    assert maven.own_artifact([a], file_name="app.jar", manifest=maven_made) == a
    named = maven.parse_manifest("Implementation-Title: lib\nImplementation-Version: 1.0\n")
    assert maven.own_artifact([a], file_name="app.jar", manifest=named) == a
    other = {**maven_made, "implementation-version": "2.0"}
    assert maven.own_artifact([a], file_name="app.jar", manifest=other) is None
    twice = [a, maven.MavenArtifact("org.y", "lib", "1.0")]  # two artifacts by the file's name: neither
    assert maven.own_artifact(twice, file_name="lib-1.0.jar") is None


def test_a_renamed_maven_jar_whose_manifest_titles_the_project_by_its_name_is_its_pom() -> None:
    """Maven's archiver titles a JAR by the project's <name>, not its artifactId.

    With addDefaultImplementationEntries (spring-boot-starter-parent sets it), a Maven-built
    application JAR renamed in the Dockerfile (COPY target/*.jar app.jar) says
    Implementation-Title: Hello Service, Implementation-Version: 1.4.2 beside its own (only)
    pom.properties hello@1.4.2: that is the JAR's own; the version still tells a bundled one apart.
    """
    own = maven.MavenArtifact("org.example", "hello", "1.4.2")
    made = maven.parse_manifest(
        "Manifest-Version: 1.0\r\nCreated-By: Maven JAR Plugin 3.3.0\r\nBuild-Jdk-Spec: 17\r\n"
        "Implementation-Title: Hello Service\r\nImplementation-Version: 1.4.2\r\n"
        "Main-Class: org.springframework.boot.loader.launch.JarLauncher\r\n\r\n"
    )
    assert maven.own_artifact([own], file_name="app.jar", manifest=made) == own
    bundled = maven.MavenArtifact("org.apache.commons", "commons-lang3", "3.14.0")
    assert maven.own_artifact([bundled], file_name="app.jar", manifest=made) is None
    not_maven = {**made, "created-by": "1.8.0_392 (Temurin)"}  # a title naming another: not decided
    assert maven.own_artifact([own], file_name="app.jar", manifest=not_maven) is None


def test_the_pom_the_file_is_exactly_named_after_wins_over_a_prefix_match() -> None:
    """``foo-1.0.1.jar`` starts with ``foo-1.0.`` too: foo@1.0 bundled in foo@1.0.1's JAR does not
    make the JAR unknown (nor foo@1.0, the first in zip order, as before 9e09641)."""
    old, new = maven.MavenArtifact("org.x", "foo", "1.0"), maven.MavenArtifact("org.x", "foo", "1.0.1")
    assert maven.own_artifact([old, new], file_name="foo-1.0.1.jar") == new
    assert maven.own_artifact([old, new], file_name="foo-1.0.jar") == old
    assert maven.own_artifact([old, new], file_name="foo-1.0.1-all.jar") is None  # neither exactly


def test_an_unreadable_manifest_does_not_undo_a_jar_named_by_its_pom(tmp_path: Path) -> None:
    """The manifest is read only to vouch for a single pom; damage in it (here its deflate data)
    leaves the JAR named ``<artifactId>-<version>.jar`` that artifact, and a renamed one unknown,
    never the whole JAR an error."""
    import io
    import zipfile

    from stellaops_runtime.attribution.binaries import read_binary_info

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Created-By: Apache Maven\n" * 50, zipfile.ZIP_DEFLATED)
        z.writestr("META-INF/maven/org.x/lib/pom.properties", "groupId=org.x\nartifactId=lib\nversion=1.0\n")
    data = bytearray(buf.getvalue())
    at = data.index(b"META-INF/MANIFEST.MF") + len("META-INF/MANIFEST.MF")  # its local header's name
    data[at : at + 8] = b"\xff" * 8  # the start of its deflate data
    for name, want in (("lib-1.0.jar", maven.MavenArtifact("org.x", "lib", "1.0")), ("app.jar", None)):
        (tmp_path / name).write_bytes(bytes(data))
        fd = os.open(tmp_path / name, os.O_RDONLY)
        try:
            info = read_binary_info(fd, name=str(tmp_path / name))
        finally:
            os.close(fd)
        assert (info.jar, info.jar_artifacts, info.maven_error) == (want, 1, None), name


def test_npm_package_json() -> None:
    assert npm.parse_package_json(b'{"name": "@s/p", "version": "1.0.0"}', origin="p") == npm.NpmPackage(
        "@s/p", "1.0.0"
    )
    assert npm.parse_package_json(b'{"type": "module"}', origin="p") is None
    for data in (b"[1]", b"{", b'{"name": "@s/a/b", "version": "1"}'):
        with pytest.raises(ValueError):
            npm.parse_package_json(data, origin="p")


def test_pypi_metadata_and_record() -> None:
    assert pypi.parse_metadata("Metadata-Version: 2.1\nName: Foo_Bar\nVersion: 2.0\n\nbody", dirname="x") == (
        pypi.Distribution("Foo_Bar", "2.0")
    )
    assert pypi.parse_metadata("", dirname="foo-1.0.dist-info") == pypi.Distribution("foo", "1.0")
    with pytest.raises(ValueError, match="has no Name/Version"):
        pypi.parse_metadata("", dirname="weird.dist-info")
    assert pypi.parse_record('a/b.py,sha256=x,1\n"c,d.py",,\n../../../bin/t,,\n', origin="R") == [
        "a/b.py",
        "c,d.py",
        "../../../bin/t",
    ]
    with pytest.raises(ValueError, match="expected 'path,hash,size'"):
        pypi.parse_record("a,b,c,d\n", origin="R")


# -- os-release, PURLs, the path index -----------------------------------------------------------


def test_os_release() -> None:
    rel = parse_os_release('# c\nNAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.19.1\nBAD LINE\n')
    assert (rel.id, rel.distro) == ("alpine", "alpine-3.19.1")
    assert parse_os_release("ID=debian\nVERSION_CODENAME=trixie\n").distro == "debian-trixie"
    assert parse_os_release("ID=x\n").distro is None


def test_purl_forms() -> None:
    assert purls.npm(name="@types/node", version="20.1.0").purl == "pkg:npm/%40types/node@20.1.0"
    assert (
        purls.golang(module="gopkg.in/yaml.v3", version="v3.0.1").purl == "pkg:golang/gopkg.in/yaml.v3@v3.0.1"
    )
    assert purls.golang(module="example.com/app", version=None).purl == "pkg:golang/example.com/app"
    assert purls.golang_stdlib(go_version="go1.22.0 X:boringcrypto").purl == "pkg:golang/stdlib@1.22.0"
    assert purls.pypi(name="Foo_Bar", version="1").purl == "pkg:pypi/foo-bar@1"
    assert purls.maven(group_id="org.a", artifact_id="b", version="1").purl == "pkg:maven/org.a/b@1"
    assert purls.rpm(
        namespace=None, name="x", version="1", release="", epoch=None, arch=None, distro=None
    ).purl == ("pkg:rpm/x@1")
    assert purls.identity("pkg:pypi/Foo.Bar@1?x=y") == purls.identity("pkg:pypi/foo_bar@1")
    assert purls.identity("pkg:golang/github.com/A/B@1.2.0") == ("golang", "github.com/A", "B", "v1.2.0")
    assert purls.identity("pkg:golang/stdlib@1.21.0")[3] == "1.21.0"


def test_path_index_owners() -> None:
    idx = PathIndex([("/a", 2), ("/b", 0), ("/a", 1), ("/a", 2)])
    assert idx.owners("/a") == [1, 2] and idx.owners("/b") == [0] and idx.owners("/c") == []
    assert len(idx) == 4 and idx.nbytes() == 4 * 12


def test_attribution_json_shape() -> None:
    doc = Attribution("/x", None, "none", error="e").to_json()
    assert list(doc)[:3] == ["path", "purl", "source"] and doc["purl"] is None and doc["error"] == "e"


# -- root filesystem boundary ---------------------------------------------------------------------


def test_normalize_refuses_to_climb_above_the_root() -> None:
    assert normalize("a/./b//c/../d") == "/a/b/d"
    assert normalize("/") == "/"
    for bad in ("..", "/a/../../b", "../../etc/passwd"):
        with pytest.raises(AttributionError) as e:
            normalize(bad)
        assert e.value.kind is ErrorKind.OUTSIDE_ROOT


def test_rootfs_resolution(tmp_path: Path) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "usr/lib/real.so").write_bytes(b"x")
    (tmp_path / "lib").symlink_to("usr/lib")
    (tmp_path / "usr/lib/link.so").symlink_to("/lib/real.so")
    (tmp_path / "file").write_text("f")
    fs = RootFS(str(tmp_path))
    assert fs.resolve("/lib/link.so") == "/usr/lib/real.so"
    assert fs.resolve("/lib/link.so", follow_final=False) == "/usr/lib/link.so"
    assert fs.resolve("/lib/missing/x") == "/usr/lib/missing/x"
    assert fs.read_bytes("/lib/link.so", limit=10) == b"x"
    with pytest.raises(AttributionError, match="more than the 0 read"):
        fs.read_bytes("/file", limit=0)
    with pytest.raises(AttributionError) as e:
        RootFS(str(tmp_path / "file"))
    assert e.value.kind is ErrorKind.BAD_ROOT


# -- SBOM structure ----------------------------------------------------------------------------------


def test_cyclonedx_claims_evidence_properties_nesting_and_hashes() -> None:
    doc = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "components": [
            {
                "type": "library",
                "name": "a",
                "purl": "pkg:golang/example.com/a@v1.0.0",
                "evidence": {"occurrences": [{"location": "/usr/bin/a"}]},
                "properties": [{"name": "syft:location:0:path", "value": "usr/bin/a2"}],
                "hashes": [{"alg": "SHA-256", "content": "AB" * 32}],
                "components": [{"type": "file", "name": "./opt/a/data.bin"}],
            },
            {"type": "library", "name": "bad", "purl": "not a purl"},
            {
                "type": "library",
                "name": "x",
                "purl": "pkg:pypi/x@1",
                "evidence": {"occurrences": [{"location": "../up"}]},
            },
        ],
    }
    data = parse_document(doc, origin="d")
    assert [p.purl for p in data.packages] == ["pkg:golang/example.com/a@v1.0.0", "pkg:pypi/x@1"]
    assert sorted(data.paths) == [("/opt/a/data.bin", 0), ("/usr/bin/a", 0), ("/usr/bin/a2", 0)]
    assert data.hashes == {("sha256", "ab" * 32): {0}}
    assert len(data.warnings) == 2  # the invalid purl, the path above the root


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"{", "not JSON"),
        (b"3", "is a JSON object"),
        (b'{"bomFormat": "CycloneDX", "specVersion": "1.3"}', "specVersion '1.3' is not supported"),
        (b'{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [3]}', "not an object"),
        (b'{"spdxVersion": "SPDX-2.3", "files": {}}', "'files' is dict, not a list"),
        (b'{"spdxVersion": "SPDX-3.0"}', "not supported"),
    ],
)
def test_malformed_sbom_documents(doc: bytes, message: str) -> None:
    with pytest.raises(AttributionError, match=message) as e:
        parse_sbom(doc, origin="sbom.json")
    assert e.value.kind is ErrorKind.SBOM_MALFORMED


def test_dpkg_native_arch_from_hostile_arch_files() -> None:
    """``/var/lib/dpkg/arch`` is the image's bytes: only a plain architecture name is believed."""
    from stellaops_runtime.attribution.dpkg import DpkgPackage, native_arch

    own = [DpkgPackage("dpkg", "1.21.22", "arm64", "installed")]
    assert native_arch("arm64\namd64\n", []) == "arm64"
    for hostile in ("", "\n", "arm64\x00\n", "../amd64\n", "all\n", "ARM64\n", " \namd64", "x" * 5000):
        assert native_arch(hostile, []) is None, hostile[:20]
        assert native_arch(hostile, own) == "arm64", hostile[:20]
    two = [*own, DpkgPackage("dpkg", "1.21.22", "amd64", "installed")]  # a forged second stanza
    assert native_arch(None, two) is None
    assert native_arch(None, [DpkgPackage("dpkg", "1.21.22", "arm64", "not-installed")]) is None


def test_rpm_native_arch_from_hostile_databases() -> None:
    """rpm's database names no platform: ``filesystem``'s one arch, else ``rpm``'s, else none."""
    from stellaops_runtime.attribution.rpmdb import native_arch

    assert native_arch([("glibc", "i686"), ("filesystem", "x86_64"), ("glibc", "x86_64")]) == "x86_64"
    assert native_arch([("rpm", "ppc64"), ("filesystem", "noarch")]) == "ppc64"
    assert native_arch([("filesystem", "x86_64"), ("filesystem", "aarch64"), ("rpm", "ppc64")]) == "ppc64"
    for hostile in ("", None, "noarch", "x86_64\x00", "../x", "a b", "x" * 33, "x86_64\udcff"):
        assert native_arch([("filesystem", hostile), ("glibc", "i686")]) is None, hostile
    assert native_arch([("filesystem", "x86_64"), ("filesystem", "i686")]) is None  # forged second copy
