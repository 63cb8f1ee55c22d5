"""A pod outside ``privacy.allowedNamespaces`` ran unwatched: its image's window gets a gap, never coverage.

The namespace allowlist (privacy/filter.py) drops such a pod's events before
anything counts them, as the opt-out does. Before, nothing was kept of the drop,
so another pod of the same image in a listed namespace backed a "not observed"
about a function only the dropped pod ran (tests/e2e/test_privacy_namespace_gap.py).
Now the agent marks the image's whole window as a gap of source ``not_allowed``
(hotsymbols/gaps.py ``GapTracker.not_allowed``), on the ordinary path and on the
fast path of repeats alike. Seen failing before the fix (no gap row; the tracker
had no ``not_allowed``).
"""

from __future__ import annotations

import pytest

from stellaops_runtime.agent.pipeline import Pipeline
from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.contracts.hotsymbols import NODE_WIDE
from stellaops_runtime.hotsymbols.gaps import GapTracker
from stellaops_runtime.wire.tetragon import events_pb2

S = 1_000_000_000
W = 60 * S
T0 = 1_795_000_020 * S  # 2026-11-19, 20 s into a minute
IMG = "sha256:" + "b" * 64


def _kprobe(t_ns: int, namespace: str, pod: str, cid: str) -> bytes:
    m = events_pb2.GetEventsResponse()
    k = m.process_kprobe
    p = k.process
    p.exec_id, p.binary, p.arguments = f"exec-{pod}", "/app/web", "--port 8080"
    p.pid.value = 4242
    p.pod.namespace, p.pod.name = namespace, pod
    p.pod.container.id = "containerd://" + cid * 64
    p.pod.container.image.id = "registry.example.com/shop/web@" + IMG
    k.function_name, k.policy_name = "__x64_sys_write", "stellaops-syscalls"
    f = k.user_stack_trace.add()
    f.module, f.offset, f.symbol = "/usr/lib/libx.so", 0x1234, "hint"
    m.node_name = "node-a"
    m.time.FromNanoseconds(t_ns)
    return m.SerializeToString()


@pytest.mark.parametrize("fast", [False, True], ids=["ordinary", "fast-path"])
def test_a_pod_outside_the_allowlist_leaves_its_image_s_window_a_gap(fast: bool) -> None:
    cfg = parse_config({
        "symbols": {"enabled": False}, "attribution": {"enabled": False},
        "hotSymbols": {"aggregationWindowSeconds": 60}, "privacy": {"allowedNamespaces": ["shop"]},
    })  # fmt: skip
    pipe = Pipeline(cfg, node_name="node-a", fast_path=fast)
    # The listed pod in the first and sixth minutes; the other pod (namespace dev) in the four between,
    # many times: the fast path answers the repeats of the later minutes alone.
    items = [_kprobe(T0 + i * S, "shop", "web-1", "a") for i in range(3)]
    items += [_kprobe(T0 + W + i * 6 * S, "dev", "web-2", "c") for i in range(40)]
    items += [_kprobe(T0 + 5 * W + i * S, "shop", "web-1", "a") for i in range(3)]
    for i in range(0, len(items), 8):
        pipe.process_proto([(x, 0) for x in items[i : i + 8]])
    _, windows = pipe.drain()
    assert pipe.privacy.events_filtered == 40
    minute = (T0 - T0 % W) // S
    gaps = sorted(
        (w.window_start_ns // S - minute, w.source, (w.gap_end_ns - w.gap_start_ns) // S)
        for w in windows
        if w.gap_end_ns
    )
    assert gaps == [(m * 60, "not_allowed", 60) for m in (1, 2, 3, 4)]  # the dropped pod's whole windows
    for gap in (w for w in windows if w.gap_end_ns):
        assert (gap.image_digest, gap.node_name, gap.event_count) == (IMG, "node-a", 0)  # no count of it
    counted = {(w.window_start_ns // S - minute, w.event_count) for w in windows if w.event_count}
    assert counted == {(0, 3), (300, 3)}  # only the listed pod's events


def test_what_a_dropped_event_marks() -> None:
    g = GapTracker(window_seconds=60)
    g.not_allowed(IMG, "n1", T0)
    g.not_allowed(IMG, "n1", T0 + S)  # the same window: one key
    g.not_allowed("host:n1", "n1", T0)  # a host process: all or none pass, never a partial watch
    g.not_allowed("container:" + "c" * 64, "n1", T0 + W)  # no digest: it could be any image here
    g.not_allowed(IMG, "n1", 0)  # no time: nothing to place
    rows = sorted(((w.image_digest, w.window_start_ns, w.source) for w in g.drain([])), key=repr)
    start = T0 - T0 % W
    assert rows == [(NODE_WIDE, start + W, "not_allowed"), (IMG, start, "not_allowed")]
    assert g.stats.not_allowed["n1"] == 3
