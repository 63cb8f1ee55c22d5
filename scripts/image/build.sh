#!/usr/bin/env bash
# `make image`: the stella-runtime container image (operator and node agent),
# built offline from Debian and PyPI packages only -- no container registry,
# Docker engine or buildah is needed (docs/development.md, "The container image").
#
#   1. wheels: the project's wheel and its runtime dependencies (not the test
#      extras), pinned to the versions installed in .venv, the ones the tests ran;
#   2. root filesystem: mmdebstrap, Debian bookworm's Essential set plus
#      scripts/image/packages.txt (python3, ca-certificates), no apt, docs or locales;
#   3. a virtualenv /opt/stellaops/venv on Debian's python3 with those wheels
#      (installed by pip run from its wheel, so no pip stays in the image), the
#      user nonroot (uid/gid 65532), the demo under /opt/stellaops/demo;
#      pruned to fit the 250 MB target by scripts/image/prune.sh (which says what
#      goes and why; the Containerfile runs the same script); its extension modules are
#      stripped by the same script run from the host (the chroot has no binutils);
#   4. scripts/image/oci.py packs it as an OCI archive: one layer, entry point
#      stella-runtime, user 65532, OCI labels (source, version, revision).
#
# Output: .cache/image/stellaops-runtime.oci.tar and .cache/image/image.json (its
# reference, digests and sizes). The root filesystem layer is cached under
# .cache/image/layers/<key>, keyed by a hash of the inputs (package sources,
# pyproject.toml, these scripts, the pins); with an unchanged key only the small
# archive is rewritten (a new revision label). Debian updates are not an input:
# `rm -rf .cache/image` rebuilds from today's mirror.
#
# Needs root (mmdebstrap into a directory, chroot) and the Debian package mmdebstrap.
# STELLA_IMAGE_MIRROR overrides the Debian mirror (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-.venv/bin/python}
out=.cache/image
mirror=${STELLA_IMAGE_MIRROR:-http://deb.debian.org/debian}
archive=$out/stellaops-runtime.oci.tar

if [[ $EUID -ne 0 ]]; then
  echo "make image: run as root (mmdebstrap builds the root filesystem in a directory and chroots into it)" >&2
  exit 2
fi
if ! command -v mmdebstrap >/dev/null; then
  echo "make image: mmdebstrap is missing (apt-get install mmdebstrap)" >&2
  exit 2
fi
mkdir -p "$out/layers"
start=$(date +%s)

pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
"$py" -m pip freeze --exclude-editable --disable-pip-version-check > "$pins"
key=$("$py" scripts/image/oci.py key --extra-file "$pins")
layer=$out/layers/$key

if [[ -f $layer/layer.json ]]; then
  echo "== root filesystem cached: $layer"
else
  work=$(mktemp -d "$out/work.XXXXXX")
  trap 'rm -f "$pins"; rm -rf "$work"' EXIT
  # Reproducible file times: clamped to the time of the last commit.
  epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
  export SOURCE_DATE_EPOCH=$epoch

  echo "== wheels (runtime dependencies pinned to .venv)"
  mkdir -p "$work/src" "$work/build/wheels" "$work/build/installer"
  cp pyproject.toml setup.py README.md "$work/src/"  # setup.py: the extension canonical/_symindex.c
  mkdir -p "$work/src/operator"
  cp -r operator/stellaops_runtime "$work/src/operator/"
  find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
  find "$work/src" -name '*.so' -delete  # an editable install's in-place build: the wheel builds its own
  "$py" -m pip wheel -q --disable-pip-version-check --no-build-isolation \
    -c "$pins" -w "$work/build/wheels" "$work/src"
  pip_version=$("$py" -m pip --version | awk '{print $2}')
  "$py" -m pip download -q --disable-pip-version-check --no-deps \
    -d "$work/build/installer" "pip==$pip_version"

  echo "== root filesystem (mmdebstrap bookworm from $mirror)"
  packages=$(grep -v '^\s*#' scripts/image/packages.txt | grep -v '^\s*$' | paste -sd, -)
  root=$work/rootfs
  mmdebstrap --variant=essential --include="$packages" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/gconv/*' \
    bookworm "$root" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    </dev/null >"$work/mmdebstrap.log" 2>&1 || { tail -30 "$work/mmdebstrap.log" >&2; exit 1; }

  echo "== virtualenv /opt/stellaops/venv"
  cp -r "$work/build" "$root/tmp/build"
  chroot "$root" /usr/bin/python3 -m venv --without-pip /opt/stellaops/venv
  installer=$(cd "$root/tmp/build/installer" && ls pip-*.whl)
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin SOURCE_DATE_EPOCH="$epoch" \
    /opt/stellaops/venv/bin/python "/tmp/build/installer/$installer/pip" install -q \
    --disable-pip-version-check --no-index --no-cache-dir --find-links /tmp/build/wheels stellaops-runtime
  rm -rf "$root/tmp/build"
  # Every extension module finds its shared libraries in the image (a missing one, such as
  # libstdc++ for grpcio, would fail only at import time inside a container).
  missing=$(chroot "$root" /bin/sh -c \
    'find /opt/stellaops/venv -name "*.so*" -type f -exec ldd {} + 2>/dev/null' | grep 'not found' | sort -u || true)
  if [[ -n $missing ]]; then
    echo "make image: shared libraries missing from the image (add their Debian packages to scripts/image/packages.txt):" >&2
    echo "$missing" >&2
    exit 1
  fi
  install -m 0755 scripts/image/prune.sh "$root/tmp/prune.sh"
  chroot "$root" env -i PATH=/usr/sbin:/usr/bin SOURCE_DATE_EPOCH="$epoch" STRIP= /tmp/prune.sh /opt/stellaops/venv
  rm -f "$root/tmp/prune.sh"
  scripts/image/prune.sh --strip "$root/opt/stellaops/venv"
  # No dpkg/apt state the runtime needs beyond the package database (kept for scanners).
  rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/var/cache/ldconfig/* \
    "$root"/var/cache/debconf/*-old  # debconf's backups of its databases (0.9 MB)

  echo "== user nonroot (65532) and the demo"
  echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/usr/sbin/nologin' >> "$root/etc/passwd"
  echo 'nonroot:x:65532:' >> "$root/etc/group"
  echo 'nonroot:!:19000::::::' >> "$root/etc/shadow"
  install -d -m 0755 -o 65532 -g 65532 "$root/home/nonroot"
  # scripts/demo.sh runs unchanged: it finds .venv, the stream and the config relative to itself.
  demo=$root/opt/stellaops/demo
  install -d "$demo/scripts" "$demo/examples" "$demo/tests/fixtures/tetragon/synthetic"
  install -m 0755 scripts/demo.sh "$demo/scripts/demo.sh"
  install -m 0644 examples/agent-config.yaml "$demo/examples/agent-config.yaml"
  install -m 0644 tests/fixtures/tetragon/synthetic/stream-a.jsonl.gz "$demo/tests/fixtures/tetragon/synthetic/"
  ln -s /opt/stellaops/venv "$demo/.venv"
  "$py" -m pip freeze --path "$root/opt/stellaops/venv/lib/python3.11/site-packages" \
    > "$root/opt/stellaops/requirements.lock"

  echo "== layer"
  "$py" scripts/image/oci.py layer "$root" "$work/layer" --epoch "$epoch" >/dev/null
  rm -rf "$layer"
  mv "$work/layer" "$layer"
  rm -rf "$work"
  # Keep only this key's layer (a cache, not an archive of old builds).
  find "$out/layers" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
fi

"$py" scripts/image/oci.py archive "$layer" "$archive" > "$out/image.json"
"$py" - "$out/image.json" "$start" <<'EOF'
import json, sys, time
summary = json.load(open(sys.argv[1]))
mb = 1024 * 1024
print(
    f"== {summary['ref']}: {summary['archive']}\n"
    f"   {summary['uncompressed_bytes'] / mb:.1f} MiB uncompressed, {summary['compressed_bytes'] / mb:.1f} MiB "
    f"compressed, manifest {summary['manifest_digest']}, revision {summary['revision']}, "
    f"{time.time() - int(sys.argv[2]):.0f} s"
)
EOF
