"""VEX from runtime evidence: the status of each vulnerability in one image, and its documents.

The rule (docs/vex.md):

- **affected**: a vulnerable function was observed running in the image;
- **not_affected**, justification ``vulnerable_code_not_in_execute_path``:
  only when every affected package was seen loaded in the image, none of
  the vulnerable functions was called, none of the packages' code ran under
  no name (store/unnamed.py), no call that may be a vulnerable function's
  hides elsewhere or cannot be seen (evidence/doubts.py: a file of no package,
  an interpreted package's function asked by name, a row the store
  refused), and the image was watched at a
  posture that can see calls (EbpfDeep: user stacks were sampled,
  contracts/posture.py), without a gap, on every UTC day of the
  configured window (``window_days`` days ending at ``until``, by default
  the last day the image is known to have run: :func:`last_known_day`).
  The note says what that rests on (:data:`BASIS`):
  stacks sampled at system calls, which never show a function that runs
  without making one, and uprobe calls, of functions the store does not
  record as probed. "Not loaded" is never turned into
  ``vulnerable_code_not_present``: OpenVEX keeps that for code excluded at
  build time, and the runtime cannot know it;
- **under_investigation** otherwise, saying what is missing.

Each statement cites the witnesses behind it (the SHA-256 of each signed
envelope) and states the coverage: window, posture, nodes. Output as
OpenVEX 0.2.0 (validated against the published schema in the tests) or as
a CycloneDX 1.6 VEX document. Pure: the CLI gathers observations and signs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from stellaops_runtime import __version__
from stellaops_runtime.attribution.purls import purl_text
from stellaops_runtime.evidence.store_facts import Observation
from stellaops_runtime.evidence.vex_input import Vulnerability
from stellaops_runtime.store.coverage_gaps import Gap
from stellaops_runtime.store.coverage_unseen import Unseen, describe_all
from stellaops_runtime.store.queries import rfc3339
from stellaops_runtime.store.refs import PurlQuery, RefError

AFFECTED = "affected"
NOT_AFFECTED = "not_affected"
UNDER_INVESTIGATION = "under_investigation"
NOT_IN_EXECUTE_PATH = "vulnerable_code_not_in_execute_path"
OPENVEX_CONTEXT = "https://openvex.dev/ns/v0.2.0"
# What a not_affected statement rests on, said in its note (docs/vex.md, "What not_affected rests on").
BASIS = (
    "rests on user stacks sampled at system calls (posture EbpfDeep) and on uprobe calls: a function "
    "that runs without making a system call is on no sampled stack, and which functions uprobes "
    "probed is not recorded"
)
CYCLONEDX_STATE = {AFFECTED: "exploitable", NOT_AFFECTED: "not_affected", UNDER_INVESTIGATION: "in_triage"}


@dataclass(frozen=True, slots=True)
class Finding:
    """One (package, function) of a vulnerability, as the store saw it, with its witness."""

    purl: str
    function: str
    obs: Observation
    witness: str = ""  # "sha256:<hex> (<file>)" of the signed envelope, "" when none


@dataclass(frozen=True, slots=True)
class Decision:
    vulnerability: Vulnerability
    status: str
    notes: str
    findings: tuple[Finding, ...]

    @property
    def purls(self) -> list[str]:
        """The affected packages, each once, as the witnesses cited claim them (:func:`_canonical`)."""
        return sorted({_canonical(t.purl) for t in self.vulnerability.targets})


def envelope_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def full_window(watched: frozenset[dt.date], days: int, until: dt.date | None) -> tuple[bool, str]:
    """Whether every UTC day of the window was watched gap-free; and the window as text.

    Counted, not enumerated: ``--window-days`` may be any size, and a window reaching back
    before year 1 starts there (no day of it was watched)."""
    if not watched:
        return False, f"no gap-free watched day (window {days} days)"
    end = until or max(watched)
    try:
        first = end - dt.timedelta(days=days - 1)
    except OverflowError:
        first = dt.date.min
    text = f"{first.isoformat()}..{end.isoformat()}"
    missing = days - sum(first <= d <= end for d in watched)
    if missing > 0:
        gap = first
        while gap in watched:
            gap += dt.timedelta(days=1)
        return (
            False,
            f"window {text}: {missing} of {days} days not watched gap-free (first {gap.isoformat()})",
        )
    return True, f"window {text}: all {days} days watched gap-free"


def _coverage(findings: tuple[Finding, ...]) -> str:
    cov = next((f.obs.coverage for f in findings if f.obs.coverage is not None), None)
    if cov is None:
        gaps = findings[0].obs.gaps if findings else []
        if gaps:  # it ran here unwatched (its pods opted out) or with every event of it dropped
            named = "; ".join(g.describe() for g in gaps)
            return f"never watched at a posture that can see calls; gaps: {named}"
        return "never watched at a posture that can see calls"
    return f"observed {cov.interval}, posture {cov.posture_range}, nodes {', '.join(cov.nodes)}"


def decide(
    vuln: Vulnerability, findings: list[Finding], *, window_days: int, until: dt.date | None = None
) -> Decision:
    fs = tuple(findings)
    witnesses = "; ".join(f"witness {f.witness}" for f in fs if f.witness)
    tail = f"; {_coverage(fs)}" + (f"; {witnesses}" if witnesses else "")
    ran = [f for f in fs if f.obs.facts.invocations > 0]
    if ran:
        calls = ", ".join(f"{f.function} ({f.obs.facts.invocations} calls)" for f in ran)
        return Decision(vuln, AFFECTED, f"vulnerable code observed running: {calls}{tail}", fs)
    if any(not t.functions for t in vuln.targets):
        return Decision(vuln, UNDER_INVESTIGATION, f"no vulnerable function named for a package{tail}", fs)
    if whole := sorted({p for t in vuln.targets for p in t.whole_packages}):  # Go: "every symbol"
        why = (
            f"every function of {', '.join(whole)} is vulnerable (the record names no symbol of it): "
            "calls of the functions named cannot rule it out"
        )
        return Decision(vuln, UNDER_INVESTIGATION, why + tail, fs)
    not_loaded = sorted({f.purl for f in fs if not f.obs.facts.package_loaded})  # a fact row is no load
    if not_loaded:
        why = f"package never seen loaded in the image: {', '.join(not_loaded)}"
        return Decision(vuln, UNDER_INVESTIGATION, why + tail, fs)
    names = ", ".join(sorted({f.function for f in fs}))
    unnamed = sorted({u.module for f in fs for u in f.obs.unnamed})
    if unnamed:  # a function not found by name may be code that ran under no name
        why = (
            f"no call of {names} found by name, but the package's code ran under no name in "
            f"{', '.join(unnamed)} (no symbol table or debug file covers it)"
        )
        return Decision(vuln, UNDER_INVESTIGATION, why + tail, fs)
    doubts = [f"{f.function}: {d.why}" for f in fs for d in f.obs.doubts]
    if doubts:  # calls that may be a vulnerable function's: a file of no package, a refused row
        why = f"no call of {names} found in the packages' files, but {'; '.join(doubts)}"
        return Decision(vuln, UNDER_INVESTIGATION, why + tail, fs)
    watched = fs[0].obs.watched if fs else frozenset()
    until = until or last_known_day(fs[0].obs if fs else None)
    ok, window = full_window(watched, window_days, until)
    if ok:
        return Decision(vuln, NOT_AFFECTED, f"no call of {names}; {window}; {BASIS}{tail}", fs)
    gaps = _window_gaps(fs[0].obs.gaps if fs else [], watched, window_days, until)
    if fs and fs[0].obs.coverage is None:
        gaps = []  # never watched: the coverage (the tail) names every gap already
    why = f"; gaps: {'; '.join(g.describe() for g in gaps)}" if gaps else ""
    unseen = _window_unseen(
        fs[0].obs.unseen if fs and fs[0].obs.coverage else [], watched, window_days, until
    )
    if unseen:  # days a window saw calls on, taken out by a run that could not (store/coverage_unseen.py)
        why += f"; it also ran where its calls could not be seen: {describe_all(unseen)}"
    return Decision(vuln, UNDER_INVESTIGATION, f"no call of {names} seen, but {window}{why}{tail}", fs)


def last_known_day(obs: Observation | None) -> dt.date | None:
    """The last UTC day the store knows the image ran: its last watched day, or a later day with a
    gap of it or a run of it that could not see calls (store/coverage_unseen.py). The default
    window ends there: ended at the last watched day, it left out the days after it on which the
    image ran unwatched, and said ``not_affected`` of a window the image had outlived unseen."""
    if obs is None:
        return None
    days = set(obs.watched) | {u.day for u in obs.unseen}
    for g in obs.gaps:  # a gap's end is exclusive (a window's end)
        days.add(max(g.start, g.end - dt.timedelta(microseconds=1)).date())
    return max(days, default=None)


def _window_gaps(gaps: list[Gap], watched: frozenset[dt.date], days: int, until: dt.date | None) -> list[Gap]:
    """The gaps that meet the window (what took its days out of the watch, named in the note)."""
    if not watched and until is None:
        return list(gaps)
    end = until or max(watched)
    try:
        first = end - dt.timedelta(days=days - 1)
    except OverflowError:
        first = dt.date.min
    return [g for g in gaps if g.start.date() <= end and g.end.date() >= first]


def _window_unseen(
    unseen: list[Unseen], watched: frozenset[dt.date], days: int, until: dt.date | None
) -> list[Unseen]:
    """The runs that could not see calls on a day of the window (what took those days out)."""
    if not unseen:
        return []
    end = until or max(watched, default=max(u.day for u in unseen))
    try:
        first = end - dt.timedelta(days=days - 1)
    except OverflowError:
        first = dt.date.min
    return [u for u in unseen if first <= u.day <= end]


def _canonical(purl: str) -> str:
    """A package URL in its canonical, percent-encoded form: an IRI, as OpenVEX's ``@id`` must be
    (the input's ``?arch=a b`` or ``zlib"1g`` is none), in the spelling every witness of it claims
    (witness/store.py ``canonical_claim``: ``pkg:deb/debian/Zlib1g`` is ``…/zlib1g``). The document
    kept the input's case, and a policy engine joining a statement to its witnesses found none."""
    try:
        return PurlQuery.parse(purl).canonical()
    except RefError:  # the CLI refused such a purl already (witness/store.py claim_purl)
        return purl_text(PackageURL.from_string(purl))


def _image_component(image: str, image_name: str) -> dict[str, Any]:
    """The image as an OpenVEX product: ``pkg:oci/<name>@sha256%3A<hex>``.

    ``<name>`` is the last path part of the repository the reference names (tag and digest
    left out, lower case), percent-encoded so that it reads back as itself (a ``#`` or ``?`` in
    it began a subpath or qualifiers, and the purl read back had no version: any image of the
    name); ``image`` when the reference names no repository (``sha256:<hex>``, bare hex).
    """
    hexdigest = image.partition(":")[2]
    repository, at, _digest = image_name.rpartition("@")
    last = repository.rsplit("/", 1)[-1] if at else ""
    if ":" in last:  # a tag (a registry's port is in an earlier part)
        last = last.rpartition(":")[0]
    name = PackageURL(type="oci", name=last.lower() or "image").to_string()
    return {"@id": f"{name}@sha256%3A{hexdigest}", "hashes": {"sha-256": hexdigest}}


def openvex(
    image: str, decisions: list[Decision], *, image_name: str = "", now: dt.datetime | None = None
) -> dict[str, Any]:
    """An OpenVEX 0.2.0 document: one statement per vulnerability, the image as product."""
    ts = rfc3339(now or dt.datetime.now(dt.UTC))
    statements = []
    for d in decisions:
        v = d.vulnerability
        vuln: dict[str, Any] = {"name": v.id}
        if v.description:
            vuln["description"] = v.description
        if v.aliases:
            vuln["aliases"] = list(v.aliases)
        subcomponents = [{"@id": p} for p in d.purls]
        product = _image_component(image, image_name) | {"subcomponents": subcomponents}
        st: dict[str, Any] = {
            "vulnerability": vuln,
            "timestamp": ts,
            "products": [product],
            "status": d.status,
            "status_notes": d.notes,
        }
        if d.status == NOT_AFFECTED:
            st["justification"] = NOT_IN_EXECUTE_PATH
        elif d.status == AFFECTED:
            st["action_statement"] = (
                f"The vulnerable code of {', '.join(d.purls)} runs in this image: update the package "
                "to a fixed version, or mitigate, before relying on this image."
            )
        statements.append(st)
    body = json.dumps(statements, sort_keys=True).encode()
    return {
        "@context": OPENVEX_CONTEXT,
        "@id": f"https://stellaops.io/vex/{hashlib.sha256(image.encode() + body).hexdigest()}",
        "author": "stellaops-runtime",
        "role": "runtime observation",
        "timestamp": ts,
        "version": 1,
        "tooling": f"stellaops-runtime {__version__}",
        "statements": statements,
    }


def cyclonedx(
    image: str, decisions: list[Decision], *, image_name: str = "", now: dt.datetime | None = None
) -> dict[str, Any]:
    """A CycloneDX 1.6 VEX document: the image as metadata component, packages as components."""
    ts = rfc3339(now or dt.datetime.now(dt.UTC))
    hexdigest = image.partition(":")[2]
    purls = sorted({p for d in decisions for p in d.purls})
    components = []
    for p in purls:
        pu = PackageURL.from_string(p)
        comp: dict[str, Any] = {"type": "library", "bom-ref": p, "name": pu.name, "purl": p}
        if pu.version:
            comp["version"] = pu.version
        components.append(comp)
    vulns = []
    for d in decisions:
        analysis: dict[str, Any] = {"state": CYCLONEDX_STATE[d.status], "detail": d.notes}
        if d.status == NOT_AFFECTED:
            analysis["justification"] = "code_not_reachable"
        entry: dict[str, Any] = {
            "bom-ref": f"vuln:{d.vulnerability.id}",
            "id": d.vulnerability.id,
            "analysis": analysis,
            "affects": [{"ref": p} for p in d.purls],
        }
        if d.vulnerability.description:
            entry["description"] = d.vulnerability.description
        if d.vulnerability.aliases:  # CycloneDX has no aliases: its ids of the same vulnerability
            entry["references"] = [{"id": a, "source": {}} for a in d.vulnerability.aliases]
        wit = [f.witness.split(" ", 1)[0] for f in d.findings if f.witness]
        if wit:
            entry["properties"] = [{"name": "stellaops:witness", "value": w} for w in wit]
        vulns.append(entry)
    name = image_name or image
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, image + ts)}",
        "version": 1,
        "metadata": {
            "timestamp": ts,
            "tools": {
                "components": [{"type": "application", "name": "stellaops-runtime", "version": __version__}]
            },
            "component": {
                "type": "container",
                "bom-ref": image,
                "name": name,
                "hashes": [{"alg": "SHA-256", "content": hexdigest}],
            },
        },
        "components": components,
        "vulnerabilities": vulns,
    }
