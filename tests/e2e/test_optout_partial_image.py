"""End to end: one pod of an image opted out, another watched; a question about the image is never "no".

The synthetic stream (four images on three nodes) is changed so that pod
``billing-70-25165`` carries ``stellaops.io/observe-level: none`` and the
other pod of the same image, ``billing-70-2c014``, never calls
``uncompress`` (its events naming it are removed). The ground truth: in
that image, ``uncompress`` ran, only in the pod that opted out. The real
agent reads the stream over gRPC from the replay server into SQLite, and
``stella-runtime query observed`` is asked about it.

Privacy keeps the opted-out pod's calls out of the store, so "observed" is
not possible; "not observed" (exit 1) is a wrong answer, as a pod of the
image ran unwatched. The answer must be unknown (exit 3), naming the opt-out.
A function the watched pod called stays "observed" with exactly the watched
pod's count.

Expected to fail until the agent marks an opted-out pod's events as its
image's gap: ``hotsymbols/gaps.py`` ``GapTracker.opted_out`` exists, but the
two places that drop such events (``agent/pipeline.py`` ``_finish`` and
``agent/fastpath.py``) do not call it yet (helper H5's report, session s30).
Seen: exit 1 "not_observed" without those calls, exit 3 with them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stellaops_runtime.contracts.crds import OBSERVE_LEVEL_ANNOTATION
from tests.e2e import harness as h
from tests.e2e import unwatched_pod as u

pytestmark = [pytest.mark.e2e]


def _opt_out(pod: dict[str, Any]) -> None:
    pod["pod_annotations"] = {OBSERVE_LEVEL_ANNOTATION: "none"}


async def test_a_function_only_an_opted_out_pod_called_is_unknown(
    tmp_path: Path, sqlite_at_head: Any
) -> None:
    objs, opted, inflate = u.stream(_opt_out)
    assert opted > 100 and inflate > 0
    waits: list[u.Waited] = [
        (
            lambda port: (
                h.metric(h.scrape(port), "stellaops_runtime_events_received_total", source="tetragon-grpc")
                == len(objs)
            ),
            "every event received",
        ),
        (
            lambda port: (
                h.metric(h.scrape(port), "stellaops_runtime_events_opted_out_total", reason="annotation")
                == opted
            ),
            "every opted-out event dropped",
        ),
    ]
    out = await u.run_agent(tmp_path, objs, sqlite_at_head(tmp_path / "hot.db"), waits)
    u.assert_answers(tmp_path, out, inflate, "opted out of observation", "opted_out")
