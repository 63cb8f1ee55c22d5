"""``witness sign --out`` and ``witness get --out`` never leave half a witness where one was.

They wrote in place: re-signing over yesterday's witness (a cron job's fixed path) on a full disk
or past a file size limit truncated the old witness and left part of the new one, which no
longer verified. A regular file is now written whole or not at all (a hidden temporary file,
fsynced, renamed; through a symlink, the file it names), and a stream (``/dev/stdout``, a pipe)
as before. The cut is real: the CLI runs in a child whose ``RLIMIT_FSIZE`` is smaller than the
envelope, so the kernel writes part of it and fails (EFBIG).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.hotsymbols import (
    EvidenceKind,
    HotSymbolDelta,
    HotSymbolKey,
    ObservationWindow,
)
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns
from stellaops_runtime.witness import dsse, keys
from stellaops_runtime.witness.statement import check_statement

ROOT = Path(__file__).resolve().parents[2]
S = 1_000_000_000
T0 = datetime_to_ns(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
IMG = "sha256:" + "d" * 64
ZLIB = "/usr/lib/x86_64-linux-gnu/libz.so.1"
PURL = "pkg:deb/debian/zlib1g@1.2.13.dfsg-1?arch=amd64"

CHILD = """
import resource, signal, sys
from stellaops_runtime.cli.main import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.exit(main(sys.argv[2:]))
"""


def cli(*args: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-B", "-c", CHILD, str(limit), *args] if limit else [
        sys.executable, "-B", "-m", "stellaops_runtime.cli.main", *args]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def world(tmp_path: Path, sqlite_at_head: Callable[[Path], str]) -> dict[str, Any]:
    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): signing is tested here
    d = HotSymbolDelta(HotSymbolKey(IMG, ZLIB, "crc32", EvidenceKind.INVOKED), T0, 42, T0 + S, T0 + 2 * S,
                       purl=PURL, sample={"stack": [{"module": ZLIB, "symbol": "crc32"}]})  # fmt: skip
    with open_store(url) as s:
        s.write([d], [ObservationWindow(IMG, "n", T0, 50, Posture.EBPF_DEEP, 60, "tetragon")])
    keys.generate(tmp_path / "k", tmp_path / "k.pub")
    sign = ["witness", "sign", "--store", url, "--image", IMG, "--purl", "pkg:deb/debian/zlib1g",
            "--function", "crc32", "--key", str(tmp_path / "k")]  # fmt: skip
    return {"url": url, "sign": sign, "tmp": tmp_path, "pub": keys.load_public(tmp_path / "k.pub")}


def verifies(data: bytes, world: dict[str, Any]) -> dict[str, Any]:
    return check_statement(dsse.verify(json.loads(data), world["pub"]), image=IMG)


def test_a_signing_cut_short_leaves_the_witness_that_was_there(world: dict[str, Any]) -> None:
    out = world["tmp"] / "w" / "crc32.witness.json"
    out.parent.mkdir()
    r = cli(*world["sign"], "--out", str(out))
    assert r.returncode == 0, r.stderr
    before = out.read_bytes()
    verifies(before, world)
    r = cli(*world["sign"], "--out", str(out), limit=len(before) // 3)  # a new witness, cut by the kernel
    assert r.returncode == 2 and "cannot write" in r.stderr, r.stderr
    assert out.read_bytes() == before  # the old witness, whole
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary file left behind


def test_get_cut_short_leaves_no_half_witness(world: dict[str, Any]) -> None:
    r = cli(*world["sign"], "--save", "--out", str(world["tmp"] / "first.json"))
    assert r.returncode == 0, r.stderr
    out = world["tmp"] / "copy.json"
    r = cli("witness", "get", "1", "--store", world["url"], "--out", str(out), limit=200)
    assert r.returncode == 2 and "cannot write" in r.stderr, r.stderr
    assert not out.exists()
    r = cli("witness", "get", "1", "--store", world["url"], "--out", str(out))
    assert r.returncode == 0 and out.read_bytes() == (world["tmp"] / "first.json").read_bytes()


def test_a_symlink_and_a_stream_still_get_the_witness(world: dict[str, Any]) -> None:
    target, link = world["tmp"] / "target.json", world["tmp"] / "link.json"
    target.write_text("old")
    link.symlink_to(target)
    r = cli(*world["sign"], "--out", str(link))
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and verifies(target.read_bytes(), world)
    assert oct(target.stat().st_mode & 0o777) == "0o644"  # a public, signed document
    r = cli(*world["sign"], "--out", "/dev/stdout")  # a pipe here
    assert r.returncode == 0, r.stderr
    verifies(r.stdout.split("\nwitness for ")[0].encode(), world)


def test_out_never_replaces_a_key_or_a_certificate(world: dict[str, Any]) -> None:
    """``--out`` pointed at the public key beside the private one (only ``--key`` itself was
    protected), or at any PEM file, through a symlink too, is refused: exit 2, the file unchanged."""
    tmp = world["tmp"]
    (tmp / "ca.pem").write_text("\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (tmp / "pub.link").symlink_to(tmp / "k.pub")
    r = cli(*world["sign"], "--save", "--out", str(tmp / "first.json"))
    assert r.returncode == 0, r.stderr
    for target in ("k.pub", "pub.link", "ca.pem", "k"):
        before = (tmp / target).read_bytes()
        for cmd in (world["sign"], ["witness", "get", "1", "--store", world["url"]]):
            r = cli(*cmd, "--out", str(tmp / target))
            assert r.returncode == 2 and "key" in r.stderr, (target, cmd[1], r.stderr)
            assert (tmp / target).read_bytes() == before, target
    assert keys.load_public(tmp / "k.pub") == world["pub"]
