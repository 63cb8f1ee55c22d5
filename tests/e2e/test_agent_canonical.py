"""End to end with the frame canonicalizer: replay -> agent (real CLI) -> store, function IDs checked.

The synthetic stream's user frames carry real file offsets into Debian 12
libraries. With ``symbols.hostRoot: /`` the agent resolves a frame against
this machine's copy of the library only when its build-id is the one the
stream's process_loader events reported: libc and libz match here, libcrypto
and libssl do not (the machine's openssl was upgraded after the stream was
recorded), so those keep Tetragon's hint and get no function ID.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from packageurl import PackageURL

from stellaops_runtime.canonical.elflayout import ElfError, file_build_id
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h

pytestmark = [pytest.mark.e2e]

EVENTS = h.stream_events()
OBJS = h.stream_objects()
BUILD_IDS: dict[str, str] = h.EXPECTED["build_ids"]


def local_build_id(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return file_build_id(f)[0]
    except (OSError, ElfError):
        return ""


MATCHING = {m for m, bid in BUILD_IDS.items() if local_build_id(m) == bid}
MISMATCHED = set(BUILD_IDS) - MATCHING


def dpkg_purl(package: str) -> str:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version} ${Architecture}", package],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    version, arch = out[0], out[1]
    distro = next(
        line.split("=", 1)[1].strip().strip('"')
        for line in Path("/etc/os-release").read_text().splitlines()
        if line.startswith("VERSION_ID=")
    )
    return str(PackageURL("deb", "debian", package, version, {"arch": arch, "distro": f"debian-{distro}"}))


def stored(url: str) -> list[dict]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, evidence_kind, invocation_count, build_id,"
                " function_id, purl, sample FROM hot_symbols"
            )
        )
        out = [dict(r._mapping) for r in res]
    eng.dispose()
    return out


async def test_frames_resolve_against_matching_host_libraries(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    if not MATCHING:
        pytest.skip("none of the stream's Debian 12 libraries has the recorded build-id on this machine")
    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): not a migration test
    server = ReplayServer(EVENTS)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": url},
        symbols={"hostRoot": "/"},
        attribution={"hostRoot": "/"},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:
        m = await h.wait_processed(
            port,
            len(EVENTS),
            also=lambda m: (
                h.metric(m, "stellaops_runtime_hot_symbols_attributed_total", outcome="attributed") > 0
            ),
            what="all events processed and a flush that attributed",
        )
        code, out = await asyncio.to_thread(h.finish, proc)
    finally:
        await server.stop()
    assert code == 0, out

    rows = stored(url)
    on_stack = [r for r in rows if r["evidence_kind"] == "on_stack"]
    # Our own names agree with the stream's ground truth: the same keys, the same counts.
    assert {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"] for r in on_stack
    } == dict(h.expected_stack_counts(OBJS))
    resolved = [r for r in on_stack if r["module"] in MATCHING]
    assert resolved
    for r in resolved:
        bid = BUILD_IDS[r["module"]]
        assert r["build_id"] == bid
        assert r["function_id"] == f"{bid}:{r['function_name']}+0x0", r
        sample = r["sample"] if isinstance(r["sample"], dict) else json.loads(r["sample"])
        assert any(frame.startswith(f"{r['module']}!") for frame in sample["stack"])
    for r in on_stack:
        if r["module"] in MISMATCHED or r["module"] not in BUILD_IDS:
            assert r["function_id"] == "", r  # a hint is not a resolved symbol

    # uprobes on libc: the probed function's ID carries the loader's build-id.
    invoked = [r for r in rows if r["evidence_kind"] == "invoked" and r["module"] in MATCHING]
    assert invoked
    for r in invoked:
        assert r["function_id"] == f"{BUILD_IDS[r['module']]}:{r['function_name']}+0x0", r

    # Package attribution through this machine's dpkg database, for the files whose build-id
    # matches: the owners the stream's generator recorded, with this machine's versions.
    for r in rows:
        if r["module"] in MATCHING and r["evidence_kind"] != "executed":
            owner = h.EXPECTED["owners"][r["module"]]
            assert r["purl"] == dpkg_purl(owner), r
        elif r["module"] in MISMATCHED:
            assert r["purl"] == "", r  # another file than the one the process mapped: no guess

    # The canonicalizer's and the attribution's counters, over HTTP.
    user_resolved = sum(
        v
        for (n, labels), v in m.items()
        if n == "stellaops_runtime_frames_resolved_total" and ("stack", "user") in labels
    )
    assert user_resolved > 0
    assert (
        h.metric(m, "stellaops_runtime_frames_unresolved_total", stack="user", reason="build_id_mismatch") > 0
        or not MISMATCHED
    )
