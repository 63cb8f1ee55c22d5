"""A pod no native policy selects ran unwatched: its image's window gets a gap, never coverage.

The agent's own BCC probes fire node-wide; the pipeline then drops the events
of each pod no policy asking for the probe selects (agent/native_selection.py
``drops``, reasons ``not_selected`` and ``no_pod``), as Tetragon would never
have seen them. Before, nothing was kept of the drop: with
``lifecycle.enabled: false`` a selected pod of the same image on the node
backed a "not observed" about a function or syscall only the dropped pod
called. Now, for a pod no policy selects at all (or no pod), the agent marks
the image's whole window as a gap of source ``not_selected``
(hotsymbols/gaps.py ``GapTracker.not_selected``), as it does for the
namespace allowlist (``not_allowed``). Native events never take the
fast path of repeats (agent/pipeline.py ``process_native`` calls ``_finish``
directly), so the ordinary path is the only one. Seen failing before the fix
(no gap row; the tracker had no ``not_selected``). A pod selected by a policy
asking for other probes is watched at what its kept events show, as on a
Tetragon node: its drops mark nothing (else one app's syscall policy would make
every other app's image unknown; seen failing with the first version of the
fix, which marked every drop).
"""

from __future__ import annotations

from pathlib import Path

from stellaops_runtime.agent.native_selection import PodView
from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.crd_names import POLICY_KIND
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.lifecycle.lookup import ContainerLookup
from stellaops_runtime.lifecycle.registry import ContainerRecord
from tests.unit.test_native_pod_selection import OBSERVE, WEB, entry, pod, write_probes
from tests.unit.test_native_pod_selection_pipeline import bcc_exec, bcc_syscall

S = 1_000_000_000
W = 60 * S
T0 = 1_795_000_020 * S
IMG = "sha256:" + "b" * 64


def _record(cid: str, uid: str, name: str, cgroup: int) -> ContainerRecord:
    labels = {
        "io.kubernetes.pod.namespace": "shop", "io.kubernetes.pod.name": name, "io.kubernetes.pod.uid": uid,
        "io.kubernetes.container.name": "app",
    }  # fmt: skip
    return ContainerRecord(cid, "k8s.io", image_ref="img", image_digest=IMG, labels=labels,
                           status="running", pid=100 + cgroup, cgroup_id=cgroup)  # fmt: skip


BATCH = entry(
    POLICY_KIND, "batch", "shop", {"podSelector": {"matchLabels": {"app": "batch"}}, "syscalls": ["openat"]}
)


def _pipeline(tmp_path: Path) -> Pipeline:
    cfg = parse_config({
        "native": {"probeConfigFile": str(write_probes(tmp_path / "probes.json", WEB, BATCH))},
        "symbols": {"enabled": False}, "attribution": {"enabled": False},
        "hotSymbols": {"aggregationWindowSeconds": 60}, "lifecycle": {"enabled": False},
    })  # fmt: skip
    return Pipeline(cfg, node_name="n1")


def _two_pods(tmp_path: Path, app: str) -> Pipeline:
    """Two pods of ONE image: web-1 (app=web, selected by the policy asking for connect) in cgroup
    501 and web-2 (``app``) in cgroup 502."""
    p = _pipeline(tmp_path)
    assert p.native_selection is not None
    p.container_lookup = ContainerLookup(
        [_record("c-1", "uid-1", "web-1", 501), _record("c-2", "uid-2", "web-2", 502)]
    )
    p.native_selection.view = PodView([
        pod("uid-1", "shop", "web-1", {"app": "web", **OBSERVE}),
        pod("uid-2", "shop", "web-2", {"app": app, **OBSERVE}),
    ])  # fmt: skip
    return p


def test_a_pod_no_policy_selects_leaves_its_image_s_window_a_gap(tmp_path: Path) -> None:
    # Two pods of ONE image: web-1 (app=web) is selected by the policy asking for connect, web-2 is not.
    p = _two_pods(tmp_path, "cron")
    assert p.native_selection is not None
    n = 5
    batch = [(bcc_syscall(cg, "connect", 100 + cg), 1) for cg in (501, 502) for _ in range(n)]
    batch += [(bcc_exec(501, 601), 1)]
    p.process_native(batch)
    assert p.native_selection.dropped["not_selected"] == n
    _, windows = p.drain()
    assert windows and {w.image_digest for w in windows} == {IMG}  # web-1's counts and web-2's gap
    for w in windows:  # one window (two only if the batch's 1 ms straddles a minute)
        assert w.gap_end_ns, "the unselected pod's connect calls were dropped with no gap"
        assert w.source.split(",")[-1] == "not_selected" and w.node_name == "n1"
        assert (w.gap_start_ns, w.gap_end_ns - w.gap_start_ns) == (w.window_start_ns, W)  # the whole window
    assert sum(w.event_count for w in windows) == n + 1  # web-1's connect calls and exec: nothing of web-2


def test_a_pod_selected_for_other_probes_marks_nothing(tmp_path: Path) -> None:
    p = _two_pods(tmp_path, "batch")  # web-2 selected by BATCH: openat only
    assert p.native_selection is not None
    n = 5
    p.process_native([(bcc_syscall(cg, "connect", 100 + cg), 1) for cg in (501, 502) for _ in range(n)])
    assert p.native_selection.dropped["not_selected"] == n
    _, windows = p.drain()
    assert windows and not [w for w in windows if w.gap_end_ns], "a watched pod's other probe marked a gap"
    assert sum(w.event_count for w in windows) == n


def test_a_container_with_no_pod_leaves_its_image_s_window_a_gap_and_a_host_process_none(
    tmp_path: Path,
) -> None:
    """The ``no_pod`` drop (docs/operations.md "Gaps": "or an event of a container with no pod"): a
    container the runtime runs outside any pod (``ctr run``, no io.kubernetes labels) is selected by
    no podSelector, so its dropped probe events mark its image's window, as an unselected pod's do;
    a host process (no container: image ``host:<node>``) marks nothing. Seen failing
    with the no_pod branch not setting ``dropped_unwatched`` (no gap row)."""
    p = _pipeline(tmp_path)
    assert p.native_selection is not None
    bare = ContainerRecord("c-3", "default", image_ref="img", image_digest=IMG, labels={},
                           status="running", pid=103, cgroup_id=503)  # fmt: skip
    p.container_lookup = ContainerLookup([_record("c-1", "uid-1", "web-1", 501), bare])
    p.native_selection.view = PodView([pod("uid-1", "shop", "web-1", {"app": "web", **OBSERVE})])
    n = 3
    # web-1's watched connects; then the podless container's; then a host process's (cgroup 0: no container).
    batch = [(bcc_syscall(501, "connect", 601), 1) for _ in range(n)]
    batch += [(bcc_syscall(cg, "connect", pid), 1) for cg, pid in ((503, 603), (0, 609)) for _ in range(n)]
    p.process_native(batch)
    assert p.native_selection.dropped["no_pod"] == 2 * n
    _, windows = p.drain()
    assert windows and {w.image_digest for w in windows} == {IMG}, "the host process marked a gap"
    for w in windows:
        assert w.gap_end_ns, "the podless container's connect calls were dropped with no gap"
        assert w.source.split(",")[-1] == "not_selected"
    assert p.gaps.stats.not_selected["n1"] == n  # the container's drops; the host process's none


def test_what_a_not_selected_drop_marks() -> None:
    g = GapTracker(window_seconds=60)
    g.not_selected(IMG, "n1", T0)
    g.not_selected(IMG, "n1", T0 + S)  # the same window: one key
    g.not_selected("host:n1", "n1", T0)  # a host process: no podSelector matches any, never a partial watch
    g.not_selected("container:" + "c" * 64, "n1", T0 + W)  # no digest: it could be any image here
    g.not_selected(IMG, "n1", 0)  # no time: nothing to place
    rows = sorted(((w.image_digest, w.window_start_ns, w.source) for w in g.drain([])), key=repr)
    start = T0 - T0 % W
    assert rows == [(NODE_WIDE, start + W, "not_selected"), (IMG, start, "not_selected")]
    assert g.stats.not_selected["n1"] == 3
