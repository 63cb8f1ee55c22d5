# The README's two commands are `make demo` and `make test`.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup setup-server demo test lint protos bench clean

setup:
	scripts/setup.sh

setup-server:
	scripts/setup.sh --server

# The main job on the embedded default (SQLite): Tetragon replayed on
# loopback -> agent -> query what it found.
demo: setup
	scripts/demo.sh

# Install everything the tests need (Python env, PostgreSQL server), then run them all.
test: setup-server
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m stellaops_runtime.wire.generate --check
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

protos: setup
	$(PY) -m stellaops_runtime.wire.generate

bench: setup-server
	$(PY) bench/run.py

clean:
	rm -rf .venv build *.egg-info stellaops-runtime.db
