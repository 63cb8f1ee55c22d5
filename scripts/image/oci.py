"""Write the image built by scripts/image/build.sh as an OCI image layout archive, without a container engine.

No container registry, Docker engine or user namespaces are available where
``make image`` runs, so the root filesystem that mmdebstrap made is packed
here into the documented OCI image layout (image-spec v1.1): one gzip layer
(a tar of the root filesystem), the image config (entry point, user, env,
labels, the layer's uncompressed digest), a manifest, ``index.json`` and
``oci-layout``, all in one tar that ``ctr images import``, ``skopeo`` and
``podman load`` read.

Subcommands (build.sh calls them; stdlib only, run by the project's .venv python):

- ``key``: SHA-256 over the build inputs, the cache key of the layer;
- ``layer ROOTFS DIR``: ``DIR/layer.tar.gz`` and ``DIR/layer.json`` (digest,
  diff_id, sizes); file times clamped to ``--epoch`` so equal trees give
  equal layers;
- ``archive DIR OUT``: the OCI archive from a cached layer, with the labels
  of this revision (cheap, so a new commit does not rebuild the root
  filesystem).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from stellaops_runtime import __version__  # noqa: E402
from stellaops_runtime.image import ENTRYPOINT, IMAGE, SOURCE_URL, USER_ID, VENV  # noqa: E402

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK = 1 << 20

# What the image runs with; the Containerfile says the same (tests/e2e/test_image.py compares them).
ENV = (
    f"PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONUNBUFFERED=1",
    "PYTHONDONTWRITEBYTECODE=1",
)
# Inputs of the root filesystem: a change to any of them rebuilds it. This file is not one
# (its archive part changes nothing in the layer): bump LAYER_FORMAT when write_layer changes.
LAYER_FORMAT = 1
INPUT_FILES = (
    "pyproject.toml",
    "setup.py",
    "README.md",
    "scripts/image/build.sh",
    "scripts/image/packages.txt",
    "scripts/image/prune.sh",
    "scripts/demo.sh",
    "examples/agent-config.yaml",
    "tests/fixtures/tetragon/synthetic/stream-a.jsonl.gz",
)
INPUT_TREES = ("operator/stellaops_runtime",)
# Directories whose contents belong to the runtime, not to the image.
EMPTY_DIRS = ("dev", "proc", "sys", "run", "tmp", "var/tmp")


def input_files(root: Path = ROOT) -> list[Path]:
    files = [root / f for f in INPUT_FILES]
    for tree in INPUT_TREES:
        for p in sorted((root / tree).rglob("*")):
            rel = p.relative_to(root / tree).parts
            # Caches tools leave in the tree (__pycache__, .ruff_cache, ...) are not inputs:
            # `make test` runs ruff after `make image`, and the key must not change with it.
            cache = any(x == "__pycache__" or x.startswith(".") for x in rel)
            # An extension built in place by an editable install (*.so) is a build output too.
            if p.is_file() and not cache and p.suffix not in (".pyc", ".so"):
                files.append(p)
    return files


def inputs_key(root: Path = ROOT, extra: bytes = b"") -> str:
    """SHA-256 over every input file's path and content, and ``extra`` (the dependency pins)."""
    h = hashlib.sha256()
    for p in input_files(root):
        rel = p.relative_to(root).as_posix().encode()
        data = p.read_bytes()
        h.update(b"%d:%s%d:" % (len(rel), rel, len(data)))
        h.update(data)
    h.update(b"layer-format:%d;extra:" % LAYER_FORMAT + extra)
    return h.hexdigest()


class _HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)
        return len(data)


def _walk(rootfs: Path) -> Iterator[Path]:
    """Every path below ``rootfs`` in sorted order (depth first), without descending into symlinks."""
    stack = [rootfs]
    while stack:
        d = stack.pop()
        entries = sorted(os.scandir(d), key=lambda e: e.name, reverse=True)
        for e in entries:
            yield Path(e.path)
        rel = d.relative_to(rootfs).as_posix()
        if rel in EMPTY_DIRS:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append(Path(e.path))


def _members(rootfs: Path, epoch: int) -> Iterator[tuple[tarfile.TarInfo, Path | None]]:
    seen_inodes: dict[tuple[int, int], str] = {}
    paths = sorted(
        (p for p in _walk(rootfs) if p.parent.relative_to(rootfs).as_posix() not in EMPTY_DIRS),
        key=lambda p: p.relative_to(rootfs).as_posix(),
    )
    for p in paths:
        rel = p.relative_to(rootfs).as_posix()
        st = p.lstat()
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.uname = info.gname = ""
        info.mtime = min(int(st.st_mtime), epoch)
        body: Path | None = None
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(p)
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(st.st_mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in seen_inodes:
                info.type = tarfile.LNKTYPE
                info.linkname = seen_inodes[inode]
            else:
                seen_inodes[inode] = rel
                info.size = st.st_size
                body = p
        else:
            continue  # device nodes, sockets, fifos: the runtime provides /dev
        yield info, body


def write_layer(rootfs: Path, out_dir: Path, *, epoch: int) -> dict[str, Any]:
    """Pack ``rootfs`` into ``out_dir/layer.tar.gz``; returns (and writes) ``layer.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "layer.tar.gz.tmp"
    with tmp.open("wb") as raw:
        compressed = _HashingWriter(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=6, mtime=0) as gz:
            plain = _HashingWriter(gz)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                files = 0
                for info, body in _members(rootfs, epoch):
                    if body is None:
                        tar.addfile(info)
                    else:
                        with body.open("rb") as f:
                            tar.addfile(info, f)
                    files += 1
    tmp.rename(out_dir / "layer.tar.gz")
    meta = {
        "digest": f"sha256:{compressed.sha.hexdigest()}",
        "size": compressed.size,
        "diff_id": f"sha256:{plain.sha.hexdigest()}",
        "uncompressed_size": plain.size,
        "files": files,
        "epoch": epoch,
    }
    (out_dir / "layer.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def labels(*, revision: str, created: str) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": "stellaops-runtime",
        "org.opencontainers.image.description": "StellaOps Runtime: operator and node agent (stella-runtime)",
        "org.opencontainers.image.source": SOURCE_URL,
        "org.opencontainers.image.version": __version__,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": "debian:bookworm",
    }


def _blob(tar: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}", len(data)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def write_archive(
    layer_dir: Path, out: Path, *, revision: str, ref: str = IMAGE, user: str = f"{USER_ID}:{USER_ID}"
) -> dict[str, Any]:
    """The OCI archive ``out`` from a layer written by :func:`write_layer`; returns a summary.

    ``user`` is the config's default user (tests make a root variant of the same layer,
    as the agent DaemonSet runs it with ``runAsUser: 0``).
    """
    layer = json.loads((layer_dir / "layer.json").read_text())
    created = datetime.fromtimestamp(layer["epoch"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    image_labels = labels(revision=revision, created=created)
    config = {
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": user,
            "Entrypoint": [ENTRYPOINT],
            "Cmd": ["--help"],
            "Env": list(ENV),
            "WorkingDir": "/",
            "Labels": image_labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [layer["diff_id"]]},
        "history": [{"created": created, "created_by": "scripts/image/build.sh (mmdebstrap, pip, oci.py)"}],
    }
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        layout = _json({"imageLayoutVersion": "1.0.0"})
        info = tarfile.TarInfo("oci-layout")
        info.size, info.mode = len(layout), 0o644
        tar.addfile(info, io.BytesIO(layout))
        config_digest, config_size = _blob(tar, _json(config))
        layer_path = layer_dir / "layer.tar.gz"
        info = tarfile.TarInfo(f"blobs/sha256/{layer['digest'].split(':', 1)[1]}")
        info.size, info.mode = layer["size"], 0o644
        with layer_path.open("rb") as f:
            tar.addfile(info, f)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer["digest"], "size": layer["size"]}],
            "annotations": {k: v for k, v in image_labels.items() if k != "org.opencontainers.image.created"},
        }
        manifest_digest, manifest_size = _blob(tar, _json(manifest))
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "org.opencontainers.image.ref.name": ref,
                        "io.containerd.image.name": ref,
                    },
                }
            ],
        }
        data = _json(index)
        info = tarfile.TarInfo("index.json")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    tmp.rename(out)
    return {
        "ref": ref,
        "archive": str(out),
        "manifest_digest": manifest_digest,
        "config_digest": config_digest,
        "layer_digest": layer["digest"],
        "compressed_bytes": layer["size"],
        "uncompressed_bytes": layer["uncompressed_size"],
        "revision": revision,
    }


def git_revision(root: Path = ROOT) -> str:
    """HEAD's commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    if shutil.which("git") is None:
        return "unknown"
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except subprocess.CalledProcessError:
        return "unknown"
    return f"{head}-dirty" if dirty else head


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("key", help="print the cache key of the build inputs")
    k.add_argument("--extra-file", type=Path, help="a file whose content is also an input (the pins)")
    lay = sub.add_parser("layer", help="pack a root filesystem into a gzip layer")
    lay.add_argument("rootfs", type=Path)
    lay.add_argument("out_dir", type=Path)
    lay.add_argument("--epoch", type=int, required=True, help="clamp file times to this (SOURCE_DATE_EPOCH)")
    arc = sub.add_parser("archive", help="write the OCI archive from a packed layer")
    arc.add_argument("layer_dir", type=Path)
    arc.add_argument("out", type=Path)
    arc.add_argument("--revision", default=None, help="default: git HEAD (with -dirty)")
    arc.add_argument("--ref", default=IMAGE)
    args = p.parse_args(argv)
    if args.cmd == "key":
        extra = args.extra_file.read_bytes() if args.extra_file else b""
        print(inputs_key(extra=extra))
    elif args.cmd == "layer":
        print(json.dumps(write_layer(args.rootfs, args.out_dir, epoch=args.epoch), sort_keys=True))
    else:
        summary = write_archive(
            args.layer_dir, args.out, revision=args.revision or git_revision(), ref=args.ref
        )
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
