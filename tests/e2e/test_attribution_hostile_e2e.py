"""End to end: the real agent attributes a container whose dpkg database its own processes rewrote.

A procfs of our own (``symbols.procRoot``) gives two live "processes" of two
images. The hostile image's dpkg database has a stanza whose version holds an
undecodable byte, a library that a forged second package also lists, and a
diversion; the clean image has the same library listed once. Before the
fixes of this probe, the one undecodable byte made every lookup of the
hostile image raise, so none of its files got a PURL; the forged package won
the shared library because its name sorts first; the diverted tool was the
wrong package's. Here every stored PURL is compared with what dpkg itself
says, and the synthetic stream's well-formed events are still counted exactly.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stellaops_runtime.replay.events import load_events
from stellaops_runtime.replay.server import ReplayServer
from tests.e2e import harness as h
from tests.integration import test_hostile_elf_builder as eb

pytestmark = [pytest.mark.e2e]

OBJS = h.stream_objects()
HOSTILE = "sha256:" + "d1" * 32
CLEAN = "sha256:" + "c1" * 32
REPEAT = 5


def stanza(name: str, version: bytes = b"1.0") -> bytes:
    return b"Package: %s\nStatus: install ok installed\nVersion: %s\nArchitecture: amd64\n\n" % (
        name.encode(),
        version,
    )


def image_root(root: Path, *, hostile: bool) -> dict[str, int]:
    """The image's files and dpkg database; module -> file offset of its function."""
    offsets: dict[str, int] = {}
    for i, module in enumerate(
        ("/usr/lib/libgood.so", "/usr/lib/libbad.so", "/usr/lib/libz.so.1", "/usr/bin/tool")
    ):
        bid = bytes([i + (0x40 if hostile else 0x80)]) * 20
        name = Path(module).name.replace(".", "_").replace("-", "_") + "_fn"
        offsets[module] = eb.write(root / module.lstrip("/"), eb.Elf(build_id=bid, functions=[name]))[name]
    dpkg = root / "var/lib/dpkg"
    (dpkg / "info").mkdir(parents=True)
    stanzas = [stanza("libgood"), stanza("zlib"), stanza("diverter"), stanza("shipper")]
    lists = {
        "libgood": "/usr/lib/libgood.so\n",
        "zlib": "/usr/lib/libz.so.1\n",
        "diverter": "/usr/bin/tool\n",
        "shipper": "/usr/bin/tool\n",
        "libbad": "/usr/lib/libbad.so\n",
    }
    stanzas.append(stanza("libbad", b"2.\xff" if hostile else b"2.0"))
    if hostile:
        stanzas.append(stanza("aaa-forged", b"9.9"))
        lists["aaa-forged"] = "/usr/lib/libz.so.1\n"
    (dpkg / "status").write_bytes(b"".join(stanzas))
    for name, text in lists.items():
        (dpkg / "info" / f"{name}.list").write_text(text)
    (dpkg / "diversions").write_text("/usr/bin/tool\n/usr/bin/tool.shipper\ndiverter\n")
    return offsets


def kprobe(template: dict[str, Any], *, pid: int, digest: str, frame: tuple[str, int], n: int) -> dict:
    o = copy.deepcopy(template)
    k = o["process_kprobe"]
    k["process"]["pid"] = pid
    k["process"]["exec_id"] = f"attr-{pid}"
    k["process"]["pod"]["container"]["image"]["id"] = f"registry.example.com/x@{digest}"
    k["user_stack_trace"] = [{"module": frame[0], "offset": str(frame[1]), "symbol": f"hint{n}"}]
    o["node_name"] = "e2e-node"
    return o


def stored(url: str) -> list[dict[str, Any]]:
    eng = sa.create_engine(url)
    with eng.connect() as c:
        res = c.execute(
            sa.text(
                "SELECT image_digest, module, function_name, evidence_kind, invocation_count, purl"
                " FROM hot_symbols"
            )
        )
        out = [dict(r._mapping) for r in res]
    eng.dispose()
    return out


async def test_agent_attributes_a_container_whose_dpkg_database_was_rewritten(
    tmp_path: Path, sqlite_at_head: Callable[[Path], str]
) -> None:
    roots = {5151: tmp_path / "hostile", 5152: tmp_path / "clean"}
    digests = {5151: HOSTILE, 5152: CLEAN}
    offsets = {pid: image_root(root, hostile=pid == 5151) for pid, root in roots.items()}
    proc_root = tmp_path / "proc"
    for pid, root in roots.items():
        (proc_root / str(pid)).mkdir(parents=True)
        (proc_root / str(pid) / "root").symlink_to(root)
        (proc_root / str(pid) / "maps").write_text("")

    template = next(o for o in OBJS if "process_kprobe" in o and o["process_kprobe"].get("user_stack_trace"))
    ours = [
        kprobe(template, pid=pid, digest=digests[pid], frame=frame, n=n)
        for n in range(REPEAT)
        for pid in roots
        for frame in offsets[pid].items()
    ]
    stream = tmp_path / "stream.jsonl.gz"
    with gzip.open(stream, "wt") as f:
        for o in ours + OBJS:
            f.write(json.dumps(o) + "\n")
    events = load_events(stream).events

    url = sqlite_at_head(tmp_path / "hot.db")  # at head (tests/conftest.py): not a migration test
    server = ReplayServer(events)
    addr = await server.start("127.0.0.1:0")
    cfg, port = h.write_config(
        tmp_path,
        tetragon={"address": addr},
        store={"url": url},
        symbols={"procRoot": str(proc_root), "parseWaitMilliseconds": 60_000},
    )
    proc = h.start_agent(cfg, "--exit-when-idle", "2")
    try:

        def attributed(m: dict) -> bool:
            # Attribution runs at drain: the forged database and the file two packages claim are
            # each met at one of them.
            return (
                h.metric(m, "stellaops_runtime_attribution_errors_total", kind="dpkg_corrupt") > 0
                and h.metric(m, "stellaops_runtime_attribution_ambiguous_total") > 0
            )

        m = await h.wait_processed(
            port, len(events), also=attributed, what="every event received, processed and attributed"
        )
        code, out = await asyncio.to_thread(h.finish, proc)
    finally:
        await server.stop()
        if proc.poll() is None:
            proc.kill()
    assert code == 0, out
    assert "Traceback" not in out

    rows = [r for r in stored(url) if r["evidence_kind"] == "on_stack"]
    good = {
        f"{r['image_digest']}|{r['module']}|{r['function_name']}": r["invocation_count"]
        for r in rows
        if r["image_digest"] not in (HOSTILE, CLEAN)
    }
    assert good == dict(h.expected_stack_counts(OBJS))  # the well-formed events, counted exactly

    purls = {
        (r["image_digest"], r["module"]): r["purl"] for r in rows if r["image_digest"] in (HOSTILE, CLEAN)
    }
    counts = {
        (r["image_digest"], r["module"]): r["invocation_count"]
        for r in rows
        if r["image_digest"] in (HOSTILE, CLEAN)
    }
    assert set(counts.values()) == {REPEAT}  # every frame of both images counted, attributed or not
    deb = "pkg:deb/debian/{}?arch=amd64"
    assert purls == {
        (HOSTILE, "/usr/lib/libgood.so"): deb.format("libgood@1.0"),
        (HOSTILE, "/usr/lib/libbad.so"): "",  # its version holds an undecodable byte
        (HOSTILE, "/usr/lib/libz.so.1"): "",  # zlib and the forged aaa-forged both list it
        (HOSTILE, "/usr/bin/tool"): deb.format("diverter@1.0"),  # dpkg-divert: the diverter's copy
        (CLEAN, "/usr/lib/libgood.so"): deb.format("libgood@1.0"),
        (CLEAN, "/usr/lib/libbad.so"): deb.format("libbad@2.0"),
        (CLEAN, "/usr/lib/libz.so.1"): deb.format("zlib@1.0"),
        (CLEAN, "/usr/bin/tool"): deb.format("diverter@1.0"),
    }
    assert h.metric(m, "stellaops_runtime_attribution_errors_total", kind="dpkg_corrupt") == 1
    assert h.metric(m, "stellaops_runtime_attribution_ambiguous_total") >= 1  # libz: an operator sees why
    assert h.metric(m, "stellaops_runtime_hot_symbols_attributed_total", outcome="internal_error") == 0
