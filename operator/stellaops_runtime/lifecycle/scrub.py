"""A container's runtime metadata through the privacy filter before it leaves the observer.

Whoever starts a container chooses its labels, annotations and image name
(``--label db.password=...``, an annotation holding a token, ``ctr`` and
containerd's API accept any image name, ``https://user:pass@registry/app``).
The environment has always been filtered before it reaches a record; these
are filtered here, once, as each record or image event is made, so the
registry, every lifecycle event and whatever shows or keeps them (the
``containers`` CLI, a log line, the pipeline's fallback image key) hold only
the filtered text:

- each label or annotation as an environment entry ``key=value`` (a key named
  like a secret loses its value, any value goes through the argument rules);
  a key holding ``=`` loses its value (it cannot be told from its value);
- the keys the observer itself reads (pod and container identity, the CRI
  kind, the scan id, the opt-out label and annotation) stay as they are: they
  name things, and filtering them would change what is observed;
- the image reference through the argument rules (``user:pass@`` and
  ``?token=`` are masked; a reference by name, tag or digest is unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from stellaops_runtime.contracts.lifecycle import (
    CONTAINER_NAME_LABEL,
    POD_NAME_LABEL,
    POD_NAMESPACE_LABEL,
    SCAN_ID_LABEL,
)
from stellaops_runtime.contracts.posture import OBSERVE_LEVEL_ANNOTATION, OBSERVE_OFF_LABEL
from stellaops_runtime.lifecycle.registry import CRI_KIND_LABEL, POD_UID_LABEL, ContainerRecord
from stellaops_runtime.privacy.image_refs import redact_ref
from stellaops_runtime.privacy.patterns import REDACTED

# Read by the observer, the lookup and the opt-out: kept as they are.
IDENTITY_KEYS = frozenset(
    {
        POD_NAMESPACE_LABEL,
        POD_NAME_LABEL,
        POD_UID_LABEL,
        CONTAINER_NAME_LABEL,
        CRI_KIND_LABEL,
        SCAN_ID_LABEL,
        OBSERVE_OFF_LABEL,
        OBSERVE_LEVEL_ANNOTATION,
    }
)


class Privacy(Protocol):
    """The two methods of the privacy filter (privacy/filter.py) used here."""

    def filter_env(self, env: list[str]) -> list[str]: ...

    def redact_text(self, text: str, *, tool: str = "") -> str: ...


def scrub_map(values: Mapping[str, str], privacy: Privacy) -> dict[str, str]:
    """Labels or annotations with each value filtered as the environment entry ``key=value``."""
    out: dict[str, str] = {}
    for k, v in values.items():
        if k in IDENTITY_KEYS:
            out[k] = v
            continue
        entry = privacy.filter_env([f"{k}={v}"])[0] if "=" not in k else REDACTED
        out[k] = entry[len(k) + 1 :] if entry.startswith(k + "=") else REDACTED
    return out


def scrub_ref(ref: str, privacy: Privacy) -> str:
    """An image reference with any credential or token in it masked (part by part: privacy/image_refs.py)."""
    return redact_ref(ref, privacy.redact_text) if ref else ref


def scrub(rec: ContainerRecord, privacy: Privacy) -> ContainerRecord:
    """``rec`` with its labels, annotations and image reference filtered (in place; returned)."""
    rec.labels = scrub_map(rec.labels, privacy)
    rec.annotations = scrub_map(rec.annotations, privacy)
    rec.pod_annotations = scrub_map(rec.pod_annotations, privacy)
    rec.image_ref = scrub_ref(rec.image_ref, privacy)
    return rec
