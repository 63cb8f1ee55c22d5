"""A file replaced in place (an upgrade: same path, new build) gives no "not observed" by the new build.

The store keeps one cumulative row per (image, path, function, kind) and its first build-id and
purl (store/pg_write.py, agent_sql.py). On the node (``host:<node>``), or in a container upgraded at
run time, a package upgrade puts a new build at the same path: the new build's calls of ``split_fn``
and its ``unprobed`` tail fact are merged into the rows the old build made, under the old build-id
and version. A question by the new build's function ID, or by the new version's purl, found
neither, and said ``not_observed`` about a function that ran and a tail nobody probed
(evidence/replaced_in_place.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
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
from stellaops_runtime.native.config import UprobeTarget
from stellaops_runtime.native.host_tails import host_tails
from stellaops_runtime.store.batches import Batch
from stellaops_runtime.store.engine import open_store
from tests.cli_run import cli_in_process, cli_json
from tests.integration.test_probed_in_part_stripped import PROGRAM
from tests.integration.test_vex import DAY, T0, S
from tests.node_alive import alive_after

HOST = "host:node-1"
APP = "/usr/bin/stella-app"
MAIN = "int main(int argc, char **argv) { return (int)user(argc, argv); }\n"
# the upgrade: the same program with one function more (another build-id)
NEW = "unsigned __attribute__((noinline)) new_fn(unsigned x) { return x ^ 0x5a5a5a5au; }\n"
MAIN2 = "int main(int argc, char **argv) { return (int)(user(argc, argv) + new_fn((unsigned)argc)); }\n"
needs_gcc = pytest.mark.skipif(any(shutil.which(t) is None for t in ("gcc", "nm")), reason="needs gcc")


def answer(*args: str, real: bool = False) -> tuple[int, Any]:
    """``stella-runtime <args>``'s exit code and JSON, asked in this process (tests/cli_run.py
    ``cli_json``), or ``real``ly as a subprocess."""
    return cli_json(*args, real=real)


def _build(tmp_path: Path, host: Path, source: str) -> str:
    """gcc -O2 ``source`` to the node's APP (in place); its tails' facts' build-id."""
    exe = host / APP.lstrip("/")
    exe.parent.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "app.c"
    src.write_text(source)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
    facts = host_tails([UprobeTarget(str(exe), "split_fn")], node_name="node-1")
    assert list(facts) == [("host:node-1", str(exe), "split_fn.part.0")], facts  # the premise: split
    return next(iter(facts.values()))[0]


def _upgraded(tmp_path: Path) -> tuple[str, str, str]:
    """The node's APP built, then rebuilt in place with one function more: (old build-id, new
    build-id, the path its facts and calls are named by)."""
    host = tmp_path / "host"
    old = _build(tmp_path, host, PROGRAM + MAIN)
    new = _build(tmp_path, host, PROGRAM + NEW + MAIN2)
    assert old != new
    return old, new, str(host) + APP


def _delta(
    module: str, name: str, calls: int, at: int, bid: str, purl: str = "", image: str = HOST
) -> HotSymbolDelta:
    kind = EvidenceKind.INVOKED if calls else EvidenceKind.UNPROBED
    fid = f"{bid}:{name}+0x0" if calls else ""
    return HotSymbolDelta(
        HotSymbolKey(image, module, name, kind), at, calls, at + S, at + S, build_id=bid, purl=purl,
        function_id=fid, node_name="node-1",
    )  # fmt: skip


def _windows(image: str) -> list[ObservationWindow]:
    """40 days watched, and a record of node-1 the day after (tests/node_alive.py): its agent ran on,
    so the last day is watched whole, not open (store/coverage_open.py)."""
    windows = [
        ObservationWindow(image, "node-1", T0 + d * DAY, 9, Posture.EBPF_DEEP, 60, "native")
        for d in range(40)
    ]
    return windows + alive_after("node-1", T0 + 40 * DAY)


@needs_gcc
def test_a_new_build_s_function_id_is_unknown_when_its_path_held_another_build(
    tmp_path: Path, url: str
) -> None:
    """Seen failing before the fix: ``<new build>:split_fn+0x0`` answered not_observed (exit 1) while
    its calls and its unprobed tail were stored under the old build's rows of the same path. SQLite and
    PostgreSQL (each keeps a row's first build-id its own way: store/agent_sql.py, pg_write.py)."""
    old, new, module = _upgraded(tmp_path)
    before, after = T0 + 2 * DAY, T0 + 20 * DAY
    with open_store(url) as s:
        s.write([_delta(module, "split_fn", 5, before, old)], _windows(HOST))
        assert not s.write_batch(
            Batch("node-1/a", 1, [_delta(module, "split_fn.part.0", 0, before, old)])
        ).errors
        # upgraded in place; a new agent sends the new build's fact and calls: the store merges them
        # into the old build's rows (same key), only new_fn's row is the new build's
        s.write([_delta(module, "split_fn", 7, after, new), _delta(module, "new_fn", 3, after, new)], [])
        assert not s.write_batch(
            Batch("node-1/b", 1, [_delta(module, "split_fn.part.0", 0, after, new)])
        ).errors
    for fid in (f"{new}:split_fn+0x0", f"{new}:split_fn.part.0+0x0"):
        code, doc = answer(
            "query", "observed", "--image", HOST, "--function", fid, "--store", url, "--json", real=True
        )
        assert (code, doc["answer"]) == (3, "unknown"), doc
        assert "replaced_in_place" in doc and old in doc["reason"], doc
    # the old build's ID still finds its own row; a function of no row at that path keeps its "no"
    ask = ("query", "observed", "--image", HOST, "--store", url, "--json", "--function")
    code, doc = answer(*ask, f"{old}:split_fn+0x0")
    assert (code, doc["answer"]) == (0, "observed"), doc
    code, doc = answer(*ask, f"{new}:static_fn+0x0")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


@needs_gcc
def test_a_new_build_s_file_offset_in_a_period_is_unknown_when_its_path_held_another_build(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """By file offset in the new build, over a period in which only the old build's rows of that
    path took calls (the new build's ``split_fn``, merged into them): seen failing before the fix
    (not_observed, exit 1: nothing stored under the new build-id ran in the period). A period before
    any row of that path took a call (a cumulative row's first..last call) keeps its "no"."""
    old, new, module = _upgraded(tmp_path)
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        s.write([_delta(module, "split_fn", 5, T0 + 2 * DAY, old)], _windows(HOST))
        s.write([_delta(module, "new_fn", 3, T0 + 20 * DAY, new)], [])  # the new build's only row
        s.write([_delta(module, "split_fn", 7, T0 + 35 * DAY, new)], [])  # into the old build's row
    ask = ("query", "observed", "--image", HOST, "--function", f"{new}:+0x1139", "--store", url, "--json")
    code, doc = answer(*ask, "--since", "2026-07-01T00:00:00Z")  # day 30 on
    assert (code, doc["answer"]) == (3, "unknown") and "replaced_in_place" in doc, doc
    code, doc = answer(*ask, "--since", "2026-06-01T00:00:00Z", "--until", "2026-06-02T00:00:00Z")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_new_version_s_function_is_unknown_when_its_path_held_another_version(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    """A container upgraded at run time (apt-get upgrade in it): zlib1g 1:1.2.13's rows made first,
    1:1.3's calls of crc32 merged into them; only inflate, first called after the upgrade, has a row
    of the new version. Asked by the new version's purl: seen failing before the fix (not_observed,
    exit 1). The old version's question finds its row; another function keeps its "no"."""
    img, lib = "sha256:" + "5c" * 32, "/usr/lib/x86_64-linux-gnu/libz.so.1"
    v1, v2 = (
        "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64",
        "pkg:deb/debian/zlib1g@1:1.3.dfsg-3?arch=amd64",
    )
    url = sqlite_at_head(tmp_path / "hot.db")
    with open_store(url) as s:
        s.write([_delta(lib, "crc32", 5, T0 + 2 * DAY, "aa" * 20, v1, img)], _windows(img))
        s.write([_delta(lib, "crc32", 4, T0 + 9 * DAY, "bb" * 20, v2, img)], [])  # into v1's row
        s.write([_delta(lib, "inflate", 2, T0 + 9 * DAY, "bb" * 20, v2, img)], [])
    ask = ("query", "observed", "--image", img, "--store", url, "--json", "--purl")
    code, doc = answer(*ask, "pkg:deb/debian/zlib1g@1:1.3.dfsg-3", "--function", "crc32")
    assert (code, doc["answer"]) == (3, "unknown") and doc["replaced_in_place"], doc
    code, doc = answer(*ask, "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1", "--function", "crc32")
    assert (code, doc["answer"]) == (0, "observed"), doc
    code, doc = answer(*ask, "pkg:deb/debian/zlib1g@1:1.3.dfsg-3", "--function", "deflate")
    assert (code, doc["answer"]) == (1, "not_observed"), doc


def test_a_new_version_s_function_in_another_of_its_files_is_unknown(url: str) -> None:
    """A package of two files upgraded in place (libssl3: libssl.so.3 and libcrypto.so.3). Every
    call of 3.0.15 merged into 3.0.11's rows but one function of libcrypto first called after the
    upgrade, so the new version is stored at libcrypto's path only, and SSL_read's calls of 3.0.15
    lie in 3.0.11's row at libssl's path, which no row of 3.0.15 shares. Seen failing before the
    fix: not_observed (exit 1), the doubt looking only at the paths the asked version is stored at.
    A package's files are upgraded together: a path shared with another version brings that
    version's other paths. Another version never sharing a path (a Go module of two versions in two
    binaries) is no replacement: its calls keep the asked version's "no". SQLite and PostgreSQL."""
    img = "sha256:" + "3d" * 32
    ssl, crypto = "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/x86_64-linux-gnu/libcrypto.so.3"
    v1, v2 = "pkg:deb/debian/libssl3@3.0.11-1?arch=amd64", "pkg:deb/debian/libssl3@3.0.15-1?arch=amd64"
    g1, g2 = "pkg:golang/golang.org/x/net@v0.17.0", "pkg:golang/golang.org/x/net@v0.23.0"
    with open_store(url) as s:
        early, late = T0 + 2 * DAY, T0 + 9 * DAY
        s.write(
            [
                _delta(ssl, "SSL_read", 5, early, "a1" * 20, v1, img),
                _delta(crypto, "EVP_DigestInit", 5, early, "a2" * 20, v1, img),
                _delta("/app/a", "golang.org/x/net/html.Parse", 2, early, "a3" * 20, g2, img),
                _delta("/app/b", "golang.org/x/net/http2.NewFramer", 2, early, "a4" * 20, g1, img),
            ],
            _windows(img),
        )
        s.write([_delta(ssl, "SSL_read", 4, late, "b1" * 20, v2, img)], [])  # into 3.0.11's row
        s.write([_delta(crypto, "EVP_DigestFinal", 1, late, "b2" * 20, v2, img)], [])  # 3.0.15's only
    ask = ("query", "observed", "--image", img, "--store", url, "--json", "--purl")
    code, doc = answer(*ask, "pkg:deb/debian/libssl3@3.0.15-1", "--function", "SSL_read")
    assert (code, doc["answer"]) == (3, "unknown") and doc["replaced_in_place"], doc
    assert ssl in doc["reason"] and "3.0.11" in doc["reason"], doc
    for purl, function in (
        ("pkg:deb/debian/libssl3@3.0.15-1", "SSL_write"),  # no row of the name: the "no" stays
        ("pkg:golang/golang.org/x/net@v0.17.0", "golang.org/x/net/html.Parse"),  # v0.23.0's only
    ):
        r = cli_in_process(*ask, purl, "--function", function)
        assert (r.returncode, json.loads(r.stdout)["answer"]) == (1, "not_observed"), r.stdout
