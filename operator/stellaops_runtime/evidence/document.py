"""The seed's Evidence document for one (image, package, function).

Shape, as in the seed's "Evidence chain" (field names verbatim)::

    {"source": "signals/hot_symbols", "evidence_type": "runtime_observation",
     "data": {"image_digest", "purl", "function", "invocation_count",
              "observation_window": "<start>/<end>", "sample_stack": [...]},
     "confidence": 0.90, "timestamp": "..."}

plus what a policy engine needs to trust it: ``reachability_state`` (None:
defer to static analysis), ``rts`` (score, weight, scenario), ``reason``, and
in ``data`` the coverage and gaps the answer rests on, the watched and
call-free day counts, the busiest day, and the function IDs. Pure.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from stellaops_runtime.evidence.reachability import Assessment, assess
from stellaops_runtime.evidence.store_facts import Observation
from stellaops_runtime.store.queries import rfc3339

SOURCE = "signals/hot_symbols"
EVIDENCE_TYPE = "runtime_observation"


def sample_stack(obs: Observation) -> list[Any]:
    """The stack of the busiest row that kept a sample (after the privacy filter); [] when none."""
    for r in obs.rows:  # ordered by invocation count, highest first
        stack = (r.sample or {}).get("stack")
        if isinstance(stack, list) and stack:
            return stack
    return []


def evidence(
    obs: Observation, *, image: str, purl: str, function: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """The Evidence document (see the module docstring)."""
    a: Assessment = assess(obs.facts)
    f = obs.facts
    rows = obs.rows
    cov = obs.coverage
    data: dict[str, Any] = {
        "image_digest": image,
        "purl": obs.purls[0] if len(obs.purls) == 1 else purl,
        "function": function,
        "invocation_count": f.invocations,
        "observation_window": cov.interval if cov is not None else None,
        "sample_stack": sample_stack(obs),
        "first_seen": rfc3339(min(r.first_seen for r in rows)) if rows else None,
        "last_seen": rfc3339(max(r.last_seen for r in rows)) if rows else None,
        "function_ids": sorted({r.function_id for r in rows if r.function_id}),
        "purls": obs.purls,
        "max_calls_in_a_day": f.max_calls_in_a_day,
        "watched_days": f.watched_days,
        "days_without_calls": f.days_without_calls,
        "coverage": cov.to_json() if cov is not None else None,
        "gaps": [g.to_json() for g in obs.gaps],
    }
    return {
        "source": SOURCE,
        "evidence_type": EVIDENCE_TYPE,
        "data": data,
        "confidence": a.confidence,
        "timestamp": rfc3339(now or dt.datetime.now(dt.UTC)),
        "reachability_state": str(a.state) if a.state is not None else None,
        "defer_to_static_analysis": a.state is None,
        "rts": {"score": a.rts.score, "weight": a.rts.weight, "scenario": a.rts.scenario},
        "reason": a.reason,
    }
