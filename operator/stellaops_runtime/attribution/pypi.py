"""Installed Python distributions: ``*.dist-info/METADATA`` and ``RECORD`` (PyPA's formats).

``METADATA`` is an email-header document; ``Name`` and ``Version`` are what
the PURL needs. ``RECORD`` is CSV (``path,hash,size``), one row per installed
file, paths relative to the site-packages directory that holds the
``.dist-info`` (``../../../bin/tool`` for a console script) or absolute. When METADATA
lacks a field, the directory name (``<name>-<version>.dist-info``) supplies it.
A legacy install (``<name>-<version>-py3.X.egg-info/``) has ``PKG-INFO`` in the
same format and lists its files in ``installed-files.txt``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from email.parser import HeaderParser


@dataclass(frozen=True, slots=True)
class Distribution:
    name: str
    version: str


def dist_info_name(dirname: str) -> tuple[str, str] | None:
    """``idna-3.7.dist-info`` -> (``idna``, ``3.7``); ``None`` when it is not that shape."""
    stem = dirname.removesuffix(".dist-info")
    if stem == dirname or "-" not in stem:
        return None
    name, _, version = stem.partition("-")
    return (name, version) if name and version else None


def parse_metadata(text: str, *, dirname: str) -> Distribution:
    """Name and version; ``ValueError`` if neither METADATA nor the directory name gives both."""
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = (_field(headers.get(f), f, dirname) for f in ("Name", "Version"))
    if not (name and version):
        fallback = dist_info_name(dirname)
        if fallback is None:
            raise ValueError(f"{dirname}/METADATA has no Name/Version and the directory name does not say")
        name = name or fallback[0]
        version = version or fallback[1]
    return Distribution(name, version)


def _field(value: object, field: str, dirname: str) -> str:
    """A header's text; ``ValueError`` for one with bytes that are not UTF-8 (kept as surrogates,
    the email parser hands them back as a ``Header`` object, not a ``str``)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{dirname}/METADATA: {field} holds bytes that are not UTF-8")
    return value.strip()


def parse_record(text: str, *, origin: str) -> list[str]:
    """The file paths of a RECORD (relative, as written); ``ValueError`` if it is not CSV rows."""
    paths: list[str] = []
    try:
        for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if not row:
                continue
            if len(row) > 3 or not row[0]:
                raise ValueError(f"{origin}:{lineno}: expected 'path,hash,size', got {len(row)} fields")
            paths.append(row[0])
    except csv.Error as e:
        raise ValueError(f"{origin}: not CSV: {e}") from None
    return paths


def parse_installed_files(text: str) -> list[str]:
    """The paths of a legacy ``*.egg-info/installed-files.txt`` (one a line, relative to the
    ``.egg-info`` directory, as pip before 23.1 wrote it for a ``setup.py install``)."""
    return [line for line in (raw.rstrip("\r") for raw in text.split("\n")) if line]
