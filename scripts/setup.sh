#!/usr/bin/env bash
# Install what StellaOps Runtime needs on a fresh Debian machine, idempotently.
#
#   scripts/setup.sh          Python environment (.venv) with the package and test tools
#   scripts/setup.sh --server also the Debian packages the tests use for real:
#                             PostgreSQL server (the hot-symbol store); the Go
#                             toolchain, gcc/g++, rustc and binutils (the frame
#                             canonicalizer's test programs, c++filt); Debian's Go
#                             binaries containerd, ctr and runc; rpm/rpmbuild (a real
#                             rpm database for attribution); kubectl (kustomize);
#                             llvm (llvm-symbolizer, libLLVM) and libc6-dbg (the
#                             symbolizer's reference tool and real debug files);
#                             clang (test programs in clang's DWARF 5);
#                             libjemalloc2 (the agent's allocator, as in the image)
#
# Runs apt-get only for what is missing (root needed then), and pip only when
# pyproject.toml, setup.py or the C extensions' sources changed since the last install, or
# what their build needs (a compiler, Python's headers, zlib's) came or went.
# The install builds the package's C extensions (canonical/_symindex.c; _kallsyms.c, which
# needs zlib's headers too) when a C compiler and the headers are there (--server installs
# them); without them they are skipped and the symbolizer indexes symbol tables, and the
# kernel symbol table is loaded, in Python (same answers, slower).
set -euo pipefail
cd "$(dirname "$0")/.."

want_server=0
[[ "${1:-}" == "--server" ]] && want_server=1

# The build of the package's C extensions (setup.py): a compiler, Python's headers and zlib's
# (canonical/_kallsyms.c deflates the kernel symbol table's names). Each is optional: without it
# setup.py skips the extension silently and the Python path is used (same answers, slower).
cc=${CC:-gcc}
have_python_h() {
  python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))'
}
have_zlib_h() {  # as the compiler sees it (pyenv's Python brings its own Python.h, not zlib.h)
  if command -v "${cc%% *}" >/dev/null 2>&1; then
    echo '#include <zlib.h>' | $cc -E -x c - >/dev/null 2>&1
  else
    [[ -f /usr/include/zlib.h ]]
  fi
}

apt_pkgs=()
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null \
  || apt_pkgs+=(python3)
python3 -m venv --help >/dev/null 2>&1 || apt_pkgs+=(python3-venv)
if (( want_server )); then
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_pkgs+=(postgresql)
  command -v go >/dev/null 2>&1 || apt_pkgs+=(golang-go)
  command -v gcc >/dev/null 2>&1 || apt_pkgs+=(gcc)
  # Python's headers: the package's C extensions (setup.py) are built against them
  have_python_h || apt_pkgs+=(python3-dev)
  have_zlib_h || apt_pkgs+=(zlib1g-dev)  # python3-dev brings it, a Python of pyenv's does not
  command -v g++ >/dev/null 2>&1 || apt_pkgs+=(g++)
  command -v c++filt >/dev/null 2>&1 || apt_pkgs+=(binutils)
  command -v rustc >/dev/null 2>&1 || [[ -x "$HOME/.cargo/bin/rustc" ]] || apt_pkgs+=(rustc)
  command -v containerd >/dev/null 2>&1 || apt_pkgs+=(containerd)
  command -v runc >/dev/null 2>&1 || [[ -x /usr/sbin/runc ]] || apt_pkgs+=(runc)
  command -v dockerd >/dev/null 2>&1 || apt_pkgs+=(docker.io)  # the lifecycle observer's Docker side
  [[ -d /usr/lib/python3/dist-packages/bcc ]] || apt_pkgs+=(python3-bpfcc)  # native probes (BCC)
  command -v rpmbuild >/dev/null 2>&1 || apt_pkgs+=(rpm)
  command -v kubectl >/dev/null 2>&1 || apt_pkgs+=(kubernetes-client)
  command -v jq >/dev/null 2>&1 || apt_pkgs+=(jq)
  command -v mmdebstrap >/dev/null 2>&1 || apt_pkgs+=(mmdebstrap)  # make image: the rootfs, offline  # Argo CD's ignoreDifferences expressions
  # llvm: llvm-symbolizer, the reference the canonicalizer is compared with, and
  # libLLVM's mangled names for the c++filt corpus; libc6-dbg: real separate debug files.
  command -v llvm-symbolizer >/dev/null 2>&1 || [[ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]] \
    || apt_pkgs+=(llvm)
  command -v rustfilt >/dev/null 2>&1 || apt_pkgs+=(rustfilt)  # reference Rust demangler
  # clang: its default DWARF 5 (indexed addresses and range lists) for the symbolizer's tests
  command -v clang++ >/dev/null 2>&1 || apt_pkgs+=(clang)
  # libjemalloc2: the agent re-executes itself under it (agent/jemalloc.py), as in the image
  dpkg -s libjemalloc2 >/dev/null 2>&1 || apt_pkgs+=(libjemalloc2)
  [[ -d /usr/lib/debug/.build-id ]] && dpkg -s libc6-dbg >/dev/null 2>&1 || apt_pkgs+=(libc6-dbg)
fi
if (( ${#apt_pkgs[@]} )); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install Debian packages: ${apt_pkgs[*]}" >&2
    exit 2
  fi
  echo "setup: installing Debian packages: ${apt_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi
# (Debian starts a default PostgreSQL cluster on install; the tests ignore it
# and run a private one on a free port.)

# setup.py and the C sources too: an editable install builds the extensions
# (operator/stellaops_runtime/canonical/_symindex.c, _kallsyms*.c) in place, once per change;
# and what their build needs: an install made before the compiler or a header was there
# (skipped silently) is made again once they are.
build_tools=$(command -v "${cc%% *}" >/dev/null 2>&1 && echo "compiler"; have_python_h && echo "Python.h"
  have_zlib_h && echo "zlib.h"; true)
stamp=.venv/.installed-$( { cat pyproject.toml setup.py operator/stellaops_runtime/canonical/_symindex.c \
  operator/stellaops_runtime/canonical/_kallsyms.c operator/stellaops_runtime/canonical/_kallsyms_table.c \
  operator/stellaops_runtime/canonical/_kallsyms.h; echo "$build_tools"; } \
  | sha256sum | cut -c1-16)
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
if [[ ! -f "$stamp" ]]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
