"""Rust dependency lists embedded by cargo-auditable (the ``.dep-v0`` ELF section).

The section holds zlib-compressed JSON: ``{"packages": [{"name", "version",
"source", "kind", "dependencies", "root"}]}``; ``source`` is ``crates.io``,
``git``, ``local``, ``registry`` or ``builtin``, ``kind`` is ``runtime``
(the default, may be omitted) or ``build`` (build scripts and proc-macros,
whose code is not in the binary), ``root`` marks the crate the binary was
built from. Decompression is capped so a hostile section cannot balloon.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass

MAX_JSON_BYTES = 8 << 20
# A parsed crate costs ~180 bytes and a binary's answer is cached per image and per build-id:
# 8 MB of JSON could hold 170,000 crates (30 MB kept per binary). Real binaries link hundreds.
MAX_CRATES = 10_000


@dataclass(frozen=True, slots=True)
class Crate:
    name: str
    version: str
    source: str
    kind: str
    root: bool

    @property
    def crate_name(self) -> str:
        """The name Rust code uses (``serde-json`` -> ``serde_json``): what demangled paths show."""
        return self.name.replace("-", "_")


def parse_dep_v0(section: bytes) -> list[Crate]:
    """The packages of a ``.dep-v0`` section; ``ValueError`` when it is not that format."""
    try:
        d = zlib.decompressobj()
        raw = d.decompress(section, MAX_JSON_BYTES)
        if d.unconsumed_tail:
            raise ValueError(f".dep-v0 decompresses to more than {MAX_JSON_BYTES} bytes")
    except zlib.error as e:
        raise ValueError(f".dep-v0 is not zlib data: {e}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # deep nesting: RecursionError
        raise ValueError(f".dep-v0 is not JSON: {e}") from None
    packages = doc.get("packages") if isinstance(doc, dict) else None
    if not isinstance(packages, list):
        raise ValueError('.dep-v0 JSON has no "packages" list')
    if len(packages) > MAX_CRATES:
        raise ValueError(f".dep-v0 lists {len(packages)} packages, more than {MAX_CRATES}")
    out: list[Crate] = []
    for i, p in enumerate(packages):
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("name"), str)
            or not isinstance(p.get("version"), str)
        ):
            raise ValueError(f".dep-v0 package #{i} lacks a string name/version")
        out.append(
            Crate(
                name=p["name"],
                version=p["version"],
                source=str(p.get("source", "")),
                kind=str(p.get("kind", "runtime")),
                root=bool(p.get("root", False)),
            )
        )
    return out
