"""An empty ``tetragon.deny`` filter is refused (review of s39/G 7fc4a0d).

Tetragon ANDs a filter's set fields, so a filter that sets none matches every event
(replay/filters.py follows the same rule). As a deny filter (``deny: [{}]``, or a
``namespaces: []`` left behind by an edit) it made Tetragon send the agent nothing, not
even the drop signals 7fc4a0d lets through an allow list, while the stream stayed
connected and healthy: the node looked watched with no event and no gap. The agent now
refuses the configuration (exit 2 at start, like any bad key). An empty allow filter
lets everything through, as no allow list does: accepted as before.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.config import ConfigError, parse_config
from stellaops_runtime.replay.events import ReplayEvent
from stellaops_runtime.replay.filters import compile_request
from stellaops_runtime.sources.tetragon_grpc import build_request
from stellaops_runtime.wire.tetragon import events_pb2, tetragon_pb2


@pytest.mark.parametrize(
    "deny",
    [[{}], [{"namespaces": []}], [{"namespaces": ["kube-system"]}, {"podRegex": [], "eventTypes": []}]],
)
def test_a_deny_filter_that_sets_no_field_is_refused(deny: list[dict]) -> None:
    with pytest.raises(ConfigError, match=r"tetragon\.deny\.\d sets no field"):
        parse_config({"tetragon": {"deny": deny}})


def test_filters_that_set_a_field_and_an_empty_allow_filter_are_accepted() -> None:
    cfg = parse_config({"tetragon": {"allow": [{}], "deny": [{"namespaces": ["kube-system"]}]}})
    assert len(cfg.tetragon.allow) == 1 and cfg.tetragon.deny[0].namespaces == ["kube-system"]


def test_an_empty_deny_filter_would_deny_every_event_even_the_drop_signals() -> None:
    """Why it is refused: by Tetragon's rule, the request such a config made matched nothing."""
    req = events_pb2.GetEventsRequest(deny_list=[events_pb2.Filter()])
    flt = compile_request(req)
    throttle = events_pb2.GetEventsResponse(process_throttle=tetragon_pb2.ProcessThrottle(cgroup="x"))
    assert not flt.accepts(ReplayEvent.from_message(throttle))
    assert build_request(parse_config({"tetragon": {"deny": [{"namespaces": ["a"]}]}}).tetragon).deny_list
