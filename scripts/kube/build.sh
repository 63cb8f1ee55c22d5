#!/usr/bin/env bash
# Build kube-apiserver and kube-controller-manager (Kubernetes v1.20) from
# Debian bookworm's `kubernetes` source package, for the tests in tests/realkube/.
#
#   scripts/kube/build.sh          build if needed; print the bin directory
#   scripts/kube/build.sh --print  print the bin directory if the build is cached, else exit 1
#
# Output (idempotent, keyed by the Debian source version):
#   $STELLAOPS_KUBE_CACHE/<debian-source-version>/bin/{kube-apiserver,kube-controller-manager}
#   $STELLAOPS_KUBE_CACHE/bin -> <debian-source-version>/bin   (the version last built)
# STELLAOPS_KUBE_CACHE defaults to <repo>/.cache/kube (git-ignored).
#
# A cached run only reads `apt-cache showsrc` and returns at once. A cold build
# (download ~35 MB, openapi-gen, compile both binaries) takes about 10 minutes
# on 2 cores. etcd comes from Debian's `etcd-server` package, installed here too.
#
# Known points, each handled below:
#   - deb-src is not enabled on these machines: add a deb-src entry for bookworm main;
#   - Go 1.19 (golang-1.19-go); Kubernetes 1.20 builds in GOPATH mode
#     (GO111MODULE=off), module/vendor mode fails;
#   - pkg/generated/openapi/zz_generated.openapi.go is not in the source
#     package: generate it with the vendored openapi-gen;
#   - the vendored reflect2 1.0.1 crashes under Go 1.19: use Debian's
#     golang-github-modern-go-reflect2-dev (1.0.2) instead.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${STELLAOPS_KUBE_CACHE:-$repo/.cache/kube}
print_only=0
[[ "${1:-}" == "--print" ]] && print_only=1

log() { echo "kube-build: $*" >&2; }
die() { echo "kube-build: error: $*" >&2; exit 1; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root for: $*"; fi
}

debsrc_file=/etc/apt/sources.list.d/stellaops-bookworm-src.sources

source_version() {
  # Newest `kubernetes` source version apt knows, or nothing if deb-src is off.
  apt-cache showsrc kubernetes 2>/dev/null | sed -n 's/^Version: //p' | sort -V | tail -n1
}

# Cached? Read the version apt knows without touching the network.
version=$(source_version || true)
if [[ -n "$version" && -x "$cache/$version/bin/kube-apiserver" \
      && -x "$cache/$version/bin/kube-controller-manager" && -f "$cache/$version/bin/.complete" ]]; then
  ln -sfn "$version/bin" "$cache/bin"
  echo "$cache/$version/bin"
  exit 0
fi
if (( print_only )); then
  # apt lists may be gone (fresh machine, restored cache): fall back to the last build.
  if [[ -z "$version" && -f "$cache/bin/.complete" ]]; then
    echo "$cache/bin"
    exit 0
  fi
  exit 1
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9   # one build at a time; a second caller waits, then finds the cache

# --- Debian packages --------------------------------------------------------
need=()
[[ -x /usr/lib/go-1.19/bin/go ]] || need+=(golang-1.19-go)
[[ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] || need+=(golang-github-modern-go-reflect2-dev)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v dpkg-source >/dev/null 2>&1 || need+=(dpkg-dev)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
updated=0
if [[ -z "$version" ]]; then
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    log "enabling deb-src for bookworm main ($debsrc_file)"
    as_root tee "$debsrc_file" >/dev/null <<'EOF'
# Added by StellaOps Runtime scripts/kube/build.sh: source packages, to build
# kube-apiserver and kube-controller-manager for the tests.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  log "apt-get update"
  as_root apt-get update -qq
  updated=1
  version=$(source_version)
  [[ -n "$version" ]] || die "apt knows no 'kubernetes' source package (is deb-src enabled?)"
fi
if (( ${#need[@]} )); then
  (( updated )) || as_root apt-get update -qq
  log "installing Debian packages: ${need[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

out=$cache/$version/bin
if [[ -f "$out/.complete" ]]; then   # built by the caller we waited for
  ln -sfn "$version/bin" "$cache/bin"
  echo "$out"
  exit 0
fi

# --- Source ------------------------------------------------------------------
start=$(date +%s)
work=$cache/work/$version
rm -rf "$work"
mkdir -p "$work/dl" "$work/gopath/src/k8s.io"
log "fetching the kubernetes $version source package"
(cd "$work/dl" && apt-get source --download-only -qq "kubernetes=$version" 2>&1 \
  | grep -v "unsandboxed as root" >&2 || true)
dsc=$(ls "$work"/dl/kubernetes_*.dsc 2>/dev/null | head -n1)
[[ -n "$dsc" ]] || die "apt-get source kubernetes=$version downloaded nothing"
src=$work/gopath/src/k8s.io/kubernetes
dpkg-source --no-check -x "$dsc" "$src" >/dev/null
rm -rf "$work/dl"

# reflect2 1.0.1 (vendored) crashes under Go 1.19; Debian ships 1.0.2.
rm -rf "$src/vendor/github.com/modern-go/reflect2"
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"

# --- Go environment: GOPATH mode ---------------------------------------------
export GOROOT=/usr/lib/go-1.19
export PATH=$GOROOT/bin:$PATH
export GOPATH=$work/gopath
export GOCACHE=$work/gocache
export GO111MODULE=off
export GOFLAGS=
export CGO_ENABLED=0
export GOTOOLCHAIN=local
cd "$src"

# --- pkg/generated/openapi (as Makefile.generated_files' KUBE target does) ------
log "generating pkg/generated/openapi/zz_generated.openapi.go"
go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
# Every package dir with a +k8s:openapi-gen tag: the tree minus _*, .*, vendor,
# with staging/src named as its vendor/ twin, minus code-generator and sample-apiserver.
input_dirs=$(
  find -H . \( -path './_*' -o -path './.*' -o -path ./vendor -o -path ./debian \) -prune \
      -o -type f -name '*.go' -print \
    | { xargs grep -l --color=never '+k8s:openapi-gen=' || true; } \
    | sed -e 's|^\./||' -e 's|/[^/]*$||' -e 's|^staging/src/|vendor/|' \
    | grep -v -e '^vendor/k8s.io/code-generator/' -e '^vendor/k8s.io/sample-apiserver/' \
    | LC_ALL=C sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -
)
"$work/openapi-gen" --logtostderr \
  -i "$input_dirs" \
  -p k8s.io/kubernetes/pkg/generated/openapi \
  -O zz_generated.openapi \
  -h hack/boilerplate/boilerplate.generatego.txt \
  -r "$work/openapi_violations.report" >"$work/openapi-gen.log" 2>&1 \
  || { tail -n 30 "$work/openapi-gen.log" >&2; die "openapi-gen failed"; }
[[ -s pkg/generated/openapi/zz_generated.openapi.go ]] || die "openapi-gen wrote no zz_generated.openapi.go"

# --- Compile -------------------------------------------------------------------
upstream=${version#*really}; upstream=${upstream%%-*}   # 1.20.5+really1.20.2-1.1+deb12u1 -> 1.20.2
# Both version packages, as hack/lib/version.sh does: /version reads client-go's.
ldflags="-s -w"
for vpkg in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
            k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  ldflags+=" -X $vpkg.gitVersion=v$upstream -X $vpkg.gitMajor=${upstream%%.*}"
  ldflags+=" -X $vpkg.gitMinor=$(cut -d. -f2 <<<"$upstream") -X $vpkg.gitTreeState=clean"
  ldflags+=" -X $vpkg.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
done
log "compiling kube-apiserver and kube-controller-manager v$upstream (about 10 minutes cold)"
mkdir -p "$work/out"
go build -ldflags "$ldflags" -o "$work/out/" ./cmd/kube-apiserver ./cmd/kube-controller-manager
"$work/out/kube-apiserver" --version >&2

mkdir -p "$cache/$version"
rm -rf "$out"
mv "$work/out" "$out"
touch "$out/.complete"
ln -sfn "$version/bin" "$cache/bin"
cd "$cache"
chmod -R u+w "$work" 2>/dev/null || true
rm -rf "$cache/work"
log "built in $(( $(date +%s) - start ))s: $out"
echo "$out"
