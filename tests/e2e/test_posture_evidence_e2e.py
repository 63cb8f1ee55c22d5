"""End to end: "not observed" and ``not_affected`` only where functions could have been seen.

The operator renders syscall kprobes *with* user stacks only at EbpfDeep
(controller/render_policy.py); at ActiveTracing a kernel probe's event
carries no user stack, so no user function can be seen, and a uprobe shows
only the one function it probes. The real agent (``stella-runtime agent``)
reads a Tetragon JSON export holding three images built from the synthetic
stream's billing image (its exec, loader and exit events, and):

- ``STACKLESS``: its kprobes without their user stacks;
- ``STACKED``: its kprobes with their user stacks;
- ``UPROBED``: its kprobes without user stacks, and its uprobes.

Then the real CLI is asked about a zlib function none of them called:
``query observed`` answers not observed (exit 1) for ``STACKED`` alone and
unknown (exit 3) for the others, naming what their posture could not see;
``vex`` says ``not_affected`` for ``STACKED`` alone, and its note says what
that rests on. The agent exits once idle; its nodes' agents are taken to have
run on after the stream (a record of each node the day after:
tests/node_alive.py), so the stream's day is watched whole, not left open as a
day whose agent may be down since its last window (store/coverage_open.py).
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
import sqlalchemy as sa

from stellaops_runtime.store.engine import open_store
from stellaops_runtime.store.schema import datetime_to_ns, observation_windows
from tests.e2e import harness as h
from tests.node_alive import alive_after

pytestmark = [pytest.mark.e2e]

SOURCE = h.EXPECTED["images"][0]["digest"]  # billing-70: kprobes with stacks, uprobes
STACKLESS = "sha256:" + "a1" * 32
STACKED = "sha256:" + "b2" * 32
UPROBED = "sha256:" + "c3" * 32
FUNCTION = "inflateGetHeader"  # a zlib function the stream never calls
ZLIB = "pkg:deb/debian/zlib1g"
DAY = 86_400 * 1_000_000_000


def _kind(o: dict[str, Any]) -> str:
    return next(k for k in o if k.startswith("process_"))


def _retarget(o: dict[str, Any], digest: str, *, stacks: bool) -> dict[str, Any]:
    o = json.loads(json.dumps(o))
    body = o[_kind(o)]
    body["process"]["pod"]["container"]["image"]["id"] = f"registry.example.com/shop/posture@{digest}"
    if not stacks:
        body.pop("user_stack_trace", None)
    return o


def export_lines() -> list[dict[str, Any]]:
    src = [
        o for o in h.stream_objects() if SOURCE in o[_kind(o)]["process"]["pod"]["container"]["image"]["id"]
    ]
    lifecycle = [o for o in src if _kind(o) in ("process_exec", "process_loader", "process_exit")]
    kprobes = [o for o in src if _kind(o) == "process_kprobe"]
    uprobes = [o for o in src if _kind(o) == "process_uprobe"]
    assert kprobes and uprobes and all(o["process_kprobe"].get("user_stack_trace") for o in kprobes)
    out: list[dict[str, Any]] = []
    for digest, events, stacks in (
        (STACKLESS, lifecycle + kprobes, False),
        (STACKED, lifecycle + kprobes, True),
        (UPROBED, lifecycle + kprobes + uprobes, False),
    ):
        out += [_retarget(o, digest, stacks=stacks) for o in events]
    out.sort(key=lambda o: o["time"])
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, sqlite_at_head: Callable[[Path], str]) -> str:
    tmp = tmp_path_factory.mktemp("posture")
    url = sqlite_at_head(tmp / "hot.db")  # at head (tests/conftest.py): not a migration test
    h.run_export_agent(tmp, url, export_lines())
    with open_store(url) as s, s.engine.connect() as c:
        o = observation_windows.c
        nodes = sorted(set(c.execute(sa.select(o.node_name).distinct()).scalars()))
        last = c.execute(sa.select(sa.func.max(o.window_start))).scalar_one()
    last_ns = datetime_to_ns(dt.datetime.fromisoformat(str(last)).replace(tzinfo=dt.UTC))
    with open_store(url) as s:  # the nodes' agents ran on past the stream's day
        s.write([], alive_after(nodes, next_day(last_ns)))
    return url


def next_day(ns: int) -> int:
    return ns - ns % DAY + DAY


def observed(url: str, image: str) -> tuple[int, dict[str, Any]]:
    r = h.cli(
        "query",
        "observed",
        "--image",
        image,
        "--function",
        FUNCTION,
        "--purl",
        ZLIB,
        "--json",
        "--store",
        url,
    )
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_only_an_image_whose_events_carried_user_stacks_is_not_observed(store: str) -> None:
    code, doc = observed(store, STACKED)
    assert (code, doc["answer"]) == (1, "not_observed"), doc
    assert doc["coverage"]["posture"]["highest"] == "EbpfDeep"
    code, doc = observed(store, STACKLESS)
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "only at posture ActiveTracing" in doc["reason"] and "cannot see function calls" in doc["reason"]
    code, doc = observed(store, UPROBED)  # uprobes show the functions they probe, not this one
    assert (code, doc["answer"]) == (3, "unknown"), doc
    assert "only at posture ActiveTracing" in doc["reason"]


def _vex(tmp: Path, url: str, image: str) -> dict[str, Any]:
    vulns = {
        "vulnerabilities": [{"id": "CVE-POSTURE", "affected": [{"purl": ZLIB, "functions": [FUNCTION]}]}]
    }
    (tmp / "vulns.json").write_text(json.dumps(vulns))
    key = tmp / "w.key"
    if not key.exists():
        r = h.cli("witness", "keygen", "--private", str(key), "--public", str(tmp / "w.pub"))
        assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "stellaops_runtime.cli.main", "vex", "--store", url, "--image", image,
         "--vulns", str(tmp / "vulns.json"), "--key", str(key), "--witness-dir", str(tmp / "w"),
         "--window-days", "1"],
        capture_output=True, text=True, timeout=120, cwd=h.ROOT,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (st,) = json.loads(r.stdout)["statements"]
    return dict(st)


def test_vex_is_not_affected_only_where_stacks_were_sampled(store: str, tmp_path: Path) -> None:
    st = _vex(tmp_path, store, STACKED)
    assert st["status"] == "not_affected", st
    assert st["justification"] == "vulnerable_code_not_in_execute_path"
    assert "user stacks sampled at system calls" in st["status_notes"], st["status_notes"]
    for image in (STACKLESS, UPROBED):
        st = _vex(tmp_path, store, image)
        assert st["status"] == "under_investigation", st
        assert "never watched at a posture that can see calls" in st["status_notes"], st["status_notes"]
