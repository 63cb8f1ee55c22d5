"""``stella-runtime attribute`` end to end: the real CLI in a subprocess, its output and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import attribution_roots as roots

pytestmark = pytest.mark.e2e

ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1.2.13"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "attribute", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def zlib_purl() -> str:
    if not Path(ZLIB).exists():
        pytest.skip(f"{ZLIB} is not on this machine")
    rel = roots.os_release()
    version, arch = roots.dpkg_field("zlib1g", "Version"), roots.dpkg_field("zlib1g", "Architecture")
    return f"pkg:deb/{rel['ID']}/zlib1g@{version}?arch={arch}&distro={rel['ID']}-{rel['VERSION_ID']}"


def test_json_one_object_per_line_and_exit_0(zlib_purl: str) -> None:
    proc = cli("--root", "/", "--json", ZLIB, "/lib/x86_64-linux-gnu/libz.so.1")
    assert proc.returncode == 0, proc.stderr
    docs = lines(proc.stdout)
    assert [(d["path"], d["purl"], d["source"]) for d in docs] == [
        (ZLIB, zlib_purl, "dpkg"),
        ("/lib/x86_64-linux-gnu/libz.so.1", zlib_purl, "dpkg"),
    ]


def test_table_and_exit_1_when_something_is_unattributed(zlib_purl: str) -> None:
    proc = cli("--root", "/", ZLIB, "/etc/hostname")
    assert proc.returncode == 1, proc.stderr
    head, first, second = proc.stdout.splitlines()
    assert head.split() == ["PATH", "SOURCE", "SCOPE", "PURL"]
    assert first.split() == [ZLIB, "dpkg", "file", zlib_purl]
    assert second.split() == ["/etc/hostname", "none", "file", "-"]


def test_exit_2_on_bad_input(tmp_path: Path) -> None:
    (tmp_path / "evil").symlink_to("../../../../../../../etc/passwd")
    outside = cli("--root", str(tmp_path), "--json", "../../etc/passwd", "/evil")
    assert outside.returncode == 2
    assert [d["purl"] for d in lines(outside.stdout)] == [None, None]
    assert "climbs above the root" in outside.stderr and "points outside the root" in outside.stderr
    assert "Traceback" not in outside.stderr

    assert cli("--root", str(tmp_path / "missing"), "/x").returncode == 2
    bad_sbom = tmp_path / "bad.json"
    bad_sbom.write_text('{"bomFormat": "CycloneDX", "specVersion": "1.6", "components": "nope"}')
    proc = cli("--root", str(tmp_path), "--sbom", str(bad_sbom), "/x")
    assert proc.returncode == 2 and "'components' is str, not a list" in proc.stderr
    two = cli("--root", "/", "--function", "main.main", "/a", "/b")
    assert two.returncode == 2 and "exactly one PATH" in two.stderr


def test_corrupt_database_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "var/lib/dpkg").mkdir(parents=True)
    (tmp_path / "var/lib/dpkg/status").write_text("garbage without fields\n")
    proc = cli("--root", str(tmp_path), "/usr/bin/x")
    assert proc.returncode == 2 and "dpkg database not usable" in proc.stderr


def test_sbom_and_function(tmp_path: Path) -> None:
    python = roots.make_venv(tmp_path / "root", "venv", {"six": roots.WHEELS["six"]})
    sbom = roots.cyclonedx_environment(python, tmp_path / "bom.json")
    six = f"/venv/{roots.SITE}/six.py"
    proc = cli("--root", str(tmp_path / "root"), "--sbom", str(sbom), "--json", six)
    assert proc.returncode == 0, proc.stderr
    (doc,) = lines(proc.stdout)
    assert (doc["purl"], doc["source"], doc["evidence"]) == (
        f"pkg:pypi/six@{roots.WHEELS['six']}",
        "sbom",
        "package:pypi",
    )

    if not Path("/usr/bin/containerd").exists():
        pytest.skip("containerd is not installed")
    go = shutil.which("go") or "/usr/bin/go"
    version = subprocess.run(
        [go, "version", "-m", "/usr/bin/containerd"], capture_output=True, text=True
    ).stdout
    go_version = version.splitlines()[0].rsplit(" go", 1)[1]
    fn = cli("--root", "/", "--json", "--function", "runtime.mallocgc", "/usr/bin/containerd")
    assert fn.returncode == 0, fn.stderr
    (doc,) = lines(fn.stdout)
    assert doc == {
        "path": "/usr/bin/containerd",
        "purl": f"pkg:golang/stdlib@{go_version}",
        "source": "gomod",
        "name": "stdlib",
        "version": go_version,
        "evidence": "buildinfo",
        "scope": "function",
        "function": "runtime.mallocgc",
    }
