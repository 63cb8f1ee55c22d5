"""How ``make test`` (``-n 3 --dist loadfile``) groups the test files into the workers' work units.

pytest-xdist's ``loadfile`` hands each test file to one worker. Every file of tests/realkube asks for
the session's control plane (tests/realkube/conftest.py: etcd, kube-apiserver and
kube-controller-manager), so spread over both workers the suite started two of them (~6.6 s of CPU
and 12 s of a worker's time each in CI), and each then sat idle at ~6% of a core until its worker
ended, through the whole unit phase. Here tests/realkube is one unit: one worker starts one
control plane, runs the directory's files one after the other, and (the fixture is package-scoped:
one_worker_scope; tests/realkube/__init__.py gives it a Package) stops it before its next file.
Every other file stays its own unit, as ``loadfile`` makes them.
"""

from __future__ import annotations

from typing import Any

import pytest

# Directories whose files share a costly per-worker server: each runs whole on one worker.
ONE_WORKER_DIRS = ("tests/realkube/",)

# The --dist modes under which each process runs such a directory's tests in a row: none (one process),
# ``loadfile`` with make_scheduler, ``each``. ``load``, ``loadscope``, ``loadgroup`` and ``worksteal``
# mix them with other files on a worker, where a package fixture would start again after every switch.
IN_A_ROW = ("no", "loadfile", "each")

# The key of the controller's --dist in a worker's ``config.workerinput``: xdist sets a worker's own
# ``dist`` option to "no" (it runs what it is sent), so the worker cannot read the mode from it.
DIST_KEY = "stellaops_dist"


def scope_for_dist(dist: str) -> str:
    """``package`` where the directory's tests run in a row (its server stops after its last), else
    ``session`` (one server a worker, kept to the worker's end, as without this module)."""
    return "package" if dist in IN_A_ROW else "session"


def configure_node(node: Any) -> None:
    """On the controller (xdist's ``pytest_configure_node``): hand its --dist to the worker."""
    node.workerinput[DIST_KEY] = str(node.config.getoption("dist", "no"))


def run_dist(config: pytest.Config) -> str:
    """The run's --dist, read on the controller, a worker, or without xdist ("no")."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return str(workerinput.get(DIST_KEY, "load"))  # a worker not told: assume its tests are mixed
    return str(config.getoption("dist", "no"))


def one_worker_scope(fixture_name: str, config: pytest.Config) -> str:
    """A fixture's ``scope=`` for a ONE_WORKER_DIRS directory's costly server."""
    return scope_for_dist(run_dist(config))


def scope_of(nodeid: str) -> str:
    """The work unit of a test: its directory for ``ONE_WORKER_DIRS``, else its file (``loadfile``)."""
    for d in ONE_WORKER_DIRS:
        if nodeid.startswith(d):
            return d
    return nodeid.split("::", 1)[0]


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``loadfile``'s scheduler with :func:`scope_of` as its grouping; None for any other mode."""
    if config.getoption("dist", "no") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class DirectoryOnOneWorker(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return DirectoryOnOneWorker(config, log)
