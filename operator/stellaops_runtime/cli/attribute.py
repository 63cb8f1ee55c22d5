"""``stella-runtime attribute``: which package owns these files (or this function) of a root filesystem.

For debugging attribution and for users: point it at ``/`` (the host), an
unpacked image or ``/proc/<pid>/root`` of a running container, and give
paths as the container sees them. ``--sbom`` adds SBOMs of that image;
``--function`` attributes one function of one Go or Rust binary instead of
the file. Output is an aligned table or, with ``--json``, one JSON object
per line: ``{"path", "purl" (or null), "source", ...}``.

Exit codes: 0 every path was attributed, 1 some were not, 2 an error: a
bad root, a malformed SBOM, a path outside the root (or a symlink leaving
it), or a package database in the root that could not be read at all.
"""

from __future__ import annotations

import argparse
import json
import sys

from stellaops_runtime.attribution.attributor import Attributor
from stellaops_runtime.attribution.model import Attribution, AttributionError, Source
from stellaops_runtime.attribution.rootfs import RootFS
from stellaops_runtime.canonical.demangle import demangle
from stellaops_runtime.cli import exitcodes

SOURCES = "|".join(s.value for s in Source)

HELP = f"""\
Attribute files of a root filesystem to packages (package URLs).

Sources, first claim wins: the SBOMs given with --sbom, then dpkg, apk and rpm
databases inside the root, then Python dist-info RECORDs, npm package.json,
Go build info, cargo-auditable (.dep-v0) and JAR pom.properties.

  stella-runtime attribute --root / /usr/lib/x86_64-linux-gnu/libz.so.1
  stella-runtime attribute --root /proc/1234/root --json /usr/bin/app
  stella-runtime attribute --root rootfs/ --function 'golang.org/x/net/http2.(*Framer).ReadFrame' /app

--json prints one object per line: {{"path": ..., "purl": ... or null, "source": "{SOURCES}"}}.
Exit 0 all attributed, 1 some not, 2 on errors (bad root, malformed SBOM, path outside the root).
"""

IMAGE = "cli"  # the answers of one invocation are about one root: one image key


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "attribute",
        help="which package (PURL) owns files or functions of a root filesystem",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--root", required=True, metavar="DIR", help="root filesystem: /, an unpacked image, /proc/PID/root"
    )
    p.add_argument(
        "--sbom",
        action="append",
        default=[],
        metavar="FILE",
        help="CycloneDX or SPDX JSON SBOM of the image (repeatable)",
    )
    p.add_argument(
        "--function",
        metavar="NAME",
        help="attribute this function (canonical or mangled name) of the one Go/Rust binary PATH",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    p.add_argument("paths", nargs="+", metavar="PATH", help="paths inside the root, e.g. /usr/bin/app")
    p.set_defaults(func=run_attribute)


def _error(message: str) -> None:
    print(f"stella-runtime attribute: {message}", file=sys.stderr)


def run_attribute(args: argparse.Namespace) -> int:
    if args.function is not None and len(args.paths) != 1:
        _error("--function takes exactly one PATH (the binary the function is in)")
        return exitcodes.ERROR
    try:
        fs = RootFS(args.root)
    except AttributionError as e:
        _error(str(e))
        return exitcodes.ERROR
    attributor = Attributor()
    for sbom in args.sbom:
        try:
            attributor.register_sbom(IMAGE, sbom)
        except AttributionError as e:
            _error(str(e))
            return exitcodes.ERROR

    failed = False
    results: list[Attribution] = []
    for path in args.paths:
        try:
            fs.resolve(path)
        except AttributionError as e:  # outside the root, escaping symlink, loop: refuse, do not attribute
            _error(str(e))
            failed = True
            results.append(Attribution(path, None, Source.NONE.value, error=str(e)))
            continue
        if args.function is not None:
            results.append(
                attributor.attribute_function(
                    image_digest=IMAGE, root=fs.root, path=path, function=demangle(args.function)
                )
            )
        else:
            results.append(attributor.attribute_file(image_digest=IMAGE, root=fs.root, path=path))

    for source, reason in sorted(attributor.image_errors(IMAGE).items()):
        _error(f"{source} database not usable: {reason}")
        failed = True

    if args.json:
        for att in results:
            doc = att.to_json()
            if args.function is not None:
                doc["function"] = demangle(args.function)
            sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print(_table(results))
    if failed:
        return exitcodes.ERROR
    return exitcodes.OK if all(a.attributed for a in results) else exitcodes.NOT_FOUND


def _table(results: list[Attribution]) -> str:
    rows = [("PATH", "SOURCE", "SCOPE", "PURL")]
    for a in results:
        rows.append((a.path, a.source, a.scope, a.purl or ("-" if a.error is None else f"- ({a.error})")))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    )
