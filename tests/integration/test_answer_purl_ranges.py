"""A package URL whose version is a range is a usage error, never a "not observed".

A purl with a version matches that version only (docs/operations.md). A range written where
the version goes (``@>=1.2``, npm's ``@^4.17.0`` or ``@4.x``, Maven's ``@[1.0,2.0)``,
``vers:``) matched no stored version, so ``query observed --purl`` answered "not observed"
(exit 1) about a function that ran in every version of the package. Now it is exit 2 saying
why, as is a ``vex`` input naming one; real versions of every ecosystem the agent attributes
(epochs, ``~`` and ``+`` of Debian, Go pseudo-versions, pre-releases) still read.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stellaops_runtime.store.refs import PurlQuery, RefError
from tests.integration.test_answer_unattributed import FN, cli, filled
from tests.integration.test_vex import IMG, ROOT, vex_cli

RANGES = [
    "pkg:deb/debian/zlib1g@>=1.2",
    "pkg:deb/debian/zlib1g@%3E%3D1.2",
    "pkg:npm/lodash@^4.17.0",
    "pkg:npm/lodash@~4.17.0",
    "pkg:npm/lodash@4.x",
    "pkg:npm/lodash@4.17.*",
    "pkg:npm/lodash@<4.17.21 || >=5",
    "pkg:maven/org.apache.logging.log4j/log4j-core@[2.0,2.15.0)",
    "pkg:deb/debian/zlib1g@vers:deb/>=1.2",
]
VERSIONS = [
    "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64",
    "pkg:deb/debian/libfoo@1.0~rc1+b2",
    "pkg:golang/golang.org/x/net@v0.0.0-20230101000000-abcdef123456",
    "pkg:cargo/smallvec@1.0.0-alpha.1",
    "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
    "pkg:rpm/fedora/stella-hello@1.0.3-7.fc40?epoch=2",
    "pkg:npm/%40npmcli/fs@5.0.0",
]


@pytest.mark.parametrize("purl", RANGES)
def test_a_version_range_is_refused(purl: str) -> None:
    with pytest.raises(RefError, match="is a range, not a version"):
        PurlQuery.parse(purl)


@pytest.mark.parametrize("purl", VERSIONS)
def test_real_versions_still_read(purl: str) -> None:
    assert PurlQuery.parse(purl).matches(purl)


def test_the_cli_says_so_instead_of_not_observed(tmp_path: Path) -> None:
    url = filled(f"sqlite:///{tmp_path}/hot.db")
    code, doc = cli(
        url, "query", "observed", "--image", IMG, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g"
    )
    assert (code, doc["answer"]) == (0, "observed")  # the control
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "query", "observed", "--store", url,
         "--image", IMG, "--function", "crc32", "--purl", "pkg:deb/debian/zlib1g@>=1.0"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert r.returncode == 2 and "is a range, not a version" in r.stderr and r.stdout == ""
    vulns = {
        "vulnerabilities": [
            {"id": "CVE-R", "affected": [{"purl": "pkg:npm/lodash@^4.0.0", "functions": [FN]}]}
        ]
    }
    r = vex_cli(tmp_path, url, vulns)
    assert (
        r.returncode == 2 and "CVE-R" in r.stderr and "is a range" in r.stderr and "Traceback" not in r.stderr
    )
