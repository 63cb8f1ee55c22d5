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
#     modules), which nothing of the image imports.
# Usage: prune.sh VENV
set -eu
venv=$1
site=$(echo "$venv"/lib/python3*/site-packages)
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
