"""What a policy gives pods when some of its rendered Tetragon objects are not applied (``in_force``).

Each rendered object needs a level (the level label its podSelector
requires); with one missing, the policy gives at most the level just below
the lowest a missing object needs. Checked against ``render_policy``'s real
output for every object of a policy that renders all four kinds, so a
renamed object or a changed level label cannot leave the cap at the full
level.
"""

from __future__ import annotations

import pytest

from stellaops_runtime.contracts.crds import POLICY_KIND, parse_policy_spec
from stellaops_runtime.contracts.posture import Posture
from stellaops_runtime.controller.in_force import capped, in_force_cap, object_level
from stellaops_runtime.controller.posture import policy_view
from stellaops_runtime.controller.render_policy import render_policy

SPEC = parse_policy_spec(
    {
        "podSelector": {"matchLabels": {"app": "web"}},
        "maxLevel": "FullInstrumentation",
        "syscalls": ["execve"],
        "stackTraces": {"kernel": True},
        "functions": [{"binaryPath": "/usr/lib/libssl.so.3", "symbols": ["SSL_read"]}],
        "tcpState": True,
    },
    cluster=False,
)
OBJECTS = render_policy(kind=POLICY_KIND, name="web", namespace="shop", uid="u", spec=SPEC).tracing_policies
VIEW = policy_view(kind=POLICY_KIND, namespace="shop", name="web", spec=SPEC)


def test_every_rendered_object_has_the_level_of_its_probes() -> None:
    levels = {o["metadata"]["name"]: object_level(o) for o in OBJECTS}
    assert levels["stellaops-web"] == Posture.ACTIVE_TRACING
    assert levels["stellaops-web-stacks"] == Posture.EBPF_DEEP
    assert levels["stellaops-web-uprobes"] == Posture.EBPF_DEEP
    assert len(levels) == 4  # and the TCP state object


@pytest.mark.parametrize("missing", [o["metadata"]["name"] for o in OBJECTS])
def test_a_missing_object_caps_the_policy_below_its_level(missing: str) -> None:
    obj = next(o for o in OBJECTS if o["metadata"]["name"] == missing)
    cap = in_force_cap(OBJECTS, [missing])
    assert cap is not None and cap[0] < object_level(obj) and cap[0].rank == object_level(obj).rank - 1
    (view,) = capped([VIEW], {(POLICY_KIND, "shop", "web"): cap})
    assert view.max_level == cap[0] and missing in view.note


def test_nothing_missing_caps_nothing_and_a_cap_never_raises() -> None:
    assert in_force_cap(OBJECTS, []) is None
    low = policy_view(
        kind=POLICY_KIND,
        namespace="shop",
        name="web",
        spec=parse_policy_spec({"podSelector": {}, "maxLevel": "Passive"}, cluster=False),
    )
    assert capped([low], {(POLICY_KIND, "shop", "web"): (Posture.EBPF_DEEP, "x")}) == [low]
