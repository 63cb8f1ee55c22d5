"""Regenerate (or check) the CRI wire code from ``protos/cri/*.proto``.

protoc from grpcio-tools writes message code and type stubs only (no gRPC
stubs: :mod:`stellaops_runtime.lifecycle.cri_client` calls each method by its
full path). ``--check`` regenerates into a temporary folder and exits 1
listing the committed files that are missing, differ, or belong to no .proto,
so CI catches a .proto edited without regenerating.

Usage: ``python -m stellaops_runtime.wire.cri.generate [--check]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from stellaops_runtime.wire.generate import run_protoc

REPO_ROOT = Path(__file__).resolve().parents[4]
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_DIR = Path(__file__).resolve().parent
PROTO_DIR = "cri"
COMMAND = "python -m stellaops_runtime.wire.cri.generate"


def expected_files(proto_root: Path = PROTO_ROOT) -> list[str]:
    """``<stem>_pb2.py`` and ``<stem>_pb2.pyi`` for every .proto under ``proto_root/cri`` (sorted)."""
    stems = sorted(p.stem for p in (proto_root / PROTO_DIR).glob("*.proto"))
    return [f"{stem}_pb2{ext}" for stem in stems for ext in (".py", ".pyi")]


def generate(out_dir: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc over the CRI protos; write the generated files into ``out_dir``."""
    protos = sorted(f"{PROTO_DIR}/{p.name}" for p in (proto_root / PROTO_DIR).glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_root / PROTO_DIR}")
    with tempfile.TemporaryDirectory(prefix="stellaops-protoc-cri-") as tmp:
        run_protoc(proto_root, protos, Path(tmp), grpc=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in expected_files(proto_root):
            data = (Path(tmp) / PROTO_DIR / name).read_bytes()
            (out_dir / name).write_bytes(data)
            written.append(out_dir / name)
    return written


def stale_files(*, committed_dir: Path = OUTPUT_DIR, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Committed files that a fresh generation would not write byte for byte, and leftovers."""
    expected = expected_files(proto_root)
    with tempfile.TemporaryDirectory(prefix="stellaops-wire-cri-check-") as tmp:
        fresh = Path(tmp)
        generate(fresh, proto_root=proto_root)
        stale = [
            name
            for name in expected
            if not (committed_dir / name).is_file()
            or (committed_dir / name).read_bytes() != (fresh / name).read_bytes()
        ]
    extra = sorted(p.name for p in committed_dir.glob("*_pb2*") if p.name not in expected)
    return stale + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description=f"Generate {OUTPUT_DIR} from {PROTO_ROOT / PROTO_DIR}."
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale files")
    args = parser.parse_args(argv)
    if not args.check:
        for path in generate(OUTPUT_DIR):
            print(f"wrote {path}")
        return 0
    stale = stale_files()
    if not stale:
        print("generated CRI wire code is up to date")
        return 0
    print(f"stale generated files (run {COMMAND}):", file=sys.stderr)
    for name in stale:
        print(f"  {OUTPUT_DIR / name}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
