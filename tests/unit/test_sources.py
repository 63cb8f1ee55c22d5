"""Pure parts of the sources: request filters, backoff, address checks, Tetragon drop metrics."""

from __future__ import annotations

import random

import pytest

from stellaops_runtime.contracts.config import parse_config
from stellaops_runtime.sources.tetragon_grpc import Backoff, build_request, service_address_warning
from stellaops_runtime.sources.tetragon_metrics import parse_drops
from stellaops_runtime.wire.tetragon import events_pb2


def test_filters_from_config_travel_in_the_request() -> None:
    cfg = parse_config(
        {
            "tetragon": {
                "allow": [{"namespaces": ["shop", ""], "eventTypes": ["PROCESS_UPROBE", "PROCESS_KPROBE"]}],
                "deny": [{"binaryRegex": ["^/usr/bin/kubectl$"]}, {"podRegex": ["^debug-"]}],
            }
        }
    ).tetragon
    req = build_request(cfg)
    wire = events_pb2.GetEventsRequest.FromString(req.SerializeToString())
    allow, signals = wire.allow_list  # the second lets Tetragon's drop signals through (no process)
    assert list(signals.event_set) == [events_pb2.PROCESS_THROTTLE, events_pb2.RATE_LIMIT_INFO]
    assert signals.ByteSize() == len(events_pb2.Filter(event_set=signals.event_set).SerializeToString())
    assert list(allow.namespace) == ["shop", ""]
    assert list(allow.event_set) == [events_pb2.PROCESS_UPROBE, events_pb2.PROCESS_KPROBE]
    assert [list(f.binary_regex) for f in wire.deny_list] == [["^/usr/bin/kubectl$"], []]
    assert [list(f.pod_regex) for f in wire.deny_list] == [[], ["^debug-"]]
    assert build_request(parse_config({}).tetragon).ByteSize() == 0  # no filters: everything


@pytest.mark.parametrize(
    ("address", "warns"),
    [
        ("tetragon.kube-system.svc:54321", True),
        ("tetragon.kube-system.svc.cluster.local:54321", True),
        ("localhost:54321", False),
        ("127.0.0.1:54321", False),
        ("unix:///var/run/tetragon/tetragon.sock", False),
        ("node-1.example.com:54321", False),
    ],
)
def test_cluster_service_addresses_warn(address: str, warns: bool) -> None:
    w = service_address_warning(address)
    assert (w is not None) == warns
    if w:
        assert "per node" in w


def test_backoff_is_capped_exponential_with_jitter_and_resets() -> None:
    b = Backoff(initial=0.2, maximum=2.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(10)]
    caps = [min(2.0, 0.2 * 2**i) for i in range(10)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, caps, strict=True))
    assert max(delays) <= 2.0 and len(set(delays)) == 10  # jittered
    b.reset()
    assert b.next_delay() <= 0.2


TETRAGON_METRICS = """\
# HELP tetragon_notify_overflowed_events_total (test fixture)
# TYPE tetragon_notify_overflowed_events_total counter
tetragon_notify_overflowed_events_total 17
# HELP tetragon_bpf_missed_events_total (test fixture)
# TYPE tetragon_bpf_missed_events_total counter
tetragon_bpf_missed_events_total{error="ENOSPC",msg_op="5"} 3
tetragon_bpf_missed_events_total{error="ENOSPC",msg_op="23"} 4
# HELP tetragon_events_total (test fixture)
# TYPE tetragon_events_total counter
tetragon_events_total{type="PROCESS_EXEC"} 1000
"""


def test_tetragon_drop_counters_are_summed_over_labels() -> None:
    assert parse_drops(TETRAGON_METRICS) == {
        "overflowed": 17.0, "bpf_missed": 7.0, "ringbuf_lost": 0.0,
        "ringbuf_queue_lost": 0.0, "missed_probes": 0.0,
    }  # fmt: skip
