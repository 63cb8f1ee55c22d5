"""Functions named by PURL, end to end in the agent: ConfigMap -> per-container uprobes -> store and status.

The in-process Agent runs its source switch with Tetragon unreachable, so its
real BCC probes take over. The "containers" are real processes chrooted into
a root with a dpkg database (tests/integration/test_native_purl.py), each
moved into a cgroup of its own; there is no container runtime here, so each is
registered as a lifecycle ``ContainerRecord`` with its real pid, cgroup id
and an image digest, given to the switch as its registry (``containers``) and
to the pipeline as its ``ContainerLookup``. Then:

- N calls of the package's function in container A are stored as exactly N
  under A's image digest, with the installed package's PURL in the row (the
  policy's rateLimit is not applied to PURL functions: every call counts);
- a second container B starting reloads the probes, and so does B stopping (not
  sooner than the reload interval): calls before and after each reload, in A
  and in B, are each counted once, under their own digest, and the reload is a
  node-wide gap;
- the agent's ObservationNode entries say attached (containers 1, then 2,
  then 1), not_in_package and not_found, and validate against the CRD schema;
- once Tetragon answers again, the switch goes back and the list is empty;
- B's rows carry the PURL although B stopped before the agent's flush (the
  resolution told package attribution, agent/purls.py ``probed``).
Needs root; the agent test also BPF (marked ``bpf``). Past the 64-target
bound a PURL function is reported, not probed (no BPF needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stellaops_runtime.agent import source_switch, source_switch_purl
from stellaops_runtime.agent.node_status import purl_state
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from stellaops_runtime.native.config import NativeConfig, UprobeTarget
from stellaops_runtime.native.detect import detect
from stellaops_runtime.native.policy_config import PurlFunction
from stellaops_runtime.native.purl_wiring import wire
from stellaops_runtime.replay.server import ReplayServer
from tests.crd_schema import errors, load_crd, validator_for
from tests.e2e import harness as h
from tests.integration.test_native_purl import PURL, Chrooted, rootfs  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = "pkg:deb/debian/stella-demo@1.2-3?arch=amd64&distro=debian-12"
DIGEST_A, DIGEST_B = "sha256:" + "a1" * 32, "sha256:" + "b2" * 32
POLICY = "ObservationPolicy/shop/web"
# The cgroup v2 hierarchy (bpf_get_current_cgroup_id's ids): alone, or beside v1 under unified/.
CGROUP_FS = next(
    (p for p in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")) if (p / "cgroup.procs").exists()),
    Path("/sys/fs/cgroup"),
)


class Contained:
    """A chrooted process in a cgroup of its own, as a lifecycle registry record."""

    def __init__(self, root: Path, name: str, digest: str) -> None:
        self.cg = CGROUP_FS / f"stella-purl-{name}-{os.getpid()}"
        self.cg.mkdir()
        self.proc = Chrooted(root)
        (self.cg / "cgroup.procs").write_text(str(self.proc.pid))
        self.record = ContainerRecord(
            container_id=f"ctr-{name}", namespace="k8s.io", image_ref=f"demo/{name}:1",
            image_digest=digest, status="running", pid=self.proc.pid, cgroup_path=f"/{self.cg.name}",
            cgroup_id=self.cg.stat().st_ino,
        )  # fmt: skip

    def close(self) -> None:
        self.proc.stop()
        with contextlib.suppress(OSError):
            self.cg.rmdir()


@pytest.fixture
def contained(rootfs: Path) -> Iterator[list[Contained]]:  # noqa: F811
    if not (CGROUP_FS / "cgroup.procs").exists():
        pytest.skip("needs a cgroup v2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified")
    made: list[Contained] = []
    yield made
    for c in made:
        c.close()


def stored(db: Path) -> tuple[Counter[tuple[str, str]], set[tuple[str, str]]]:
    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT image_digest, module, invocation_count, purl FROM hot_symbols "
            "WHERE function_name = 'stella_pkg_fn' AND evidence_kind = 'invoked'"
        ).fetchall()
    counts: Counter[tuple[str, str]] = Counter()
    for image, module, n, _ in rows:
        counts[(image, module)] += n
    return counts, {(image, purl) for image, _, _, purl in rows}


def gaps(db: Path) -> list[tuple[int, int]]:
    """Node-wide gaps no source observed: (start, end) wall ns."""

    def ns(text: str) -> int:
        return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1e9)

    with sqlite3.connect(db) as c:
        rows = c.execute(
            "SELECT gap_start, gap_end FROM observation_windows "
            "WHERE image_digest = ? AND source = 'none' AND gap_start IS NOT NULL",
            (NODE_WIDE,),
        ).fetchall()
    return [(ns(a), ns(b)) for a, b in rows]


@pytest.mark.bpf
async def test_purl_functions_are_probed_per_container_counted_exactly_and_reported(
    tmp_path: Path,
    rootfs: Path,  # noqa: F811 (the fixture imported above)
    contained: list[Contained],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = str(Path(".cache/native").resolve())  # noqa: ASYNC240
    rep = await asyncio.to_thread(detect, mount_tracefs=True, compile_test=True, cache_dir=cache)
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes give {rep.posture} here: {rep.missing}")
    monkeypatch.setattr(source_switch_purl, "RELOAD_MIN_SECONDS", 0.5)  # no 5 s wait per reload here
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps({
        "apiVersion": "stellaops.io/v1alpha1", "kind": "ProbeConfig",
        "policies": {POLICY: {"functions": [
            {"purl": PURL, "symbols": ["stella_pkg_fn", "stella_absent_fn"]},
            {"purl": "pkg:deb/debian/not-installed", "symbols": ["stella_pkg_fn"]},
        ], "rateLimit": "1m", "rateLimitSeconds": 60}},  # not applied to PURL functions: every call counts
    }))  # fmt: skip
    db = tmp_path / "hot.db"
    addr = f"127.0.0.1:{h.free_port()}"
    cfg = parse_config({
        "tetragon": {"address": addr, "connectionTimeout": 0.3},
        "store": {"url": f"sqlite:///{db}"},
        "metrics": {"address": "127.0.0.1", "port": 0},  # not 8080: another worker's agent may hold it
        "native": {"fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 0.5, "probeConfigFile": str(probes)},
    })  # fmt: skip
    a = Contained(rootfs, "a", DIGEST_A)
    contained.append(a)
    running = [a.record]
    agent = Agent(cfg, node_name="purl-node")
    sw = agent.source
    assert isinstance(sw, source_switch.SourceSwitch)
    sw.containers = lambda: list(running)
    agent.pipeline.container_lookup = ContainerLookup(running, "containerd")
    task = asyncio.create_task(agent.run())

    def entries() -> dict[tuple[str, str], dict]:
        got = purl_state(sw.stats)
        assert got is not None
        return {(e["purl"], e["symbol"]): e for e in got[0]}

    def attached_in(n: int) -> bool:
        e = entries().get((PURL, "stella_pkg_fn"))
        return bool(sw.stats.connected and e and e["state"] == "attached" and e["containers"] == n)

    try:
        await h.wait_for(lambda: attached_in(1), timeout=90, what="the PURL function attached in A")
        got = entries()
        assert got[(PURL, "stella_pkg_fn")] == {
            "policy": POLICY, "purl": PURL, "symbol": "stella_pkg_fn", "source": "native",
            "state": "attached", "reason": "", "containers": 1,
        }  # fmt: skip
        absent = got[(PURL, "stella_absent_fn")]
        assert (absent["state"], absent["containers"]) == ("not_in_package", 1)
        assert "defines stella_absent_fn" in absent["reason"]
        missing = got[("pkg:deb/debian/not-installed", "stella_pkg_fn")]
        assert (missing["state"], missing["containers"]) == ("not_found", 1)
        # The ObservationNode status the agent writes carries them, and the CRD schema accepts it.
        node = {
            "apiVersion": "stellaops.io/v1alpha1", "kind": "ObservationNode",
            "metadata": {"name": "purl-node"}, "spec": {"nodeName": "purl-node"},
            "status": {"source": "native", "purlFunctions": list(got.values()), "purlFunctionsOmitted": 0},
        }  # fmt: skip
        v = validator_for(load_crd(ROOT / "manifests/crds/observationnodes.yaml"))
        assert errors(v, node) == []
        node["status"]["purlFunctions"][0]["state"] = "resolved"  # not a state the schema knows
        assert errors(v, node)
        await asyncio.to_thread(a.proc.calls, 37)
        # B starts: the switch sees a new running set and reloads the probes with B's root resolved too.
        reloads = sw.stats.probe_reloads
        before_reload = time.time_ns()
        b = Contained(rootfs, "b", DIGEST_B)
        contained.append(b)
        running.append(b.record)
        agent.pipeline.container_lookup = ContainerLookup(running, "containerd")
        await h.wait_for(
            lambda: sw.stats.probe_reloads > reloads and attached_in(2), timeout=90, what="reloaded for B"
        )
        after_reload = time.time_ns()
        await asyncio.to_thread(a.proc.calls, 5)
        await asyncio.to_thread(b.proc.calls, 11)
        # B stops: reloaded again, not sooner than RELOAD_MIN_SECONDS after the last reload began.
        monkeypatch.setattr(source_switch_purl, "RELOAD_MIN_SECONDS", 3.0)
        began, reloads = sw._reloaded_at, sw.stats.probe_reloads
        await asyncio.to_thread(b.proc.stop)
        b.record.status = "stopped"
        await h.wait_for(
            lambda: sw.stats.probe_reloads > reloads and attached_in(1), timeout=90, what="reloaded without B"
        )
        assert sw._reloaded_at - began >= 3.0
        await asyncio.to_thread(a.proc.calls, 2)
        await asyncio.sleep(0.5)  # the ring buffer is polled every 100 ms
        # Tetragon answers again: it is the source, and the node reports no PURL function as attached.
        server = ReplayServer([])
        await server.start(addr)
        try:
            await h.wait_for(lambda: sw.mode == source_switch.TETRAGON, timeout=30, what="back on Tetragon")
            assert purl_state(sw.stats) == ([], 0) and sw.purl is None
        finally:
            await server.stop(grace=0)
    finally:
        agent.stop("test done")
        assert await asyncio.wait_for(task, 60) == 0
    counts, purls = stored(db)
    # The moment between the old probes' detach and the new ones' attach is a node-wide gap (a window
    # holds one gap range, from its first gap's start to its last gap's end: it overlaps the reload).
    assert any(start <= after_reload and before_reload < end for start, end in gaps(db)), gaps(db)
    module = "/usr/bin/stella_purl_target"  # the path inside the container
    assert counts == {(DIGEST_A, module): 37 + 5 + 2, (DIGEST_B, module): 11}
    assert purls == {(DIGEST_A, INSTALLED), (DIGEST_B, INSTALLED)}


def test_purl_targets_past_the_node_bound_are_reported_not_probed(rootfs: Path) -> None:  # noqa: F811
    """The agent's own 64 uprobe targets fill the bound: the PURL function says why it is not probed."""
    own = tuple(UprobeTarget("/bin/true", f"f{i}") for i in range(64))
    base = NativeConfig(exec_events=False, uprobes=own)
    a = Chrooted(rootfs)
    w = wire([PurlFunction(POLICY, PURL, ("stella_pkg_fn",))], [("ctr-a", a.pid)], base)
    try:
        assert w.config.uprobes == base.uprobes and len(w.plan.targets()) == 1
        w.mark([f"uprobe {t.label()}" for t in base.uprobes], [])
        ((e,), omitted) = w.entries()
        assert omitted == 0
        assert (e["state"], e["containers"]) == ("error", 1)
        assert e["reason"] == "more than 64 uprobe targets on this node: not probed"
        assert w.probed({"ctr-a": DIGEST_A}) == {(DIGEST_A, "/usr/bin/stella_purl_target"): INSTALLED}
    finally:
        w.close()
        a.stop()
