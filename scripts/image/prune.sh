#!/bin/sh
# Prune the image's virtualenv to fit the 250 MB target; run inside the image's root
# filesystem (build.sh through chroot, the Containerfile in its build stage):
#   - kubernetes/aio: the kubernetes package's async copy of its generated client
#     (65 MB), which nothing in stellaops_runtime imports;
#   - the packages' own test suites;
#   - the sources of the generated API and model modules (kubernetes/client/{api,models},
#     55 MB with their docstrings): kept as bytecode compiled without docstrings, next to
#     where the sources were, so only tracebacks inside them lose their source lines;
#   - type stubs (*.pyi): read by type checkers, never at run time;
#   - the interpreter's pydoc_data (1.2 MB): the topic texts of the interactive help(),
#     which no command of the image runs;
#   - the interpreter's own test package (/usr/lib/python3.11/test, 0.8 MB: regrtest and its
#     modules), which nothing of the image imports;
#   - the symbol tables and debug sections of the wheels' extension modules (strip
#     --strip-unneeded, ~21 MB: aiohttp's parser alone 3.3 -> 0.6 MB, cryptography's 14.4 ->
#     11.6 MB): a module keeps its dynamic symbols, all the interpreter looks up (PyInit_*).
#     The bundled libraries under *.libs/ are left as they are (auditwheel rewrote them with
#     patchelf, and they are stripped already).
# Usage: prune.sh VENV          everything above; STRIP names the strip tool (default strip,
#                               from binutils); STRIP= (empty) leaves the stripping out
#        prune.sh --strip VENV  only the stripping (build.sh runs it from the host, outside
#                               the chroot, whose root filesystem has no binutils)
set -eu
only_strip=0
if [ "$1" = --strip ]; then only_strip=1; shift; fi
venv=$1
site=$(echo "$venv"/lib/python3*/site-packages)
strip=${STRIP-strip}
strip_modules() {
  if ! command -v "$strip" >/dev/null; then
    echo "prune.sh: $strip not found: install binutils, or set STRIP= to keep the symbols" >&2
    exit 1
  fi
  find "$site" -type f -name '*.so' ! -path '*.libs/*' -exec "$strip" --strip-unneeded {} +
}
if [ "$only_strip" = 1 ]; then strip_modules; exit 0; fi
rm -rf "$site/kubernetes/aio" "$site/sqlalchemy/testing"
find "$site" -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +
find "$site" -name '*_test.py' -delete
find "$site" -name '*.pyi' -delete
rm -rf /usr/lib/python3*/pydoc_data /usr/lib/python3*/test
for generated in kubernetes/client/api kubernetes/client/models; do
  rm -rf "$site/$generated/__pycache__"
  "$venv/bin/python" -OO -m compileall -q -b "$site/$generated"
  find "$site/$generated" -name '*.py' -delete
done
if [ -n "$strip" ]; then strip_modules; fi
