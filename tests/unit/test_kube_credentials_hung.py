"""A kube credentials' load that hangs does not hold ``asyncio.run``'s end once its caller gave up (s45/TJ).

kube/client.py loaded a kubeconfig (whose exec credential plugin the ``kubernetes`` loader waits for
with no timeout) and refreshed its token through ``asyncio.to_thread``: a caller's timeout ended its
wait, but ``asyncio.run`` then waited for the default executor's thread, and Python's exit joined
it, until the plugin ended. The operator's loop and a CLI's have the plain default executor (the
agent's own is daemon_pool.DaemonPool: tests/integration/test_agent_default_executor.py), so the client
runs these calls on daemon threads itself. The hang is real: a plugin that sleeps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.e2e.test_agent_exit_hung_thread import PLUGIN_SECONDS, hung_kubeconfig

_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from stellaops_runtime.kube.client import KubeClient

    async def main() -> None:
        connect = asyncio.ensure_future(KubeClient.connect(kubeconfig=sys.argv[1]))
        while not os.path.exists(sys.argv[2]):  # the plugin runs (and sleeps)
            await asyncio.sleep(0.02)
        connect.cancel()  # the caller gives up
        await asyncio.gather(connect, return_exceptions=True)
        print("gave up", flush=True)

    asyncio.run(main())
    print("returned", flush=True)
    """
)


def test_a_hung_credential_plugin_is_given_up_and_the_process_exits(tmp_path: Path) -> None:
    kubeconfig, pid_file = hung_kubeconfig(tmp_path)
    start = time.monotonic()
    try:
        r = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(kubeconfig), str(pid_file)],
            capture_output=True, text=True, timeout=PLUGIN_SECONDS / 2, check=False,
        )  # fmt: skip
    finally:
        if pid_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert pid_file.exists()  # the plugin did run (and hang)
    assert r.stdout == "gave up\nreturned\n" and r.returncode == 0, (r.stdout, r.stderr[-2000:])
    assert time.monotonic() - start < PLUGIN_SECONDS / 2
