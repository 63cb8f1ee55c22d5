"""How ``make test`` (``-n 2 --dist loadfile``) groups the test files into the workers' work units.

pytest-xdist's ``loadfile`` hands each test file to one worker. Every file of tests/realkube asks for
the session's control plane (tests/realkube/conftest.py: etcd, kube-apiserver and
kube-controller-manager), so spread over both workers the suite started two of them (~6.6 s of CPU
and 12 s of a worker's time each in CI), and each then sat idle at ~6% of a core until its worker
ended, through the whole unit phase. Here tests/realkube is one unit: one worker starts one
control plane, runs the directory's files one after the other, and (the fixture is package-scoped)
stops it before its next file. Every other file stays its own unit, as ``loadfile`` makes them.
"""

from __future__ import annotations

from typing import Any

import pytest

# Directories whose files share a costly per-worker server: each runs whole on one worker.
ONE_WORKER_DIRS = ("tests/realkube/",)


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
