"""End to end: a pod of an image in a namespace the privacy allowlist leaves out; a question is never "no".

``privacy.allowedNamespaces`` drops every event of a pod outside the listed
namespaces (privacy/filter.py), as the opt-out drops an opted-out pod's. The
synthetic stream (four images on three nodes) is changed so that pod
``billing-70-25165`` runs in namespace ``dev``, which the agent's allowlist
leaves out, and the other pod of the same image, ``billing-70-2c014`` (in
``shop``, listed), never calls ``uncompress``. The ground truth: in that
image, ``uncompress`` ran, only in the pod whose namespace is not watched.

The real agent reads the stream over gRPC from the replay server into SQLite
(no lifecycle observer, as where no runtime socket is mounted), and ``stella-runtime
query observed`` is asked about it. "not observed" (exit 1) is a wrong
answer: a pod of the image ran unwatched, and the agent saw its events
arrive. The answer must be unknown (exit 3), naming that gap. A function the
watched pod called stays "observed" with exactly the watched pod's count, and
nothing of the dropped pod is stored.

Seen failing before the fix: exit 1 "not_observed" (the allowlist's drop left
no gap, so the watched pod's windows alone backed a "no").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e import harness as h
from tests.e2e import unwatched_pod as u

pytestmark = [pytest.mark.e2e]


def _to_dev(pod: dict[str, Any]) -> None:
    pod["namespace"] = "dev"


async def test_a_function_only_a_pod_outside_the_allowed_namespaces_called_is_unknown(
    tmp_path: Path, sqlite_at_head: Any
) -> None:
    objs, filtered, inflate = u.stream(_to_dev)
    assert filtered > 100 and inflate > 0
    waits: list[u.Waited] = [
        (
            lambda port: (
                h.metric(
                    h.scrape(port), "stellaops_runtime_events_filtered_total", reason="namespace_not_allowed"
                )
                == filtered
            ),
            "every event of the filtered pod dropped",
        ),
    ]
    privacy = {"allowedNamespaces": ["shop", "payments", "default"]}
    out = await u.run_agent(tmp_path, objs, sqlite_at_head(tmp_path / "hot.db"), waits, privacy=privacy)
    u.assert_answers(tmp_path, out, inflate, "privacy.allowedNamespaces", "not_allowed")
