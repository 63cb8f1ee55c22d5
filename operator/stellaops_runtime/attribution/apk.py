"""apk's installed database (``/lib/apk/db/installed``), as documented by Alpine.

Blank-line separated records of ``<letter>:<value>`` lines. The ones used
here: ``P`` name, ``V`` version, ``A`` architecture, ``o`` origin (source
package), ``F`` a directory (relative to the root, no leading slash) that
the following ``R`` lines (file names) are in. ``M``/``a`` (permissions),
``Z`` (checksums) and the rest are skipped. A record without ``P`` or ``V``,
an ``R`` before any ``F``, or a line that is not ``<letter>:`` is reported
and that record skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ApkPackage:
    name: str
    version: str
    arch: str | None
    origin: str | None
    files: tuple[str, ...] = field(default=(), repr=False)  # absolute paths


def parse_installed(text: str, *, origin: str) -> tuple[list[ApkPackage], list[str]]:
    """Packages with their files, and one message per malformed record (skipped)."""
    packages: list[ApkPackage] = []
    errors: list[str] = []
    rec: dict[str, str] = {}
    files: list[str] = []
    directory: str | None = None
    bad: str | None = None
    start = 1

    def finish(end: int) -> None:
        nonlocal rec, files, directory, bad
        if bad is None and rec:
            if not rec.get("P") or not rec.get("V"):
                bad = f"{origin}:{start}-{end}: record without P: (name) or V: (version)"
            else:
                packages.append(
                    ApkPackage(
                        name=rec["P"],
                        version=rec["V"],
                        arch=rec.get("A") or None,
                        origin=rec.get("o") or None,
                        files=tuple(files),
                    )
                )
        if bad is not None:
            errors.append(bad)
        rec, files, directory, bad = {}, [], None, None

    lineno = 0
    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line:
            finish(lineno - 1)
            start = lineno + 1
            continue
        if bad is not None:
            continue
        if len(line) < 2 or line[1] != ":" or not line[0].isalpha():
            bad = f"{origin}:{lineno}: not a '<letter>:<value>' line: {line[:60]!r}"
            continue
        key, value = line[0], line[2:]
        if key == "F":
            directory = "/" + value.strip("/") if value.strip("/") else "/"
        elif key == "R":
            if directory is None:
                bad = f"{origin}:{lineno}: file {value!r} (R:) before any directory (F:)"
                continue
            files.append(directory.rstrip("/") + "/" + value)
        elif key not in rec:
            rec[key] = value
    finish(lineno)
    return packages, errors
