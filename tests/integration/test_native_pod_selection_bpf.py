"""Issue 14 on the real kernel: a policy's PURL function counts only in the pods the policy selects.

The in-process Agent runs its real BCC probes (Tetragon unreachable). Two
"containers" of two pods are real chrooted processes in cgroups of their own
(tests/integration/test_agent_purl_functions.py), both running the same file,
so one uprobe on that file fires in both. The policy is rendered by the
operator's own functions; the pod view is given as the agent's lister would
publish it. Then:

- the function is attached in the selected pod's container only (the
  ObservationNode entry says 1 container); N calls there are stored as
  exactly N, and M calls in the other pod are stored as 0 and counted as M
  dropped (``not_selected``);
- the other pod is relabelled into the selector: the probes are re-wired for
  both containers (2), and its next K calls are stored as exactly K.
Needs root and BPF (marked ``bpf``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from stellaops_runtime.agent import source_switch, source_switch_purl
from stellaops_runtime.agent.native_selection import PodView
from stellaops_runtime.agent.node_status import purl_state
from stellaops_runtime.agent.runner import Agent
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crd_names import POLICY_KIND
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.native.detect import detect
from tests.e2e import harness as h
from tests.integration.test_agent_purl_functions import DIGEST_A, DIGEST_B, Contained, contained, stored
from tests.integration.test_native_purl import PURL, rootfs
from tests.unit.test_native_pod_selection import DEEP, entry, pod, write_probes

__all__ = ["contained", "rootfs"]  # the fixtures imported above

POLICY = entry(
    POLICY_KIND, "web", "shop",
    {"podSelector": {"matchLabels": {"app": "web"}}, "maxLevel": "EbpfDeep",
     "functions": [{"purl": PURL, "symbols": ["stella_pkg_fn"]}]},
)  # fmt: skip


def in_pod(c: Contained, uid: str, name: str) -> None:
    c.record.labels.update({
        "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.uid": uid, "io.kubernetes.container.name": "app",
    })  # fmt: skip


@pytest.mark.bpf
async def test_a_purl_function_counts_only_in_the_selected_pod_and_follows_a_label_change(
    tmp_path: Path, rootfs: Path, contained: list[Contained], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = str(Path(".cache/native").resolve())  # noqa: ASYNC240
    rep = await asyncio.to_thread(detect, mount_tracefs=True, compile_test=True, cache_dir=cache)
    if rep.posture < Posture.EBPF_DEEP:
        pytest.skip(f"native probes give {rep.posture} here: {rep.missing}")
    monkeypatch.setattr(source_switch_purl, "RELOAD_MIN_SECONDS", 0.5)
    probes = write_probes(tmp_path / "probes.json", POLICY)
    assert json.loads(probes.read_text())["policies"][POLICY[0]]["functions"][0]["purl"] == PURL
    db = tmp_path / "hot.db"
    cfg = parse_config({
        "tetragon": {"address": f"127.0.0.1:{h.free_port()}", "connectionTimeout": 0.3},
        "store": {"url": f"sqlite:///{db}"},
        "metrics": {"address": "127.0.0.1", "port": 0},  # not 8080: another worker's agent may hold it
        "native": {"fallbackAfterSeconds": 0.2, "tetragonCheckSeconds": 0.5, "probeConfigFile": str(probes)},
    })  # fmt: skip
    a, b = Contained(rootfs, "sel-a", DIGEST_A), Contained(rootfs, "sel-b", DIGEST_B)
    contained += [a, b]
    in_pod(a, "uid-a", "web-a")
    in_pod(b, "uid-b", "db-b")
    running = [a.record, b.record]
    agent = Agent(cfg, node_name="sel-node")
    sw, sel = agent.source, agent.pipeline.native_selection
    assert isinstance(sw, source_switch.SourceSwitch) and sel is not None
    assert agent.pod_view is None  # no observationNode: the test publishes the view itself
    sw.containers = lambda: list(running)
    agent.pipeline.container_lookup = ContainerLookup(running, "containerd")
    sel.view = PodView([pod("uid-a", "shop", "web-a", {"app": "web", **DEEP}),
                        pod("uid-b", "shop", "db-b", {"app": "db", **DEEP})])  # fmt: skip
    task = asyncio.create_task(agent.run())

    def attached_in(n: int) -> bool:
        got = purl_state(sw.stats)
        e = {(x["purl"], x["symbol"]): x for x in got[0]}.get((PURL, "stella_pkg_fn")) if got else None
        return bool(sw.stats.connected and e and e["state"] == "attached" and e["containers"] == n)

    n, m, k = 23, 17, 9
    try:
        await h.wait_for(lambda: attached_in(1), timeout=90, what="attached in the selected pod only")
        await asyncio.to_thread(a.proc.calls, n)
        await asyncio.to_thread(b.proc.calls, m)  # the same file: the probe fires, the pipeline drops
        await h.wait_for(lambda: sel.dropped["not_selected"] >= m, timeout=30, what="B's calls dropped")
        reloads = sw.stats.probe_reloads
        sel.view = PodView([pod("uid-a", "shop", "web-a", {"app": "web", **DEEP}),
                            pod("uid-b", "shop", "db-b", {"app": "web", **DEEP})])  # fmt: skip
        await h.wait_for(lambda: sw.stats.probe_reloads > reloads and attached_in(2), timeout=90,
                         what="re-wired for both pods")  # fmt: skip
        await asyncio.to_thread(b.proc.calls, k)
        await asyncio.sleep(0.5)  # the ring buffer is polled every 100 ms
    finally:
        agent.stop("test done")
        assert await asyncio.wait_for(task, 60) == 0
    counts, _ = stored(db)
    module = "/usr/bin/stella_purl_target"
    assert counts == {(DIGEST_A, module): n, (DIGEST_B, module): k}
    assert sel.dropped["not_selected"] == m and sel.dropped["no_pod"] == 0
