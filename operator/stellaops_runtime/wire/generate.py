"""Regenerate (or check) the Python wire code from the project's .proto files.

protoc writes imports as ``from tetragon import tetragon_pb2`` because the
protos live in a ``tetragon/`` folder; our generated modules live in the
``stellaops_runtime.wire.tetragon`` package, so a deterministic post-processing
step rewrites those imports. ``--check`` regenerates into a temporary folder
and exits 1 listing the files that differ from what is committed, so CI (and
tests/unit/test_wire.py) catch a .proto change without regenerated code.

Usage: ``python -m stellaops_runtime.wire.generate [--check]``
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PROTO_ROOT = REPO_ROOT / "protos"
OUTPUT_DIR = Path(__file__).resolve().parent / "tetragon"

# The proto folder (== proto package) and the Python package it maps to.
PROTO_PACKAGE = "tetragon"
PYTHON_PACKAGE = "stellaops_runtime.wire.tetragon"

# Files we keep; protoc also writes empty *_pb2_grpc.py for service-less protos.
GENERATED_NAMES = (
    "tetragon_pb2.py",
    "tetragon_pb2.pyi",
    "events_pb2.py",
    "events_pb2.pyi",
    "sensors_pb2.py",
    "sensors_pb2.pyi",
    "sensors_pb2_grpc.py",
)

_IMPORT_RE = re.compile(rf"^from {PROTO_PACKAGE} import ", re.MULTILINE)


def _fix_imports(text: str) -> str:
    return _IMPORT_RE.sub(f"from {PYTHON_PACKAGE} import ", text)


def run_protoc(proto_root: Path, protos: list[str], out: Path, *, grpc: bool) -> None:
    """protoc from grpcio-tools over ``protos`` (relative to ``proto_root``), writing into ``out``.

    Message code and type stubs always, gRPC stubs with ``grpc``. Raises RuntimeError if protoc fails.
    """
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    argv = ["grpc_tools.protoc", f"-I{proto_root}", f"-I{well_known}"]
    argv += [f"--python_out={out}", f"--pyi_out={out}"]
    if grpc:
        argv.append(f"--grpc_python_out={out}")
    # protoc resolves the relative .proto names against -I, not the cwd.
    rc = protoc.main([*argv, *protos])
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc}")


def generate(out_dir: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Run protoc over ``proto_root/tetragon/*.proto`` and write the kept files to ``out_dir``.

    Returns the written paths (in GENERATED_NAMES order). Raises RuntimeError if protoc fails.
    """
    protos = sorted(str(p.relative_to(proto_root)) for p in (proto_root / PROTO_PACKAGE).glob("*.proto"))
    if not protos:
        raise RuntimeError(f"no .proto files under {proto_root / PROTO_PACKAGE}")
    with tempfile.TemporaryDirectory(prefix="stellaops-protoc-") as tmp:
        run_protoc(proto_root, protos, Path(tmp), grpc=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED_NAMES:
            src = Path(tmp) / PROTO_PACKAGE / name
            text = _fix_imports(src.read_text(encoding="utf-8"))
            dst = out_dir / name
            dst.write_text(text, encoding="utf-8", newline="\n")
            written.append(dst)
    return written


def stale_files(*, committed_dir: Path = OUTPUT_DIR, proto_root: Path = PROTO_ROOT) -> list[str]:
    """Names of generated files that are missing or differ from a fresh generation."""
    with tempfile.TemporaryDirectory(prefix="stellaops-wire-check-") as tmp:
        fresh_dir = Path(tmp)
        generate(fresh_dir, proto_root=proto_root)
        stale = []
        for name in GENERATED_NAMES:
            committed = committed_dir / name
            if not committed.exists() or committed.read_bytes() != (fresh_dir / name).read_bytes():
                stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stellaops_runtime.wire.generate",
        description=f"Generate {PYTHON_PACKAGE} from {PROTO_ROOT}.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 and list the stale files if the committed code differs",
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        if stale:
            print("stale generated files (run python -m stellaops_runtime.wire.generate):", file=sys.stderr)
            for name in stale:
                print(f"  {OUTPUT_DIR / name}", file=sys.stderr)
            return 1
        print("generated wire code is up to date")
        return 0
    for path in generate(OUTPUT_DIR):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
