"""Which version of a Tetragon policy a node's report speaks of: by identity, not by clocks.

Tetragon's ``ListTracingPolicies`` names a loaded policy, and for an object
it loaded from the Kubernetes API its ``info`` also says which object and
version: ``<name> (object:<generation>/<uid>) (type:<kind>/<apiVersion>)``
(``TpInfo`` of Tetragon's v1alpha1 TracingPolicy types). The agent copies
the two into its ObservationNode's ``status.policies[]`` as
``objectGeneration`` and ``objectUid`` (``agent.capabilities.policy_entry``).
Tetragon reloads a policy when its generation changes, so a node that lists
the generation and uid of the object the operator last wrote has loaded that
version, and one that lists another has not, whenever the report was made.

So with identity no clock is compared: neither a report made after the
operator's write but before Tetragon reloaded (the agent polled in between)
nor an agent whose clock is ahead of the operator's can make a rollout Ready
on the previous version, and an agent whose clock is behind cannot hold it
pending for ever.

A report without identity (a Tetragon whose ``info`` is the name only; an
agent older than this field) keeps the time rule (``rollout.reported_before``).

A policy Tetragon read from a file or took through ``AddTracingPolicy``
has an ``info`` that names an object without identity, ``(object:0/)``: its
YAML carries no generation and no uid, which the API server sets on every
object it stores, ours included. The agent reports it with ``fromObject:
false`` (:func:`not_from_api`): such an entry is never our object, whatever
its name (one holding our name keeps Tetragon from loading ours there).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Version = tuple[str, int]  # (metadata.uid, metadata.generation) of a Tetragon object

# What Tetragon's TpInfo puts in TracingPolicyStatus.info for an object of the Kubernetes API.
_INFO_OBJECT = re.compile(r"\(object:(\d{1,19})/([0-9A-Za-z-]{1,128})\)")
# The same text for a policy that came from no Kubernetes object (a file, gRPC): no generation, no uid.
_INFO_NO_OBJECT = re.compile(r"\(object:0*/\)")
MAX_GENERATION = 2**63 - 1


def version_from_info(info: str) -> Version | None:
    """(uid, generation) from Tetragon's ``info`` text of a policy, or None when it names none."""
    found = _INFO_OBJECT.search(info or "")
    if found is None:
        return None
    generation = int(found.group(1))
    if not 0 < generation <= MAX_GENERATION:
        return None
    return found.group(2), generation


def info_without_object(info: str) -> bool:
    """Whether Tetragon's ``info`` says the policy came from no Kubernetes object (a file, gRPC)."""
    return _INFO_OBJECT.search(info or "") is None and _INFO_NO_OBJECT.search(info or "") is not None


def not_from_api(entry: Mapping[str, Any] | None) -> bool:
    """Whether a ``status.policies[]`` entry is of a policy Tetragon loaded from no Kubernetes object."""
    return entry is not None and entry.get("fromObject") is False


def reported_version(entry: Mapping[str, Any] | None) -> Version | None:
    """The version a ``status.policies[]`` entry says is loaded (None: it does not say, or not sanely)."""
    if entry is None:
        return None
    uid, generation = entry.get("objectUid"), entry.get("objectGeneration")
    if not isinstance(uid, str) or not uid or isinstance(generation, bool) or not isinstance(generation, int):
        return None
    return uid, generation


def object_version(obj: Mapping[str, Any] | None) -> Version | None:
    """(uid, generation) of an object as the operator knows it (None when either is missing)."""
    meta = (obj or {}).get("metadata")
    if not isinstance(meta, Mapping):
        return None
    uid, generation = meta.get("uid"), meta.get("generation")
    if not isinstance(uid, str) or not uid or isinstance(generation, bool) or not isinstance(generation, int):
        return None
    return uid, generation


def speaks_of(entry: Mapping[str, Any] | None, current: Version | None) -> bool | None:
    """Whether ``entry`` reports the ``current`` version: True, False, or None (no identity to compare)."""
    reported = reported_version(entry)
    if reported is None or current is None:
        return None
    return reported == current
