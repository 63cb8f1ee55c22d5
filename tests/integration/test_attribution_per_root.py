"""One container must not change the attribution of another container of the same image.

Every file of a container's root, its dpkg status, ``*.dist-info`` and
symlinks included, is writable by whoever runs in it. The attributor used to
build and cache per image digest from whichever root it saw first, so one
compromised container of an image decided the packages of every other
container of that image on the node: a forged status naming a fixed version
turned the victim's vulnerable library into the fixed one, and a VEX question
about the real package answered "not observed". What these tests hold
(docs/attribution.md, "Caches, bounds and cost"):

- the victim's answers are its own (truth: ``dpkg-query --admindir`` of the
  victim's root, and the dist-info it really holds), in either order of first
  sight, and after the attacker rewrites its files later;
- a root path that comes to name another root (``/proc/<pid>/root`` of a
  reused pid) is read as that other root, never answered from the first;
- two paths to one root (two processes of one container) share one view;
- asked through several containers (``attribute_in_roots``), a forged one
  makes the answer unknown and counted, never its own.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from stellaops_runtime.attribution.agreement import attribute_in_roots
from stellaops_runtime.attribution.attributor import Attributor

DIGEST = "sha256:" + "ab" * 32
LIBZ = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"
LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3"
SITE = "/usr/lib/python3/dist-packages"
ELF = b"\x7fELF" + b"\0" * 60  # too short to say anything about itself


def stanza(name: str, version: str) -> str:
    return (
        f"Package: {name}\nStatus: install ok installed\nMaintainer: t <t@t>\n"
        f"Description: test\nVersion: {version}\nArchitecture: amd64\n\n"
    )


def write(root: Path, rel: str, data: bytes | str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".new")  # replaced, not written in place: what a copy-up does
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, p)


def image_root(root: Path, zlib_version: str, requests_version: str) -> Path:
    """One container's root of the image: zlib1g and libssl3 by dpkg, requests by pip."""
    write(root, "/etc/os-release", "ID=debian\nVERSION_ID=12\n")
    write(root, "/var/lib/dpkg/status", stanza("zlib1g", zlib_version) + stanza("libssl3", "3.0.11-1"))
    write(root, "/var/lib/dpkg/info/zlib1g:amd64.list", f"{LIBZ}\n")
    write(root, "/var/lib/dpkg/info/libssl3:amd64.list", f"{LIBSSL}\n")
    for lib in (LIBZ, LIBSSL):
        write(root, lib, ELF)
    dist = f"{SITE}/requests-{requests_version}.dist-info"
    write(root, f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: requests\nVersion: {requests_version}\n")
    write(root, f"{dist}/RECORD", "requests/__init__.py,,\nrequests/api.py,,\n")
    write(root, f"{SITE}/requests/__init__.py", "")
    write(root, f"{SITE}/requests/api.py", "")
    return root


def dpkg_version(root: Path, package: str) -> str:
    out = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Version}", package],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if out.returncode != 0 and "not found" in out.stderr + out.stdout:
        pytest.skip("dpkg-query is not installed")
    assert out.returncode == 0, out.stderr
    return out.stdout


def purl(att: Attributor, root: Path, path: str) -> str | None:
    return att.attribute_file(image_digest=DIGEST, root=str(root), path=path).purl


def zlib_purl(version: str) -> str:
    return f"pkg:deb/debian/zlib1g@{version}?arch=amd64&distro=debian-12"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    return image_root(tmp_path / "victim", "1:1.2.13.dfsg-1", "2.25.0")


@pytest.fixture
def attacker(tmp_path: Path) -> Path:
    # The attacker's container claims the fixed zlib and a fixed requests, and gives libssl a
    # second owner (so that the victim's libssl would turn unknown).
    root = image_root(tmp_path / "attacker", "1:1.3.1-1", "2.99.0")
    write(root, "/var/lib/dpkg/status", stanza("zlib1g", "1:1.3.1-1") + stanza("libssl3", "3.0.11-1"))
    write(root, "/var/lib/dpkg/status", (root / "var/lib/dpkg/status").read_text() + stanza("evil", "1"))
    write(root, "/var/lib/dpkg/info/evil.list", f"{LIBSSL}\n")
    return root


@pytest.mark.parametrize("attacker_first", [True, False], ids=["attacker-first", "victim-first"])
def test_a_forged_database_in_one_container_leaves_the_others_their_own(
    victim: Path, attacker: Path, attacker_first: bool
) -> None:
    truth = dpkg_version(victim, "zlib1g")
    assert truth == "1:1.2.13.dfsg-1" and dpkg_version(attacker, "zlib1g") == "1:1.3.1-1"
    att = Attributor()
    order = [attacker, victim] if attacker_first else [victim, attacker]
    answers = {r: [purl(att, r, p) for p in (LIBZ, LIBSSL, f"{SITE}/requests/api.py")] for r in order}
    assert answers[victim] == [
        zlib_purl(truth),
        "pkg:deb/debian/libssl3@3.0.11-1?arch=amd64&distro=debian-12",
        "pkg:pypi/requests@2.25.0",
    ]
    assert answers[attacker] == [zlib_purl("1:1.3.1-1"), None, "pkg:pypi/requests@2.99.0"]


def test_an_attacker_rewriting_its_files_later_changes_only_its_own_answers(
    tmp_path: Path, victim: Path
) -> None:
    attacker = image_root(tmp_path / "attacker", "1:1.2.13.dfsg-1", "2.25.0")
    att = Attributor()
    assert purl(att, attacker, LIBSSL) == purl(att, victim, LIBSSL) is not None  # both indexes built
    # Now the attacker rewrites its dpkg status and dist-info, and makes libz a link to its own file.
    write(attacker, "/var/lib/dpkg/status", stanza("zlib1g", "1:1.3.1-1"))
    write(attacker, f"{SITE}/requests-2.25.0.dist-info/METADATA", "Name: requests\nVersion: 2.99.0\n")
    (attacker / LIBZ.lstrip("/")).unlink()
    (attacker / LIBZ.lstrip("/")).symlink_to("/opt/evil.so")
    write(attacker, "/opt/evil.so", ELF)
    for root in (victim, image_root(tmp_path / "late", "1:1.2.13.dfsg-1", "2.25.0")):
        assert purl(att, root, LIBZ) == zlib_purl(dpkg_version(root, "zlib1g"))
        assert purl(att, root, f"{SITE}/requests/__init__.py") == "pkg:pypi/requests@2.25.0"


def test_a_root_path_naming_another_root_is_read_as_that_root(
    tmp_path: Path, victim: Path, attacker: Path
) -> None:
    """``/proc/<pid>/root`` of a reused pid is another container's root: never the first one's answers."""
    proc = tmp_path / "proc" / "4242"
    proc.mkdir(parents=True)
    (proc / "root").symlink_to(attacker)
    att = Attributor()
    assert purl(att, proc / "root", LIBZ) == zlib_purl("1:1.3.1-1")
    att.attribute_function(image_digest=DIGEST, root=str(proc / "root"), path=LIBZ, function="inflate")
    (proc / "root").unlink()
    (proc / "root").symlink_to(victim)
    assert purl(att, proc / "root", LIBZ) == zlib_purl("1:1.2.13.dfsg-1")
    fn = att.attribute_function(image_digest=DIGEST, root=str(proc / "root"), path=LIBZ, function="inflate")
    assert fn.purl == zlib_purl("1:1.2.13.dfsg-1")


def test_a_root_gone_keeps_the_answers_of_its_own_view_only(tmp_path: Path, victim: Path) -> None:
    """An exited process's answers, cached while it lived, still answer through its root (as when
    answers were per image); nothing new is read or guessed for it."""
    root = tmp_path / "proc" / "77" / "root"
    root.parent.mkdir(parents=True)
    root.symlink_to(victim)
    att = Attributor()
    want = zlib_purl("1:1.2.13.dfsg-1")
    assert purl(att, root, LIBZ) == want
    fn = att.attribute_function(image_digest=DIGEST, root=str(root), path=LIBZ, function="inflate")
    root.unlink()
    assert purl(att, root, LIBZ) == want
    assert att.attribute_function(image_digest=DIGEST, root=str(root), path=LIBZ, function="inflate") == fn
    cold = att.attribute_file(image_digest=DIGEST, root=str(root), path=LIBSSL)
    assert cold.purl is None and cold.error is not None and att.stats.errors["bad_root"] == 1


def test_two_paths_to_one_root_share_one_view(tmp_path: Path, victim: Path) -> None:
    """Two processes of one container: one set of indexes, one build of each database."""
    (tmp_path / "pid1").symlink_to(victim)
    att = Attributor()
    assert purl(att, tmp_path / "pid1", LIBZ) == purl(att, victim, LIBZ) == zlib_purl("1:1.2.13.dfsg-1")
    stats = att.stats
    assert stats.images == 1 and stats.index_builds["dpkg"] == 1 and stats.cached_files == 1


def test_image_errors_name_a_database_broken_in_any_container(tmp_path: Path, victim: Path) -> None:
    broken = image_root(tmp_path / "broken", "1:1.2.13.dfsg-1", "2.25.0")
    write(broken, "/var/lib/dpkg/status", "no stanza here\n")
    att = Attributor()
    purl(att, victim, LIBZ)
    assert att.image_errors(DIGEST) == {}
    assert purl(att, broken, LIBZ) is None and purl(att, victim, LIBSSL) is not None
    assert "dpkg" in att.image_errors(DIGEST)


# -- one row of the image, asked through several containers --------------------------------------


def test_containers_that_agree_give_the_answer_and_a_forged_one_makes_it_unknown(
    tmp_path: Path, victim: Path, attacker: Path
) -> None:
    twin = image_root(tmp_path / "twin", "1:1.2.13.dfsg-1", "2.25.0")
    gone = str(tmp_path / "proc" / "999" / "root")  # a process that exited: left out
    att = Attributor()
    agreed = attribute_in_roots(att, image_digest=DIGEST, roots=[str(victim), gone, str(twin)], path=LIBZ)
    assert agreed.purl == zlib_purl(dpkg_version(victim, "zlib1g")) and att.stats.ambiguous == 0
    for roots in ([victim, twin, attacker], [attacker, victim]):
        for function in (None, "inflate"):
            mixed = attribute_in_roots(
                att, image_digest=DIGEST, roots=[str(r) for r in roots], path=LIBZ, function=function
            )
            assert mixed.purl is None and mixed.source == "none"
            assert mixed.error is not None and "disagree" in mixed.error and "1:1.3.1-1" in mixed.error
    assert att.stats.ambiguous == 4
    only_gone = attribute_in_roots(att, image_digest=DIGEST, roots=[gone], path=LIBZ)
    assert only_gone.purl is None and only_gone.error is not None
