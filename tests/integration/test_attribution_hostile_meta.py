"""Metadata a binary, a package.json or an SBOM carries, hostile: counted and unknown, never a crash.

Companion of test_attribution_hostile_dbs.py (the package databases). Here:
JSON nested deeper than the parser's recursion limit (a ``RecursionError``,
which is not a ``ValueError``, escaped every reader), Go and cargo-auditable
metadata naming modules no PURL can carry, an SBOM that gives one path to
several packages (syft lists a Go binary's path for each of its modules), a
bug inside one index build, and the real CLI on such a root.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from stellaops_runtime.attribution import dpkg, gobuildinfo
from stellaops_runtime.attribution.attributor import Attributor
from tests import attribution_roots as roots
from tests.wire_bytes import varint

DEEP = b"[" * 100_000 + b"]" * 100_000
LIB = b"\x7fELF" + b"\0" * 60
GOOD_STANZA = "Package: zlib\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\n"


def make_root(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def with_section(tmp: Path, name: str, payload: bytes, out: Path) -> Path:
    """A copy of /usr/bin/true with one more section (what the linker or cargo-auditable adds)."""
    section = tmp / f"{out.name}{name}"
    section.write_bytes(payload)
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [roots.tool("objcopy"), "--add-section", f"{name}={section}", shutil.which("true") or "/usr/bin/true",
         str(out)],
        check=True,
    )  # fmt: skip
    return out


def go_buildinfo(modinfo: str) -> bytes:
    """A Go >= 1.18 ``.go.buildinfo`` blob (inline strings) with this module info."""
    start, end = (
        bytes.fromhex("3077af0c9274080241e1c107e6d618e6"),
        bytes.fromhex("f932433186182072008242104116d8f2"),
    )
    framed = start + modinfo.encode("utf-8", "surrogateescape") + end
    version = b"go1.21.4"
    return (
        gobuildinfo.MAGIC
        + bytes([8, 2])
        + b"\0" * 16
        + varint(len(version))
        + version
        + varint(len(framed))
        + framed
    )


def test_deeply_nested_package_json_is_counted(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            "/app/node_modules/x/package.json": b'{"name": "x", "a": ' + DEEP + b"}",
            "/app/node_modules/x/index.js": b"",
            "/app/node_modules/y/package.json": b'{"name": "y", "version": "2.0.0"}',
            "/app/node_modules/y/index.js": b"",
        },
    )
    att = Attributor()
    bad = att.attribute_file(image_digest="sha256:n", root=str(root), path="/app/node_modules/x/index.js")
    good = att.attribute_file(image_digest="sha256:n", root=str(root), path="/app/node_modules/y/index.js")
    assert bad.purl is None and att.stats.errors["npm_corrupt"] == 1
    assert good.purl == "pkg:npm/y@2.0.0"


@pytest.mark.parametrize(
    ("payload", "what"),
    [
        (zlib.compress(DEEP), "nested 100,000 deep"),
        (
            zlib.compress(json.dumps({"packages": [{"name": "", "version": "1", "root": True}]}).encode()),
            "no name",
        ),
    ],
    ids=["deep", "no-name"],
)
def test_hostile_dep_v0_is_counted_not_raised(tmp_path: Path, payload: bytes, what: str) -> None:
    root = tmp_path / "root"
    with_section(tmp_path, ".dep-v0", payload, root / "app")
    att = Attributor()
    for _ in range(2):  # the second lookup is answered from the cache
        a = att.attribute_file(image_digest="sha256:c", root=str(root), path="/app")
        assert a.purl is None, what
    assert att.stats.errors["cargo_corrupt"] == 1


def test_go_module_names_no_purl_can_carry(tmp_path: Path) -> None:
    """A main module ``example.com/m/`` (no name after the last ``/``) and a dependency whose
    version holds an undecodable byte: each costs its own answer, the stdlib still answers."""
    modinfo = "path\texample.com/m\nmod\texample.com/m/\tv1.0.0\t\ndep\texample.com/d\tv1.\udcff\t\n"
    root = tmp_path / "root"
    with_section(tmp_path, ".go.buildinfo", go_buildinfo(modinfo), root / "app")
    att = Attributor()
    kw = {"image_digest": "sha256:g", "root": str(root), "path": "/app"}
    assert att.attribute_file(**kw).purl is None
    assert att.attribute_function(**kw, function="main.main").purl is None
    assert att.attribute_function(**kw, function="example.com/d.F").purl is None
    stdlib = att.attribute_function(**kw, function="runtime.mallocgc")
    assert (stdlib.purl, stdlib.scope) == ("pkg:golang/stdlib@1.21.4", "function")
    assert att.stats.errors["gomod_corrupt"] == 3


def _sbom(tmp: Path, claimants: list[str]) -> Path:
    location = [{"name": "syft:location:0:path", "value": "/usr/lib/libz.so.1"}]
    comps = [{"type": "library", "name": p, "purl": p, "properties": location} for p in claimants]
    path = tmp / f"sbom-{len(list(tmp.glob('sbom-*')))}.json"
    path.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "components": comps}))
    return path


def test_an_sbom_path_given_to_several_packages_is_decided_by_the_image_among_them(tmp_path: Path) -> None:
    root = make_root(
        tmp_path / "root",
        {
            "/var/lib/dpkg/status": GOOD_STANZA.encode(),
            "/var/lib/dpkg/info/zlib.list": b"/usr/lib/libz.so.1\n",
            "/usr/lib/libz.so.1": LIB,
        },
    )
    among = Attributor()
    among.register_sbom(
        "sbom", str(_sbom(tmp_path, ["pkg:generic/zlib@1.0", "pkg:deb/debian/zlib@1.0?distro=x"]))
    )
    a = among.attribute_file(image_digest="sbom", root=str(root), path="/usr/lib/libz.so.1")
    assert (a.purl, a.source, a.evidence) == ("pkg:deb/debian/zlib@1.0?distro=x", "sbom", "package:dpkg")
    assert among.stats.ambiguous == 0

    outside = Attributor()
    outside.register_sbom("sbom", str(_sbom(tmp_path, ["pkg:generic/a@1", "pkg:generic/b@1"])))
    b = outside.attribute_file(image_digest="sbom", root=str(root), path="/usr/lib/libz.so.1")
    assert b.purl is None and "ambiguous" in (b.error or "")
    assert outside.stats.ambiguous == 1


def test_a_bug_in_one_index_build_costs_that_database_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_root(
        tmp_path,
        {
            "/var/lib/dpkg/status": GOOD_STANZA.encode(),
            "/var/lib/dpkg/info/zlib.list": b"/usr/lib/libz.so.1\n",
            "/usr/lib/libz.so.1": LIB,
            "/lib/apk/db/installed": b"P:musl\nV:1.2.4-r2\nF:lib\nR:ld-musl.so.1\n\n",
            "/lib/ld-musl.so.1": LIB,
        },
    )
    calls = []

    def broken(text: str, *, origin: str) -> object:
        calls.append(origin)
        raise RuntimeError("a bug")

    monkeypatch.setattr(dpkg, "parse_status", broken)
    att = Attributor()
    z = att.attribute_file(image_digest="sha256:b", root=str(root), path="/usr/lib/libz.so.1")
    musl = att.attribute_file(image_digest="sha256:b", root=str(root), path="/lib/ld-musl.so.1")
    assert z.purl is None and "internal error" in (z.error or "")
    assert musl.purl == "pkg:apk/alpine/musl@1.2.4-r2"
    assert calls == ["/var/lib/dpkg/status"]  # not re-read for the second lookup
    assert att.stats.errors["dpkg_corrupt"] == 1


def test_cli_on_a_hostile_root_answers_every_path(tmp_path: Path) -> None:
    """The real command: a stanza with an undecodable version, a file two packages list, and a
    good package; one JSON line per path, exit 1 (some unattributed), no traceback."""
    status = (
        GOOD_STANZA.encode()
        + GOOD_STANZA.replace("zlib", "bad").replace("1.0", "1.\udcff").encode("utf-8", "surrogateescape")
        + GOOD_STANZA.replace("zlib", "aaa").encode()
    )
    root = make_root(
        tmp_path,
        {
            "/var/lib/dpkg/status": status,
            "/var/lib/dpkg/info/zlib.list": b"/usr/lib/libz.so.1\n/usr/lib/shared.so\n",
            "/var/lib/dpkg/info/bad.list": b"/usr/lib/libbad.so\n",
            "/var/lib/dpkg/info/aaa.list": b"/usr/lib/shared.so\n",
            "/usr/lib/libz.so.1": LIB,
            "/usr/lib/libbad.so": LIB,
            "/usr/lib/shared.so": LIB,
        },
    )
    paths = ["/usr/lib/libz.so.1", "/usr/lib/libbad.so", "/usr/lib/shared.so"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stellaops_runtime.cli.main",
            "attribute",
            "--root",
            str(root),
            "--json",
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["path"] for d in docs] == paths
    assert [d["purl"] for d in docs] == ["pkg:deb/debian/zlib@1.0?arch=amd64", None, None]
    assert "ambiguous" in docs[2]["error"]


def _deep_tree(base: Path, depth: int) -> list[int]:
    """``base/d/d/.../d/lib.so``, one level at a time (pathlib and shutil recurse per level)."""
    fds = [os.open(base, os.O_DIRECTORY)]
    for _ in range(depth):
        os.mkdir("d", dir_fd=fds[-1])
        fds.append(os.open("d", os.O_DIRECTORY, dir_fd=fds[-1]))
    os.close(os.open("lib.so", os.O_CREAT | os.O_WRONLY, dir_fd=fds[-1]))
    return fds


def _remove_deep_tree(fds: list[int]) -> None:
    os.unlink("lib.so", dir_fd=fds[-1])
    for parent, child in reversed(list(itertools.pairwise(fds))):
        os.close(child)
        os.rmdir("d", dir_fd=parent)
    os.close(fds[0])


def test_paths_with_a_nul_byte_or_nested_too_deep_are_errors(tmp_path: Path) -> None:
    """An event's module path is the container's to choose: a NUL byte (before: ``ValueError``
    from ``lstat``) or a file 700 directories deep (before: ``RecursionError``) is ``bad_path``."""
    deep = "/" + "d/" * 700 + "lib.so"
    listed = f"/usr/lib/libz.so.1\n{deep}\n".encode()
    make_root(
        tmp_path,
        {
            "/usr/lib/libz.so.1": LIB,
            "/var/lib/dpkg/status": GOOD_STANZA.encode(),
            "/var/lib/dpkg/info/zlib.list": listed,
        },
    )
    fds = _deep_tree(tmp_path, 700)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(2500)  # as cel-python does on import: the answer must not depend on it
    try:
        att = Attributor()
        answers = [
            att.attribute_file(image_digest="sha256:p", root=str(tmp_path), path=p)
            for p in ("/usr/lib/libz.so.1\0", deep, "/usr/lib/libz.so.1")
        ]
    finally:
        sys.setrecursionlimit(limit)
        _remove_deep_tree(fds)
    assert [a.purl for a in answers[:2]] == [None, None]
    assert answers[2].purl == "pkg:deb/debian/zlib@1.0?arch=amd64"
    assert att.stats.errors["bad_path"] == 2
    assert att.stats.errors["dpkg_corrupt"] == 1  # the deep path its list records was skipped


POM = "META-INF/maven/org.example/hello/pom.properties"


def _jar(path: Path, *, method: int | None = None, flags: int | None = None, damage: bool = False) -> None:
    """A one-pom JAR, then patched the way a hostile image could write it."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr(POM, "groupId=org.example\nartifactId=hello\nversion=1.0\n")
    data = bytearray(buf.getvalue())
    central = data.find(b"PK\x01\x02")
    if method is not None:  # local header +8, central directory +10
        data[8:10] = data[central + 10 : central + 12] = struct.pack("<H", method)
    if flags is not None:  # local header +6, central directory +8
        data[6:8] = data[central + 8 : central + 10] = struct.pack("<H", flags)
    if damage:
        start = 30 + len(POM)
        data[start : start + 10] = bytes(b ^ 0xFF for b in data[start : start + 10])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("method", "flags", "damage"),
    [(99, None, False), (None, 1, False), (None, None, True)],
    ids=["unknown-compression", "encrypted", "damaged-deflate"],
)
def test_a_jar_zipfile_cannot_read_is_counted_not_raised(
    tmp_path: Path, method: int | None, flags: int | None, damage: bool
) -> None:
    """Before: ``NotImplementedError``, ``RuntimeError`` and ``zlib.error`` escaped the JAR reader."""
    _jar(tmp_path / "app/bad.jar", method=method, flags=flags, damage=damage)
    _jar(tmp_path / "app/hello-1.0.jar")
    att = Attributor()
    bad = att.attribute_file(image_digest="sha256:j", root=str(tmp_path), path="/app/bad.jar")
    good = att.attribute_file(image_digest="sha256:j", root=str(tmp_path), path="/app/hello-1.0.jar")
    assert bad.purl is None and att.stats.errors["maven_corrupt"] == 1
    assert good.purl == "pkg:maven/org.example/hello@1.0"


def test_binaries_naming_too_many_crates_or_modules_are_refused(tmp_path: Path) -> None:
    """A binary's parsed metadata is cached per image and per build-id: a 415 kB ``.dep-v0`` of
    170,000 crates kept 30 MB per binary (before), so a few such binaries outgrew the agent."""
    crates: list[dict[str, object]] = [{"name": f"c{i}", "version": "1.0.0"} for i in range(10_001)]
    crates[0]["root"] = True  # 10,001: MAX_CRATES + 1
    with_section(tmp_path, ".dep-v0", roots.dep_v0(crates), tmp_path / "root/rust")
    deps = "".join(f"dep\texample.com/m{i}\tv1.0.0\t\n" for i in range(10_001))  # MAX_MODULES + 1
    with_section(
        tmp_path, ".go.buildinfo", go_buildinfo(f"mod\texample.com/app\tv1\t\n{deps}"), tmp_path / "root/go"
    )
    att = Attributor()
    for binary in ("/rust", "/go"):
        a = att.attribute_file(image_digest="sha256:m", root=str(tmp_path / "root"), path=binary)
        assert a.purl is None, binary
    assert (att.stats.errors["cargo_corrupt"], att.stats.errors["gomod_corrupt"]) == (1, 1)


def test_a_process_exiting_during_an_index_build_leaves_its_image_attributable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two containers of one image; the first exits while its dpkg database is being read. Before,
    the half-read (empty) index was kept for the image, so the live container got no PURL."""
    image = make_root(
        tmp_path / "image",
        {
            "/var/lib/dpkg/status": GOOD_STANZA.encode(),
            "/var/lib/dpkg/info/zlib.list": b"/usr/lib/libz.so.1\n/usr/lib/libz2.so\n",
            "/usr/lib/libz.so.1": LIB,
            "/usr/lib/libz2.so": LIB,
        },
    )
    for pid in (1, 2):
        (tmp_path / f"proc/{pid}").mkdir(parents=True)
        (tmp_path / f"proc/{pid}/root").symlink_to(image)
    real = dpkg.parse_status

    def exiting(text: str, *, origin: str) -> tuple[list[dpkg.DpkgPackage], list[str]]:
        (tmp_path / "proc/1/root").unlink(missing_ok=True)  # process 1 exits mid-read
        return real(text, origin=origin)

    monkeypatch.setattr(dpkg, "parse_status", exiting)
    att = Attributor()
    gone = att.attribute_file(
        image_digest="sha256:x", root=str(tmp_path / "proc/1/root"), path="/usr/lib/libz.so.1"
    )
    live = att.attribute_file(
        image_digest="sha256:x", root=str(tmp_path / "proc/2/root"), path="/usr/lib/libz2.so"
    )
    assert live.purl == "pkg:deb/debian/zlib@1.0?arch=amd64"
    assert gone.purl is None and "went away" in (gone.error or "")


def test_a_fifo_for_diversions_or_rpm_wal_never_blocks(tmp_path: Path) -> None:
    """The readers added for diversions and the rpm WAL copy open through the confined opener,
    which refuses what is not a regular file (the real command is run: a hang times out)."""
    root = make_root(
        tmp_path,
        {
            "/var/lib/dpkg/status": GOOD_STANZA.encode(),
            "/var/lib/dpkg/info/zlib.list": b"/usr/lib/libz.so.1\n",
            "/usr/lib/libz.so.1": LIB,
            "/var/lib/rpm/rpmdb.sqlite": b"",
        },
    )
    os.mkfifo(root / "var/lib/dpkg/diversions")
    os.mkfifo(root / "var/lib/rpm/rpmdb.sqlite-wal")
    argv = [sys.executable, "-m", "stellaops_runtime.cli.main", "attribute", "--root", str(root), "--json"]
    paths = ["/usr/lib/libz.so.1", "/usr/bin/unowned"]  # the second is asked of rpm too
    proc = subprocess.run([*argv, *paths], capture_output=True, text=True, timeout=60)
    docs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["purl"] for d in docs] == ["pkg:deb/debian/zlib@1.0?arch=amd64", None]
    assert "rpmdb.sqlite-wal: not a regular file" in proc.stderr, proc.stderr
    assert proc.returncode == 2  # the rpm database could not be used at all
