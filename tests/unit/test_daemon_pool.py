"""No executor on the agent's path waits for a hung call without a deadline (s45/TJ).

stellaops_runtime/daemon_pool.py: the agent's default executor (``asyncio.to_thread``) and its
pipeline thread; native/probe_thread.py: the BCC calls' thread. Each hang here is a real one: a
``recv`` on a socket nobody writes to. The agent's own case, through the real agent and a hung
credential plugin, is tests/e2e/test_agent_exit_hung_thread.py.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import CancelledError

import pytest

from stellaops_runtime.daemon_pool import DaemonPool
from stellaops_runtime.native.probe_thread import ProbeThread


@pytest.fixture()
def quiet_socket() -> Iterator[socket.socket]:
    """One end of a socket pair: its ``recv`` blocks until the test ends (then it returns)."""
    a, b = socket.socketpair()
    try:
        yield a
    finally:
        b.send(b"x")  # lets a hung call return, so no thread outlives the test
        b.close()
        a.close()


def _returns_within(fn: object, seconds: float) -> float:
    """How long ``fn()`` took on a helper thread; fails when it took more than ``seconds``."""
    assert callable(fn)
    t = threading.Thread(target=fn, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still waiting after {seconds} s"
    return time.monotonic() - start


def test_one_worker_runs_the_calls_in_order() -> None:
    pool = DaemonPool(max_workers=1, name="test-order")
    seen: list[int] = []
    futures = [pool.submit(seen.append, i) for i in range(50)]
    for f in futures:
        f.result(5)
    assert seen == list(range(50))
    assert pool.submit(lambda: threading.current_thread().daemon).result(5) is True
    boom = pool.submit(int, "not a number")
    with pytest.raises(ValueError):
        boom.result(5)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(print)


def test_a_hung_call_is_not_waited_for_past_wait_seconds(quiet_socket: socket.socket) -> None:
    pool = DaemonPool(max_workers=1, name="test-hung", wait_seconds=0.2)
    hung = pool.submit(quiet_socket.recv, 1)
    queued = pool.submit(print, "never")
    pool.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(CancelledError):
        queued.result(0)
    assert _returns_within(lambda: pool.shutdown(wait=True), 3.0) < 1.0
    assert not hung.done()  # left running on its daemon thread


def test_idle_workers_are_not_reported_as_calls_left_running(caplog: pytest.LogCaptureFixture) -> None:
    """Review RTJ (s45): ``shutdown`` counted every worker thread not yet ended as a call still
    running, idle ones too: an agent that stopped with nothing hung logged "1 call(s) of agent-calls
    still running at its shutdown" (its ObservationNode writer's kernel detection had run on a worker,
    then waited idle), and the e2e test's assertion of that WARNING passed on an idle worker."""
    pool = DaemonPool(max_workers=4, name="test-idle")
    for f in [pool.submit(sum, (1, 2)) for _ in range(8)]:
        f.result(5)
    with caplog.at_level("WARNING", logger="stellaops_runtime.daemon_pool"):
        pool.shutdown(wait=True)
    assert not caplog.records, caplog.text


def test_the_warning_names_the_calls_left_running_and_only_those(
    quiet_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    pool = DaemonPool(max_workers=4, name="test-named")
    hung = pool.submit(quiet_socket.recv, 1)
    assert pool.submit(sum, (1, 2)).result(5) == 3  # a call that ended, on another worker
    with caplog.at_level("WARNING", logger="stellaops_runtime.daemon_pool"):
        pool.shutdown(wait=True)
    (record,) = caplog.records
    assert "1 call(s) of test-named still running" in record.getMessage(), record.getMessage()
    assert "recv" in record.getMessage() and "sum" not in record.getMessage()
    assert not hung.done()


def test_a_callable_whose_attributes_raise_still_runs() -> None:
    """The call's name (for the WARNING) is read on the worker: an odd callable must not end it."""

    class Odd:
        def __getattr__(self, name: str) -> object:
            raise RuntimeError(name)

        def __call__(self) -> int:
            return 7

    pool = DaemonPool(max_workers=1, name="test-odd")
    assert pool.submit(Odd()).result(5) == 7
    assert pool.submit(sum, (1, 2)).result(5) == 3  # the worker lives on
    pool.shutdown()


def test_several_workers_serve_others_while_one_call_hangs(quiet_socket: socket.socket) -> None:
    pool = DaemonPool(max_workers=4, name="test-many")
    hung = pool.submit(quiet_socket.recv, 1)
    assert pool.submit(sum, (1, 2, 3)).result(5) == 6
    assert not hung.done()
    pool.shutdown(wait=False)


_EXIT_SCRIPT = textwrap.dedent(
    """
    import asyncio, socket, sys
    from stellaops_runtime.daemon_pool import DaemonPool

    a, b = socket.socketpair()  # nobody writes to b: a.recv never returns

    async def main() -> None:
        asyncio.get_running_loop().set_default_executor(DaemonPool(name="calls"))
        pipeline = DaemonPool(max_workers=1, name="pipeline")
        pipeline.submit(a.recv, 1)
        try:
            await asyncio.wait_for(asyncio.to_thread(a.recv, 1), 0.1)  # given up: cancelled
        except TimeoutError:
            pass
        pipeline.shutdown(wait=False, cancel_futures=True)

    asyncio.run(main())
    print("returned", flush=True)
    """
)


def test_calls_given_up_do_not_hold_asyncio_run_or_the_exit() -> None:
    """The defect's shape: with the loop's default ThreadPoolExecutor, ``asyncio.run`` waited for
    the cancelled ``to_thread`` call for ever (and Python's exit for a pool's worker)."""
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT], capture_output=True, text=True, timeout=30, check=False
    )
    assert r.returncode == 0, r.stderr
    assert "returned" in r.stdout
    assert "still running at its shutdown" in r.stderr  # the one left, said
    assert time.monotonic() - start < 15


def test_probe_thread_shutdown_waits_at_most_its_wait_seconds(quiet_socket: socket.socket) -> None:
    """``shutdown(wait=True)`` (also the end of a ``with`` block) joined the thread with no deadline:
    before the fix this waited for the ``recv`` for ever (the helper's 5 s then failed the test)."""
    thread = ProbeThread("test-bcc", wait_seconds=0.2)
    hung = thread.submit(quiet_socket.recv, 1)
    took = _returns_within(lambda: thread.shutdown(wait=True), 5.0)
    assert took < 2.0
    assert not hung.done() and not thread.ended.done()


async def test_probe_thread_still_runs_what_was_queued_before_a_normal_shutdown() -> None:
    thread = ProbeThread("test-bcc-order")
    seen: list[int] = []
    for i in range(3):
        thread.submit(seen.append, i)
    thread.shutdown(wait=True)
    await asyncio.wait_for(asyncio.wrap_future(thread.ended), 5)
    assert seen == [0, 1, 2]


def _calls(*names: str) -> dict[str, list[tuple[str, int, dict[str, str]]]]:
    """Every call of each of ``names`` (function or method names) in the package, by name:
    (module, line, keywords). Only files whose text names one are parsed."""
    import ast
    from pathlib import Path

    import stellaops_runtime

    root = Path(stellaops_runtime.__file__).parent
    out: dict[str, list[tuple[str, int, dict[str, str]]]] = {n: [] for n in names}
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if not any(n in text for n in names):
            continue
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            called = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if called in out:
                kw = {k.arg or "**": ast.unparse(k.value) for k in node.keywords}
                out[called].append((str(path.relative_to(root)), node.lineno, kw))
    return out


def test_no_thread_the_package_starts_can_hold_an_exit() -> None:
    """A guard, so the defect does not come back: every thread is a daemon, no plain thread pool is
    built (Python's exit joins its workers), and ``asyncio.to_thread`` is called only by the agent's
    parts, whose loop's default executor is a DaemonPool (agent/runner.py)."""
    calls = _calls("Thread", "ThreadPoolExecutor", "ProcessPoolExecutor", "to_thread")
    threads = calls["Thread"]
    assert threads and all(kw.get("daemon") == "True" for _, _, kw in threads), threads
    assert not calls["ThreadPoolExecutor"] and not calls["ProcessPoolExecutor"]
    to_thread = calls["to_thread"]
    assert to_thread and all(module.startswith("agent/") for module, _, _ in to_thread), to_thread
