"""Language ecosystems found next to a file: Python site-packages and npm packages.

An edge module. Nothing is scanned up front: a file's own path says where
to look. Python: the ``site-packages``/``dist-packages`` directory above it
(or, for ``<prefix>/bin/tool``, ``<prefix>/lib/python3*/site-packages``;
for a Python file in no such directory, an ancestor holding ``*.dist-info``,
as ``pip install --target`` leaves it),
whose ``*.dist-info/RECORD`` files are indexed once per image. npm: the
nearest enclosing directory with a ``package.json`` naming a package, for
files below a ``node_modules`` directory or with a Node file extension
(``.js``, ``.mjs``, ``.cjs``, ``.node``, ``.wasm``) only, so that a
``/package.json`` at an image's root does not claim ``/usr/local/bin/node``.
"""

from __future__ import annotations

from stellaops_runtime.attribution import npm, purls, pypi
from stellaops_runtime.attribution.model import AttributionError, Package
from stellaops_runtime.attribution.osdb import BuildResult, TooManyPaths, count_paths
from stellaops_runtime.attribution.owners import KeyBuilder, OwnerIndex
from stellaops_runtime.attribution.rootfs import RootFS, join, split

SITE_DIRS = ("site-packages", "dist-packages")
NODE_EXTENSIONS = (".js", ".mjs", ".cjs", ".node", ".wasm")
MAX_METADATA_BYTES = 16 << 20
MAX_PACKAGE_JSON_BYTES = 4 << 20
PY_SUFFIXES = (".py", ".pyc", ".so")  # what a ``--target`` install is looked up for
MAX_TARGET_DEPTH = 16  # ancestors of a file looked at for a ``--target`` install

# Undecodable bytes kept as surrogates: a PURL refuses them (damaged), a path keeps its bytes.
UNDECODED = "surrogateescape"


def site_package_dirs(fs: RootFS, resolved: str, pythons: dict[str, list[str]] | None = None) -> list[str]:
    """Candidate site-packages directories (resolved in-root paths) for a resolved file path.

    ``pythons`` caches, per ``<prefix>/lib`` directory, the site directories found under its
    ``python3*`` entries: listing ``/usr/lib`` for every unowned ``/usr/bin/<tool>`` cost
    0.2 s a lookup when an image filled it with 200,000 names.
    """
    out: list[str] = []
    parts = resolved.split("/")
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] in SITE_DIRS:
            out.append("/".join(parts[: i + 1]))
    parent = split(resolved)[0]
    if split(parent)[1] == "bin":
        lib = join(split(parent)[0], "lib")
        sites = pythons.get(lib) if pythons is not None else None
        if sites is None:
            sites = _bin_sites(fs, lib)
            if pythons is not None:
                if len(pythons) >= 256:
                    pythons.clear()
                pythons[lib] = sites
        out.extend(c for c in sites if c not in out)
    return out


def target_dirs(resolved: str) -> list[str]:
    """Ancestors of a Python file outside any site directory, nearest first (``/`` excluded).

    ``pip install --target /app/deps`` puts the ``*.dist-info`` directories
    beside the code in a directory of any name; the caller keeps only the
    ancestors that hold a ``.dist-info`` (:meth:`ImageIndex.has_dist_info`).
    Only Python sources, bytecode and shared objects are looked up this way.
    """
    parts = resolved.split("/")
    name = parts[-1]
    if any(p in SITE_DIRS for p in parts) or not (name.endswith(PY_SUFFIXES) or ".so." in name):
        return []
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 1, -1)][:MAX_TARGET_DEPTH]


def has_dist_info(fs: RootFS, directory: str) -> bool:
    """Whether a directory (resolved, in-root) holds a ``*.dist-info`` entry; unreadable: no."""
    try:
        return any(n.endswith(".dist-info") for n in fs.listdir(directory, resolved=True))
    except (OSError, AttributionError):
        return False


def _bin_sites(fs: RootFS, lib: str) -> list[str]:
    found: list[str] = []
    for py in sorted(n for n in fs.listdir(lib, resolved=True) if n.startswith("python3")):
        for site in SITE_DIRS:
            candidate = join(join(lib, py), site)
            if fs.lstat(candidate) is not None:
                found.append(candidate)
    return found


def build_site_packages(fs: RootFS, site: str) -> BuildResult:
    """One site-packages directory: every ``*.dist-info`` with its RECORD, and every
    ``*.egg-info`` directory (a legacy install) with its ``installed-files.txt``."""
    result = BuildResult()
    pkgs: list[Package] = []
    entries: list[tuple[str, int]] = []
    try:
        names = sorted(fs.listdir(site, resolved=True))
    except (OSError, AttributionError) as e:
        result.fatal = f"pypi: cannot list {site}: {e}"
        return result
    total = 0
    for name in names:
        if name.endswith(".dist-info"):
            meta_name, list_name, legacy = "METADATA", "RECORD", False
        elif name.endswith(".egg-info"):
            meta_name, list_name, legacy = "PKG-INFO", "installed-files.txt", True
        else:
            continue
        dist_dir = join(site, name)
        list_path = join(dist_dir, list_name)
        try:
            try:
                # bytes that are not UTF-8 stay as they are: replaced, they could name another file
                listing = fs.read_bytes(list_path, limit=MAX_METADATA_BYTES).decode("utf-8", UNDECODED)
            except (FileNotFoundError, NotADirectoryError):
                if legacy:  # distutils' single-file egg-info, Debian's own: no file list, no claim
                    continue
                raise
            total = count_paths(total, listing, list_path)
            meta = fs.read_bytes(join(dist_dir, meta_name), limit=MAX_METADATA_BYTES)
            dist = pypi.parse_metadata(meta.decode("utf-8", UNDECODED), dirname=name)
            if legacy:
                rel_paths = pypi.parse_installed_files(listing)
            else:
                rel_paths = pypi.parse_record(listing, origin=list_path)
            pkg = purls.pypi(name=dist.name, version=dist.version)
        except TooManyPaths as e:
            result.fatal = f"pypi: {site}: {e}"
            return result
        except FileNotFoundError as e:
            result.errors.append(f"pypi: {dist_dir}: missing {e.filename or f'{meta_name}/{list_name}'}")
            continue
        except (OSError, ValueError, AttributionError) as e:
            result.errors.append(f"pypi: {dist_dir}: {e}")
            continue
        base = dist_dir if legacy else site  # installed-files.txt is relative to the .egg-info
        idx = len(pkgs)
        pkgs.append(pkg)
        entries.extend((record_path(base, rel), idx) for rel in rel_paths)
    keys = KeyBuilder(fs)
    result.index = OwnerIndex(pkgs, entries, keys=keys)
    if keys.skipped:
        result.errors.append(
            f"pypi: {site}: {keys.skipped} RECORD paths skipped, first: {keys.first_problem}"
        )
    return result


def record_path(site: str, rel: str) -> str:
    """A RECORD path as an in-root path: absolute as written, else relative to ``site``.

    The installed-project spec allows both ("an absolute path, or relative to
    the directory containing the .dist-info directory"); ``pip show -f`` joins
    them the same way. Either is normalized and confined by the key builder.
    """
    return rel if rel.startswith("/") else f"{site}/{rel}"


def npm_eligible(resolved: str) -> bool:
    return "/node_modules/" in resolved or resolved.endswith(NODE_EXTENSIONS)


def read_package_json(fs: RootFS, directory: str) -> Package | None:
    """The package a directory's ``package.json`` names (``None``: no file, or a marker without name).

    Raises ``ValueError`` for a file that is not a JSON object or names no valid package.
    """
    try:
        data = fs.read_bytes(join(directory, "package.json"), limit=MAX_PACKAGE_JSON_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        return None
    origin = join(directory, "package.json")
    pkg = npm.parse_package_json(data, origin=origin)
    if pkg is None:
        return None
    try:
        return purls.npm(name=pkg.name, version=pkg.version)
    except ValueError as e:
        raise ValueError(f"{origin}: {e}") from None
