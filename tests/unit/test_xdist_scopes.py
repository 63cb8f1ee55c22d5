"""tests/xdist_scopes.py: under ``-n N --dist loadfile`` tests/realkube runs whole on one worker.

A real pytest-xdist run (two workers) of a throwaway tree shaped like ours: four files under
tests/realkube sharing a package-scoped server, six elsewhere. Each test writes down its worker;
the server writes down each start and stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.xdist_scopes import scope_for_dist, scope_of

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import pytest
from xdist_scopes import configure_node, make_scheduler

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return make_scheduler(config, log)

@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    configure_node(node)
"""

SERVER = """
import os
import pytest
from xdist_scopes import one_worker_scope

@pytest.fixture(scope=one_worker_scope)
def server(request):
    with open(os.environ["LOG"], "a") as f:
        f.write(f"start {os.environ['PYTEST_XDIST_WORKER']} {request.scope}\\n")
    yield
    with open(os.environ["LOG"], "a") as f:
        f.write(f"stop {os.environ['PYTEST_XDIST_WORKER']}\\n")
"""

TEST = """
import os

def test_{n}({arg}):
    with open(os.environ["LOG"], "a") as f:
        f.write(f"{where} {{os.environ['PYTEST_XDIST_WORKER']}}\\n")
"""


def test_the_scope_is_the_directory_for_realkube_and_the_file_for_the_rest() -> None:
    assert scope_of("tests/realkube/test_a.py::test_x[1]") == "tests/realkube/"
    assert scope_of("tests/realkube/test_b.py::T::test_y") == "tests/realkube/"
    assert scope_of("tests/unit/test_c.py::test_z[tests/realkube/]") == "tests/unit/test_c.py"
    assert scope_of("tests/e2e/test_d.py") == "tests/e2e/test_d.py"


def test_loadfile_runs_the_realkube_directory_on_one_worker_under_one_server(tmp_path: Path) -> None:
    (tmp_path / "tests" / "realkube").mkdir(parents=True)
    (tmp_path / "tests" / "unit").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text(CONFTEST)
    (tmp_path / "tests" / "realkube" / "conftest.py").write_text(SERVER)
    (tmp_path / "tests" / "realkube" / "__init__.py").write_text("")  # a Package, as ours
    for n in range(4):
        body = TEST.format(n=n, arg="server", where="realkube")
        (tmp_path / "tests" / "realkube" / f"test_r{n}.py").write_text(body)
    for n in range(6):
        body = TEST.format(n=n, arg="", where="unit")
        (tmp_path / "tests" / "unit" / f"test_u{n}.py").write_text(body)
    log = tmp_path / "log"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider",
         "tests"],
        cwd=tmp_path, env={**os.environ, "LOG": str(log)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "10 passed" in r.stdout, r.stdout
    lines = [line.split()[:2] for line in log.read_text().splitlines()]
    realkube_workers = {w for what, w in lines if what == "realkube"}
    assert len(realkube_workers) == 1, lines
    (worker,) = realkube_workers
    # one server for the four files, on their worker, stopped once, and package-scoped on the worker
    servers = [(what, w) for what, w in lines if what in ("start", "stop")]
    assert servers == [("start", worker), ("stop", worker)], lines
    assert f"start {worker} package" in log.read_text()
    # stopped right after the directory's last test, before any later file of that worker (whether
    # that worker takes a unit file after it is xdist's choice: the other worker may take all six, as
    # in the clean-clone run of 5dd56711; the package scope is asserted above)
    mine = [what for what, w in lines if w == worker]
    first = mine.index("start")
    assert mine[first : first + 6] == ["start"] + ["realkube"] * 4 + ["stop"], mine
    assert len([1 for what, _ in lines if what == "realkube"]) == 4
    assert len([1 for what, _ in lines if what == "unit"]) == 6


REPO = TESTS.parent


def test_the_server_is_package_scoped_only_where_the_directory_runs_in_a_row() -> None:
    # one process, loadfile with make_scheduler, each: in a row; the other modes mix it with other files
    assert [scope_for_dist(d) for d in ("no", "loadfile", "each")] == ["package"] * 3
    modes = ("load", "loadscope", "loadgroup", "worksteal")
    assert [scope_for_dist(d) for d in modes] == ["session"] * 4


def test_the_control_plane_stops_before_the_next_directory_s_first_test() -> None:
    """The real tests/realkube, planned (``--setup-plan`` starts nothing) in one process before a unit test.

    Without a Package node (no ``__init__.py``) pytest gives a ``package`` fixture the session's scope: the
    control plane then stayed up, idle, until the worker's last test.
    """
    first = test_the_scope_is_the_directory_for_realkube_and_the_file_for_the_rest
    unit = f"tests/unit/test_xdist_scopes.py::{first.__name__}"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "--setup-plan", "-q",
         "tests/realkube", unit],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    ran = [i for i, line in enumerate(lines) if line.strip().startswith("tests/realkube/")]
    stops = [i for i, line in enumerate(lines) if "TEARDOWN P control_plane" in line]
    (after,) = [i for i, line in enumerate(lines) if line.strip().startswith(unit)]
    assert len(ran) >= 38, r.stdout
    assert len(stops) == 1 and ran[-1] < stops[0] < after, r.stdout
