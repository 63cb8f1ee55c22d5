"""dpkg's database formats: the ``status`` file (and distroless ``status.d/``) and file lists.

``/var/lib/dpkg/status`` is a sequence of deb822 stanzas (``Field: value``,
continuation lines start with a space or tab, a blank line ends a stanza).
Each installed package's files are in ``/var/lib/dpkg/info/<name>.list`` or,
for ``Multi-Arch: same`` packages, ``<name>:<arch>.list``; distroless images
have no ``info/`` but one stanza per file in ``status.d/<name>`` and the
files in ``status.d/<name>.md5sums`` (``<md5>  <path without leading />``).
``/var/lib/dpkg/diversions`` says which package's copy of a diverted path is
where (:func:`parse_diversions`, :func:`diverted`).

The parser is strict about structure and lenient about content: a stanza
that breaks the format (a line that is neither ``Field:`` nor a
continuation, no ``Package`` field) is reported with its line number and
skipped, so one damaged entry costs that package, not the whole image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Status "want flag state": files are on disk in these states ("config-files",
# "not-installed" and "half-installed" leave none or an unknown subset).
INSTALLED_STATES = frozenset(
    {"installed", "unpacked", "half-configured", "triggers-awaited", "triggers-pending"}
)

_FIELD = re.compile(r"^([!-9;-~][!-9;-~]*):(.*)$")  # deb822 field names: printable ASCII except ':'
_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")  # Debian policy 5.6.1


@dataclass(frozen=True, slots=True)
class DpkgPackage:
    name: str
    version: str
    arch: str | None
    state: str | None  # third word of Status, None when the stanza has no Status field
    multi_arch: str | None = None
    source: str | None = None

    @property
    def installed(self) -> bool:
        return self.state is None or self.state in INSTALLED_STATES


def parse_stanzas(text: str, *, origin: str) -> tuple[list[dict[str, str]], list[str]]:
    """deb822 stanzas as dicts, plus one message per malformed stanza (which is skipped)."""
    stanzas: list[dict[str, str]] = []
    errors: list[str] = []
    current: dict[str, str] = {}
    last: str | None = None
    bad: str | None = None
    start = 1

    def finish() -> None:
        nonlocal current, last, bad
        if bad is not None:
            errors.append(bad)
        elif current:
            stanzas.append(current)
        current, last, bad = {}, None, None

    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            finish()
            start = lineno + 1
            continue
        if bad is not None:
            continue
        if line[0] in " \t":
            if last is None:
                bad = f"{origin}:{lineno}: continuation line outside a field (stanza at line {start})"
            else:
                current[last] += "\n" + line.strip()
            continue
        m = _FIELD.match(line)
        if m is None:
            bad = f"{origin}:{lineno}: not a 'Field: value' line: {line[:60]!r} (stanza at line {start})"
            continue
        last = m.group(1)
        current[last] = m.group(2).strip()
    finish()
    return stanzas, errors


def package_of(stanza: dict[str, str], *, origin: str) -> DpkgPackage:
    """A :class:`DpkgPackage`; ``ValueError`` when the stanza lacks Package or Version."""
    name = stanza.get("Package", "").strip()
    if not name:
        raise ValueError(f"{origin}: stanza without a Package field")
    if not _NAME.match(name):
        raise ValueError(f"{origin}: {name!r} is not a valid package name")
    version = stanza.get("Version", "").strip()
    if not version:
        raise ValueError(f"{origin}: package {name!r} has no Version field")
    if any(c.isspace() for c in version):
        raise ValueError(f"{origin}: package {name!r} has an invalid Version {version!r}")
    status = stanza.get("Status")
    state = status.split()[-1] if status and status.split() else None
    source = stanza.get("Source", "").split(" ")[0] or None
    return DpkgPackage(
        name=name,
        version=version,
        arch=stanza.get("Architecture") or None,
        state=state,
        multi_arch=stanza.get("Multi-Arch") or None,
        source=source,
    )


def parse_status(text: str, *, origin: str) -> tuple[list[DpkgPackage], list[str]]:
    """Packages of a status file (any state) and the messages of the stanzas that were skipped."""
    stanzas, errors = parse_stanzas(text, origin=origin)
    packages: list[DpkgPackage] = []
    for stanza in stanzas:
        try:
            packages.append(package_of(stanza, origin=origin))
        except ValueError as e:
            errors.append(str(e))
    return packages, errors


_ARCH = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")  # dpkg's own names are short: amd64, mips64r6el


def native_arch(arch_file: str | None, packages: list[DpkgPackage]) -> str | None:
    """The image's native architecture: the first line of ``/var/lib/dpkg/arch`` (dpkg writes
    the native one first when a foreign one is added), else the installed dpkg package's own
    architecture (dpkg is built for the native one); ``None`` when neither says."""
    first = (arch_file or "").split("\n", 1)[0].strip()
    if _ARCH.fullmatch(first) and first not in ("all", "any"):
        return first
    own = {p.arch for p in packages if p.name == "dpkg" and p.installed and p.arch}
    if len(own) == 1 and _ARCH.fullmatch(arch := own.pop()) and arch not in ("all", "any"):
        return arch
    return None


def list_file_name(name: str) -> tuple[str, str | None]:
    """``zlib1g:amd64.list`` -> (``zlib1g``, ``amd64``); ``adduser.list`` -> (``adduser``, None)."""
    stem = name.removesuffix(".list")
    pkg, _, arch = stem.partition(":")
    return pkg, arch or None


def parse_list(text: str) -> list[str]:
    """Absolute paths of a ``.list`` file (``/.`` and blank lines dropped)."""
    return [line for line in text.split("\n") if line.startswith("/") and line != "/."]


def parse_md5sums(text: str) -> list[str]:
    """Absolute paths of an ``.md5sums`` file (``<md5>  <relative path>`` lines)."""
    out: list[str] = []
    for line in text.split("\n"):
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 32 and path:
            out.append("/" + path.lstrip("/"))
    return out


def parse_diversions(text: str, *, origin: str) -> tuple[dict[str, tuple[str, str | None]], list[str]]:
    """``/var/lib/dpkg/diversions``: ``{from: (to, diverting package or None for a local one)}``.

    The file is groups of three lines: the diverted path, where the other
    packages' copy of it goes, and the package that diverts it (``:`` for a
    local diversion made by the administrator). A group that is not three
    absolute paths and a name is reported and skipped.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    out: dict[str, tuple[str, str | None]] = {}
    errors: list[str] = []
    for i in range(0, len(lines), 3):
        group = [line.rstrip("\r") for line in lines[i : i + 3]]
        if len(group) < 3 or not group[0].startswith("/") or not group[1].startswith("/") or not group[2]:
            errors.append(f"{origin}:{i + 1}: not a 'from, to, package' group of three lines")
            continue
        src, dst, by = group
        out[src] = (dst, None if by == ":" else by)
    return out, errors


def diverted(path: str, package: str, diversions: dict[str, tuple[str, str | None]]) -> str:
    """Where ``package``'s file ``path`` really is: a diverted path belongs to the diverting
    package, every other package's copy of it was installed at the diversion's target
    (``dpkg-divert``: ``/usr/bin/pg_config`` is postgresql-common's, libpq-dev's is at
    ``/usr/bin/pg_config.libpq-dev``)."""
    diversion = diversions.get(path)
    if diversion is None or diversion[1] == package:
        return path
    return diversion[0]
