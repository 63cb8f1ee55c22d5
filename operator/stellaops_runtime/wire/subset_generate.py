"""Generate (or check) the message code of one of our own proto subsets (containerd, CRI).

The same procedure as :mod:`stellaops_runtime.wire.generate` (which does the
Tetragon protos, with gRPC stubs): protoc from grpcio-tools over
``protos/<folder>/*.proto``, then a deterministic rewrite of
``from <folder> import x_pb2`` into the Python package. Only message code is
kept (``*_pb2.py`` and ``*_pb2.pyi``): the clients call each method by its
full gRPC path (lifecycle/containerd_client.py, lifecycle/cri_client.py), so
no stubs are needed. ``check`` regenerates into a temporary folder and lists
the committed files that are missing, differ, or belong to no .proto, so CI
catches a .proto edited without regenerating.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from stellaops_runtime.wire.generate import run_protoc

PROTO_ROOT = Path(__file__).resolve().parents[3] / "protos"


@dataclass(frozen=True)
class Subset:
    """One subset: the folder under protos/, the Python package and folder its code goes to."""

    folder: str  # protos/<folder>/*.proto, also the proto import path of its files
    python_package: str
    output_dir: Path
    label: str  # for messages: "containerd", "CRI"

    def names(self, proto_root: Path = PROTO_ROOT) -> list[str]:
        """``<stem>_pb2.py`` and ``<stem>_pb2.pyi`` for every .proto of the subset (sorted by stem)."""
        stems = sorted(p.stem for p in (proto_root / self.folder).glob("*.proto"))
        return [f"{stem}_pb2{ext}" for stem in stems for ext in (".py", ".pyi")]

    def generate(self, out_dir: Path, *, proto_root: Path = PROTO_ROOT) -> list[Path]:
        """Run protoc over the subset's protos and write the kept files to ``out_dir``."""
        protos = sorted(f"{self.folder}/{p.name}" for p in (proto_root / self.folder).glob("*.proto"))
        if not protos:
            raise RuntimeError(f"no .proto files under {proto_root / self.folder}")
        own_imports = re.compile(rf"^from {re.escape(self.folder)} import ", re.MULTILINE)
        with tempfile.TemporaryDirectory(prefix=f"stellaops-protoc-{self.folder}-") as tmp:
            run_protoc(proto_root, protos, Path(tmp), grpc=False)
            out_dir.mkdir(parents=True, exist_ok=True)
            written = []
            for name in self.names(proto_root):
                text = (Path(tmp) / self.folder / name).read_text(encoding="utf-8")
                dst = out_dir / name
                dst.write_text(
                    own_imports.sub(f"from {self.python_package} import ", text),
                    encoding="utf-8",
                    newline="\n",
                )
                written.append(dst)
        return written

    def stale_files(self, *, committed_dir: Path | None = None, proto_root: Path = PROTO_ROOT) -> list[str]:
        """Committed files that are missing, differ from a fresh generation, or belong to no .proto."""
        committed = self.output_dir if committed_dir is None else committed_dir
        expected = self.names(proto_root)
        with tempfile.TemporaryDirectory(prefix=f"stellaops-wire-{self.folder}-check-") as tmp:
            fresh = Path(tmp)
            self.generate(fresh, proto_root=proto_root)
            stale = [
                name
                for name in expected
                if not (committed / name).is_file()
                or (committed / name).read_bytes() != (fresh / name).read_bytes()
            ]
        leftovers = sorted(p.name for p in committed.glob("*_pb2*") if p.name not in expected)
        return stale + leftovers

    def main(self, argv: list[str] | None = None) -> int:
        command = f"python -m {self.python_package}.generate"
        parser = argparse.ArgumentParser(
            prog=command, description=f"Generate {self.python_package} from {PROTO_ROOT / self.folder}."
        )
        parser.add_argument("--check", action="store_true", help="write nothing; exit 1 listing stale files")
        args = parser.parse_args(argv)
        if not args.check:
            for path in self.generate(self.output_dir):
                print(f"wrote {path}")
            return 0
        stale = self.stale_files()
        if not stale:
            print(f"generated {self.label} wire code is up to date")
            return 0
        print(f"stale generated files (run {command}):", file=sys.stderr)
        for name in stale:
            print(f"  {self.output_dir / name}", file=sys.stderr)
        return 1
