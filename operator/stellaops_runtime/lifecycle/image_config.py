"""The config digest of an image, read from its manifest: the CRI's image id beside the manifest digest.

For an image with no repo digest (``ctr import`` without a digest reference, ``kind load``)
Kubernetes' CRI names the image by its image id, the digest of its config: kubelet's
``imageID`` and so Tetragon's ``pod.container.image.id``. The containerd observer names
it by its target in the image store, the manifest (or index) digest, which registries and
SBOMs name. The registry keeps both (``ContainerRecord.image_config``) so that the pipeline
files a Tetragon event naming the config digest under the manifest digest
(lifecycle/lookup.py ``enrich``): one key per image, whichever source saw it.

Pure parsing of what containerd's content store holds (untrusted bytes: any JSON, any size the
client let through); every failure is ``""``, which pairs nothing and rewrites nothing.
"""

from __future__ import annotations

import json
import platform
import re

MAX_BLOB = 4 << 20  # a manifest or index larger than this is not read (real ones are a few KiB)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}")
# Go's GOARCH for Python's platform.machine(): the names an index's platform entries use.
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}  # fmt: skip


def host_arch() -> str:
    """This node's architecture as an OCI index names it (``amd64``, ``arm64``, ...)."""
    m = platform.machine().lower()
    return _GOARCH.get(m, m)


def _doc(raw: bytes) -> dict[str, object] | None:
    if not raw or len(raw) > MAX_BLOB:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def _digest(value: object) -> str:
    if not isinstance(value, str):
        return ""
    d = value.lower()
    return d if _DIGEST.fullmatch(d) else ""


def is_index(raw: bytes) -> bool:
    """Whether the blob is an image index (or Docker manifest list): it lists manifests, no config."""
    doc = _doc(raw)
    return doc is not None and "manifests" in doc


def config_digest(raw: bytes) -> str:
    """The config digest of an image manifest (``config.digest``, lower-cased), else ""."""
    doc = _doc(raw)
    config = doc.get("config") if doc is not None else None
    return _digest(config.get("digest")) if isinstance(config, dict) else ""


def pick_manifest(raw: bytes, arch: str) -> str:
    """The digest of the index's one manifest for ``linux/<arch>``, or of its only entry when that
    names no platform; "" when none, or more than one, fits (which the CRI unpacked is then unknown)."""
    doc = _doc(raw)
    entries = doc.get("manifests") if doc is not None else None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        return ""
    if len(entries) == 1 and "platform" not in entries[0]:
        return _digest(entries[0].get("digest"))
    fits = []
    for e in entries:
        p = e.get("platform")
        if isinstance(p, dict) and p.get("os") == "linux" and p.get("architecture") == arch:
            fits.append(_digest(e.get("digest")))
    return fits[0] if len(fits) == 1 else ""
