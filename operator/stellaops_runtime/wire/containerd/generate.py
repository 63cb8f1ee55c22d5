"""Regenerate (or check) the containerd wire code from ``protos/containerd/*.proto``.

The same procedure as :mod:`stellaops_runtime.wire.generate` (which does the
Tetragon protos): protoc from grpcio-tools, then a deterministic rewrite of
``from containerd import x_pb2`` into this package. Only message code is kept
(``*_pb2.py`` and ``*_pb2.pyi``): the client calls methods by their full gRPC
path (:mod:`stellaops_runtime.lifecycle.containerd_client`), so no stubs are
needed. ``--check`` regenerates into a temporary folder and exits 1 listing
the files that differ from what is committed.

Usage: ``python -m stellaops_runtime.wire.containerd.generate [--check]``
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from stellaops_runtime.wire.generate import run_protoc

REPO_ROOT = Path(__file__).resolve().parents[4]
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_DIR = Path(__file__).resolve().parent
PROTO_PACKAGE = "containerd"
PYTHON_PACKAGE = "stellaops_runtime.wire.containerd"

_IMPORT_RE = re.compile(rf"^from {PROTO_PACKAGE} import ", re.MULTILINE)


def proto_names(proto_root: Path = PROTO_ROOT) -> list[str]:
    """The .proto stems under ``proto_root/containerd`` (sorted)."""
    return sorted(p.stem for p in (proto_root / PROTO_PACKAGE).glob("*.proto"))


def generated_names(proto_root: Path = PROTO_ROOT) -> list[str]:
    """The files a generation writes: ``<stem>_pb2.py`` and ``<stem>_pb2.pyi`` per .proto."""
    return [f"{stem}_pb2{ext}" for stem in proto_names(proto_root) for ext in (".py", ".pyi")]


def generate(out_dir: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc over the containerd protos and write the kept files to ``out_dir``."""
    stems = proto_names(proto_root)
    if not stems:
        raise RuntimeError(f"no .proto files under {proto_root / PROTO_PACKAGE}")
    protos = [f"{PROTO_PACKAGE}/{stem}.proto" for stem in stems]
    with tempfile.TemporaryDirectory(prefix="stellaops-protoc-") as tmp:
        run_protoc(proto_root, protos, Path(tmp), grpc=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in generated_names(proto_root):
            text = (Path(tmp) / PROTO_PACKAGE / name).read_text(encoding="utf-8")
            dst = out_dir / name
            dst.write_text(
                _IMPORT_RE.sub(f"from {PYTHON_PACKAGE} import ", text), encoding="utf-8", newline="\n"
            )
            written.append(dst)
    return written


def stale_files(*, committed_dir: Path = OUTPUT_DIR, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Generated files that are missing, differ from a fresh generation, or belong to no .proto."""
    expected = generated_names(proto_root)
    with tempfile.TemporaryDirectory(prefix="stellaops-wire-check-") as tmp:
        fresh = Path(tmp)
        generate(fresh, proto_root=proto_root)
        stale = [
            name
            for name in expected
            if not (committed_dir / name).exists()
            or (committed_dir / name).read_bytes() != (fresh / name).read_bytes()
        ]
    leftovers = sorted(p.name for p in committed_dir.glob("*_pb2*") if p.name not in expected)
    return stale + leftovers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stellaops_runtime.wire.containerd.generate",
        description=f"Generate {PYTHON_PACKAGE} from {PROTO_ROOT / PROTO_PACKAGE}.",
    )
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 listing stale files")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print(
                "stale generated files (run python -m stellaops_runtime.wire.containerd.generate):",
                file=sys.stderr,
            )
            for name in stale:
                print(f"  {OUTPUT_DIR / name}", file=sys.stderr)
            return 1
        print("generated containerd wire code is up to date")
        return 0
    for path in generate(OUTPUT_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
