"""tests/xdist_scopes.py: under ``-n 2 --dist loadfile`` tests/realkube runs whole on one worker.

A real pytest-xdist run (two workers) of a throwaway tree shaped like ours: four files under
tests/realkube sharing a package-scoped server, six elsewhere. Each test writes down its worker;
the server writes down each start and stop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.xdist_scopes import scope_of

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import pytest
from xdist_scopes import make_scheduler

@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    return make_scheduler(config, log)
"""

SERVER = """
import os
import pytest

@pytest.fixture(scope="package")
def server():
    with open(os.environ["LOG"], "a") as f:
        f.write(f"start {os.environ['PYTEST_XDIST_WORKER']}\\n")
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
    lines = [line.split() for line in log.read_text().splitlines()]
    realkube_workers = {w for what, w in lines if what == "realkube"}
    assert len(realkube_workers) == 1, lines
    (worker,) = realkube_workers
    # one server for the four files, on their worker, stopped once
    servers = [(what, w) for what, w in lines if what in ("start", "stop")]
    assert servers == [("start", worker), ("stop", worker)], lines
    assert len([1 for what, _ in lines if what == "realkube"]) == 4
    assert len([1 for what, _ in lines if what == "unit"]) == 6
