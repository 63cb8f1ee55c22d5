"""Package databases written by whoever controls the image: attribution must stay right or say unknown.

Any process in a container can write its own dpkg, apk, rpm and pip
databases. What these tests hold (docs/attribution.md):

- one damaged package (an undecodable byte or a control character in a
  field, a name no PURL can carry) costs that package, counted; it never
  stops the attribution of the image's other files (before: one byte made
  every lookup of the image raise, and re-read the whole database each time);
- a file two packages list is unknown and counted, never the first in
  database order (which whoever writes the database chooses);
- dpkg diversions are applied as dpkg applies them (truth: ``dpkg-query``);
- two installed stanzas of one package are refused, as ``dpkg-query`` refuses them;
- a database too large to hold is refused whole, within a bounded memory.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.attribution import osdb, rpmdb
from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.model import Attribution
from stellaops_runtime.attribution.rootfs import RootFS

LIB = b"\x7fELF" + b"\0" * 60  # an ELF file too short to say anything about itself
SITE = "/usr/lib/python3/dist-packages"


def stanza(name: str, version: bytes = b"1.0", arch: bytes = b"amd64", extra: bytes = b"") -> bytes:
    return (
        b"Package: " + name.encode() + b"\nStatus: install ok installed\nMaintainer: t <t@t>\n"
        b"Description: test\nVersion: " + version + b"\nArchitecture: " + arch + b"\n" + extra + b"\n"
    )


def make_root(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def dpkg_root(
    root: Path, stanzas: list[bytes], lists: dict[str, str], extra: dict[str, bytes] | None = None
) -> Path:
    files = {"/var/lib/dpkg/status": b"".join(stanzas)}
    for name, paths in lists.items():
        files[f"/var/lib/dpkg/info/{name}.list"] = paths.encode()
        files.update({p: LIB for p in paths.split()})
    files.update(extra or {})
    return make_root(root, files)


def ask(root: Path, *paths: str) -> tuple[Attributor, list[Attribution]]:
    att = Attributor()
    return att, [att.attribute_file(image_digest="sha256:h", root=str(root), path=p) for p in paths]


def dpkg_query(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", *args], capture_output=True, text=True, timeout=60
    )


# -- one bad package costs one package ------------------------------------------------------------

BAD_DPKG = {
    "undecodable version": stanza("zlib", version=b"1.\xff"),
    "NUL in version": stanza("zlib", version=b"1.\x00"),
    "undecodable architecture": stanza("zlib", arch=b"am\xffd64"),
}


@pytest.mark.parametrize("case", sorted(BAD_DPKG))
def test_a_damaged_dpkg_stanza_costs_its_package_only(tmp_path: Path, case: str) -> None:
    root = dpkg_root(
        tmp_path,
        [stanza("good"), BAD_DPKG[case]],
        {"good": "/usr/lib/libgood.so\n", "zlib": "/usr/lib/libz.so.1\n"},
    )
    att, (good, bad) = ask(root, "/usr/lib/libgood.so", "/usr/lib/libz.so.1")
    assert good.purl == "pkg:deb/debian/good@1.0?arch=amd64"
    assert bad.purl is None and bad.source == "none"
    assert att.stats.errors["dpkg_corrupt"] == 1
    assert att.image_errors("sha256:h") == {}  # the database is usable; one package was skipped


def test_a_damaged_apk_record_costs_its_package_only(tmp_path: Path) -> None:
    installed = (
        b"P:musl\nV:1.2.4-r2\nA:x86_64\nF:lib\nR:ld-musl.so.1\n\nP:z\xfflib\nV:1\nF:lib\nR:libz.so.1\n\n"
    )
    root = make_root(
        tmp_path, {"/lib/apk/db/installed": installed, "/lib/ld-musl.so.1": LIB, "/lib/libz.so.1": LIB}
    )
    att, (good, bad) = ask(root, "/lib/ld-musl.so.1", "/lib/libz.so.1")
    assert good.purl == "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64"
    assert bad.purl is None and att.stats.errors["apk_corrupt"] == 1


def _rpm_header(name: bytes, files: list[bytes]) -> bytes:
    entries = [
        (rpmdb.TAG_NAME, rpmdb.TYPE_STRING, name + b"\0", 1),
        (rpmdb.TAG_VERSION, rpmdb.TYPE_STRING, b"1.0\0", 1),
        (rpmdb.TAG_RELEASE, rpmdb.TYPE_STRING, b"1\0", 1),
        (rpmdb.TAG_OLDFILENAMES, rpmdb.TYPE_STRING_ARRAY, b"".join(f + b"\0" for f in files), len(files)),
    ]
    data, index = b"", b""
    for tag, typ, payload, count in entries:
        index += struct.pack(">iIiI", tag, typ, len(data), count)
        data += payload
    return struct.pack(">II", len(entries), len(data)) + index + data


def test_a_damaged_rpm_header_name_costs_its_package_only(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"/usr/lib64/libgood.so": LIB, "/usr/lib64/libz.so.1": LIB})
    db = root / "var/lib/rpm/rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB)")
        conn.execute(
            "INSERT INTO Packages VALUES (1, ?)", (_rpm_header(b"good", [b"/usr/lib64/libgood.so"]),)
        )
        conn.execute(
            "INSERT INTO Packages VALUES (2, ?)", (_rpm_header(b"z\xfflib", [b"/usr/lib64/libz.so.1"]),)
        )
    conn.close()
    att, (good, bad) = ask(root, "/usr/lib64/libgood.so", "/usr/lib64/libz.so.1")
    assert good.purl == "pkg:rpm/good@1.0-1"
    assert bad.purl is None and att.stats.errors["rpm_corrupt"] == 1


def _cli(root: Path, *paths: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "stellaops_runtime.cli.main", "attribute", "--root", str(root), "--json"]
    return subprocess.run([*argv, *paths], capture_output=True, text=True, timeout=60)


def test_an_rpmdb_whose_packages_is_an_endless_view_is_refused(tmp_path: Path) -> None:
    """A 4 KB rpmdb.sqlite whose ``Packages`` is a view of an endless recursive query hung the
    attribution of its image for good (the real command is run: a regression times out)."""
    db = tmp_path / "var/lib/rpm/rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE VIEW Packages AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
            " SELECT x AS hnum, zeroblob(8) AS blob FROM c"
        )
    conn.close()
    proc = _cli(tmp_path, "/usr/bin/x")
    assert proc.returncode == 2, proc.stderr
    assert "rpm database not usable" in proc.stderr and "no plain Packages table" in proc.stderr


def test_rpmdb_rows_that_are_not_headers_cost_their_row(tmp_path: Path) -> None:
    """sqlite columns take any type: an integer "blob" of 10**12 was turned into 10**12 bytes."""
    root = make_root(tmp_path, {"/usr/lib64/libgood.so": LIB})
    db = root / "var/lib/rpm/rpmdb.sqlite"
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE Packages (hnum INTEGER PRIMARY KEY, blob BLOB NOT NULL)")
        conn.execute("INSERT INTO Packages VALUES (1, ?)", (10**12,))
        conn.execute("INSERT INTO Packages VALUES (2, ?)", ("text",))
        conn.execute(
            "INSERT INTO Packages VALUES (3, ?)", (_rpm_header(b"good", [b"/usr/lib64/libgood.so"]),)
        )
    conn.close()
    proc = _cli(root, "/usr/lib64/libgood.so")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["purl"] == "pkg:rpm/good@1.0-1"


def test_a_dist_named_with_a_slash_costs_its_dist_only(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        {
            f"{SITE}/bad-1.dist-info/METADATA": b"Name: a/b\nVersion: 1\n",
            f"{SITE}/bad-1.dist-info/RECORD": b"bad.py,,\n",
            f"{SITE}/bad.py": b"",
            f"{SITE}/ok-2.dist-info/METADATA": b"Name: ok\nVersion: 2\n",
            f"{SITE}/ok-2.dist-info/RECORD": b"ok.py,,\n",
            f"{SITE}/ok.py": b"",
        },
    )
    att, (good, bad) = ask(root, f"{SITE}/ok.py", f"{SITE}/bad.py")
    assert good.purl == "pkg:pypi/ok@2"
    assert bad.purl is None and att.stats.errors["pypi_corrupt"] == 1


@pytest.mark.parametrize("name", ["@scope/", "\\ud800", "a/b"])
def test_an_npm_name_no_purl_can_carry_is_counted(tmp_path: Path, name: str) -> None:
    root = make_root(
        tmp_path,
        {
            "/app/node_modules/x/package.json": b'{"name": "%s", "version": "1.0.0"}' % name.encode(),
            "/app/node_modules/x/index.js": b"",
            "/app/node_modules/y/package.json": b'{"name": "y", "version": "2.0.0"}',
            "/app/node_modules/y/index.js": b"",
        },
    )
    att, (bad, good) = ask(root, "/app/node_modules/x/index.js", "/app/node_modules/y/index.js")
    assert bad.purl is None and att.stats.errors["npm_corrupt"] == 1
    assert good.purl == "pkg:npm/y@2.0.0"


def test_an_os_release_id_that_is_not_one_stays_out_of_every_purl(tmp_path: Path) -> None:
    root = dpkg_root(
        tmp_path,
        [stanza("good")],
        {"good": "/usr/lib/libgood.so\n"},
        {"/etc/os-release": b"ID=evil/ns\nVERSION_ID=1 2\n"},
    )
    _, (good,) = ask(root, "/usr/lib/libgood.so")
    assert good.purl == "pkg:deb/debian/good@1.0?arch=amd64"


# -- shared files, diversions and duplicates, against dpkg-query ----------------------------------


def test_a_file_two_packages_list_is_unknown_not_the_first_listed(tmp_path: Path) -> None:
    root = dpkg_root(
        tmp_path,
        [stanza("zlib"), stanza("aaa-evil", version=b"9")],
        {"zlib": "/usr/lib/libz.so.1\n", "aaa-evil": "/usr/lib/libz.so.1\n"},
    )
    owners = dpkg_query(root, "-S", "/usr/lib/libz.so.1").stdout.rpartition(": ")[0]
    assert sorted(owners.split(", ")) == ["aaa-evil", "zlib"]  # dpkg-query names both, no owner
    att, (a,) = ask(root, "/usr/lib/libz.so.1")
    assert a.purl is None and a.source == "none"
    assert "ambiguous" in (a.error or "") and "aaa-evil" in (a.error or "") and "zlib" in (a.error or "")
    assert att.stats.ambiguous == 1


def test_one_package_version_for_two_architectures_is_one_claimant(tmp_path: Path) -> None:
    """``Multi-Arch: same`` packages of one version share files (their documentation): that is one
    package version, not an ambiguity; the version in the answer is the one both stanzas give."""
    same = b"Multi-Arch: same\n"
    root = dpkg_root(
        tmp_path,
        [stanza("libc6", extra=same), stanza("libc6", arch=b"i386", extra=same)],
        {"libc6:amd64": "/usr/share/doc/libc6/changelog\n", "libc6:i386": "/usr/share/doc/libc6/changelog\n"},
        {"/var/lib/dpkg/info/format": b"1\n"},  # dpkg's multiarch database layout
    )
    owners = dpkg_query(root, "-S", "/usr/share/doc/libc6/changelog").stdout.rpartition(": ")[0]
    assert sorted(owners.split(", ")) == ["libc6:amd64", "libc6:i386"]
    att, (a,) = ask(root, "/usr/share/doc/libc6/changelog")
    assert (a.name, a.version, att.stats.ambiguous) == ("libc6", "1.0", 0)


def test_two_installed_stanzas_of_one_package_are_refused_like_dpkg(tmp_path: Path) -> None:
    root = dpkg_root(
        tmp_path,
        [stanza("good"), stanza("zlib", version=b"1.0"), stanza("zlib", version=b"2.0")],
        {"good": "/usr/lib/libgood.so\n", "zlib:amd64": "/usr/lib/libz.so.1\n"},
    )
    assert "multiple non-coinstallable package instances" in dpkg_query(root, "-W").stderr
    att, (good, z) = ask(root, "/usr/lib/libgood.so", "/usr/lib/libz.so.1")
    assert good.purl == "pkg:deb/debian/good@1.0?arch=amd64"
    assert z.purl is None and att.stats.errors["dpkg_corrupt"] == 1


def test_dpkg_diversions_in_a_scratch_root(tmp_path: Path) -> None:
    """``shipper`` ships /usr/bin/tool, ``diverter`` moves it to tool.real and ships its own; a
    local diversion moves ``other``'s file away from the admin's copy."""
    root = dpkg_root(
        tmp_path,
        [stanza("shipper"), stanza("diverter"), stanza("other")],
        {
            "shipper": "/usr/bin/tool\n",
            "diverter": "/usr/bin/tool\n",
            "other": "/usr/bin/local\n",
        },
        {
            "/var/lib/dpkg/diversions": b"/usr/bin/tool\n/usr/bin/tool.real\ndiverter\n"
            b"/usr/bin/local\n/usr/bin/local.dist\n:\n"
        },
    )
    query = dpkg_query(root, "-S", "/usr/bin/tool").stdout
    assert "diversion by diverter from: /usr/bin/tool" in query
    assert "diversion by diverter to: /usr/bin/tool.real" in query
    for rel in ("usr/bin/tool.real", "usr/bin/local.dist"):
        (root / rel).write_bytes(LIB)
    att, answers = ask(root, "/usr/bin/tool", "/usr/bin/tool.real", "/usr/bin/local", "/usr/bin/local.dist")
    assert [a.name for a in answers] == ["diverter", "shipper", None, "other"]
    assert att.stats.ambiguous == 0


def _host_diversions() -> list[tuple[str, str, str]]:
    path = Path("/var/lib/dpkg/diversions")
    lines = path.read_text().splitlines() if path.exists() else []
    return [(lines[i], lines[i + 1], lines[i + 2]) for i in range(0, len(lines) - 2, 3)]


def test_this_machines_diversions_match_dpkg_query() -> None:
    """Every package diversion of this machine whose two files exist: the diverted path is the
    diverting package's, its target the other package's that ``dpkg-query -S`` names."""
    checked = 0
    att = Attributor()
    for src, dst, by in _host_diversions():
        if by == ":" or not (Path(src).is_file() and Path(dst).is_file()):
            continue
        out = subprocess.run(["dpkg-query", "-S", src], capture_output=True, text=True).stdout
        owners_line = next((ln for ln in out.splitlines() if not ln.startswith("diversion by")), "")
        owners = [o.strip() for o in owners_line.rpartition(": ")[0].split(",") if o.strip()]
        if by not in [o.split(":")[0] for o in owners] or len(owners) != 2:
            continue
        shipper = next(o for o in owners if o.split(":")[0] != by).split(":")[0]
        a_src = att.attribute_file(image_digest="", root="/", path=src)
        a_dst = att.attribute_file(image_digest="", root="/", path=dst)
        assert (a_src.name, a_dst.name) == (by, shipper), (src, dst)
        checked += 1
    if not checked:
        pytest.skip("no package diversion with both files on this machine (postgresql-common's pg_config)")


# -- bounded cost ------------------------------------------------------------------------------------


def test_too_many_recorded_paths_make_the_database_unusable_not_half_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(osdb, "MAX_PATHS", 1000)
    listed = "".join(f"/usr/share/doc/big/f{i}\n" for i in range(600))
    root = dpkg_root(
        tmp_path,
        [stanza("big"), stanza("more")],
        {
            "big": "/usr/lib/libbig.so\n" + listed,
            "more": "/usr/lib/libmore.so\n" + listed.replace("big", "m"),
        },
    )
    att, (a,) = ask(root, "/usr/lib/libbig.so")
    assert a.purl is None and "more than 1000 recorded paths" in (a.error or "")
    assert "dpkg" in att.image_errors("sha256:h")


def test_an_unusable_database_is_named_once_in_the_answer(tmp_path: Path) -> None:
    # The answer's error said "dpkg: dpkg: /var/lib/dpkg/status has no readable package stanza".
    root = make_root(tmp_path, {"/var/lib/dpkg/status": b"not a stanza\n", "/usr/lib/libz.so": LIB})
    att, (a,) = ask(root, "/usr/lib/libz.so")
    fatal = att.image_errors("sha256:h")["dpkg"]
    assert fatal.startswith("dpkg: /var/lib/dpkg/status has no readable package stanza")
    assert a.purl is None and a.error == fatal


# The child's own peak: VmHWM belongs to the memory of the program exec'd, while ru_maxrss also
# holds the parent's (Linux folds the pre-exec peak into it: under a long pytest worker, ~1 GB).
HUGE_LIST = """
import sys
from stellaops_runtime.attribution.attributor import Attributor
a = Attributor().attribute_file(image_digest="x", root=sys.argv[1], path="/usr/lib/libgood.so")
hwm = next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(a.purl, hwm)
"""


def test_huge_database_files_cost_bounded_memory(tmp_path: Path) -> None:
    """Refused cheaply, each measured in its own process (before, resident: 2.3 GB for a 63 MB
    file list of short lines, 1 GB for a 31 MB status of tiny stanzas, past the agent's 1 GiB
    limit; a sparse 500 MB status was read whole): a 40 MB list, a 2.6M-stanza status, a sparse
    500 MB status."""
    good = "pkg:deb/debian/good@1.0?arch=amd64"
    big_list = dpkg_root(tmp_path / "a", [stanza("good"), stanza("big")], {"good": "/usr/lib/libgood.so\n"})
    with open(big_list / "var/lib/dpkg/info/big.list", "w") as f:
        f.writelines(f"/{i:x}\n" for i in range(5_000_000))
    stanzas = dpkg_root(tmp_path / "b", [stanza("good")], {"good": "/usr/lib/libgood.so\n"})
    with open(stanzas / "var/lib/dpkg/status", "a") as f:
        f.write("Package: a\n\n" * 2_600_000)
    sparse = dpkg_root(tmp_path / "c", [stanza("good")], {"good": "/usr/lib/libgood.so\n"})
    with open(sparse / "var/lib/dpkg/status", "r+b") as f:
        f.truncate(500 << 20)
    for r, purl in ((big_list, good), (stanzas, "None"), (sparse, "None")):
        out = subprocess.run(
            [sys.executable, "-c", HUGE_LIST, str(r)], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        got, rss_kb = out.stdout.split()
        assert got == purl, r
        assert int(rss_kb) < 300 << 10, f"{r}: {rss_kb} KiB resident"


def test_a_crowded_lib_directory_is_listed_once_per_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unowned ``/usr/bin/<tool>``s look for ``/usr/lib/python3*/site-packages``: before, every cold
    lookup listed ``/usr/lib`` again (0.2 s each, under the attributor's lock, once an image had
    filled it with 200,000 names); the tool a wheel installed is still the wheel's."""
    site = "/usr/lib/python3.11/site-packages"
    root = make_root(
        tmp_path,
        {
            f"{site}/tool-1.0.dist-info/METADATA": b"Name: tool\nVersion: 1.0\n",
            f"{site}/tool-1.0.dist-info/RECORD": b"../../../bin/tool,,\n",
            "/usr/bin/tool": b"#!/usr/bin/python3\n",
            **{f"/usr/bin/other{i}": b"" for i in range(50)},
            **{f"/usr/lib/filler{i}": b"" for i in range(200)},
        },
    )
    listed: list[str] = []
    real = RootFS.listdir

    def counting(self: RootFS, path: str, *, resolved: bool = False) -> list[str]:
        listed.append(path)
        return real(self, path, resolved=resolved)

    monkeypatch.setattr(RootFS, "listdir", counting)
    _, answers = ask(root, "/usr/bin/tool", *(f"/usr/bin/other{i}" for i in range(50)))
    assert answers[0].purl == "pkg:pypi/tool@1.0"
    assert [a.purl for a in answers[1:]] == [None] * 50
    assert listed.count("/usr/lib") == 1


def test_a_recorded_path_with_a_nul_byte_costs_that_path(tmp_path: Path) -> None:
    """Before: ``lstat`` raised ``ValueError`` while the index was built, so every lookup of the
    image raised (and re-read the database)."""
    root = dpkg_root(tmp_path, [stanza("good")], {"good": "/usr/lib/libgood.so\n"})
    (root / "var/lib/dpkg/info/good.list").write_bytes(b"/usr/lib/libgood.so\n/usr/li\x00b/x.so\n")
    att, (a,) = ask(root, "/usr/lib/libgood.so")
    assert a.purl == "pkg:deb/debian/good@1.0?arch=amd64"
    assert att.stats.errors["dpkg_corrupt"] == 1


# -- undecodable bytes are never replaced by U+FFFD in a PURL or a path -------------------------------


def test_an_undecodable_dist_name_is_damaged_not_a_replacement_character(tmp_path: Path) -> None:
    """METADATA is UTF-8: ``Name: f\xf6o`` (latin-1) was ``pkg:pypi/f%EF%BF%BDo``, a name no index has;
    it costs that dist only (the other dist of its directory still answers)."""
    root = make_root(
        tmp_path,
        {
            f"{SITE}/foo-1.0.dist-info/METADATA": b"Name: f\xf6o\nVersion: 1.0\n",
            f"{SITE}/foo-1.0.dist-info/RECORD": b"foo.py,,\n",
            f"{SITE}/foo.py": b"",
            f"{SITE}/ok-2.dist-info/METADATA": b"Name: ok\nVersion: 2\xff\n",
            f"{SITE}/ok-2.dist-info/RECORD": b"ok.py,,\n",
            f"{SITE}/ok.py": b"",
            f"{SITE}/good-3.dist-info/METADATA": b"Name: good\nVersion: 3\nSummary: caf\xe9\n",
            f"{SITE}/good-3.dist-info/RECORD": b"good.py,,\n",
            f"{SITE}/good.py": b"",
        },
    )
    att, (a, ok, good) = ask(root, f"{SITE}/foo.py", f"{SITE}/ok.py", f"{SITE}/good.py")
    assert (a.purl, a.source, a.error) == (None, "none", None), (a.purl, a.error)
    assert (ok.purl, ok.source, ok.error) == (None, "none", None), (ok.purl, ok.error)
    assert good.purl == "pkg:pypi/good@3"  # an undecodable byte in another field costs nothing
    assert att.stats.errors["pypi_corrupt"] == 2


def test_a_record_path_with_an_undecodable_byte_claims_no_other_file(tmp_path: Path) -> None:
    """RECORD lists ``f\\xffo.py``; ``f\\ufffdo.py`` (the replacement character, UTF-8) is another file."""
    root = make_root(
        tmp_path,
        {
            f"{SITE}/foo-1.0.dist-info/METADATA": b"Name: foo\nVersion: 1.0\n",
            f"{SITE}/foo-1.0.dist-info/RECORD": b"f\xffo.py,,\nfoo.py,,\n",
            f"{SITE}/foo.py": b"",
        },
    )
    (root / SITE.lstrip("/") / "f\ufffdo.py").write_bytes(b"")
    (root / SITE.lstrip("/")).joinpath(b"f\xffo.py".decode("utf-8", "surrogateescape")).write_bytes(b"")
    _, (listed, other, plain) = ask(
        root,
        f"{SITE}/" + b"f\xffo.py".decode("utf-8", "surrogateescape"),
        f"{SITE}/f\ufffdo.py",
        f"{SITE}/foo.py",
    )
    assert plain.purl == "pkg:pypi/foo@1.0"
    assert listed.purl == "pkg:pypi/foo@1.0"  # the file RECORD names, by its bytes
    assert other.purl is None, other.purl  # never claimed through a replaced byte


def test_a_pom_properties_coordinate_with_an_undecodable_byte_is_damaged(tmp_path: Path) -> None:
    """pom.properties is ISO-8859-1 text and Maven coordinates are ASCII: ``f\xf6o`` in a Maven-made
    app.jar was ``pkg:maven/org.x/f%EF%BF%BDo@1.0``, an artifact no repository has."""
    import zipfile

    (tmp_path / "app").mkdir()
    with zipfile.ZipFile(tmp_path / "app/app.jar", "w") as z:
        z.writestr(
            "META-INF/MANIFEST.MF", "Manifest-Version: 1.0\r\nCreated-By: Maven JAR Plugin 3.3.0\r\n\r\n"
        )
        z.writestr(
            "META-INF/maven/org.x/foo/pom.properties", b"groupId=org.x\nartifactId=f\xf6o\nversion=1.0\n"
        )
    att, (a,) = ask(tmp_path, "/app/app.jar")
    assert (a.purl, a.source) == (None, "none"), a.purl
    assert att.stats.errors["maven_corrupt"] == 1
