"""CycloneDX (1.4-1.7) and SPDX (2.2, 2.3) JSON documents -> which package claims which file.

An SBOM says three kinds of things the attributor can use, each kept here
as plain data (no file is read in this module):

- **path claims**: CycloneDX ``evidence.occurrences[].location`` of a
  component, syft's ``syft:location:<n>:path`` properties, components of
  type ``file`` nested under a package component or listed in a package's
  ``dependencies`` entry (how sbom4python links its file components); SPDX
  ``files`` that a package ``hasFiles`` or is related to by
  ``CONTAINS``/``CONTAINED_BY``. Paths are taken relative to the image root
  (``./usr/bin/x``, ``usr/bin/x`` and ``/usr/bin/x`` are the same file).
- **hash claims**: SHA-256/SHA-1 digests of those files, and of the package
  components themselves (a JAR's digest is the JAR file's), so a file that
  moved is still recognized. The empty file's digests are ignored (every
  empty ``py.typed`` would match).
- **package identities**: every component/package PURL, so a file the
  image's own databases attribute can carry the SBOM's PURL for that same
  package (see :mod:`~stellaops_runtime.attribution.attributor`).

Structural damage (not JSON, not a CycloneDX/SPDX object, an unsupported
version, a list that is not a list) is a ``sbom_malformed``
:class:`AttributionError`; a single component with an unparsable PURL or a
path outside the root is a warning and that component is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from packageurl import PackageURL

from stellaops_runtime.attribution import purls
from stellaops_runtime.attribution.model import AttributionError, ErrorKind, Package
from stellaops_runtime.attribution.rootfs import normalize

CYCLONEDX_VERSIONS = frozenset({"1.4", "1.5", "1.6", "1.7"})
SPDX_VERSIONS = frozenset({"SPDX-2.2", "SPDX-2.3"})

_ALGS = {"SHA-256": "sha256", "SHA-1": "sha1", "SHA256": "sha256", "SHA1": "sha1"}
EMPTY_DIGESTS = frozenset(
    {
        ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("sha256", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    }
)


@dataclass(slots=True)
class SbomData:
    """What one SBOM document claims."""

    origin: str
    format: str  # "CycloneDX 1.6", "SPDX-2.3"
    packages: list[Package] = field(default_factory=list)
    paths: list[tuple[str, int]] = field(default_factory=list)  # (normalized in-root path, package index)
    hashes: dict[tuple[str, str], set[int]] = field(default_factory=dict)  # (alg, hex) -> package indexes
    warnings: list[str] = field(default_factory=list)
    _by_purl: dict[str, int] = field(default_factory=dict, repr=False)

    def add_package(self, purl_text: str, *, what: str) -> int | None:
        try:
            p = PackageURL.from_string(purl_text)
        except ValueError as e:
            self.warnings.append(f"{self.origin}: {what}: invalid purl {purl_text!r}: {e}")
            return None
        canonical = purls.purl_text(p)  # a name's ``/`` as ``%2F``: ``a/b`` is another package
        idx = self._by_purl.get(canonical)
        if idx is None:
            idx = len(self.packages)
            self._by_purl[canonical] = idx
            name = f"{p.namespace}/{p.name}" if p.namespace and p.type == "npm" else p.name
            self.packages.append(Package(canonical, name, p.version or None))
        return idx

    def claim_path(self, raw: Any, owner: int, *, what: str) -> None:
        if not isinstance(raw, str) or not raw.strip():
            self.warnings.append(f"{self.origin}: {what}: file location {raw!r} is not a path")
            return
        text = raw.strip().removeprefix("file://")
        try:
            path = normalize(text)
        except AttributionError:
            self.warnings.append(f"{self.origin}: {what}: file location {raw!r} is outside the image root")
            return
        self.paths.append((path, owner))

    def claim_hashes(self, items: Any, owner: int, *, alg_key: str, value_key: str, what: str) -> None:
        if items is None:
            return
        if not isinstance(items, list):
            raise _malformed(f"{self.origin}: {what}: hashes/checksums is not a list")
        for h in items:
            if not isinstance(h, dict):
                raise _malformed(f"{self.origin}: {what}: a hash entry is not an object")
            alg = _ALGS.get(str(h.get(alg_key, "")).upper())
            value = h.get(value_key)
            if alg is None or not isinstance(value, str):
                continue
            key = (alg, value.strip().lower())
            if key not in EMPTY_DIGESTS:
                self.hashes.setdefault(key, set()).add(owner)


def _malformed(message: str) -> AttributionError:
    return AttributionError(ErrorKind.SBOM_MALFORMED, message)


def _list(doc: dict[str, Any], key: str, origin: str) -> list[Any]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _malformed(f"{origin}: {key!r} is {type(value).__name__}, not a list")
    return value


def parse_sbom(data: bytes, *, origin: str) -> SbomData:
    """Parse a CycloneDX or SPDX JSON document (bytes as read from the file)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # deep nesting: RecursionError
        raise _malformed(f"{origin}: not JSON: {e}") from None
    return parse_document(doc, origin=origin)


def parse_document(doc: Any, *, origin: str) -> SbomData:
    if not isinstance(doc, dict):
        raise _malformed(f"{origin}: an SBOM is a JSON object, got {type(doc).__name__}")
    if doc.get("bomFormat") == "CycloneDX":
        return _cyclonedx(doc, origin)
    if isinstance(doc.get("spdxVersion"), str):
        return _spdx(doc, origin)
    raise _malformed(f"{origin}: neither CycloneDX JSON (bomFormat) nor SPDX JSON (spdxVersion)")


# -- CycloneDX --------------------------------------------------------------------


def _cyclonedx(doc: dict[str, Any], origin: str) -> SbomData:
    spec = str(doc.get("specVersion", ""))
    if spec not in CYCLONEDX_VERSIONS:
        raise _malformed(
            f"{origin}: CycloneDX specVersion {spec!r} is not supported"
            f" ({', '.join(sorted(CYCLONEDX_VERSIONS))})"
        )
    out = SbomData(origin=origin, format=f"CycloneDX {spec}")
    owner_of_ref: dict[str, int] = {}
    files_by_ref: dict[str, dict[str, Any]] = {}

    top: list[Any] = []
    metadata = doc.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("component"), dict):
        top.append(metadata["component"])
    top.extend(_list(doc, "components", origin))

    for comp, owner in _walk_cdx(top, None, origin, out):
        ref = comp.get("bom-ref")
        what = f"component {comp.get('name')!r}"
        if comp.get("type") == "file":
            if isinstance(ref, str):
                files_by_ref[ref] = comp
            if owner is not None:
                _claim_cdx_file(out, comp, owner, what)
            continue
        if owner is None:
            continue
        if isinstance(ref, str):
            owner_of_ref[ref] = owner
        evidence = comp.get("evidence")
        if isinstance(evidence, dict):
            for occ in _list(evidence, "occurrences", origin):
                if isinstance(occ, dict) and "location" in occ:
                    out.claim_path(occ["location"], owner, what=what)
        for prop in _list(comp, "properties", origin):
            if isinstance(prop, dict) and _is_location_property(prop.get("name")):
                out.claim_path(prop.get("value"), owner, what=what)
        out.claim_hashes(comp.get("hashes"), owner, alg_key="alg", value_key="content", what=what)

    for dep in _list(doc, "dependencies", origin):
        if not isinstance(dep, dict):
            raise _malformed(f"{origin}: a dependencies entry is not an object")
        owner = owner_of_ref.get(str(dep.get("ref")))
        if owner is None:
            continue
        for target in _list(dep, "dependsOn", origin):
            f = files_by_ref.get(target) if isinstance(target, str) else None
            if f is not None:
                _claim_cdx_file(out, f, owner, f"file component {f.get('name')!r}")
    return out


def _walk_cdx(
    comps: list[Any], parent_owner: int | None, origin: str, out: SbomData
) -> Iterator[tuple[dict[str, Any], int | None]]:
    for comp in comps:
        if not isinstance(comp, dict):
            raise _malformed(f"{origin}: a component is {type(comp).__name__}, not an object")
        owner = parent_owner
        purl = comp.get("purl")
        if purl:
            idx = out.add_package(str(purl), what=f"component {comp.get('name')!r}")
            owner = idx if idx is not None else parent_owner
        yield comp, owner
        yield from _walk_cdx(_list(comp, "components", origin), owner, origin, out)


def _claim_cdx_file(out: SbomData, comp: dict[str, Any], owner: int, what: str) -> None:
    name = comp.get("name")
    if isinstance(name, str) and "/" in name:
        out.claim_path(name, owner, what=what)
    evidence = comp.get("evidence")
    if isinstance(evidence, dict):
        for occ in _list(evidence, "occurrences", out.origin):
            if isinstance(occ, dict) and "location" in occ:
                out.claim_path(occ["location"], owner, what=what)
    out.claim_hashes(comp.get("hashes"), owner, alg_key="alg", value_key="content", what=what)


def _is_location_property(name: Any) -> bool:
    """syft's ``syft:location:<n>:path``: where a package was found (its binary, JAR, ...)."""
    if not isinstance(name, str) or not name.startswith("syft:location:") or not name.endswith(":path"):
        return False
    return name[len("syft:location:") : -len(":path")].isdigit()


# -- SPDX ---------------------------------------------------------------------------


def _spdx(doc: dict[str, Any], origin: str) -> SbomData:
    version = doc["spdxVersion"]
    if version not in SPDX_VERSIONS:
        raise _malformed(f"{origin}: {version!r} is not supported (SPDX JSON 2.2 or 2.3)")
    out = SbomData(origin=origin, format=version)
    pkg_owner: dict[str, int] = {}
    pkg_files: list[tuple[int, str]] = []
    for pkg in _list(doc, "packages", origin):
        if not isinstance(pkg, dict):
            raise _malformed(f"{origin}: a package is {type(pkg).__name__}, not an object")
        what = f"package {pkg.get('SPDXID')!r}"
        purl = next(
            (
                ref.get("referenceLocator")
                for ref in _list(pkg, "externalRefs", origin)
                if isinstance(ref, dict) and ref.get("referenceType") == "purl"
            ),
            None,
        )
        if not purl:
            continue  # a package without a PURL (the document's root, a file set) names nothing we can report
        idx = out.add_package(str(purl), what=what)
        if idx is None:
            continue
        spdx_id = pkg.get("SPDXID")
        if isinstance(spdx_id, str):
            pkg_owner[spdx_id] = idx
        out.claim_hashes(pkg.get("checksums"), idx, alg_key="algorithm", value_key="checksumValue", what=what)
        for fid in _list(pkg, "hasFiles", origin):
            if isinstance(fid, str):
                pkg_files.append((idx, fid))

    files: dict[str, dict[str, Any]] = {}
    for f in _list(doc, "files", origin):
        if not isinstance(f, dict):
            raise _malformed(f"{origin}: a file is {type(f).__name__}, not an object")
        fid = f.get("SPDXID")
        if isinstance(fid, str):
            files[fid] = f

    for rel in _list(doc, "relationships", origin):
        if not isinstance(rel, dict):
            raise _malformed(f"{origin}: a relationship is {type(rel).__name__}, not an object")
        kind = rel.get("relationshipType")
        a, b = rel.get("spdxElementId"), rel.get("relatedSpdxElement")
        if kind == "CONTAINS" and a in pkg_owner and b in files:
            pkg_files.append((pkg_owner[a], b))
        elif kind == "CONTAINED_BY" and b in pkg_owner and a in files:
            pkg_files.append((pkg_owner[b], a))

    for owner, fid in pkg_files:
        f = files.get(fid)
        if f is None:
            out.warnings.append(f"{origin}: file {fid!r} is listed for a package but not in 'files'")
            continue
        what = f"file {fid!r}"
        out.claim_path(f.get("fileName"), owner, what=what)
        out.claim_hashes(f.get("checksums"), owner, alg_key="algorithm", value_key="checksumValue", what=what)
    return out


def identities(data: SbomData) -> dict[purls.Identity, list[int]]:
    """Package identity (type, namespace, name, version) -> package indexes, for matching."""
    out: dict[purls.Identity, list[int]] = {}
    for i, pkg in enumerate(data.packages):
        out.setdefault(purls.identity(pkg.purl), []).append(i)
    return out
