"""Language ecosystems found next to a file: Python site-packages and npm packages.

An edge module. Nothing is scanned up front: a file's own path says where
to look. Python: the ``site-packages``/``dist-packages`` directory above it
(or, for ``<prefix>/bin/tool``, ``<prefix>/lib/python3*/site-packages``),
whose ``*.dist-info/RECORD`` files are indexed once per image. npm: the
nearest enclosing directory with a ``package.json`` naming a package, for
files below a ``node_modules`` directory or with a Node file extension
(``.js``, ``.mjs``, ``.cjs``, ``.node``, ``.wasm``) only, so that a
``/package.json`` at an image's root does not claim ``/usr/local/bin/node``.
"""

from __future__ import annotations

import fnmatch

from stellaops_runtime.attribution import npm, purls, pypi
from stellaops_runtime.attribution.model import AttributionError, Package
from stellaops_runtime.attribution.osdb import BuildResult
from stellaops_runtime.attribution.owners import KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS, join, split

SITE_DIRS = ("site-packages", "dist-packages")
NODE_EXTENSIONS = (".js", ".mjs", ".cjs", ".node", ".wasm")
MAX_METADATA_BYTES = 16 << 20
MAX_PACKAGE_JSON_BYTES = 4 << 20


def site_package_dirs(fs: RootFS, resolved: str) -> list[str]:
    """Candidate site-packages directories (resolved in-root paths) for a resolved file path."""
    out: list[str] = []
    parts = resolved.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in SITE_DIRS:
            out.append("/".join(parts[: i + 1]))
    parent = split(resolved)[0]
    if split(parent)[1] == "bin":
        prefix = split(parent)[0]
        lib = join(prefix, "lib")
        for py in sorted(fs.listdir(lib, resolved=True)):
            if fnmatch.fnmatch(py, "python3*"):
                for site in SITE_DIRS:
                    candidate = join(join(lib, py), site)
                    if fs.lstat(candidate) is not None and candidate not in out:
                        out.append(candidate)
    return out


def build_site_packages(fs: RootFS, site: str) -> BuildResult:
    """One site-packages directory: every ``*.dist-info`` with its RECORD."""
    result = BuildResult()
    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    try:
        names = sorted(fs.listdir(site, resolved=True))
    except (OSError, AttributionError) as e:
        result.fatal = f"pypi: cannot list {site}: {e}"
        return result
    for name in names:
        if not name.endswith(".dist-info"):
            continue
        dist_dir = join(site, name)
        try:
            meta = fs.read_bytes(join(dist_dir, "METADATA"), limit=MAX_METADATA_BYTES)
            dist = pypi.parse_metadata(meta.decode("utf-8", "replace"), dirname=name)
            record = fs.read_bytes(join(dist_dir, "RECORD"), limit=MAX_METADATA_BYTES)
            rel_paths = pypi.parse_record(record.decode("utf-8", "replace"), origin=join(dist_dir, "RECORD"))
        except FileNotFoundError as e:
            result.errors.append(f"pypi: {dist_dir}: missing {e.filename or 'METADATA/RECORD'}")
            continue
        except (OSError, ValueError, AttributionError) as e:
            result.errors.append(f"pypi: {dist_dir}: {e}")
            continue
        idx = len(pkgs)
        pkgs.append(purls.pypi(name=dist.name, version=dist.version))
        entries.extend((f"{site}/{rel}", idx) for rel in rel_paths)
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, entries, keys=keys)
    if keys.skipped:
        result.errors.append(
            f"pypi: {site}: {keys.skipped} RECORD paths skipped, first: {keys.first_problem}"
        )
    return result


def npm_eligible(resolved: str) -> bool:
    return "/node_modules/" in resolved or resolved.endswith(NODE_EXTENSIONS)


def read_package_json(fs: RootFS, directory: str) -> npm.NpmPackage | None:
    """The package a directory's ``package.json`` names (``None``: no file, or a marker without name).

    Raises ``ValueError`` for a file that is not a JSON object.
    """
    try:
        data = fs.read_bytes(join(directory, "package.json"), limit=MAX_PACKAGE_JSON_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return npm.parse_package_json(data, origin=join(directory, "package.json"))


def npm_package(pkg: npm.NpmPackage) -> Package:
    return purls.npm(name=pkg.name, version=pkg.version)
