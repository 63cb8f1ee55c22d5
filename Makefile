# The README's two commands are `make demo` and `make test`.
PY := .venv/bin/python
PYTEST_ARGS ?=
# Test files run on this many workers at once (pytest-xdist, one file per worker at a time: a file's
# tests and module fixtures stay together). Most slow tests wait on subprocesses and servers (an e2e
# file uses ~55 % of a core): on two cores three workers ran the suite in 18:06 where two took 21:57
# (clean-clone runs, docs/development.md). PYTEST_WORKERS=0 runs in-process.
PYTEST_WORKERS ?= 3

.PHONY: setup setup-server demo test lint protos bench clean image

setup:
	scripts/setup.sh

setup-server:
	scripts/setup.sh --server

# The main job on the embedded default (SQLite): Tetragon replayed on
# loopback -> agent -> query what it found.
demo: setup
	scripts/demo.sh

# Install everything the tests need (Python env, PostgreSQL server, a real
# kube-apiserver built once from Debian's source package, the OCI image), then run them all.
test: setup-server kube image
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m stellaops_runtime.wire.generate --check
	$(PY) -m stellaops_runtime.wire.containerd.generate --check
	$(PY) -m stellaops_runtime.wire.cri.generate --check
	$(PY) -m stellaops_runtime.store.agent_sql_gen --check
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

protos: setup
	$(PY) -m stellaops_runtime.wire.generate
	$(PY) -m stellaops_runtime.wire.containerd.generate
	$(PY) -m stellaops_runtime.wire.cri.generate

bench: setup-server
	$(PY) bench/run.py

# kube-apiserver + kube-controller-manager v1.20 from Debian's kubernetes source
# package (and etcd from etcd-server) for the tests marked realkube; cached in
# .cache/kube/ by Debian source version: ~6-10 minutes once, then instant.
# See docs/development.md.
.PHONY: kube
kube:
	scripts/kube/build.sh

# The container image (operator and agent) as an OCI archive, built offline from Debian
# and PyPI packages (mmdebstrap; no registry or container engine): .cache/image/
# stellaops-runtime.oci.tar, cached by a hash of its inputs. Needs root. See docs/development.md.
image: setup-server
	scripts/image/build.sh

clean:
	rm -rf .venv build *.egg-info stellaops-runtime.db
