"""The ObservationNode status as a merge patch the API server takes: no empty strings in it.

The v1.20 API server (the one tests/realkube runs) refuses an empty string
anywhere in a merge patch of a custom resource, as if it were null ("must
be of type string: null"), and refuses the whole patch with it: one empty
text (a PURL function attached, whose ``reason`` is empty; an empty
``maxPostureReason``) cost the agent every status write, its heartbeat too,
and its node went stale. So before the patch is sent an empty string under
a key of an object becomes null (a merge patch then takes away what an
earlier write left there), and one inside a list (whose items the patch
replaces whole, where null is refused too) is left out.
"""

from __future__ import annotations

from typing import Any


def patchable(value: Any, *, in_list: bool = False) -> Any:
    """``value`` with its empty strings turned into null, or left out inside lists (see the module)."""
    if isinstance(value, dict):
        return {
            k: (None if v == "" else patchable(v, in_list=in_list))
            for k, v in value.items()
            if not (in_list and v == "")
        }
    if isinstance(value, list):
        return [patchable(v, in_list=True) for v in value if v != ""]
    return value
