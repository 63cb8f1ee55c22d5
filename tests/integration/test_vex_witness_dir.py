"""``vex --witness-dir`` never writes through a symlink nor replaces a witness a document cites.

Each witness was written with ``Path.write_bytes``: a symlink planted in the directory under the
next witness's name (``CVE-1-1.witness.json`` -> a file of the user's) had that file overwritten
with the envelope, and a second ``vex`` run into the same directory (the next day's, or two at
once) replaced the first run's witnesses, so the first document cited envelope digests no file
held any more. A witness file is now created whole under a name no file has (a hidden temporary
file, fsynced, then hard-linked to ``<id>-<n>.witness.json``: a name taken by any file or
symlink moves the number on), so every document's citations stay true.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from stellaops_runtime.contracts.hotsymbols import EvidenceKind
from stellaops_runtime.store.engine import open_store
from tests.integration.test_vex import ROOT, delta, vex_cli, watched

AFFECTED = [{"purl": "pkg:deb/debian/zlib1g", "functions": ["crc32", "adler32"]}]
VULNS = {"vulnerabilities": [{"id": "CVE-1", "affected": AFFECTED}]}


def _store(tmp: Path) -> str:
    url = f"sqlite:///{tmp}/hot.db"
    with open_store(url) as s:
        s.write([delta("", 0, 1, EvidenceKind.LOADED), delta("crc32", 3, 12)], watched(range(40)))
    return url


def _cited(doc_text: str) -> list[tuple[str, str]]:
    return re.findall(r"witness (sha256:[0-9a-f]{64}) \(([^)]+)\)", doc_text)


def _check_citations(wdir: Path, doc_text: str) -> None:
    cited = _cited(doc_text)
    assert len(cited) == 2, doc_text
    for digest, name in cited:
        path = wdir / name
        assert path.is_file() and not path.is_symlink(), name
        assert path.stat().st_mode & 0o777 == 0o644, name
        assert "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() == digest, name


def test_a_symlink_in_the_witness_dir_is_never_written_through(tmp_path: Path) -> None:
    url = _store(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    wdir = tmp_path / "w"
    wdir.mkdir()
    (wdir / "CVE-1-1.witness.json").symlink_to(victim)
    (wdir / "CVE-1-2.witness.json").symlink_to(tmp_path / "nowhere")  # dangling: created through
    r = vex_cli(tmp_path, url, VULNS)
    assert r.returncode == 0, r.stderr
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "nowhere").exists()
    _check_citations(wdir, r.stdout)
    assert {name for _, name in _cited(r.stdout)} == {"CVE-1-3.witness.json", "CVE-1-4.witness.json"}
    assert not [p for p in wdir.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_second_run_never_replaces_the_witnesses_the_first_document_cites(tmp_path: Path) -> None:
    url = _store(tmp_path)
    first = vex_cli(tmp_path, url, VULNS)
    assert first.returncode == 0, first.stderr
    second = vex_cli(tmp_path, url, VULNS)
    assert second.returncode == 0, second.stderr
    for r in (first, second):
        _check_citations(tmp_path / "w", r.stdout)
    assert len({name for r in (first, second) for _, name in _cited(r.stdout)}) == 4


def test_two_runs_at_once_each_cite_their_own_witnesses(tmp_path: Path) -> None:
    url = _store(tmp_path)
    assert vex_cli(tmp_path, url, VULNS).returncode == 0  # the key, the input file
    cmd = [sys.executable, "-m", "stellaops_runtime.cli.main", "vex", "--store", url, "--image",
           "sha256:" + "d" * 64, "--vulns", str(tmp_path / "vulns.json"), "--key", str(tmp_path / "w.key"),
           "--witness-dir", str(tmp_path / "w")]  # fmt: skip
    runs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]  # fmt: skip
    outs = [p.communicate(timeout=180) for p in runs]
    for p, (out, err) in zip(runs, outs, strict=True):
        assert p.returncode == 0, err
        assert json.loads(out)["statements"]
        _check_citations(tmp_path / "w", out)
