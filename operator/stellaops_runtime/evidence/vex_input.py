"""The vulnerabilities ``stella-runtime vex`` is asked about: our JSON input, or OSV records.

Our format (docs/vex.md)::

    {"vulnerabilities": [
      {"id": "CVE-2022-37434", "description": "...", "aliases": ["GHSA-..."],
       "affected": [{"purl": "pkg:deb/debian/zlib1g", "functions": ["inflateGetHeader"]}]}]}

OSV records (one object, a list, or ``{"vulns": [...]}``) are read the same
way: ``affected[].package.purl`` (or ecosystem + name for PyPI, npm, Go, crates.io
and Maven, whose ``<groupId>:<artifactId>`` is ``pkg:maven/<groupId>/<artifactId>``)
with the function names of ``affected[].ecosystem_specific.imports[].symbols``
(the Go vulnerability database's form: each symbol qualified with its
import's ``path`` and asked in every spelling the agent stores it under,
:func:`go_symbol_names`), ``.affects.functions`` and ``.affected_functions``
(RustSec's generic-free paths such as ``smallvec::SmallVec::insert_many``,
matched to stored Rust names by :mod:`stellaops_runtime.store.rust_paths`)
or ``.functions``. A vulnerability
without any function cannot be decided at function level: it is reported
``under_investigation``, and so is one with a Go import whose ``symbols`` is
empty or left out (every function of that package: ``Target.whole_packages``); an import
without a path is an input error, symbols or not.
Entries of one id, and records naming each other in ``aliases``, are one
vulnerability (:func:`_one_per_id`).
Pure: the caller reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from packageurl import PackageURL

from stellaops_runtime.store.refs import RefError
from stellaops_runtime.witness.store import vulnerability_id


class VexInputError(Exception):
    """The input file cannot be read as vulnerabilities (the message says where)."""


@dataclass(frozen=True, slots=True)
class Target:
    purl: str
    functions: tuple[str, ...]
    # Other canonical spellings of a function, (function, (spelling, ...)) pairs: the Go
    # vulnerability database names ``Tokenizer.Next`` a method the agent stores as
    # ``golang.org/x/net/html.(*Tokenizer).Next`` (docs/function-ids.md, Go).
    spellings: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Go import paths every function of which is vulnerable: an ``imports`` entry whose
    # ``symbols`` is empty or left out (the Go vulnerability database's "every symbol"). No
    # function list can stand for them: a ``vex`` answer of named functions never rules them out.
    whole_packages: tuple[str, ...] = ()

    def names_of(self, function: str) -> tuple[str, ...]:
        """The other spellings of ``function`` (empty when it has none)."""
        return dict(self.spellings).get(function, ())


@dataclass(frozen=True, slots=True)
class Vulnerability:
    id: str
    description: str
    aliases: tuple[str, ...]
    targets: tuple[Target, ...]


_OSV_ECOSYSTEM_TYPE = {"pypi": "pypi", "npm": "npm", "go": "golang", "crates.io": "cargo", "maven": "maven"}


def _purl_of(pkg: dict[str, Any]) -> str:
    if isinstance(pkg.get("purl"), str) and pkg["purl"].startswith("pkg:"):
        return str(pkg["purl"])
    ptype = _OSV_ECOSYSTEM_TYPE.get(str(pkg.get("ecosystem", "")).lower())
    name = pkg.get("name")
    if ptype and isinstance(name, str) and name:
        # Go and npm name a package with its namespace before the last "/", OSV's Maven
        # ``<groupId>:<artifactId>`` (the agent stores pkg:maven/<groupId>/<artifactId>@...)
        sep = {"golang": "/", "npm": "/", "maven": ":"}.get(ptype)
        namespace, _, short = name.rpartition(sep) if sep else ("", "", name)
        return PackageURL(type=ptype, namespace=namespace or None, name=short).to_string()
    return ""


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise VexInputError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def go_symbol_names(path: str, symbol: str) -> tuple[str, ...]:
    """The canonical names a Go vulnerability database symbol of package ``path`` can be stored as.

    The database writes ``Parse`` for a function and ``Tokenizer.Next`` for a method, whatever
    its receiver; the agent stores ``<path>.Parse``, ``<path>.Tokenizer.Next`` for a value
    receiver, ``<path>.(*Tokenizer).Next`` for a pointer receiver, and ``[...]`` after a generic
    function or type (docs/function-ids.md). A type has at most one method of a name, so every
    spelling names the same function. The first is the one shown.
    """
    head, dot, method = symbol.partition(".")
    if not dot:
        return (f"{path}.{symbol}", f"{path}.{symbol}[...]")
    return (
        f"{path}.{head}.{method}",
        f"{path}.(*{head}).{method}",
        f"{path}.{head}[...].{method}",
        f"{path}.(*{head}[...]).{method}",
    )


def _object(value: Any, where: str) -> dict[str, Any]:
    """``value`` when it is an object, {} when absent; anything else is an input error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise VexInputError(f"{where}: expected an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    """``value`` when it is a list, [] when absent; anything else is an input error."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise VexInputError(f"{where}: expected a list")
    return value


def _osv_functions(
    aff: dict[str, Any], where: str
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]], tuple[str, ...]]:
    """The functions an OSV ``affected`` entry names, their other spellings, and the Go import
    paths it names no symbol of (every function of those is vulnerable)."""
    es = _object(aff.get("ecosystem_specific"), f"{where}.ecosystem_specific")
    out: list[str] = list(_strings(es.get("functions"), f"{where}.ecosystem_specific.functions"))
    affects = es.get("affects")  # RustSec: generic-free paths, matched as store/rust_paths.py says
    if affects is not None and not isinstance(affects, dict):
        raise VexInputError(f"{where}.ecosystem_specific.affects: expected an object")
    if affects:
        out += _strings(affects.get("functions"), f"{where}.ecosystem_specific.affects.functions")
    out += _strings(es.get("affected_functions"), f"{where}.ecosystem_specific.affected_functions")
    spellings: dict[str, tuple[str, ...]] = {}
    whole: list[str] = []
    for i, imp in enumerate(_list(es.get("imports"), f"{where}.ecosystem_specific.imports")):
        if not isinstance(imp, dict):
            raise VexInputError(f"{where}.ecosystem_specific.imports[{i}]: expected an object")
        # Padding stripped, as a purl's is: " golang.org/x/net/html " named ``…/html .Parse``, which
        # nothing stored matches, and the record read as never run while Parse ran.
        at = f"{where}.ecosystem_specific.imports[{i}]"
        symbols = tuple(s.strip() for s in _strings(imp.get("symbols"), f"{at}.symbols"))
        if not all(symbols):
            raise VexInputError(f"{at}.symbols: expected a list of non-empty strings")
        path = imp["path"].strip() if isinstance(imp.get("path"), str) else ""
        if not path:  # names nothing stored; without symbols, a whole package dropped unasked
            what = "symbols" if symbols else "an import (every function of a package it does not name)"
            raise VexInputError(f"{at}: {what} without a package path")
        if not symbols:  # Go's "symbols" empty or left out: every function of the package
            whole.append(path)
        for sym in symbols:
            shown, *others = go_symbol_names(path, sym)
            out.append(shown)
            spellings[shown] = tuple(others)
    return tuple(dict.fromkeys(out)), spellings, tuple(dict.fromkeys(whole))


def _one(doc: Any, where: str) -> Vulnerability:
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise VexInputError(f"{where}: a vulnerability needs a string id")
    try:  # as witness sign/verify --vuln read it: the id each witness names
        vid = vulnerability_id(doc["id"])
    except RefError as e:
        raise VexInputError(f"{where}: {e}") from None
    if vid is None:
        raise VexInputError(f"{where}: a vulnerability needs a string id")
    targets: list[Target] = []
    for i, aff in enumerate(_list(doc.get("affected"), f"{where}.affected")):
        w = f"{where}.affected[{i}]"
        if not isinstance(aff, dict):
            raise VexInputError(f"{w}: expected an object")
        spellings: dict[str, tuple[str, ...]] = {}
        whole: tuple[str, ...] = ()
        if "package" in aff:  # OSV
            purl = _purl_of(_object(aff["package"], f"{w}.package"))
            functions, spellings, whole = _osv_functions(aff, w)
        else:
            purl = str(aff["purl"]).strip() if isinstance(aff.get("purl"), str) else ""
            functions = _strings(aff.get("functions"), f"{w}.functions")
        if not purl or not purl.startswith("pkg:"):
            raise VexInputError(f"{w}: no package URL")
        try:
            PackageURL.from_string(purl)
        except ValueError as e:
            raise VexInputError(f"{w}: {purl!r} is not a package URL: {e}") from None
        targets.append(Target(purl, functions, tuple(spellings.items()), whole))
    if not targets:
        raise VexInputError(f"{where} ({vid}): no affected package")
    for field in ("details", "summary", "description"):
        if doc.get(field) is not None and not isinstance(doc[field], str):
            raise VexInputError(f"{where}.{field}: expected a string")
    return Vulnerability(
        id=vid,
        description=doc.get("details") or doc.get("summary") or doc.get("description") or "",
        aliases=_strings(doc.get("aliases"), f"{where}.aliases"),
        targets=tuple(targets),
    )


def parse(doc: Any) -> list[Vulnerability]:
    """Vulnerabilities from our format or OSV (see the module docstring); raises VexInputError."""
    if isinstance(doc, dict) and "vulnerabilities" in doc:
        items, name = _list(doc["vulnerabilities"], "vulnerabilities"), "vulnerabilities"
    elif isinstance(doc, dict) and "vulns" in doc:
        items, name = _list(doc["vulns"], "vulns"), "vulns"
    elif isinstance(doc, list):
        items, name = doc, ""
    elif isinstance(doc, dict):
        items, name = [doc], ""
    else:
        raise VexInputError("expected an object or a list of vulnerabilities")
    out = [_one(v, f"{name}[{i}]") for i, v in enumerate(items)]
    if not out:
        raise VexInputError("no vulnerabilities in the input")
    return _one_per_id(out)


def _key(text: str) -> str:
    """An id or alias as :func:`vulnerability_id` reads it (``cve-2024-1`` is ``CVE-2024-1``), to
    link records; text it refuses, as it is (it names no record then)."""
    try:
        return vulnerability_id(text) or text
    except RefError:
        return text


def _one_per_id(vulns: list[Vulnerability]) -> list[Vulnerability]:
    """Records of one vulnerability as one: entries of one id, and records linked by ``aliases``
    (OSV: the ids of the same vulnerability in other databases; either way round, or through a
    third record), with their packages and functions together, under the first id, the other ids
    and every alias (but the first id) as its aliases, the first description; in the order the
    vulnerabilities first appear. Two statements of one vulnerability could say ``affected`` and
    ``not_affected`` in one document: a GitHub advisory and the Go record of one CVE list
    different functions, and the CVE looked up read not affected while its code ran."""
    parent: dict[str, str] = {}

    def root(k: str) -> str:
        while (p := parent.setdefault(k, k)) != k:
            parent[k] = k = parent.setdefault(p, p)
        return k

    for v in vulns:
        for alias in v.aliases:
            a, b = root(_key(alias)), root(v.id)
            if a != b:
                parent[a] = b
    groups: dict[str, list[Vulnerability]] = {}
    for v in vulns:
        groups.setdefault(root(v.id), []).append(v)
    out = []
    for members in groups.values():
        first = members[0].id
        aliases = dict.fromkeys(_key(a) for m in members for a in (m.id, *m.aliases))
        shown: dict[str, str] = {}  # an alias's key -> its first spelling (the id's for an id)
        for m in members:
            shown.setdefault(m.id, m.id)
        for m in members:
            for a in m.aliases:
                shown.setdefault(_key(a), a)
        out.append(
            Vulnerability(
                id=first,
                description=next((m.description for m in members if m.description), ""),
                aliases=tuple(shown[k] for k in aliases if k != first),
                targets=tuple(dict.fromkeys(t for m in members for t in m.targets)),
            )
        )
    return out
