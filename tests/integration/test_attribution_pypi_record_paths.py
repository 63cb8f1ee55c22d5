"""RECORD paths as the installed-project spec allows them: relative to site-packages, or absolute.

"Recording installed projects" (packaging.python.org): each RECORD path is
"either an absolute path, or relative to the directory containing the
``.dist-info`` directory". ``pip show -f`` joins a RECORD path to the
location, so an absolute one stays absolute. Before the fix an absolute path
was appended to the site-packages directory (``<site>//usr/local/bin/tool``,
normalized to ``<site>/usr/local/bin/tool``), and the console script it names
was left unattributed (its package read "not observed" while its code ran).
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.attribution.attributor import Attributor

SITE = "/usr/local/lib/python3.11/site-packages"


def _write(root: Path, rel: str, data: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(data)


def _root(tmp_path: Path, record: str) -> Path:
    root = tmp_path / "root"
    dist = f"{SITE}/stella_tool-1.2.dist-info"
    _write(root, f"{dist}/METADATA", "Metadata-Version: 2.1\nName: Stella_Tool\nVersion: 1.2\n")
    _write(root, f"{dist}/RECORD", record)
    _write(root, f"{SITE}/stella_tool/__init__.py", "")
    _write(root, "/usr/local/bin/stella-tool", "#!/usr/local/bin/python3\n")
    _write(root, "/usr/local/bin/other", "#!/bin/sh\n")
    return root


def _purl(root: Path, path: str) -> str | None:
    return Attributor().attribute_file(image_digest="sha256:" + "cd" * 32, root=str(root), path=path).purl


def test_absolute_record_path_names_the_file_at_that_path(tmp_path: Path) -> None:
    root = _root(
        tmp_path,
        "stella_tool/__init__.py,,\n/usr/local/bin/stella-tool,,\nstella_tool-1.2.dist-info/RECORD,,\n",
    )
    assert _purl(root, "/usr/local/bin/stella-tool") == "pkg:pypi/stella-tool@1.2"
    assert _purl(root, f"{SITE}/stella_tool/__init__.py") == "pkg:pypi/stella-tool@1.2"
    assert _purl(root, "/usr/local/bin/other") is None  # not listed: never guessed


def test_relative_record_path_climbing_out_of_site_packages(tmp_path: Path) -> None:
    root = _root(tmp_path, "stella_tool/__init__.py,,\n../../../bin/stella-tool,,\n")
    assert _purl(root, "/usr/local/bin/stella-tool") == "pkg:pypi/stella-tool@1.2"


def test_absolute_record_path_is_confined_to_the_root(tmp_path: Path) -> None:
    # "/../../etc/x" climbs above "/": that one entry is skipped, the rest of the RECORD answers.
    root = _root(tmp_path, "stella_tool/__init__.py,,\n/../../usr/local/bin/stella-tool,,\n")
    assert _purl(root, f"{SITE}/stella_tool/__init__.py") == "pkg:pypi/stella-tool@1.2"
    assert _purl(root, "/usr/local/bin/stella-tool") is None
